"""Each primitive on a small synthetic graph, with the exact timeline it must produce."""
from __future__ import annotations

import numpy as np
import pytest

from daydream.errors import DaydreamError
from daydream.graph import build_graph
from daydream.sim import simulate
from daydream.trace import load
from daydream.transform import (add_edges, add_resource, insert_after, insert_before, move_to_resource,
                                remove, reschedule, scale, select, set_duration)


@pytest.fixture
def graph(tmp_path, kineto):
    """One step, 100 us: three kernels on stream 7 launched back to back, all stream-bound."""
    kineto.step(1, 0, 100)
    kineto.op("aten::mm", 0, 10)
    kineto.launch(1, 4, kernel_ts=6, kernel_dur=30, name="sgemm_a")            # 6..36
    kineto.op("aten::relu", 10, 10)
    kineto.launch(11, 4, kernel_ts=36, kernel_dur=30, name="elementwise_b")    # 36..66
    kineto.op("aten::add", 20, 10)
    kineto.launch(21, 4, kernel_ts=66, kernel_dur=30, name="elementwise_c")    # 66..96
    kineto.runtime("cudaDeviceSynchronize", 30, 67)                            # 30..97
    kineto.op("aten::item", 97, 3)                                             # 97..100
    return build_graph(load(kineto.write(tmp_path / "t.json")))


def ends_us(g, name):
    t = simulate(g)
    i = int(np.flatnonzero(g.task_names() == name)[0])
    return (t.start[i] - t.start.min()) / 1000, (t.end[i] - t.start.min()) / 1000


def test_replay_exact(graph):
    assert simulate(graph).per_step_ms == pytest.approx(0.100)
    assert ends_us(graph, "elementwise_c") == (66.0, 96.0)


def test_select_criteria(graph):
    assert select(graph, kind="kernel").sum() == 3
    assert select(graph, kind="kernel", name="^elementwise").sum() == 2
    assert select(graph, kind="runtime", name="Launch").sum() == 3
    assert select(graph, stream=7).sum() == 3
    assert select(graph, phase="forward", kind="kernel").sum() == 3
    with pytest.raises(DaydreamError):
        select(graph, kind="warp")


def test_scale_and_set_duration(graph):
    scale(graph, select(graph, name="sgemm_a"), 0.5)              # a: 6..21, b: 21..51, c: 51..81
    assert ends_us(graph, "elementwise_c") == (51.0, 81.0)
    assert simulate(graph).per_step_ms == pytest.approx(0.085)      # sync returns at 82, item 3 us
    set_duration(graph, select(graph, name="elementwise_b"), 0)     # b: 21..21
    # c was stream-bound, so its launch edge keeps only the nominal launch latency (5 us, the
    # default when a trace has too few samples): c starts at max(21, launch 21 + 5) = 26.
    assert ends_us(graph, "elementwise_c") == (26.0, 56.0)


def test_insert_after_on_stream(graph):
    a = np.flatnonzero(select(graph, name="sgemm_a"))
    new = insert_after(graph, a, dur=5_000, name="cast", kind="kernel")
    assert graph.task_names()[new[0]] == "cast"
    assert ends_us(graph, "cast") == (36.0, 41.0)
    assert ends_us(graph, "elementwise_c") == (71.0, 101.0)
    assert simulate(graph).per_step_ms == pytest.approx(0.105)


def test_insert_before_on_thread(graph):
    launch_b = np.flatnonzero(select(graph, kind="runtime", name="Launch"))[1]
    insert_before(graph, [launch_b], dur=20_000, name="python_overhead", kind="cpu")
    # Launch b moves from 11 to 31 us; b still waits for a (ends 36) -> unchanged GPU timeline,
    # but the CPU side after it shifts by 20 us: the sync starts at 50 and returns at 97.
    assert ends_us(graph, "elementwise_c") == (66.0, 96.0)
    assert simulate(graph).per_step_ms == pytest.approx(0.100)


def test_remove_bridges_dependencies(graph):
    remove(graph, select(graph, name="elementwise_b"))
    # a -> c directly on the stream, with the sum of both gaps (0 + 0): c 36..66.
    assert ends_us(graph, "elementwise_c") == (36.0, 66.0)
    assert select(graph, kind="kernel").sum() == 2
    assert simulate(graph).per_step_ms == pytest.approx(0.070)


def test_move_to_new_stream_runs_in_parallel(graph):
    s = add_resource(graph, rank=0, kind="stream", label="side")
    move_to_resource(graph, select(graph, name="elementwise_b"), s)
    # b leaves stream 7 and runs as soon as its launch allows (11 + observed launch latency cap).
    b0, b1 = ends_us(graph, "elementwise_b")
    assert b0 < 36.0 and b1 - b0 == 30.0
    assert ends_us(graph, "elementwise_c") == (36.0, 66.0)


def test_reschedule_changes_order(graph):
    stream = graph.tasks.loc[select(graph, name="sgemm_a"), "resource"].iloc[0]
    ks = np.flatnonzero(select(graph, kind="kernel"))
    reschedule(graph, stream, ks[::-1])   # c, b, a
    c0, c1 = ends_us(graph, "elementwise_c")
    a0, a1 = ends_us(graph, "sgemm_a")
    assert c1 <= a0
    with pytest.raises(DaydreamError):
        reschedule(graph, stream, ks[:2])


def test_add_edges_orders_and_rejects_cycles(graph):
    a = np.flatnonzero(select(graph, name="sgemm_a"))
    item = np.flatnonzero(select(graph, name="aten::item"))
    add_edges(graph, item, a)        # item after the sync, which waits on c, which follows a: a cycle
    with pytest.raises(DaydreamError, match="cycle"):
        simulate(graph)


def test_reschedule_keeps_a_new_first_task_at_its_observed_time(graph):
    """A task that loses its only start edge starts when it was observed to, not at time zero."""
    thread = int(graph.tasks.loc[select(graph, name="aten::mm"), "resource"].iloc[0])
    on = np.flatnonzero(graph.tasks["resource"].to_numpy() == thread)
    order = on.copy()
    order[[0, 1]] = order[[1, 0]]
    reschedule(graph, thread, order)
    t = simulate(graph)
    assert t.start[on[1]] == graph.tasks["obs_start"].iat[on[1]]


def test_added_stream_sits_on_the_ranks_gpu_and_keeps_its_label(graph):
    from daydream.report.export import chrome_trace
    s = add_resource(graph, rank=0, kind="stream", label="nccl (ddp)")
    assert graph.resources["pid"].iat[s] == 0          # the trace's GPU 0, not the process id
    move_to_resource(graph, select(graph, name="elementwise_b"), s)
    names = [e["args"]["name"] for e in chrome_trace(simulate(graph))["traceEvents"] if e["name"] == "thread_name"]
    assert "nccl (ddp)" in names
