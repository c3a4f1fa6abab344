"""Compute-side what-ifs (amp, quantize, sparse-attention, gpu, batch-size, cuda-graphs): exact
timelines on tiny synthetic traces computed by hand from each model's formula, direction and
magnitude on real shared traces, and bad parameters exiting 2."""
from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import KinetoBuilder, shared
from daydream import hardware
from daydream.cli import main
from daydream.graph import build_graph
from daydream.graph.build import DEFAULT_KERNEL_GAP_NS
from daydream.opts import _cost as C
from daydream.opts.context import Context
from daydream.sim import simulate
from daydream.trace import load
from daydream.whatif import apply_optimizations, whatif
from daydream.opts.params import parse_opt

A100 = hardware.lookup("A100-SXM4-80GB")
H100 = hardware.lookup("H100")
US = 1000  # ns
N = 4096
MM_ARGS = {"Input Dims": [[N, N], [N, N]], "Input type": ["float", "float"]}
FLOOR = C.DEFAULT_KERNEL_FLOOR_NS  # fewer than 5 kernels: the default fixed kernel cost


def predict(path, opt):
    tr = load(path)
    g = build_graph(tr)
    out = apply_optimizations(g, [parse_opt(opt)], Context.of(tr))
    return simulate(g), simulate(out), out


def mm_trace(tmp_path, kernel="ampere_sgemm_128x64_nn", op="aten::mm", args=MM_ARGS, grid=None):
    """Step 0-32 us; op 10-30 us launches at 15 us (5 us call) a 50 us kernel at 25 us."""
    k = KinetoBuilder()
    k.step(1, 0, 32)
    k.op(op, 10, 20, **args)
    k.launch(15, 5, 25, 50, name=kernel)
    if grid is not None:
        k.events[-1]["args"]["grid"] = grid
    return k.write(tmp_path / "t.json")


def test_gpu_exact(tmp_path):
    base, pred, _ = predict(mm_trace(tmp_path), "gpu:target=H100")
    assert base.per_step_ms == pytest.approx(0.075)
    src, dst = C.achievable(A100), C.achievable(H100)
    flops, nbytes = 2.0 * N ** 3, 3 * N * N * 4.0
    factor = max(flops / dst.peak("fp32"), nbytes / dst.mem_bw) / max(flops / src.peak("fp32"), nbytes / src.mem_bw)
    dur = round(FLOOR + (50 * US - FLOOR) * factor)
    start = 15 * US + 10 * US + round((H100.launch_gpu_s - A100.launch_gpu_s) * 1e9)
    assert pred.per_step_ms == pytest.approx((start + dur) / 1e6, abs=2e-6)
    assert pred.per_step_ms < base.per_step_ms


def test_amp_exact(tmp_path):
    _, pred, _ = predict(mm_trace(tmp_path), "amp:dtype=bf16")
    gemm = round(FLOOR + (50 * US - FLOOR) * A100.peak("fp32") / A100.peak("bf16"))  # compute-bound
    cast = N * N * 6 / A100.mem_bw * 1e9 + A100.launch_gpu_s * 1e9
    launch = A100.launch_cpu_s * 1e9
    cast_start = 15 * US + launch + A100.launch_gpu_s * 1e9     # new call at 15 us
    gemm_start = max(cast_start + cast, 15 * US + launch + 10 * US)  # after the cast / its own call
    assert pred.per_step_ms == pytest.approx((gemm_start + gemm) / 1e6, abs=3e-6)


def test_amp_leaves_16bit_alone(tmp_path):
    args = {"Input Dims": [[N, N], [N, N]], "Input type": ["c10::BFloat16", "c10::BFloat16"]}
    base, pred, _ = predict(mm_trace(tmp_path, kernel="sm80_xmma_gemm_bf16bf16_bf16f32", args=args), "amp")
    assert pred.per_step_ms == base.per_step_ms


