"""The graph the simulator runs, and its one topological order.

Each task is two half-nodes, its start and its end; the simulator (daydream.sim) walks them in the
order computed here, and the graph transforms (daydream.transform: topological_positions, remove)
use the same order, so a transform never disagrees with the replay about what comes first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daydream import _core
from daydream.errors import DaydreamError
from daydream.graph.schema import TaskGraph
from daydream.table import column


@dataclass(frozen=True)
class HalfNodes:
    """The graph the simulator runs: each task is two nodes, its start (2i) and its end (2i+1).

    Start edges lead to a start, end edges (GPU -> synchronizing call) to an end, `from_start`
    edges (launch -> kernel) leave from a start, and every end waits for its own start. This graph
    is acyclic where the task graph may not be: a synchronous memcpy is launched from its call's
    start and releases the call's end, a 2-cycle between tasks but a path start -> copy -> end here.
    `order` is the one topological order of it that both the simulator and the graph transforms
    (`transform.topological_positions`, `remove`) use.
    """
    ptr: np.ndarray    # offsets of each node's out-edges in dst/edge (2n + 1)
    dst: np.ndarray    # target node of each out-edge, grouped by source node
    edge: np.ndarray   # the graph.edges row of each out-edge
    order: np.ndarray  # every node, in topological order (Kahn; see _core.order)

    @property
    def positions(self) -> np.ndarray:
        """Position of every node in `order`."""
        pos = np.empty(len(self.order), np.int64)
        pos[self.order] = np.arange(len(self.order))
        return pos


def half_nodes(graph: TaskGraph) -> HalfNodes:
    """Build the half-node graph of `graph` and its topological order; a cycle is a DaydreamError."""
    e = lambda k: column(graph, "edges", k)
    n = graph.n_tasks
    src_node = 2 * e("src") + np.where(e("from_start"), 0, 1)
    dst_node = 2 * e("dst") + e("to_end").astype(np.int64)
    edge = np.argsort(src_node, kind="stable")
    ptr = np.searchsorted(src_node[edge], np.arange(2 * n + 1)).astype(np.int64)
    dst = np.ascontiguousarray(dst_node[edge], np.int64)
    indeg = np.bincount(dst_node, minlength=2 * n).astype(np.int64)
    indeg[1::2] += 1  # every end waits for its own start
    order = np.empty(2 * n, np.int64)
    done = _core.order(ptr, dst, indeg, order)
    if done != 2 * n:
        stuck = np.ones(2 * n, bool)
        stuck[order[:done]] = False
        raise DaydreamError(f"the task graph has a cycle through {int(stuck.reshape(-1, 2).any(1).sum())} "
                            "tasks; a transform added an edge against the flow of time")
    return HalfNodes(ptr, dst, edge, order)
