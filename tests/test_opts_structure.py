"""Structural what-ifs: exact timelines on small synthetic traces, direction and size on real ones."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import KinetoBuilder, shared
from daydream import hardware
from daydream.graph import build_graph
from daydream.graph.schema import T_COLLECTIVE
from daydream.graph.phases import FORWARD
from daydream.opts import _collectives as N
from daydream.opts import _structure as C
from daydream.opts.context import Context
from daydream.opts.dataloader import HANDOFF_NS, WORKER_INTERFERENCE, contention, stalls
from daydream.opts.params import parse_opt
from daydream.sim import simulate
from daydream.trace import load
from daydream.whatif import apply_optimizations, whatif

US = 1_000  # ns


class CpuBuilder:
    """A CPU-only Kineto trace: cpu_op events on one thread (times in us)."""

    def __init__(self):
        self.events = []

    def op(self, name, ts, dur, **args):
        self.events.append({"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": dur,
                            "args": args})

    def annotation(self, name, ts, dur):
        self.events.append({"ph": "X", "cat": "user_annotation", "name": name, "pid": 1, "tid": 1, "ts": ts,
                            "dur": dur, "args": {}})

    def write(self, path):
        path.write_text(json.dumps({"schemaVersion": 1, "traceEvents": self.events}))
        return path


def predicted(path, opt: str) -> float:
    return whatif(load(path), [opt]).predicted_ms


# --- dataloader -------------------------------------------------------------------------------
def _data_trace(tmp_path):
    b = CpuBuilder()
    for s in range(2):
        t0 = 1000 * s
        b.annotation(f"ProfilerStep#{s}", t0, 1000)
        b.op("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", t0, 600)
        b.op("aten::conv2d", t0 + 600, 400)
    return b.write(tmp_path / "data.json")


INTERFERENCE = WORKER_INTERFERENCE * 600 * US  # the workers' cost to the main thread's 400 us, per step


def test_dataloader_workers_hide_loading_exactly(tmp_path):
    path = _data_trace(tmp_path)
    assert load(path).measured_ms == pytest.approx(1.0)
    # 2 workers x prefetch 2: the queue never runs dry; each step pays the hand-off and its 400 us,
    # slowed by the workers' interference (WORKER_INTERFERENCE x the 600 us of loading)
    assert predicted(path, "dataloader:workers=2") == pytest.approx((HANDOFF_NS + 400 * US + INTERFERENCE) / 1e6)


def test_dataloader_one_worker_stalls_exactly(tmp_path):
    b = CpuBuilder()
    for s in range(2):  # 900 us of loading, 100 us of model work
        b.annotation(f"ProfilerStep#{s}", 1000 * s, 1000)
        b.op("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", 1000 * s, 900)
        b.op("aten::conv2d", 1000 * s + 900, 100)
    path = b.write(tmp_path / "slow_data.json")
    # 1 worker, queue of 1: step 0 takes the queued batch; during it (its 100 us of work, slowed by
    # the interference, and the hand-off) the worker makes that / 900 us of the next batch, so
    # step 1 waits for the rest of it
    work = 100 * US + WORKER_INTERFERENCE * 900 * US
    made = (work + HANDOFF_NS) / (900 * US)
    stall = (1 - made) * 900 * US
    want = (2 * (HANDOFF_NS + work) + stall) / 2 / 1e6
    assert predicted(path, "dataloader:workers=1,prefetch=1") == pytest.approx(want, rel=1e-6)


def test_dataloader_core_contention_exact(tmp_path):
    path = _data_trace(tmp_path)
    # 2 workers + 1 main thread on 2 cores: each loads at 2/3 speed (600 us -> 900 us a batch,
    # still queued in time), and the main thread loses L (m + W - C) / (W C) = 600/4 us a step
    want = (HANDOFF_NS + 400 * US + INTERFERENCE + 600 * US / 4) / 1e6
    assert predicted(path, "dataloader:workers=2,cores=2") == pytest.approx(want, rel=1e-6)
    # enough cores: no contention (the interference stays: it is not time-slicing)
    no_contention = (HANDOFF_NS + 400 * US + INTERFERENCE) / 1e6
    assert predicted(path, "dataloader:workers=2,cores=3") == pytest.approx(no_contention)
    assert contention(600e3, workers=3, threads=2, cores=4) == (5 / 4, 600e3 * 1 / 12)


def test_dataloader_steady_state_is_load_over_workers_minus_rest():
    # a long run whose workers fall behind: every step waits L/W - R - hand-off
    wait = stalls(np.full(50, 900e3), np.full(50, 100e3), workers=2, prefetch=2, before=20)
    assert wait[-1] == pytest.approx(900e3 / 2 - 100e3 - HANDOFF_NS)
    assert stalls(np.full(5, 900e3), np.full(5, 100e3), workers=16, prefetch=2, before=5).max() == 0


def test_dataloader_resnet50_v100_pair_within_ten_percent():
    base = load(shared("kineto/resnet50_v100_num_workers_0.json.gz"))
    opt = load(shared("kineto/resnet50_v100_num_workers_4.json.gz"))
    from daydream.validate import validate
    out = validate(base, opt, ["dataloader:workers=4"])
    assert out["predicted_ms"] < out["base_measured_ms"] * 0.8
    assert out["error_pct"] <= 10.0


# --- fused optimizer ---------------------------------------------------------------------------
def _optimizer_trace(tmp_path, rows=1000):
    b = CpuBuilder()
    b.annotation("ProfilerStep#0", 0, 1000)
    b.op("aten::mm", 0, 300)
    b.op("torch::autograd::AccumulateGrad", 300, 10, **{"Input Dims": [[rows, 1000]], "Input type": ["float"]})
    b.annotation("Optimizer.step#Adam.step", 400, 600)
    # the step count += 1 (0-dim tensor, adds 1): a fused Adam runs it too
    b.op("aten::add_", 400, 10, **{"Input Dims": [[], []], "Input type": ["float", "Scalar"],
                                   "Concrete Inputs": ["", "1"]})
    b.op("aten::mul_", 420, 200)
    b.op("aten::item", 640, 10)  # per-parameter bias-correction reads, with Python around them
    b.op("aten::item", 660, 10)
    b.op("aten::addcdiv_", 700, 200)
    return b.write(tmp_path / "opt.json")


def test_fused_optimizer_cpu_exact(tmp_path):
    path = _optimizer_trace(tmp_path)
    dev = hardware.cpu_device()
    bw = min(dev.mem_bw, dev.sm_count * 12e9)
    moved = 4e6 * 7  # 1M fp32 parameters; Adam: params r+w, grads r, two states r+w
    # removed: 420-900 us (the math, the item() reads and the Python between them); the step
    # count (400-410) and the span's tail (900-1000) stay. The fused call's Python is the median
    # gap before a removed math op (10 us before mul_, 30 us before addcdiv_): 20 us.
    fused = min(20 * US + moved / bw * 1e9, 480 * US)
    want = (1000 * US - 480 * US + round(fused)) / 1e6
    assert predicted(path, "fused-optimizer") == pytest.approx(want, abs=1e-6)


def test_fused_optimizer_cpu_streams_a_cache_sized_update_at_the_calibrated_rate(tmp_path):
    """With a calibration, an update whose working set (Adam: params, grads, two states = 4 P) is no
    larger than the calibrated cast's (2**20 elements x 6 bytes) runs at cast_bytes_per_s, however
    many bytes its 7 passes move; a larger one at the DRAM rate."""
    import gzip
    import json

    from daydream.opts.fused_optimizer import CALIBRATION_CAST_BYTES
    from daydream.profile.calibrate import CAST_ELEMENTS
    assert CALIBRATION_CAST_BYTES == CAST_ELEMENTS * 6
    dev = hardware.cpu_device()
    rate = 50e9
    for rows, cached in ((200, True), (300, True), (1000, False)):
        run = tmp_path / f"run{rows}"
        run.mkdir()
        (run / "trace.json.gz").write_bytes(gzip.compress(Path(_optimizer_trace(tmp_path, rows)).read_bytes()))
        (run / "run.json").write_text(json.dumps({"schema": "daydream.run/1", "device": "cpu", "batch_size": 1,
                                                  "settings": {"threads": 1},
                                                  "calibration": {"cast_bytes_per_s": rate}}))
        moved = rows * 1000 * 4 * 7
        assert (rows * 1000 * 4 * 4 <= CALIBRATION_CAST_BYTES) is cached
        assert (moved <= CALIBRATION_CAST_BYTES) is (rows == 200)  # 300 rows move more than the cast but fit
        bw = rate if cached else min(dev.mem_bw, 12e9)
        fused = min(20 * US + moved / bw * 1e9, 480 * US)
        want = (1000 * US - 480 * US + round(fused)) / 1e6
        assert predicted(str(run), "fused-optimizer") == pytest.approx(want, abs=1e-6)


def test_fused_optimizer_resnet50_v100_drops_optimizer_time():
    tr = load(shared("kineto/resnet50_v100_num_workers_0.json.gz"))
    w = whatif(tr, ["fused-optimizer"])
    br = w.to_json()["breakdown"]
    assert br["predicted"]["optimizer"] < 0.6 * br["measured"]["optimizer"]
    assert w.predicted_ms < w.replay_ms
    # the forward and backward are untouched
    assert br["predicted"]["forward"] == pytest.approx(br["measured"]["forward"])


# --- ddp -----------------------------------------------------------------------------------------
def _ddp_trace(tmp_path):
    b = KinetoBuilder("NVIDIA A100-SXM4-80GB")
    b.step(0, 0, 300)
    b.launch(100, 5, 110, 300, name="wgrad_kernel")
    b.op("torch::autograd::AccumulateGrad", 120, 10, **{"Input Dims": [[750000]], "Input type": ["float"]})
    b.op("Optimizer.step#SGD.step", 200, 60)
    b.op("aten::add_", 210, 40)
    b.launch(220, 10, 420, 10, name="vectorized_elementwise_kernel")
    return b.write(tmp_path / "ddp.json")


def test_ddp_bucket_allreduce_exact(tmp_path):
    path = _ddp_trace(tmp_path)
    assert load(path).measured_ms == pytest.approx(0.430)
    dev = hardware.lookup("A100-SXM4-80GB")
    # ring all-reduce of 3 MB over 2 ranks: base + 2(n-1) lat + 2(n-1)/n B / bw
    t = hardware.COLLECTIVE_BASE_LATENCY_S + 2 * dev.intra_latency_s + 3e6 / dev.intra_bw
    # it starts when the gradient kernel ends (410 us); the optimizer kernel waits for it
    want = 410e-6 + t + 10e-6
    assert predicted(path, "ddp:world_size=2") * 1e-3 == pytest.approx(want, abs=2e-9)
    assert predicted(path, "ddp:world_size=1") == pytest.approx(0.430)


def test_collective_formulas():
    lnk = N.Link("x", bw=100e9, latency_s=2e-6, base_s=5e-6)
    assert N.collective_s("all_reduce", 1e9, 4, lnk) == pytest.approx(5e-6 + 6 * 2e-6 + 1.5 * 1e9 / 100e9)
    assert N.collective_s("all_gather", 1e9, 4, lnk) == pytest.approx(5e-6 + 3 * 2e-6 + 0.75 * 1e9 / 100e9)
    assert N.collective_s("reduce_scatter", 1e9, 1, lnk) == 0
    dev = hardware.lookup("H100")
    assert N.link(dev, "nvlink", 8).bw == dev.intra_bw
    assert N.link(dev, "nvlink", 16).bw == dev.inter_bw  # leaves the node
    assert N.link(dev, "pcie", 8).bw == dev.pcie_bw


@pytest.fixture(scope="module")
def ns_resolution():
    return load(shared("hta/ns_resolution_a100.json.gz"))


def test_ddp_ns_resolution_adds_communication_but_overlaps_it(ns_resolution):
    ctx = Context.of(ns_resolution)
    graph = build_graph(ns_resolution)
    base = simulate(graph).per_step_ms
    out = apply_optimizations(graph, [parse_opt("ddp:world_size=8,interconnect=infiniband")], ctx)
    pred = simulate(out).per_step_ms
    kind = out.tasks["kind"].to_numpy()
    comm_ms = out.tasks["dur"].to_numpy()[kind == T_COLLECTIVE].sum() / 1e6 / ns_resolution.steps
    assert comm_ms > 5  # ~100 MB of ResNet-50 gradients a step over 6.25 GB/s links
    assert base < pred < base + 0.5 * comm_ms


def test_fsdp_on_ns_resolution_prefetch_hides_all_gathers(ns_resolution):
    w_pref = whatif(ns_resolution, ["fsdp:world_size=8,interconnect=infiniband"])
    w_none = whatif(ns_resolution, ["fsdp:world_size=8,interconnect=infiniband,prefetch=false"])
    assert w_pref.predicted_ms < w_none.predicted_ms
    assert w_none.predicted_ms > w_none.replay_ms


def _tiny_model(tmp_path):
    """A small model: short kernels, so collective latency is what FSDP's units pay for."""
    b = KinetoBuilder("NVIDIA A100-SXM4-80GB")
    b.step(0, 0, 295)
    t = 0
    for i in range(9):  # forward: 9 small kernels
        b.launch(t, 5, t + 8, 10, name="ampere_sgemm_32x32_nn")
        t += 12
    b.op("autograd::engine::evaluate_function: MmBackward0", 120, 120)
    t = 120
    for i in range(9):  # backward
        b.launch(t, 5, t + 8, 10, name="ampere_sgemm_32x32_nt")
        t += 12
    b.op("torch::autograd::AccumulateGrad", 240, 5, **{"Input Dims": [[512, 512]], "Input type": ["float"]})
    b.op("Optimizer.step#SGD.step", 260, 30)
    b.op("aten::add_", 262, 20)
    b.launch(265, 5, 273, 5, name="vectorized_elementwise_kernel")
    return b.write(tmp_path / "tiny.json")


