"""Replaying the unchanged graph reproduces the measured step time; graph semantics on small traces."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_traces
from daydream.graph import build_graph
from daydream.graph.schema import T_SYNC
from daydream.sim import simulate
from daydream.trace import load
from daydream.transform import scale, select


@pytest.mark.parametrize("path", shared_traces(), ids=lambda p: p.name)
def test_replay_within_two_percent(path):
    trace = load(path)
    timeline = simulate(build_graph(trace))
    err = abs(timeline.per_step_ms - trace.measured_ms) / trace.measured_ms
    assert err <= 0.02, f"replay {timeline.per_step_ms:.3f} vs measured {trace.measured_ms:.3f}"


def _step_trace(kineto):
    """One step: CPU launches two kernels, then synchronizes; 10 us of CPU work after."""
    kineto.step(1, 0, 103)
    kineto.op("aten::mm", 0, 20)
    kineto.launch(5, 10, kernel_ts=12, kernel_dur=50)         # kernel A: 12..62
    kineto.op("aten::relu", 20, 20)
    kineto.launch(25, 10, kernel_ts=62, kernel_dur=30, name="vectorized_elementwise_kernel")  # B: 62..92
    kineto.runtime("cudaDeviceSynchronize", 40, 53)            # waits for B: 40..93
    kineto.op("aten::item", 93, 10)                            # 93..103
    return kineto


def test_sync_duration_is_recomputed(tmp_path, kineto):
    trace = load(_step_trace(kineto).write(tmp_path / "t.json"))
    graph = build_graph(trace)
    base = simulate(graph)
    assert base.per_step_ms == pytest.approx(trace.measured_ms)
    assert (graph.tasks["kind"] == T_SYNC).sum() == 1
    # Halve the GEMM: B starts at max(launch 25+lat, A end 12+25=37) ... the sync returns earlier.
    g = graph.copy()
    scale(g, select(g, kind="kernel", name="sgemm"), 0.5)
    pred = simulate(g)
    assert pred.per_step_ms < base.per_step_ms
    # A ends at 37 us; B is stream-bound in the trace (started when A ended) -> 37..67;
    # the sync returns 1 us after B (observed wake-up), then 10 us of item: window 0..78 us.
    assert pred.per_step_ms == pytest.approx(0.078, abs=1e-6)


def test_launch_bound_kernel_follows_its_launch(tmp_path, kineto):
    kineto.step(1, 0, 50)
    kineto.launch(0, 5, kernel_ts=7, kernel_dur=10)     # A 7..17
    kineto.op("aten::slow_cpu", 5, 40)                  # CPU busy 5..45
    kineto.launch(45, 5, kernel_ts=52, kernel_dur=10)   # B waits for its launch: 52..62
    trace = load(kineto.write(tmp_path / "t.json"))
    g = build_graph(trace)
    assert simulate(g).per_step_ms == pytest.approx(trace.measured_ms)
    scale(g, select(g, name="slow_cpu"), 0.5)           # CPU op 20 us shorter
    t = simulate(g)
    b = int(np.flatnonzero(g.task_names() == "ampere_sgemm_128x64_nn")[-1])
    assert (t.start[b] - t.start.min()) / 1000 == pytest.approx(32.0)


def test_stream_bound_kernel_moves_with_its_predecessor(tmp_path, kineto):
    kineto.step(1, 0, 100)
    kineto.launch(0, 5, kernel_ts=7, kernel_dur=50)     # A 7..57
    kineto.launch(6, 5, kernel_ts=58, kernel_dur=10)    # B queued behind A: 58..68
    trace = load(kineto.write(tmp_path / "t.json"))
    g = build_graph(trace)
    a = select(g, kind="kernel")
    first = int(np.flatnonzero(a)[0])
    scale(g, np.asarray([first]), 0.2)                  # A: 10 us
    t = simulate(g)
    second = int(np.flatnonzero(a)[1])
    # B follows A by the observed 1 us gap, but cannot start before its launch + latency (6 + 7 = 13).
    assert (t.start[second] - 0) / 1000 - t.start.min() / 1000 == pytest.approx(18.0)


def test_cross_thread_handoff_moves_backward_thread(tmp_path, kineto):
    kineto.step(1, 0, 230)
    kineto.op("forward_op", 0, 100, tid=1)
    kineto.op("autograd::engine::evaluate_function: MmBackward0", 105, 100, tid=2)
    kineto.op("aten::add_", 210, 20, tid=1)             # main thread resumes after backward
    kineto.op("warmup", -50, 10, tid=2)                 # backward thread existed before (idle until 105)
    trace = load(kineto.write(tmp_path / "t.json"))
    g = build_graph(trace)
    assert simulate(g).per_step_ms == pytest.approx(trace.measured_ms)
    scale(g, select(g, name="forward_op"), 0.5)
    # forward ends at 50; backward wakes 5 us later (observed hand-off) and runs 100 us; the main
    # thread returns 5 us after that and runs 20 us: 50 + 5 + 100 + 5 + 20 = 180 us.
    assert simulate(g).per_step_ms == pytest.approx(0.180, abs=1e-6)


def test_device_sync_waits_on_every_gpu_of_the_rank(tmp_path, kineto):
    """One thread driving two GPUs whose streams share an id: the sync waits on both."""
    kineto.step(1, 0, 100)
    kineto.launch(0, 5, kernel_ts=10, kernel_dur=50)            # GPU 0, stream 7: 10..60
    kineto.launch(6, 5, kernel_ts=15, kernel_dur=80)            # GPU 1, stream 7: 15..95
    kineto.events[-1]["args"]["device"] = 1
    kineto.events[-1]["pid"] = 1
    kineto.runtime("cudaDeviceSynchronize", 12, 84)             # 12..96
    kineto.op("aten::item", 96, 4)
    g = build_graph(load(kineto.write(tmp_path / "t.json")))
    assert (g.edges["kind"] == 2).sum() == 2
    scale(g, np.flatnonzero(select(g, kind="kernel"))[:1], 3.0)   # GPU 0's kernel: 10..160
    # The sync returns 1 us after the slower GPU (observed wake-up), then 4 us of item.
    assert simulate(g).per_step_ms == pytest.approx(0.165, abs=0.002)


def test_flop_utilization_counts_the_slowest_rank_only():
    """Every rank of a multi-rank trace runs the same work: utilization must not grow with ranks."""
    from conftest import shared
    from daydream.analysis import flops_utilization_pct
    from daydream.hardware import from_device_properties
    trace = load(shared("param/dlrm_ddp_8rank_v100.tar.gz"))
    timeline = simulate(build_graph(trace))
    util = flops_utilization_pct(timeline, from_device_properties(trace.device_properties))
    assert util is not None and util < 0.1     # 8 ranks summed over one window gave 0.158 %
