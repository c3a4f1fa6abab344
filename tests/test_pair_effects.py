"""The capture corpus's measured effects (paired interval), and the workload variants its quantize and
sparse-attention pairs record (tbd_suite.variants)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from daydream.profile.capture import SETTINGS, speedup_interval
from tbd_suite.variants import BlockSparse, block_sparse_attention, quantize_linears, tile_permute


def test_interval_of_a_steady_ratio_is_that_ratio_and_outside_noise():
    e = speedup_interval([10.0, 12.0, 9.0, 11.0, 10.5], [5.0, 6.0, 4.5, 5.5, 5.25])
    assert e["measured_speedup"] == 2.0 and e["speedup_ci"] == [2.0, 2.0] and e["outside_noise"]


def test_interval_is_the_t_interval_of_the_log_ratios():
    a, b = [10.0, 11.0, 9.5, 10.2, 10.8], [9.0, 11.5, 9.0, 10.9, 9.8]
    logs = [math.log(x / y) for x, y in zip(a, b)]
    m = sum(logs) / 5
    s = math.sqrt(sum((x - m) ** 2 for x in logs) / 4)
    half = 2.7764451 * s / math.sqrt(5)  # t_{0.975, 4}
    e = speedup_interval(a, b)
    assert e["measured_speedup"] == pytest.approx(math.exp(m), abs=1e-4)
    assert e["speedup_ci"] == pytest.approx([math.exp(m - half), math.exp(m + half)], abs=1e-4)
    assert e["speedup_ci"][0] < 1 < e["speedup_ci"][1] and not e["outside_noise"]


def test_every_setting_names_a_valid_whatif():
    from daydream.opts.params import parse_opt
    for setting, (_, _, opt) in SETTINGS.items():
        parse_opt(opt)


@pytest.mark.parametrize("reorder", [False, True])
def test_block_sparse_attention_at_full_density_is_dense_attention(reorder):
    q, k, v = (torch.randn(2, 3, 256, 8) for _ in range(3))
    got = block_sparse_attention(q, k, v, BlockSparse(1.0, 32, reorder))
    assert torch.allclose(got, F.scaled_dot_product_attention(q, k, v), atol=1e-5)


def test_block_sparse_attention_attends_only_its_band():
    """Keys outside a query block's band do not change its output; keys inside do."""
    cfg = BlockSparse(0.25, 32)  # 8 blocks: each query block sees 2 key blocks
    q, k, v = (torch.randn(1, 1, 256, 8) for _ in range(3))
    assert cfg.kv_blocks(8, "cpu").tolist()[0] == [7, 0]
    base = block_sparse_attention(q, k, v, cfg)
    v2 = v.clone()
    v2[:, :, 3 * 32:4 * 32] += 1  # key block 3: in the bands of query blocks 3 and 4 only
    moved = (block_sparse_attention(q, k, v2, cfg) - base).abs().amax(dim=-1)[0, 0].view(8, 32).amax(dim=1)
    assert [i for i, m in enumerate(moved.tolist()) if m > 1e-6] == [3, 4]


def test_tile_permute_and_its_inverse():
    x = torch.arange(64.0).view(1, 1, 64, 1)  # an 8 x 8 grid
    tiled = tile_permute(x).flatten().tolist()
    assert tiled[:8] == [0, 1, 2, 3, 8, 9, 10, 11] and tiled[16:18] == [4, 5]
    assert torch.equal(tile_permute(tile_permute(x), inverse=True), x)
    with pytest.raises(ValueError, match="square grid"):
        tile_permute(torch.zeros(1, 1, 65, 1))


def test_int8_forward_training_linear_has_the_fp32_backward():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(4, 16, 64, requires_grad=True)
    ref = lin(x)
    ref.square().sum().backward()
    gx, gw, gb = x.grad.clone(), lin.weight.grad.clone(), lin.bias.grad.clone()
    x.grad = lin.weight.grad = lin.bias.grad = None
    quantize_linears(torch.nn.Sequential(lin), training=True)
    out = lin(x)
    assert type(lin).__name__ == "Int8ForwardLinear" and not torch.equal(out, ref)  # int8 forward
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    out.backward(gradient=2 * ref.detach())  # the same upstream gradient as the fp32 run's
    assert torch.allclose(x.grad, gx, atol=1e-5) and torch.allclose(lin.weight.grad, gw, atol=1e-4)
    assert torch.allclose(lin.bias.grad, gb, atol=1e-5)