def test_fsdp_slower_than_ddp_on_a_small_model(tmp_path):
    path = _tiny_model(tmp_path)
    ddp, fsdp = predicted(path, "ddp:world_size=8"), predicted(path, "fsdp:world_size=8")
    replay = load(path).measured_ms
    assert replay < ddp < fsdp


def _fsdp_cpu_trace(tmp_path):
    """A CPU step whose forward opens the thread and has one op longer than a unit's share of time
    (the shape of a CPU ResNet-50 stem conv): raw equal-time cuts would skip a unit id."""
    b = CpuBuilder()
    b.annotation("ProfilerStep#0", 0, 1200)
    t = 0
    for name, d in zip(["aten::mm", "aten::relu"] * 2 + ["aten::conv2d"] + ["aten::relu", "aten::mm"] * 2,
                       [20, 20, 20, 20, 400, 20, 20, 20, 20]):
        b.op(name, t, d)
        t += d
    b.op("autograd::engine::evaluate_function: MmBackward0", 560, 400)
    b.op("torch::autograd::AccumulateGrad", 960, 10, **{"Input Dims": [[1000, 1000]], "Input type": ["float"]})
    b.annotation("Optimizer.step#SGD.step", 1000, 200)
    b.op("aten::add_", 1000, 200)
    return b.write(tmp_path / "fsdp_cpu.json")


