"""The simulator: replays a TaskGraph and returns when every task started and ended.

Every resource's order is an edge of the graph, so replay is a longest-path computation over a
DAG: a task starts at the latest (predecessor end + edge delay) of its start edges (or its release
time if it has none) and ends at max(start + duration, latest end edge). The result does not
depend on the order in which ready tasks are taken; the one pass below walks the half-node graph
(daydream/graph/half_nodes.py) in the topological order that the graph transforms use too, so it
is deterministic and linear in tasks + edges.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from daydream import _core
from daydream.errors import DaydreamError
from daydream.graph import TaskGraph
from daydream.graph.schema import NO_RELEASE
from daydream.graph.half_nodes import half_nodes
from daydream.table import column


@dataclass
class Timeline:
    """Simulated start/end (ns) per task, and which predecessor decided each (-1: none)."""
    graph: TaskGraph
    start: np.ndarray
    end: np.ndarray
    start_pred: np.ndarray
    end_pred: np.ndarray

    def frame(self):
        """The tasks table (pandas) with the simulated start and end of each task."""
        t = self.graph.tasks
        return t.assign(sim_start=self.start, sim_end=self.end)

    @functools.cached_property
    def _windows(self) -> dict[int, tuple[int, int]]:
        return self._compute_windows()

    def windows(self) -> dict[int, tuple[int, int]]:
        """Per rank, the simulated analysis window: the tasks that form the measured one, replayed."""
        return dict(self._windows)

    def _compute_windows(self) -> dict[int, tuple[int, int]]:
        sel = self.graph.column("in_window")
        rank = self.graph.column("rank")
        out = {}
        for r in np.unique(rank):
            mine = sel & (rank == r)
            if not mine.any():
                mine = rank == r
            out[int(r)] = (int(self.start[mine].min()), int(self.end[mine].max()))
        return out

    @property
    def slowest_rank(self) -> int:
        """The rank whose window is longest (ranks of one job record the same number of steps, so
        this is the rank `Trace.window` picks by time per step)."""
        return max(self._windows, key=lambda r: self._windows[r][1] - self._windows[r][0])

    def window(self) -> tuple[int, int]:
        """The slowest rank's simulated window."""
        return self._windows[self.slowest_rank]

    @property
    def per_step_ms(self) -> float:
        s, e = self.window()
        return (e - s) / max(self.graph.steps, 1) / 1e6

    def critical_path(self) -> np.ndarray:
        """Task indices on the critical path into the window's last task, earliest first."""
        return self._critical_path.copy()

    @functools.cached_property
    def _critical_path(self) -> np.ndarray:
        rank = self.slowest_rank
        ranks = self.graph.column("rank")
        sel = self.graph.column("in_window") & (ranks == rank)
        cand = np.flatnonzero(sel) if sel.any() else np.flatnonzero(ranks == rank)
        node = int(cand[np.argmax(self.end[cand])])
        w_start = self._windows[rank][0]
        # Each task's decider: what held its end, else what held its start. Walked as Python lists
        # (a numpy scalar read costs ten times a list read).
        back = np.where(self.end_pred >= 0, self.end_pred, self.start_pred).tolist()
        back_start = self.start_pred.tolist()
        late = (self.end > w_start).tolist()
        path = []
        seen, resumed = set(), set()
        while node >= 0 and late[node]:
            if node in seen:
                # Reached again through its start: a call that waits for the work it launched
                # (a synchronous cudaMemcpyAsync ends after its copy, which starts from the call).
                # What held the call's start continues the path.
                if node in resumed:
                    break
                resumed.add(node)
                node = back_start[node]
                continue
            seen.add(node)
            path.append(node)
            node = back[node]
        return np.asarray(path[::-1], np.int64)


def simulate(graph: TaskGraph) -> Timeline:
    """Replay `graph`; see the module docstring.

    The walk is over the half-node graph (`daydream.graph.half_nodes.HalfNodes`) in its topological order, in
    daydream/_core.c:replay: a start takes the latest of its release and its start edges, an end
    the later of its start plus the duration and its end edges.
    """
    t = graph.column
    n = graph.n_tasks
    h = half_nodes(graph)
    best = np.full(2 * n, NO_RELEASE, np.int64)
    best[0::2] = t("release")
    pred = np.full(2 * n, -1, np.int64)
    time = np.zeros(2 * n, np.int64)
    try:
        _core.replay(h.ptr, h.dst, np.ascontiguousarray(column(graph, "edges", "delay")[h.edge], np.int64),
                     h.order, np.ascontiguousarray(t("dur"), np.int64), best, pred, time, NO_RELEASE)
    except OverflowError:
        raise DaydreamError("a simulated time overflows 64-bit nanoseconds; a duration or delay is absurd") from None
    # Which task decided each start and end (a from_start predecessor counts as that task).
    start_pred = np.where(pred[0::2] >= 0, pred[0::2] >> 1, -1)
    end_pred = np.where(pred[1::2] >= 0, pred[1::2] >> 1, -1)
    return Timeline(graph, time[0::2], time[1::2], start_pred, end_pred)


__all__ = ["Timeline", "simulate"]
