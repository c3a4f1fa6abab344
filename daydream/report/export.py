"""A simulated timeline as a Chrome/Perfetto trace, laid out like the input trace.

Every task becomes a complete ('X') event on its original process/thread or device/stream, so
the predicted timeline opens in Perfetto or chrome://tracing beside the measured one.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import orjson

from daydream.graph import PHASES, TASK_KINDS
from daydream.graph.build import GPU_TASK_TYPES, T_IDLE
from daydream.files import write_atomic
from daydream.sim import Timeline


def chrome_trace(timeline: Timeline, title: str = "daydream prediction") -> dict:
    graph = timeline.graph
    t = graph.tasks
    res = graph.resources
    names = graph.task_names()
    layers = graph.layer_names()
    keep = np.flatnonzero(t["kind"].to_numpy() != T_IDLE)
    t0 = int(timeline.start[keep].min()) if len(keep) else 0
    multi = len(graph.trace.ranks) > 1
    r_rank, r_kind = res["rank"].to_numpy(), res["kind"].to_numpy()
    r_pid, r_tid = res["pid"].to_numpy(), res["tid"].to_numpy()
    r_label = res["label"].to_numpy() if "label" in res else np.full(len(res), None, dtype=object)

    def pid_of(r):
        base = f"GPU {r_pid[r]}" if r_kind[r] == "stream" else int(r_pid[r])
        return f"rank {r_rank[r]} {base}" if multi else base

    events = []
    for r in range(len(res)):
        pid, tid = pid_of(r), int(r_tid[r])
        label = graph.trace.thread_names.get((int(r_rank[r]), int(r_pid[r]), tid))
        if r_kind[r] == "stream":
            label = f"stream {tid}"
        if isinstance(r_label[r], str) and r_label[r]:  # resources an optimization added name themselves
            label = r_label[r]
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                       "args": {"name": label or f"thread {tid}"}})
        if r_kind[r] == "thread":
            pname = graph.trace.process_names.get((int(r_rank[r]), int(r_pid[r])))
            if pname:
                events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": pname}})
    kinds = t["kind"].to_numpy()
    resource = t["resource"].to_numpy()
    phase = t["phase"].to_numpy()
    start, end = timeline.start, timeline.end
    for i in keep.tolist():
        r = int(resource[i])
        events.append({
            "ph": "X", "name": str(names[i]), "cat": TASK_KINDS[kinds[i]],
            "pid": pid_of(r), "tid": int(r_tid[r]),
            "ts": (int(start[i]) - t0) / 1000.0, "dur": (int(end[i]) - int(start[i])) / 1000.0,
            "args": {"phase": PHASES[phase[i]], "layer": str(layers[i]), "gpu": bool(kinds[i] in GPU_TASK_TYPES)},
        })
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"generator": "daydream", "title": title}}


def write_json_atomic(obj, path: str | Path) -> None:
    """Write JSON (gzipped for .gz names) atomically: never half-written."""
    data = orjson.dumps(obj)
    if Path(path).name.endswith(".gz"):
        data = gzip.compress(data, 6)
    write_atomic(path, data)


def export_trace(timeline: Timeline, path: str | Path, title: str = "daydream prediction") -> None:
    write_json_atomic(chrome_trace(timeline, title), path)
