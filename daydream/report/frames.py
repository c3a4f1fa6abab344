"""Results as pandas DataFrames: what the reports plot, for notebooks and scripts.

Every function takes a `Timeline` (daydream.sim) or `WhatIf` results (daydream.whatif); times are
milliseconds, per step where the column says so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from daydream.analysis import path_increments, phase_breakdown, task_categories
from daydream.graph import PHASES, TASK_KINDS
from daydream.graph.schema import GPU_TASK_TYPES, T_IDLE
from daydream.sim import Timeline


class _Memo(Timeline):
    """A Timeline that finds its window and critical path once: a report asks for them many times."""

    def window(self) -> tuple[int, int]:
        if "_window" not in self.__dict__:
            self.__dict__["_window"] = super().window()
        return self.__dict__["_window"]

    def critical_path(self) -> np.ndarray:
        if "_path" not in self.__dict__:
            self.__dict__["_path"] = super().critical_path()
        return self.__dict__["_path"]


def memo(timeline: Timeline) -> Timeline:
    if isinstance(timeline, _Memo):
        return timeline
    return _Memo(timeline.graph, timeline.start, timeline.end, timeline.start_pred, timeline.end_pred)


def resource_labels(timeline: Timeline) -> list[str]:
    graph = timeline.graph
    res = graph.resources
    multi = len(graph.trace.ranks) > 1
    names = res["label"] if "label" in res.columns else None
    out = []
    for r in range(len(res)):
        rank, kind, pid, tid = (res[c].iat[r] for c in ("rank", "kind", "pid", "tid"))
        added = names.iat[r] if names is not None and isinstance(names.iat[r], str) and names.iat[r] else ""
        if added:  # a lane an optimization added (e.g. fsdp's communication stream): its name, not an id
            label = f"{added} ({'GPU ' + str(pid) + ' stream' if kind == 'stream' else 'thread'}, predicted)"
        else:
            label = f"GPU {pid} stream {tid}" if kind == "stream" else f"thread {tid}"
        out.append(f"rank {rank} {label}" if multi else label)
    return out


def _gpu_or_cpu(timeline: Timeline) -> np.ndarray:
    t = timeline.graph.tasks
    gpu = np.isin(t["kind"].to_numpy(), GPU_TASK_TYPES)
    if not gpu.any():
        gpu = t["kind"].to_numpy() != T_IDLE
    return gpu & t["in_window"].to_numpy()


def kernel_table(timeline: Timeline) -> pd.Series:
    """GPU time per kernel name in the window, ms per step (CPU time per op name on CPU-only traces)."""
    graph = timeline.graph
    sel = _gpu_or_cpu(timeline)
    dur = (timeline.end - timeline.start)[sel]
    steps = max(graph.steps, 1)
    return pd.Series(dur, index=graph.task_names()[sel]).groupby(level=0).sum() / steps / 1e6


def layer_table(timeline: Timeline) -> tuple[str, pd.Series]:
    """GPU (or CPU) time per layer in ms per step; per aten operator where no layers were recorded."""
    graph = timeline.graph
    sel = _gpu_or_cpu(timeline)
    t = graph.tasks
    layers = graph.layer_names()
    steps = max(graph.steps, 1)
    dur = (timeline.end - timeline.start)[sel]
    if (t["layer"].to_numpy()[sel] >= 0).any():
        return "layer", pd.Series(dur, index=layers[sel]).groupby(level=0).sum() / steps / 1e6
    trace = graph.trace
    op = t["op"].to_numpy()[sel]
    op_names = np.where(op >= 0, trace.name_of(trace.events["name"].to_numpy()[np.maximum(op, 0)]), "(no operator)")
    return "operator", pd.Series(dur, index=op_names).groupby(level=0).sum() / steps / 1e6


def critical_tasks(timeline: Timeline, n: int = 15) -> pd.DataFrame:
    """The critical path's biggest contributors: time on the path per (name, category, phase), ms per step."""
    path, inc = path_increments(timeline)
    graph = timeline.graph
    steps = max(graph.steps, 1)
    df = pd.DataFrame({"name": graph.task_names()[path], "category": task_categories(timeline)[path],
                       "phase": np.asarray(PHASES, dtype=object)[graph.tasks["phase"].to_numpy()[path]],
                       "ms": inc / steps / 1e6})
    df = df[df["ms"] > 0].groupby(["name", "category", "phase"], as_index=False).agg(ms=("ms", "sum"), count=("ms", "size"))
    return df.sort_values("ms", ascending=False).head(n)


def tasks_frame(timeline: Timeline) -> pd.DataFrame:
    """One row per task, readable: name, kind, phase, resource label, layer, start/end/dur (ms from the
    window start), in_window, on_critical_path."""
    graph = timeline.graph
    t = graph.tasks
    w0 = timeline.window()[0]
    crit = np.zeros(len(t), bool)
    crit[timeline.critical_path()] = True
    labels = np.asarray(resource_labels(timeline), dtype=object)
    return pd.DataFrame({
        "name": graph.task_names(), "kind": np.asarray(TASK_KINDS, dtype=object)[t["kind"].to_numpy()],
        "phase": np.asarray(PHASES, dtype=object)[t["phase"].to_numpy()],
        "resource": labels[t["resource"].to_numpy()], "layer": graph.layer_names(),
        "start_ms": (timeline.start - w0) / 1e6, "end_ms": (timeline.end - w0) / 1e6,
        "dur_ms": (timeline.end - timeline.start) / 1e6, "in_window": t["in_window"].to_numpy(),
        "on_critical_path": crit})


def kernels_frame(timeline: Timeline, n: int | None = None) -> pd.DataFrame:
    """GPU time per kernel name (CPU time per task name on CPU-only traces), ms per step, largest first."""
    k = kernel_table(timeline).sort_values(ascending=False)
    return (k.head(n) if n else k).rename_axis("name").reset_index(name="ms_per_step")


def layers_frame(timeline: Timeline, n: int | None = None) -> pd.DataFrame:
    """GPU (or CPU) time per layer, or per aten operator where the trace has no module annotations."""
    kind, s = layer_table(timeline)
    s = s.sort_values(ascending=False)
    return (s.head(n) if n else s).rename_axis(kind).reset_index(name="ms_per_step")


def scenarios_frame(results: list, names: list[str] | None = None) -> pd.DataFrame:
    """One row per what-if result: predicted ms/step, speedup over the replay, ms/step per phase."""
    names = names or [" + ".join(o.name for o in r.optimizations) or "replay" for r in results]
    rows = []
    for name, r in zip(names, results):
        row = {"scenario": name, "measured_ms": r.measured_ms, "replay_ms": r.replay_ms,
               "predicted_ms": r.predicted_ms, "speedup": r.speedup}
        row.update(phase_breakdown(r.predicted))
        rows.append(row)
    return pd.DataFrame(rows).set_index("scenario")