def test_units_are_contiguous_when_one_task_dominates():
    dur = np.array([20, 20, 20, 20, 400, 20, 20, 20, 20]) * US
    assert C.units(dur, np.full(9, -1), 4).tolist() == [0, 0, 0, 0, 1, 2, 3, 3, 3]


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=60), st.integers(1, 20))
def test_split_by_time_ids_rise_by_one_and_reach_every_group(dur, groups):
    g = C.split_by_time(np.asarray(dur), groups)
    assert g[0] == 0 and g[-1] == min(groups, len(dur)) - 1
    assert set(np.diff(g).tolist()) <= {0, 1}


def test_fsdp_cpu_first_task_and_long_op_exact(tmp_path):
    """Regression: IndexError on a CPU ResNet-50 run (unit ids with a gap) and a self-cycle where
    the first forward task opens its thread (the all-gather issued from its own consumer)."""
    path = _fsdp_cpu_trace(tmp_path)
    tr = load(path)
    out = apply_optimizations(build_graph(tr), [parse_opt("fsdp:world_size=2,units=4")], Context.of(tr))
    kinds = out.tasks["kind"].to_numpy()
    assert (kinds == T_COLLECTIVE).sum() == 4 + 2  # 4 forward all-gathers; 1 backward unit: AG + RS
    # Only the first all-gather (1 MB: 4 MB of parameters / 4 units) is exposed; the others are
    # prefetched under the previous unit; the optimizer (200 us of add_) is halved.
    ag = N.collective_s("all_gather", 1e6, 2, N.link(hardware.cpu_device(), "nvlink", 2))
    want = ag * 1e3 + (1200 - 100) * 1e-3
    assert simulate(out).per_step_ms == pytest.approx(want, abs=1e-6)


