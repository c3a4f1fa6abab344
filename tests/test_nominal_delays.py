"""Nominal delays are latencies, not queueing: the graph replayed with `edges["nominal"]` alone
explains the step (benchmarks/replay_validation.py checks the same on every shared trace)."""
from __future__ import annotations

import numpy as np
import pytest

from daydream.graph.schema import E_LAUNCH, E_SYNC
from daydream.sim import simulate
from daydream.trace import load
from daydream.graph import build_graph

LATENCY_US = 7


def _nominal_replay_ms(graph) -> float:
    bare = graph.copy()
    bare.edges["delay"] = bare.edges["nominal"].to_numpy()
    return simulate(bare).per_step_ms


def _launch_nominal_us(graph) -> float:
    e = graph.edges
    return float(np.unique(e["nominal"].to_numpy()[e["kind"].to_numpy() == E_LAUNCH])[0]) / 1e3


def _deep_queue(kineto, streams=(7,)):
    """Six kernels launched onto an idle stream (launch start -> kernel start: 7 us), then 40
    kernels of 100 us launched every 10 us: the GPU falls up to 3.6 ms behind the CPU. The step
    ends with a device synchronize that waits for the last kernel."""
    for i in range(6):
        t = 20 * i
        kineto.launch(t, 5, kernel_ts=t + LATENCY_US, kernel_dur=3, stream=streams[0])
    gpu = 200 + LATENCY_US
    for i in range(40):
        t = 200 + 10 * i
        kineto.launch(t, 5, kernel_ts=gpu, kernel_dur=100, stream=streams[i % len(streams)])
        gpu += 101
    kineto.runtime("cudaDeviceSynchronize", 600, gpu - 600 + 2)
    kineto.op("aten::item", gpu + 2, 10)
    kineto.step(1, 0, gpu + 12)
    return kineto


def test_launch_latency_is_not_queueing(tmp_path, kineto):
    trace = load(_deep_queue(kineto).write(tmp_path / "t.json"))
    graph = build_graph(trace)
    e = graph.edges
    launch = e["kind"].to_numpy() == E_LAUNCH
    t = graph.tasks
    observed = (t["obs_start"].to_numpy()[e["dst"].to_numpy()[launch]]
                - t["obs_start"].to_numpy()[e["src"].to_numpy()[launch]]) / 1e3
    assert np.median(observed) > 1000  # the launch -> start delays are mostly queueing
    assert _launch_nominal_us(graph) == pytest.approx(LATENCY_US)
    assert simulate(graph).per_step_ms == pytest.approx(trace.measured_ms, abs=1e-9)
    assert _nominal_replay_ms(graph) == pytest.approx(trace.measured_ms, rel=0.01)


def test_launch_latency_ignores_queued_kernels_on_other_streams(tmp_path, kineto):
    # The queued kernels alternate between two streams: each waited for the other stream's
    # kernel, so the gap since the previous kernel of its own stream is long (101 us) although
    # it was queued. Only kernels whose stream had finished when they were launched measure
    # the latency.
    graph = build_graph(load(_deep_queue(kineto, streams=(7, 8)).write(tmp_path / "t.json")))
    assert _launch_nominal_us(graph) == pytest.approx(LATENCY_US)


def test_kernels_queued_before_the_profiler_started(tmp_path, kineto):
    """A trace that starts with a deep queue: kernels launched before the profiler started (no
    correlation id) run during the first synchronize, whose end is tied to them, not to a launch."""
    for i in range(5):  # queued before the trace: 0..500 us
        kineto.events.append({"ph": "X", "cat": "kernel", "name": "ampere_sgemm_128x64_nn", "pid": 0,
                              "tid": 7, "ts": 100 * i, "dur": 100, "args": {"device": 0, "stream": 7}})
    # the GPU clock runs 4 us ahead of the CPU's: the last queued kernel ends after the call returns
    kineto.runtime("cudaDeviceSynchronize", 2, 494)
    for i in range(8):
        t = 500 + 20 * i
        kineto.launch(t, 5, kernel_ts=t + LATENCY_US, kernel_dur=3)
    kineto.op("aten::item", 660, 10)
    kineto.step(1, 0, 670)
    trace = load(kineto.write(tmp_path / "t.json"))
    graph = build_graph(trace)
    names, e = graph.task_names(), graph.edges
    sync = int(np.flatnonzero(names == "cudaDeviceSynchronize")[0])
    into_sync = e["dst"].to_numpy() == sync
    assert not (into_sync & (e["kind"].to_numpy() == E_LAUNCH)).any()
    src = e["src"].to_numpy()[into_sync & (e["kind"].to_numpy() == E_SYNC)]
    assert len(src) == 1  # the last queued kernel, although it ends 4 us after the call returned
    assert graph.tasks["obs_end"].to_numpy()[src[0]] == graph.tasks["obs_start"].to_numpy().min() + 500_000
    assert _launch_nominal_us(graph) == pytest.approx(LATENCY_US)
    assert simulate(graph).per_step_ms == pytest.approx(trace.measured_ms, abs=1e-9)
    assert _nominal_replay_ms(graph) == pytest.approx(trace.measured_ms, rel=0.02)