def test_inference_quantized_workload_runs_int8_linear():
    import tbd_suite
    torch.set_num_threads(1)
    w = tbd_suite.get("transformer").build(inference=True, quantize=True)
    assert not w.model.training and not w.step().requires_grad
    assert any("DynamicQuantizedLinear" in type(m).__name__ or "quantized" in type(m).__module__
               for m in w.model.modules())


def _cpu_run(name):
    from pathlib import Path
    return Path(__file__).resolve().parents[1] / "traces" / "pairs" / "cpu" / name


def test_cpu_quantize_replaces_whole_linear_calls_and_nothing_else():
    """The int8 op replaces aten::linear with everything inside it (addmm's bias copy included);
    attention and other matmuls outside Linear keep their time."""
    import numpy as np

    from daydream.opts._cost import OpInfo
    from daydream.opts._cost import linear_calls
    from daydream.trace import load
    from daydream.whatif import whatif
    trace = load(_cpu_run("transformer/base-inference"))
    w = whatif(trace, ["quantize"])
    g0, g1 = w.base.graph, w.predicted.graph
    tasks, calls, rows = linear_calls(g0)
    names = OpInfo(g0).name
    assert len(rows) == 26 * trace.steps  # 2 encoder layers x 5 Linear + 2 decoder layers x 8
    assert {"aten::addmm", "aten::copy_", "aten::t"} <= set(names[tasks])  # bias copy, transpose inside
    before = g0.tasks["dur"].to_numpy()
    after = g1.tasks["dur"].to_numpy()[:len(before)]  # tasks keep their index; new ones are appended
    outside = np.setdiff1d(np.flatnonzero(np.isin(names, ("aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
                                                          "aten::mm", "aten::matmul"))), tasks)
    assert len(outside) and np.array_equal(before[outside], after[outside])
    assert not np.array_equal(before[tasks], after[tasks])
    assert any("at their own shapes' measured int8 - fp32 forward time" in n for n in w.notes)


@pytest.mark.parametrize("run, fwd, train", [("transformer/base-inference", "int8_fwd_us", "fp32_fwd_us"),
                                             ("transformer/base", "int8_train_us", "fp32_train_us")])
def test_cpu_quantize_prices_each_call_by_its_shapes_measured_difference(run, fwd, train):
    """run.json's cpu_linear_shapes: every call of a measured shape changes by exactly int8 - fp32 at
    that shape (inference: forward; training: forward + backward, packing included); nothing is added."""
    import numpy as np

    from daydream import costs
    from daydream.opts._cost import linear_calls
    from daydream.trace import load
    from daydream.whatif import whatif
    trace = load(_cpu_run(run))
    measured = {costs.linear_shape_key(s): s for s in trace.run["calibration"]["cpu_linear_shapes"]["shapes"]}
    w = whatif(trace, ["quantize"])
    tasks, calls, rows = linear_calls(w.base.graph)
    b = np.bincount(calls, weights=w.base.graph.tasks["dur"].to_numpy()[tasks])
    a = np.bincount(calls, weights=w.predicted.graph.tasks["dur"].to_numpy()[tasks])
    want = [1e3 * (m[fwd] - m[train]) for m in (measured[costs.linear_shape_key(costs.linear_shape(
        trace.args_of(r)["Input Dims"]))] for r in rows)]
    assert np.allclose(a - b, np.maximum(b + want, 0) - b, atol=len(tasks))  # ns; tasks round to whole ns
    assert len(w.predicted.graph.tasks) == len(w.base.graph.tasks)  # no pack tasks: the measurement has it