def test_quantize_exact(tmp_path):
    _, _, g = predict(mm_trace(tmp_path), "quantize:dtype=int8")
    names = g.task_names()
    dur = dict(zip(names, g.tasks["dur"]))
    flops, nbytes = 2.0 * N ** 3, 3 * N * N * 4.0
    new_bytes = nbytes - N * N * 3  # the fp32 weight stored in int8
    factor = max(flops / A100.peak("int8"), new_bytes / A100.mem_bw) / max(flops / A100.peak("fp32"), nbytes / A100.mem_bw)
    assert dur["ampere_sgemm_128x64_nn"] == round(FLOOR + (50 * US - FLOOR) * factor)
    lat = A100.launch_gpu_s * 1e9
    assert dur["quantize to int8 (per-channel)"] == round(N * N * 5 / A100.mem_bw * 1e9 + lat)
    assert dur["dequantize from int8"] == round(N * N * 8 / A100.mem_bw * 1e9 + lat)


def test_sparse_attention_exact(tmp_path):
    b, lq, h, d = 2, 1024, 8, 64
    args = {"Input Dims": [[b, lq, h, d]] * 3, "Input type": ["c10::BFloat16"] * 3}
    path = mm_trace(tmp_path, kernel="flash_fwd_kernel<Flash_fwd_kernel_traits>", op="aten::_flash_attention_forward",
                    args=args)
    _, pred, _ = predict(path, "sparse-attention:density=0.25,block=128,reorder=false")
    mask = b * h * math.ceil(lq / 128) ** 2
    dur = round(round(FLOOR + (50 * US - FLOOR) * 0.25) + mask / A100.mem_bw * 1e9)
    assert pred.per_step_ms == pytest.approx((25 * US + dur) / 1e6, abs=2e-6)
    _, with_reorder, g = predict(path, "sparse-attention:density=0.25,block=128")
    perm = dict(zip(g.task_names(), g.tasks["dur"]))["PARO token reorder (permute Q,K,V)"]
    assert perm == round(2 * 3 * b * lq * h * d * 2 / A100.mem_bw * 1e9 + A100.launch_gpu_s * 1e9)
    assert with_reorder.per_step_ms > pred.per_step_ms


@pytest.mark.parametrize("grid,expected_factor", [([10, 1, 1], 1.0), ([216, 1, 1], 2.0)])
def test_batch_size_occupancy(tmp_path, grid, expected_factor):
    _, pred, _ = predict(mm_trace(tmp_path, grid=grid), "batch-size:factor=2")
    dur = round(FLOOR + (50 * US - FLOOR) * expected_factor)
    assert pred.per_step_ms == pytest.approx((25 * US + dur) / 1e6, abs=2e-6)


def test_cuda_graphs_exact(tmp_path):
    k = KinetoBuilder()
    k.step(1, 0, 100)
    for i in range(3):  # CPU-bound: 30 us of host work per 4 us kernel
        k.op("aten::relu", 30 * i, 30)
        k.launch(30 * i + 10, 5, 30 * i + 20, 4, name="vectorized_elementwise_kernel")
    base, pred, _ = predict(k.write(tmp_path / "g.json"), "cuda-graphs")
    assert base.per_step_ms == pytest.approx(0.1)
    first = A100.launch_cpu_s * 1e9 + A100.launch_gpu_s * 1e9
    end = first + 3 * 4 * US + 2 * DEFAULT_KERNEL_GAP_NS
    assert pred.per_step_ms == pytest.approx(end / 1e6, abs=2e-6)


def test_cuda_graphs_rejects_cpu_trace(tmp_path):
    k = KinetoBuilder()
    k.step(1, 0, 50)
    k.op("aten::mm", 5, 40, **MM_ARGS)
    path = k.write(tmp_path / "cpu.json")
    r = CliRunner().invoke(main, ["whatif", str(path), "--opt", "cuda-graphs"])
    assert r.exit_code == 2


def test_amp_on_cpu_trace_uses_table_ratio(tmp_path):
    k = KinetoBuilder()
    k.step(1, 0, 50)
    k.op("aten::mm", 5, 40, **MM_ARGS)
    base, pred, _ = predict(k.write(tmp_path / "cpu.json"), "amp")
    cpu = hardware.cpu_device()
    ratio = cpu.peak("fp32") / cpu.peak("bf16")
    # the mm's 40 us scale by the ratio; the weight cast (numel * 6 bytes / CPU bandwidth) is added
    expected = 50 * US - 40 * US + 40 * US * ratio + N * N * 6 / cpu.mem_bw * 1e9
    assert pred.per_step_ms == pytest.approx(expected / 1e6, abs=2e-6)


