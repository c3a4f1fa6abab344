"""The one topological order (graph.half_nodes.HalfNodes) that the simulator and the transforms share.

A synchronous copy is launched from its call's start and releases the call's end: at task level
that is a 2-cycle (call -> copy -> call), over half-nodes a path (call start -> copy -> call end).
"""
from __future__ import annotations

import numpy as np
import pytest

from daydream.errors import DaydreamError
from daydream.graph.half_nodes import half_nodes
from daydream.sim import simulate
from daydream.trace import load
from daydream.transform import add_edges, remove, topological_positions
from daydream.graph import build_graph

MM, LAUNCH, MM_TAIL, COPY_HEAD, CALL, COPY_TAIL, ITEM, SGEMM, COPY = range(9)


@pytest.fixture
def graph(tmp_path, kineto):
    """One 100 us step: a GEMM, then a device-to-pageable copy whose call waits for it."""
    kineto.step(1, 0, 100)
    kineto.op("aten::mm", 0, 10)
    kineto.launch(1, 4, kernel_ts=6, kernel_dur=30, name="sgemm_a")                      # 6..36
    kineto.op("aten::copy_", 10, 60)
    kineto.launch(11, 58, kernel_ts=40, kernel_dur=20, name="Memcpy DtoH (Device -> Pageable)",
                  call="cudaMemcpyAsync", kind="gpu_memcpy")                            # call 11..69
    kineto.op("aten::item", 70, 30)
    g = build_graph(load(kineto.write(tmp_path / "t.json")))
    names = g.task_names()
    assert names[CALL] == "cudaMemcpyAsync" and names[COPY].startswith("Memcpy") and names[SGEMM] == "sgemm_a"
    e = g.edges
    both = {(s, d) for s, d in zip(e["src"], e["dst"])}
    assert (CALL, COPY) in both and (COPY, CALL) in both  # the task-level 2-cycle
    return g


def test_order_is_topological_over_half_nodes(graph):
    h = half_nodes(graph)
    assert sorted(h.order.tolist()) == list(range(2 * len(graph.tasks)))
    pos = h.positions
    e = graph.edges
    src = 2 * e["src"].to_numpy() + np.where(e["from_start"].to_numpy(), 0, 1)
    dst = 2 * e["dst"].to_numpy() + e["to_end"].to_numpy().astype(int)
    assert (pos[src] < pos[dst]).all()
    assert (pos[0::2] < pos[1::2]).all()  # a task starts before it ends
    task_pos = topological_positions(graph)
    assert task_pos[CALL] < task_pos[COPY] and task_pos[MM] < task_pos[LAUNCH] < task_pos[SGEMM]
    assert sorted(task_pos.tolist()) == list(range(len(graph.tasks)))


def test_replay_walks_the_shared_order(graph):
    t = simulate(graph)
    assert t.end[CALL] == 69_000 and t.end[COPY] == 60_000 and t.per_step_ms == pytest.approx(0.1)


def test_remove_the_call_and_its_copy(graph):
    """The copy's call waited for sgemm_a (sync edge 9 us after the copy, which follows sgemm_a by
    4 us); with both gone the rest of aten::copy_ waits for sgemm_a's end + 4 + 9 us = 49 us."""
    mapping = remove(graph, [CALL, COPY])
    t = simulate(graph)
    assert t.start[mapping[COPY_TAIL]] == 36_000 + 4_000 + 9_000
    assert t.start[mapping[ITEM]] == 49_000 + 1_000


def test_remove_only_the_copy_keeps_the_calls_wait(graph):
    """The call's end waited 9 us past the copy's end (60 us, observed 69 us); without the copy
    it waits for what the copy waited for: sgemm_a's end + 4 + 9 us."""
    assert graph.tasks["dur"].to_numpy()[CALL] < 49_000 - 11_000  # its own CPU time is short
    mapping = remove(graph, [COPY])
    assert simulate(graph).end[mapping[CALL]] == 36_000 + 4_000 + 9_000


def test_a_real_cycle_is_one_error_for_both(graph):
    add_edges(graph, ITEM, MM_TAIL)  # against the flow of time
    with pytest.raises(DaydreamError, match="cycle through .* tasks"):
        simulate(graph)
    with pytest.raises(DaydreamError, match="cycle through .* tasks"):
        topological_positions(graph)
    with pytest.raises(DaydreamError, match="cycle through .* tasks"):
        remove(graph, [CALL])


def test_core_order_checks_its_arrays():
    from daydream import _core
    z = lambda n: np.zeros(n, np.int64)
    with pytest.raises(ValueError):  # an edge into a node that does not exist
        _core.order(np.array([0, 1, 1], np.int64), np.array([5], np.int64), z(2), z(2))
    with pytest.raises(ValueError):  # an odd node count: nodes come in start/end pairs
        _core.order(z(4), z(0), z(3), z(3))
    with pytest.raises(TypeError):  # int32 where int64 is expected
        _core.order(np.zeros(3, np.int32), z(0), z(2), z(2))
    with pytest.raises(ValueError):  # a replay order naming a node that does not exist
        _core.replay(z(3), z(0), z(0), np.array([0, 7], np.int64), z(1), z(2), z(2), z(2), -1)
    out = z(4)  # two tasks, one edge: end of 1 -> start of 0
    assert _core.order(np.array([0, 0, 0, 0, 1], np.int64), np.array([0], np.int64),
                       np.array([1, 1, 0, 1], np.int64), out) == 4
    assert out.tolist() == [2, 3, 0, 1]