def test_cpu_quantize_per_call_cost_makes_tiny_linears_slower():
    """With the calibration's per-call costs (int8 > fp32) and no work to speed up, every call gains
    exactly c8 - c32; with a large work speed-up the calls shrink."""
    import copy

    import numpy as np

    from daydream.opts._cost import linear_calls
    from daydream.trace import load
    from daydream.whatif import whatif
    trace = load(_cpu_run("transformer/base-inference"))
    run = copy.deepcopy(trace.run)
    run["calibration"]["cpu_int8_linear"] = {"fp32_call_us": 1e6, "int8_call_us": 1e6 + 5.0, "work_speedup": 4.0}
    del run["calibration"]["cpu_linear_shapes"]  # the reference-shape model: shapes not re-timed
    trace.run = run
    w = whatif(trace, ["quantize"])
    tasks, calls, rows = linear_calls(w.base.graph)
    b = np.bincount(calls, weights=w.base.graph.tasks["dur"].to_numpy()[tasks])
    a = np.bincount(calls, weights=w.predicted.graph.tasks["dur"].to_numpy()[tasks])
    assert np.allclose(a - b, 5000, atol=50)  # ns (tasks round to whole ns): +5 us a call, no work to scale


@pytest.mark.parametrize("args, says", [
    (["--settings", "bogus"], "unknown setting(s) bogus"),
    (["--models", "resnet50", "--size", "small-256", "--settings", "amp"], "tbd:resnet50 has no size 'small-256'"),
    (["--models", "resnet50", "--settings", "sparse-attention-50"], "only --models dit --size small-256"),
])
def test_capture_refuses_bad_input_in_one_line_before_writing(tmp_path, args, says):
    from click.testing import CliRunner

    from daydream.cli import main
    out = tmp_path / "pairs"
    result = CliRunner().invoke(main, ["capture", *args, "--out", str(out), "--json"])
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_capture_append_refuses_other_recording_settings(tmp_path):
    import json

    from click.testing import CliRunner

    from daydream.cli import main
    (tmp_path / "index.json").write_text(json.dumps({"schema": "daydream.pairs/1", "repetitions": 3}))
    result = CliRunner().invoke(main, ["capture", "--models", "transformer", "--settings", "amp", "--append",
                                       "--out", str(tmp_path), "--json"])
    assert result.exit_code == 2 and "--append" in result.output and "recorded with other" in result.output


def test_cpu_sparse_attention_prices_calls_by_the_re_timed_realization():
    """run.json's cpu_sparse_attention: each forward flash-attention op of the measured shape changes
    by sparse - dense forward, each backward op by the rest of the training step's difference; with
    reorder the measured times include the permutation, so no reorder task is inserted."""
    import numpy as np

    from daydream.opts._cost import OpInfo
    from daydream.graph.schema import T_CPU
    from daydream.opts.sparse_attention import CPU_BWD, CPU_FWD
    from daydream.trace import load
    from daydream.whatif import whatif
    trace = load(_cpu_run("dit-small-256/base"))
    entry = trace.run["calibration"]["cpu_sparse_attention"]["shapes"][0]
    v = next(x for x in entry["sparse"] if x["block"] == 32 and x["density"] == 0.25 and x["reorder"])
    d_fwd = 1e3 * (v["fwd_us"] - entry["dense_fwd_us"])
    d_bwd = 1e3 * (v["train_us"] - entry["dense_train_us"]) - d_fwd
    w = whatif(trace, ["sparse-attention:density=0.25,block=32,reorder=true"])
    g0, g1 = w.base.graph, w.predicted.graph
    assert len(g1.tasks) == len(g0.tasks)  # nothing inserted
    info = OpInfo(g0)
    rows, kind = g0.tasks["op"].to_numpy(), g0.tasks["kind"].to_numpy()
    before, after = g0.tasks["dur"].to_numpy(), g1.tasks["dur"].to_numpy()
    seen = {CPU_FWD: 0, CPU_BWD: 0}
    for name, delta in ((CPU_FWD, d_fwd), (CPU_BWD, d_bwd)):
        for r in np.unique(rows[(info.name == name) & (kind == T_CPU)]):
            seg = np.flatnonzero((rows == r) & (kind == T_CPU))
            assert after[seg].sum() == pytest.approx(max(before[seg].sum() + delta, 0), abs=len(seg))
            seen[name] += 1
    assert seen[CPU_FWD] == seen[CPU_BWD] > 0
    assert any("re-timed block-sparse attention" in n for n in w.notes)
    # a block size the run did not re-time keeps the cost model (density scaling)
    w = whatif(trace, ["sparse-attention:density=0.25,block=16,reorder=false"])
    assert not any("re-timed" in n for n in w.notes)