def cpu_run_dir(tmp_path, calibration=None):
    """A CPU run directory: step 0-50 us holding one forward aten::mm of 5-45 us; run.json with
    `calibration` when given."""
    import gzip
    import json
    k = KinetoBuilder()
    k.step(1, 0, 50)
    k.op("aten::mm", 5, 40, **MM_ARGS)
    run = tmp_path / "run"
    run.mkdir()
    (run / "trace.json.gz").write_bytes(gzip.compress(json.dumps(k.doc()).encode()))
    info = {"schema": "daydream.run/1", "device": "cpu", "batch_size": 8}
    if calibration is not None:
        info["calibration"] = calibration
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_amp_on_cpu_uses_the_measured_calibration(tmp_path):
    rate = 2e9
    cal = {"cpu_bf16_speedup": {"matmul": 0.25, "conv": 0.1}, "cast_bytes_per_s": rate, "method": "test"}
    tr = load(cpu_run_dir(tmp_path, cal))
    w = whatif(tr, ["amp:dtype=bf16"])
    # the mm's 40 us / 0.25 (bf16 4x slower, measured) + the weight cast at the measured rate
    expected = 50 * US - 40 * US + 40 * US / 0.25 + N * N * 6 / rate * 1e9
    assert w.predicted_ms == pytest.approx(expected / 1e6, abs=2e-6)
    assert any("measured calibration" in n for n in w.notes)


def test_amp_on_cpu_prices_a_gemm_by_the_two_shape_line_and_forward_apart(tmp_path):
    """With cpu_bf16_matmul, a forward mm of f FLOPs scales by (c16 + f/R16) / (c32 + f/R32), the
    lines through the two calibrated shapes; the combined and forward-only speedups are not used
    for it. Built so that the lines give a factor of exactly 2 at the test's mm."""
    from daydream.opts import _cost as C
    from daydream.graph import build_graph
    rate = 2e9
    tr = load(cpu_run_dir(tmp_path, {"cpu_bf16_speedup": {"matmul": 0.25}}))
    info = C.OpInfo(build_graph(tr))
    f = float(info.flops[info.name == "aten::mm"][0])
    # fp32 line through (f, f ns), (2f, 2f ns): c = 0, R = 1 FLOP/ns; bf16 through (f, 2f), (2f, 3f):
    # c = f, R = 1 -> at f: 2f / f = 2
    cal = {"cpu_bf16_speedup": {"matmul": 0.25}, "cpu_bf16_speedup_fwd": {"matmul": 0.5},
           "cpu_bf16_matmul": {"flops": [f, 2 * f], "fp32_us": [f / 1e3, 2 * f / 1e3],
                               "bf16_us": [2 * f / 1e3, 3 * f / 1e3]},
           "cast_bytes_per_s": rate, "method": "test"}
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    w = whatif(load(cpu_run_dir(tmp_path / "b", cal)), ["amp:dtype=bf16"])
    expected = 50 * US - 40 * US + 40 * US * 2.0 + N * N * 6 / rate * 1e9
    assert w.predicted_ms == pytest.approx(expected / 1e6, abs=2e-6)
    # without the two-shape calibration, the forward-only speedup applies to a forward mm
    del cal["cpu_bf16_matmul"]
    w = whatif(load(cpu_run_dir(tmp_path / "c", cal)), ["amp:dtype=bf16"])
    expected = 50 * US - 40 * US + 40 * US / 0.5 + N * N * 6 / rate * 1e9
    assert w.predicted_ms == pytest.approx(expected / 1e6, abs=2e-6)


def test_amp_on_cpu_without_calibration_says_it_used_the_table(tmp_path):
    w = whatif(load(cpu_run_dir(tmp_path)), ["amp:dtype=bf16"])
    cpu = hardware.cpu_device()
    expected = 50 * US - 40 * US + 40 * US * cpu.peak("fp32") / cpu.peak("bf16") + N * N * 6 / cpu.mem_bw * 1e9
    assert w.predicted_ms == pytest.approx(expected / 1e6, abs=2e-6)
    assert any("hardware table" in n for n in w.notes)