# --- activation checkpointing ----------------------------------------------------------------------
def _ckpt_trace(tmp_path):
    b = CpuBuilder()
    b.annotation("ProfilerStep#0", 0, 800)
    for i, name in enumerate(["aten::mm", "aten::relu", "aten::mm", "aten::relu"]):
        b.op(name, 100 * i, 100)
    b.op("autograd::engine::evaluate_function: ReluBackward0", 400, 200)
    b.op("autograd::engine::evaluate_function: MmBackward0", 600, 200)
    return b.write(tmp_path / "ckpt.json")


def test_checkpointing_recompute_exact(tmp_path):
    path = _ckpt_trace(tmp_path)
    assert load(path).measured_ms == pytest.approx(0.8)
    # 4 forward ops -> 2 segments of 200 us and 2 top-level ops each; all recomputed, each before its
    # backward part: on a CPU its forward time plus the checkpoint's hooks for what its ops save
    # (mm: input and weight, relu: its output) at recompute, and the checkpointed forward's own hooks
    from daydream.opts.activation_checkpointing import CHECKPOINT_NS
    per_segment = 0.2 + (sum(CHECKPOINT_NS["weighted"]) + sum(CHECKPOINT_NS["saves one"])) / 1e6  # mm, relu
    assert predicted(path, "activation-checkpointing") == pytest.approx(0.8 + 2 * per_segment)
    assert predicted(path, "activation-checkpointing:fraction=0.5") == pytest.approx(0.8 + per_segment)
    assert predicted(path, "activation-checkpointing:fraction=0") == pytest.approx(0.8)


