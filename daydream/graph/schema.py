"""The dependency graph's schema: what a TaskGraph holds, and the codes of its task and edge kinds.

`daydream.graph.build` fills it from a trace; transforms (daydream.transform, daydream.opts) edit it;
the simulator (daydream.sim) replays it. Its three tables:
  * tasks: rank, resource (row of `resources`), kind (T_*), name (code into `names`), event (row of
    the trace's events table, -1 if inserted), layer, op, obs_start/obs_end (observed, ns), dur,
    phase, in_window, corr, launch, release (earliest start, NO_RELEASE if none);
  * edges: src, dst, kind (E_*), from_start (leaves the source's start), to_end (constrains the
    destination's end), delay (ns), binding (decided the observed time), nominal (delay when not);
  * resources: rank, kind (thread or stream), pid, tid (and label for added lanes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daydream.graph.phases import PHASES
from daydream.table import Frame, column, n_rows, stored
from daydream.trace import Trace

TASK_KINDS = ("cpu", "idle", "runtime", "sync", "kernel", "memcpy", "memset", "collective")
T_CPU, T_IDLE, T_RUNTIME, T_SYNC, T_KERNEL, T_MEMCPY, T_MEMSET, T_COLLECTIVE = range(8)
GPU_TASK_TYPES = (T_KERNEL, T_MEMCPY, T_MEMSET, T_COLLECTIVE)
EDGE_KINDS = ("program", "launch", "sync", "stream_wait", "handoff", "inserted")
E_PROGRAM, E_LAUNCH, E_SYNC, E_STREAM_WAIT, E_HANDOFF, E_INSERTED = range(6)
NO_RELEASE = np.iinfo(np.int64).min // 4


@dataclass
class TaskGraph:
    """Tasks, edges and resources; see the module docstring for their meaning.

    Each table reads as a pandas DataFrame; until then it is numpy columns (daydream/table.py), so
    building and replaying a graph never needs pandas. `column(name)` reads one task column either way.
    """
    tasks: Frame = Frame()
    edges: Frame = Frame()
    resources: Frame = Frame()
    trace: Trace
    steps: int
    names: list  # task and layer names are codes into this list
    # True once the profiler's own per-event cost is out of the durations
    # (daydream.transform.profiler_cost.without_profiler)
    without_profiler: bool = False

    def copy(self) -> "TaskGraph":
        def dup(name):
            t = stored(self, name)
            return {k: v.copy() for k, v in t.items()} if isinstance(t, dict) else t.copy()
        return TaskGraph(dup("tasks"), dup("edges"), dup("resources"), self.trace, self.steps, list(self.names),
                         self.without_profiler)

    def column(self, key: str) -> np.ndarray:
        """One column of the tasks table as a numpy array."""
        return column(self, "tasks", key)

    @property
    def n_tasks(self) -> int:
        return n_rows(self, "tasks")

    def name_code(self, name: str) -> int:
        """Code of `name`, added to the graph's name list if new (inserted tasks)."""
        try:
            return self.names.index(name)
        except ValueError:
            self.names.append(name)
            return len(self.names) - 1

    def task_names(self) -> np.ndarray:
        return np.asarray(self.names, dtype=object)[self.column("name")]

    def layer_table(self) -> list[str]:
        """Module name per layer code; the code -1 (layer unknown) indexes the trailing ''."""
        return [n.removeprefix("nn.Module: ") for n in self.names] + [""]

    def layer_names(self) -> np.ndarray:
        """Module name per task ('' where the trace does not say)."""
        return np.asarray(self.layer_table(), dtype=object)[self.column("layer")]

    def to_networkx(self, half_nodes: bool = False):
        """The graph as a `networkx.MultiDiGraph`, for users' own graph algorithms (never used on
        daydream's hot path).

        Default: one node per task (its row number) with every task column as an attribute plus
        `kind_name`, `name_text` and `phase_name`; one edge per dependency with its columns (`kind`
        as its name, `delay` in ns, `from_start`, `to_end`, `binding`, `nominal`); a pair of tasks
        can have several edges, hence the multigraph. At task level a synchronous call is a 2-cycle
        (launch edge from the call's start, sync edge into its end). `half_nodes=True` gives the
        graph the simulator runs, which is acyclic: nodes `(task, "start")` and `(task, "end")`, an
        edge start -> end weighted by the task's `dur`, and each dependency from its source's start
        or end (`from_start`) to its destination's start or end (`to_end`)."""
        import networkx as nx
        out = nx.MultiDiGraph(steps=self.steps, trace=self.trace.path)
        cols = {k: column(self, "tasks", k).tolist() for k in stored(self, "tasks")}
        for i in range(self.n_tasks):
            attrs = {k: v[i] for k, v in cols.items()}
            attrs["kind_name"] = TASK_KINDS[attrs["kind"]]
            attrs["name_text"] = self.names[attrs["name"]] if attrs["name"] >= 0 else ""
            attrs["phase_name"] = PHASES[attrs["phase"]] if 0 <= attrs["phase"] < len(PHASES) else ""
            if half_nodes:
                out.add_node((i, "start"), **attrs)
                out.add_node((i, "end"), **attrs)
                out.add_edge((i, "start"), (i, "end"), kind="task", delay=attrs["dur"])
            else:
                out.add_node(i, **attrs)
        ecols = {k: column(self, "edges", k).tolist() for k in stored(self, "edges")}
        for j in range(n_rows(self, "edges")):
            attrs = {k: v[j] for k, v in ecols.items() if k not in ("src", "dst")}
            attrs["kind"] = EDGE_KINDS[attrs["kind"]]
            src, dst = ecols["src"][j], ecols["dst"][j]
            if half_nodes:
                src = (src, "start" if attrs["from_start"] else "end")
                dst = (dst, "end" if attrs["to_end"] else "start")
            out.add_edge(src, dst, **attrs)
        return out

    def __repr__(self) -> str:
        return (f"TaskGraph({self.n_tasks} tasks, {n_rows(self, 'edges')} edges, "
                f"{n_rows(self, 'resources')} resources)")