def test_calibration_measures_every_class_within_budget():
    import time

    from daydream.profile import calibrate
    t0 = time.perf_counter()
    cal = calibrate.measure(budget_s=0.5, reps=2)
    assert time.perf_counter() - t0 < 20  # a generous bound for a loaded CI machine
    assert set(cal["cpu_bf16_speedup"]) == {"matmul", "conv", "attention", "elementwise"}
    assert all(v > 0 for v in cal["cpu_bf16_speedup"].values())
    assert cal["cast_bytes_per_s"] > 0 and cal["threads"] >= 1 and cal["method"]
    for part in ("cpu_bf16_speedup_fwd", "cpu_bf16_speedup_bwd"):
        assert set(cal[part]) == set(cal["cpu_bf16_speedup"]) and all(v > 0 for v in cal[part].values())
    mm = cal["cpu_bf16_matmul"]
    assert mm["flops"][1] > mm["flops"][0] and all(t > 0 for t in mm["fp32_us"] + mm["bf16_us"])


def test_run_shapes_are_distinct_most_time_first_and_only_linears():
    from conftest import REPO
    from daydream import costs
    from daydream.profile import shapes
    trace = load(REPO / "traces" / "pairs" / "cpu" / "llama" / "base")
    lin = shapes.linear_shapes(trace)
    assert [s["w"] for s in lin][:2] == [[344, 64], [64, 64]] and len(lin) == 4  # MLP up (x2 calls), q/o projections
    ops = shapes.op_shapes(trace)
    assert ops[0]["op"] == shapes.ATTENTION_BWD and {o["op"] for o in ops} == {shapes.ATTENTION_BWD,
                                                                                shapes.ATTENTION_FWD, "aten::mm"}
    assert costs.linear_shape([[4, 8], [16, 7], []]) is None and costs.linear_shape([[4, 8]]) is None
    assert costs.linear_shape("junk") is None
    assert costs.linear_shape([[4, 8], [16, 8], [16]]) == {"x": [4, 8], "w": [16, 8], "bias": True}


def test_profile_on_cpu_writes_the_calibration_that_amp_reads(tmp_path):
    import json

    from daydream.profile import profile_model
    out = tmp_path / "run"
    profile_model("tbd:llama", device="cpu", steps=1, warmup=0, time_steps=1, layers=False,
                  out_dir=out, progress=False, threads=1)
    cal = json.loads((out / "run.json").read_text())["calibration"]
    assert set(cal["cpu_bf16_speedup"]) >= {"matmul", "conv", "attention", "elementwise"}
    assert cal["threads"] == 1
    assert cal["dram_bytes_per_s"] > 1e9  # the fused optimizer's streaming rate beyond the caches
    # the run's own Linear shapes, re-timed (llama small: 4 distinct shapes, none with a bias)
    shapes = cal["cpu_linear_shapes"]["shapes"]
    assert {(tuple(s["w"]), s["bias"]) for s in shapes} == {((64, 64), False), ((344, 64), False),
                                                            ((64, 172), False), ((512, 64), False)}
    assert all(s[k] > 0 for s in shapes for k in ("fp32_fwd_us", "int8_fwd_us", "fp32_train_us", "int8_train_us"))
    w = whatif(load(out), ["amp:dtype=bf16"])
    assert any("measured calibration" in n for n in w.notes)
    assert w.predicted_ms != w.replay_ms


@pytest.mark.parametrize("opt", ["gpu:target=NOPE", "gpu:target=cpu", "amp:dtype=fp64",
                                 "quantize:dtype=int2", "sparse-attention:density=0",
                                 "batch-size:factor=0", "cuda-graphs:x=1"])
def test_bad_params_exit_2(tmp_path, opt):
    r = CliRunner().invoke(main, ["whatif", str(mm_trace(tmp_path)), "--opt", opt])
    assert r.exit_code == 2, r.output


# ---- real traces: direction and magnitude --------------------------------------------------
@pytest.fixture(scope="module")
def v100():
    return load(shared("hta/ns_resolution_a100.json.gz"))  # recorded on a V100 despite its name


def test_amp_speeds_up_gemm_conv_share(v100):
    w = whatif(v100, ["amp"])
    # GEMM/conv kernels of that run are fp32 on a V100; tensor cores give at most the typical 3x
    assert 1.05 < w.speedup < 3.0