def test_checkpointing_ns_resolution_costs_about_one_forward(ns_resolution):
    graph = build_graph(ns_resolution)
    steps = C.task_steps(graph)
    fwd = C.compute_tasks(graph, 0, FORWARD, steps)
    fwd_ms = graph.tasks["dur"].to_numpy()[fwd].sum() / 1e6 / ns_resolution.steps
    w = whatif(ns_resolution, ["activation-checkpointing"])
    extra = w.predicted_ms - w.replay_ms
    assert 0.5 * fwd_ms < extra < 1.3 * fwd_ms


def test_structural_opts_reject_bad_parameters():
    from daydream.errors import DaydreamError
    for bad in ("ddp:world_size=0", "fsdp:interconnect=carrier-pigeon", "dataloader:workers=-1",
                "activation-checkpointing:fraction=2"):
        with pytest.raises(DaydreamError):
            parse_opt(bad)


def test_main_thread_is_not_a_sleeping_helper_thread():
    """A CPU profile recorded on a loaded machine: a helper thread spent 0.7 s in one Python
    `sleep` inside the step (read as forward work, more than the real forward pass); the main
    thread is still the one with the ops, so fsdp finds its forward and backward."""
    from pathlib import Path
    trace = load(Path(__file__).parent / "data" / "cpu_resnet50_sleeping_thread.json.gz")
    graph = build_graph(trace)
    main = C.main_thread(graph, 0)
    assert graph.resources["tid"].iat[main] == graph.resources["pid"].iat[main]  # the process's own thread
    result = whatif(trace, ["fsdp:world_size=8"])
    assert 0 < result.predicted_ms


def test_checkpointing_recompute_lands_in_backward_not_other():
    # The critical path used to stop at a synchronous cudaMemcpyAsync (the call ends after the copy
    # it launched, a cycle at task level) and credit all earlier window time to that 1.7 us copy,
    # phase "other": the recompute inserted before it showed up as +39 ms/step of "other".
    from daydream.analysis import phase_breakdown
    w = whatif(load(shared("hta/nccl_2rank_a100_rank0.json.gz")), ["activation-checkpointing"])
    base, pred = phase_breakdown(w.base), phase_breakdown(w.predicted)
    assert pred["other"] == pytest.approx(base["other"], abs=0.01)
    assert pred["backward"] - base["backward"] == pytest.approx(w.predicted_ms - w.replay_ms, rel=0.01)