def test_gpu_v100_to_h100_is_faster(v100):
    w = whatif(v100, ["gpu:target=H100"])
    assert w.speedup > 1.2
    back = whatif(v100, ["gpu:target=T4"])
    assert back.speedup < 1.0


def test_cross_vendor_pairs_within_15pct():
    bert = {"h100": 4.495, "mi300": 4.136}
    for src, dst, target in (("h100", "mi300", "MI300X"), ("mi300", "h100", "H100")):
        w = whatif(load(shared(f"tracelens/gaunernst_bert-small-uncased_{src}.json.gz")), [f"gpu:target={target}"])
        assert abs(w.predicted_ms - bert[dst]) / bert[dst] < 0.15


def _amp_repriced_at_shapes(trace, op_names, timed_only: bool = False) -> tuple[list, object]:
    """amp:dtype=bf16 on `trace`: for every call of `op_names` (with `timed_only`, every call whose
    shape the calibration re-timed), its CPU segments' predicted time against
    max(T + t16 - t32, T * min(t16 / t32, 1)) with the run's cpu_op_shapes figures for its shape
    (asserted); returns the checked calls' op names and the what-if."""
    from daydream import costs
    from daydream.graph.schema import T_CPU
    from daydream.opts._cost import OpInfo
    ops = trace.run["calibration"]["cpu_op_shapes"]["ops"]
    times = {costs.op_shape_key(o["op"], {"Input Dims": o["dims"], "Input Strides": o["strides"],
                                          "Concrete Inputs": o["concrete"]}): (o["fp32_us"], o["bf16_us"]) for o in ops}
    w = whatif(trace, ["amp:dtype=bf16"])
    g0, g1 = w.base.graph, w.predicted.graph
    info = OpInfo(g0)
    rows, kind = g0.tasks["op"].to_numpy(), g0.tasks["kind"].to_numpy()
    before, after = g0.tasks["dur"].to_numpy(), g1.tasks["dur"].to_numpy()[:len(g0.tasks)]
    checked = []
    for r in np.unique(rows[np.isin(info.name, op_names)]):
        seg = np.flatnonzero((rows == r) & (kind == T_CPU))
        key = costs.op_shape_key(info.name[seg[0]], trace.args_of(int(r)))
        if timed_only and key not in times:
            continue
        t32, t16 = times[key]
        want = max(before[seg].sum() + 1e3 * (t16 - t32), before[seg].sum() * min(t16 / t32, 1))
        assert after[seg].sum() == pytest.approx(want, abs=len(seg))
        checked.append(info.name[seg[0]])
    return checked, w


def test_cpu_amp_prices_ops_at_their_own_shapes_additively():
    """run.json's cpu_op_shapes: each re-timed GEMM/attention op's recorded time T becomes
    max(T + t16 - t32, T * min(t16 / t32, 1)) -- the llama attention backward is 8x slower in bf16
    here, which the reference-shape class calibration (4x) missed -- and each forward Linear call
    gets its measured autocast casts before it."""
    from conftest import REPO
    trace = load(REPO / "traces" / "pairs" / "cpu" / "llama" / "base")
    checked, w = _amp_repriced_at_shapes(trace, ("aten::_scaled_dot_product_flash_attention_for_cpu_backward",))
    g1 = w.predicted.graph
    assert len(checked) == 6  # 2 layers x 3 steps
    casts = [n for n in np.asarray(g1.names, dtype=object)[g1.tasks["name"].to_numpy()] if "autocast casts" in n]
    assert len(casts) == 33  # 11 Linear calls a step, 3 steps
    assert any("own shapes' measured bf16 - fp32" in n for n in w.notes)


def _cpu_runs_bf16_lstm() -> bool:
    """Whether torch runs nn.LSTM under CPU bf16 autocast on this machine (the test's host)."""
    import torch
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(4, 4)(torch.randn(2, 1, 4))
    except RuntimeError as exc:
        assert "primitive descriptor" in str(exc), exc  # any other error is a bug, not the host
        return False
    return True


def test_amp_warns_of_ops_the_recording_cpu_refused_in_bf16():
    """An op the profile's re-timing ran in fp32 but the CPU refused in bf16 (cpu_op_shapes'
    bf16_refused) is named in amp's notes: the user's autocast run would fail there."""
    import copy
    from conftest import REPO
    trace = load(REPO / "traces" / "pairs" / "cpu" / "seq2seq" / "base")
    run = copy.deepcopy(trace.run)
    ops = run["calibration"]["cpu_op_shapes"]["ops"]
    lstm = [o for o in ops if o["op"] == "aten::mkldnn_rnn_layer"]
    assert lstm
    for o in lstm:
        o.pop("bf16_us", None)
        o["bf16_refused"] = "could not create a primitive descriptor for the LSTM forward propagation primitive"
    trace.run = run
    notes = whatif(trace, ["amp:dtype=bf16"]).notes
    warned = [n for n in notes if "does not run in bf16" in n]
    assert len(warned) == 1 and "aten::mkldnn_rnn_layer " in warned[0] and "primitive descriptor" in warned[0]
    assert not [n for n in whatif(load(REPO / "traces" / "pairs" / "cpu" / "seq2seq" / "base"),
                                  ["amp:dtype=bf16"]).notes if "does not run in bf16" in n]


def test_cpu_amp_prices_lstm_layers_at_their_own_shapes():
    """oneDNN LSTM layers (aten::mkldnn_rnn_layer and its backward, nn.LSTM on CPU) are re-timed at
    their recorded shapes -- the bf16 side with autocast's per-step copies of the weights --, and
    amp prices each call additively as it does GEMMs: T' = max(T + t16 - t32, T * min(t16 / t32, 1))."""
    from daydream.profile import shapes
    from conftest import REPO
    trace = load(REPO / "traces" / "pairs" / "cpu" / "seq2seq" / "base")
    found = shapes.op_shapes(trace)
    assert {shapes.RNN_FWD, shapes.RNN_BWD} <= {o["op"] for o in found}
    bwd = next(o for o in found if o["op"] == shapes.RNN_BWD)
    timed = shapes._time_op(bwd)  # the backward on its own forward's workspace, both precisions
    assert timed["fp32_us"] > 0
    if not _cpu_runs_bf16_lstm():
        # the one expected refusal: oneDNN has no bf16 LSTM on this CPU (no AVX512-BF16/AMX), so
        # torch's own autocast LSTM fails here; the re-timing keeps fp32 and records why
        assert "bf16_us" not in timed and "primitive descriptor" in timed["bf16_refused"]
        pytest.skip("this CPU runs no bf16 LSTM (oneDNN); the refusal path is checked above")
    assert timed["bf16_us"] > 0 and "bf16_refused" not in timed
    checked, w = _amp_repriced_at_shapes(trace, (shapes.RNN_FWD, shapes.RNN_BWD))
    assert set(checked) == {shapes.RNN_FWD, shapes.RNN_BWD}
    assert any("GEMM/attention/LSTM ops changed" in n for n in w.notes)
    assert shapes._scalar("[]") == [] and shapes._scalar("[3, 2]") == [3, 2]


@pytest.mark.parametrize("opt, variant", [("amp:dtype=bf16", "bf16"), ("batch-size:factor=2", "fp32_x2")])
def test_cpu_convolutions_priced_by_their_re_timed_shapes(opt, variant):
    """run.json's cpu_conv_shapes: each aten::convolution call (forward) and aten::convolution_backward
    call, with everything inside it, changes by t_variant - t_fp32 at its shape, never below what the
    ratio t_variant / t_fp32 says for a faster path -- a 1x1 convolution that bf16 or a doubled batch
    moves from ATen's native path to oneDNN included."""
    from conftest import REPO
    from daydream import costs
    trace = load(REPO / "traces" / "pairs" / "cpu" / "resnet50" / "base")
    measured = {costs.conv_shape_key(s): s for s in trace.run["calibration"]["cpu_conv_shapes"]["shapes"]}
    w = whatif(trace, [opt])
    g0, g1 = w.base.graph, w.predicted.graph
    before, after = g0.tasks["dur"].to_numpy(), g1.tasks["dur"].to_numpy()[:len(g0.tasks)]
    checked = 0
    for name, part in ((C.CONV_FWD, "fwd"), (C.CONV_BWD, "bwd")):
        tasks, calls, rows = C.op_calls(g0, name)
        for j, r in enumerate(rows.tolist()):
            a = trace.args_of(r)
            m = measured[costs.conv_key(name, a["Input Dims"], a["Concrete Inputs"])]
            mine = tasks[calls == j]
            t0, t1, total = m[f"fp32_{part}_us"], m[f"{variant}_{part}_us"], before[mine].sum()
            want = max(total + 1e3 * (t1 - t0), total * min(t1 / t0, 1), total / 20)
            assert after[mine].sum() == pytest.approx(want, abs=len(mine) + 1)
            checked += 1
    assert checked == 2 * 51  # 17 convolutions x 3 steps, forward and backward
    assert any("convolution calls" in n for n in w.notes)