# --- batch size: PyTorch's CPU convolution dispatch ----------------------------------------------
def _slow_conv_run(tmp_path, calibration=True):
    """A CPU run at batch 8, one thread: a 1x1 conv forward (300 us) and backward (400 us) on the
    native _slow_conv2d path, a mul (100 us); run.json with an fp32 GEMM calibration."""
    import gzip
    b = CpuBuilder()
    b.annotation("ProfilerStep#0", 0, 1000)
    b.annotation("daydream:forward", 0, 400)
    b.op("aten::_slow_conv2d_forward", 0, 300, **{
        "Input Dims": [[8, 16, 8, 8], [32, 16, 1, 1], [], [], [], []],
        "Input type": ["float", "float", "ScalarList", "", "ScalarList", "ScalarList"],
        "Concrete Inputs": ["", "", "[1, 1]", "", "[1, 1]", "[0, 0]"]})
    b.op("aten::mul", 300, 100, **{"Input Dims": [[8, 32, 8, 8], []], "Input type": ["float", "Scalar"]})
    b.annotation("daydream:backward", 400, 600)
    b.op("aten::_slow_conv2d_backward", 400, 400, **{
        "Input Dims": [[8, 32, 8, 8], [8, 16, 8, 8], [32, 16, 1, 1], [], [], [], []],
        "Input type": ["float", "float", "float", "ScalarList", "ScalarList", "ScalarList", "ScalarList"],
        "Concrete Inputs": ["", "", "", "[1, 1]", "[1, 1]", "[0, 0]", "[True, True, False]"]})
    run = tmp_path / "run"
    run.mkdir()
    b.write(tmp_path / "t.json")
    (run / "trace.json.gz").write_bytes(gzip.compress((tmp_path / "t.json").read_bytes()))
    info = {"schema": "daydream.run/1", "device": "cpu", "batch_size": 8, "settings": {"threads": 1}}
    if calibration:
        info["calibration"] = {"cpu_int8_linear": {"fp32_call_us": 2.0, "ref_fp32_us": 2.0 + 2 * 128 * 256 * 256 / 1e5}}
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_batch_size_moves_native_1x1_convs_to_onednn_when_the_batch_reaches_16(tmp_path):
    from daydream.opts.batch_size import MKLDNN_MIN_BATCH
    assert MKLDNN_MIN_BATCH == 16
    run = _slow_conv_run(tmp_path)
    base = whatif(load(run), []).predicted_ms
    # calibration: c = 2 us, R = 1e5 FLOP/us (100 GFLOP/s). At batch 16 a 1x1 conv is a GEMM of
    # f = 2 x 16 x 8 x 8 x 16 x 32 FLOPs: forward one GEMM, backward two (grad_input, grad_weight)
    f = 2 * 16 * 8 * 8 * 16 * 32
    gemm_us = 2.0 + f / 1e5
    w = whatif(load(run), ["batch-size:factor=2"])
    want = base - (300 + 400 + 100) / 1e3 + (gemm_us + 2 * gemm_us + 2 * 100) / 1e3
    assert w.predicted_ms == pytest.approx(want, abs=1e-5)
    assert any("move to oneDNN" in n for n in w.notes)
    # batch 12 stays below 16: the native path, scaled by F like other tensor work
    w = whatif(load(run), ["batch-size:factor=1.5"])
    assert w.predicted_ms == pytest.approx(base + 0.5 * (300 + 400 + 100) / 1e3, abs=1e-5)
    assert not any("oneDNN" in n for n in w.notes)


def test_batch_size_without_a_gemm_calibration_scales_native_convs_by_f(tmp_path):
    run = _slow_conv_run(tmp_path, calibration=False)
    base = whatif(load(run), []).predicted_ms
    w = whatif(load(run), ["batch-size:factor=2"])
    assert w.predicted_ms == pytest.approx(base + (300 + 400 + 100) / 1e3, abs=1e-5)


@pytest.mark.parametrize("model", ["resnet50", "bert", "llama", "vit", "transformer"])
def test_unprofiled_prediction_applies_the_optimization_without_the_profiler(model):
    """predicted_unprofiled_ms transforms the graph with the profiler's cost already out: removing
    the per-tensor optimizer ops removes their unprofiled time and no more, so a fused optimizer (one
    small update in their place) never predicts a slower step, as it did when the cost was taken out
    after the transform (the removed ops' carried-over cost vanished with them)."""
    from conftest import REPO
    w = whatif(load(REPO / "traces" / "pairs" / "cpu" / model / "base"), ["fused-optimizer"])
    assert w.predicted_unprofiled_ms < w.unprofiled_ms
    assert w.predicted_ms < w.replay_ms