def test_shape_timing_of_a_slow_call_stays_near_its_budget(monkeypatch):
    """A shape whose one call already exceeds the per-shape budget is timed once per repetition,
    three repetitions (a 2048^3 Linear took minutes at 10 calls x 5 repetitions per variant)."""
    import time

    from daydream.profile import shapes
    monkeypatch.setattr(shapes, "SHAPE_BUDGET_S", 0.05)
    calls = []
    out = shapes._median_us({"slow": lambda: (calls.append(1), time.sleep(0.03))})
    assert len(calls) == 1 + 3 and out["slow"] >= 30_000  # warm-up + 3 repetitions of 1 call, us
    fast = []
    shapes._median_us({"fast": lambda: fast.append(1)})
    assert len(fast) == 1 + shapes.REPS * shapes.CALLS


def test_amp_and_batch_size_compose_on_the_same_convolutions():
    """Both re-price resnet50's convolutions from measurements against the same fp32 call; the second
    composes its ratio, so no call is zeroed and the order does not matter much."""
    from conftest import REPO
    trace = load(REPO / "traces" / "pairs" / "cpu" / "resnet50" / "base")
    a = whatif(trace, ["amp", "batch-size"])
    b = whatif(trace, ["batch-size", "amp"])
    assert a.predicted_unprofiled_ms == pytest.approx(b.predicted_unprofiled_ms, rel=0.02)
    tasks, _, _ = C.op_calls(a.predicted.graph, C.CONV_FWD)
    assert (a.predicted.graph.tasks["dur"].to_numpy()[tasks] > 0).all()
    half = whatif(trace, ["batch-size:factor=0.5"]).predicted_unprofiled_ms
    assert half < whatif(trace).unprofiled_ms < whatif(trace, ["batch-size:factor=4"]).predicted_unprofiled_ms


def test_a_shape_that_cannot_be_re_timed_never_loses_the_run(monkeypatch):
    """daydream profile re-times shapes inside the run directory's staging: a shape torch refuses is
    dropped (its calls keep the other models), and any other failure becomes a note in run.json."""
    from conftest import REPO
    from daydream.profile import shapes

    def refuse(shape):
        raise RuntimeError("this build refuses that shape")
    monkeypatch.setattr(shapes, "_time_linear", refuse)
    monkeypatch.setattr(shapes, "BUDGET_S", 0.2)
    got = shapes.measure_run_shapes(load(REPO / "traces" / "pairs" / "cpu" / "llama" / "base-inference"))
    assert "cpu_linear_shapes" not in got and got["cpu_op_shapes"]["ops"]

    def broken(path):
        raise ValueError("unreadable")
    assert "unreadable" in shapes.measure_run_shapes_or_note(broken, "x")["shape_calibration_error"]


def test_host_speed_scales_cpu_work_and_keeps_gpu_work():
    """host:speed=S: CPU tasks take d / S, GPU tasks keep theirs, and waiting is left to the replay;
    a host-bound step (bert-small inference) follows the host almost fully, a GPU-bound one barely."""
    from daydream.graph.schema import GPU_TASK_TYPES, T_CPU
    bert = load(shared("tracelens/gaunernst_bert-small-uncased_h100.json.gz"))
    w = whatif(bert, ["host:speed=1.25"])
    g0, g1 = w.base.graph, w.predicted.graph
    kind = g0.column("kind")
    d0, d1 = g0.column("dur").astype(float), g1.column("dur")[:g0.n_tasks].astype(float)
    cpu, gpu = kind == T_CPU, np.isin(kind, GPU_TASK_TYPES)
    assert d1[cpu].sum() == pytest.approx(d0[cpu].sum() / 1.25, rel=1e-3)
    assert (d1[gpu] == d0[gpu]).all()
    assert 1.15 < w.speedup <= 1.25  # host-bound: the GPU is busy 0.3 of 4.5 ms
    qwen = whatif(load(shared("tracelens/Qwen_Qwen1.5-0.5B-Chat_h100.json.gz")), ["host:speed=1.25"])
    assert 1.0 <= qwen.speedup < 1.05  # GPU-bound
    assert whatif(bert, ["host"]).predicted_ms == pytest.approx(w.replay_ms)  # speed=1: nothing
    slow = whatif(bert, ["host:speed=0.5"])
    assert slow.speedup < 0.6


def test_last_level_cache_and_the_in_cache_working_set(tmp_path):
    """The largest data/unified cache in sysfs is the LLC; half of it (or the calibration's own 6 MiB
    copy, whichever is larger) is the working set a fused update streams at the calibrated in-cache
    rate; beyond it, at the measured DRAM rate."""
    from daydream.opts.fused_optimizer import CALIBRATION_CAST_BYTES, cache_stream
    from daydream.profile.calibrate import last_level_cache_bytes
    for i, (kind, size) in enumerate([("Data", "48K"), ("Instruction", "64M"), ("Unified", "1024K"),
                                      ("Unified", "32768K")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
    assert last_level_cache_bytes(str(tmp_path)) == 32 << 20
    assert last_level_cache_bytes(str(tmp_path / "absent")) is None
    run = {"calibration": {"cast_bytes_per_s": 5e10, "cpu_llc_bytes": 32 << 20}}
    assert cache_stream(run) == (5e10, float(16 << 20))
    assert cache_stream({"calibration": {"cast_bytes_per_s": 5e10}}) == (5e10, float(CALIBRATION_CAST_BYTES))
    assert cache_stream({}) == (0.0, 0.0)


def test_cpu_amp_prices_batchnorm_and_pooling_at_their_own_shapes():
    """BatchNorm and max-pooling run in their input's dtype under CPU autocast, bf16 behind a
    convolution: re-timed at their recorded shapes with the data in bf16 and BatchNorm's weight,
    bias and statistics fp32 (as autocast leaves them), then priced additively like the GEMMs. On
    a user's CNN here BatchNorm was 4x faster in bf16, max-pooling 5% slower."""
    import torch
    from daydream.profile import shapes
    from conftest import REPO
    trace = load(REPO / "traces" / "pairs" / "cpu" / "resnet50" / "base")
    found = [o for o in shapes.op_shapes(trace) if o["op"] in shapes.NORM_POOL_OPS]
    assert {o["op"] for o in found} == set(shapes.NORM_POOL_OPS)
    bn = next(o for o in found if o["op"] == "aten::native_batch_norm_backward")
    args = shapes._arguments(bn, torch.bfloat16)
    assert [a.dtype for a in args[:3]] == [torch.bfloat16, torch.bfloat16, torch.float32]  # grad, input, weight
    assert shapes._scalar("[True, False, True]") == [True, False, True]  # its output_mask
    timed = [t for t in (shapes._time_op(o) for o in found) if t]  # the MAX_SHAPES taking most time
    assert {t["op"] for t in timed} == set(shapes.NORM_POOL_OPS)  # the backward with its bool output_mask too
    assert all(t["fp32_us"] > 0 and t["bf16_us"] > 0 for t in timed)
    calibration = {**trace.run["calibration"], "cpu_op_shapes": {"ops": timed}}
    trace.run = {**trace.run, "calibration": calibration}
    checked, _ = _amp_repriced_at_shapes(trace, shapes.NORM_POOL_OPS, timed_only=True)
    assert set(checked) == set(shapes.NORM_POOL_OPS) and len(checked) >= len(timed)


def test_re_timing_pins_the_allocator():
    """The re-timing pins glibc's malloc so that an op's time is its compute, not its output's page
    faults (docs/profiling.md, "Page faults")."""
    from daydream.profile import shapes
    assert shapes.pin_allocator() is True  # this host's C library is glibc
