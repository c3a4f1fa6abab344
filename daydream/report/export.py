"""A simulated timeline as a Chrome/Perfetto trace, laid out like the input trace.

The predicted timeline opens in Perfetto or chrome://tracing beside the measured one, and it is a
Kineto trace daydream reads back (`daydream diff PREDICTED.json MEASURED.json`):
* every CPU event of the input (operators, annotations such as ProfilerStep#N, Python functions,
  runtime calls) is written with its predicted times, its category, correlation id and (for
  operators) its args. Tasks cut every CPU thread at every event boundary, so an event starts
  where the first task at or after its recorded start starts in the simulation, and ends where
  the last task up to its recorded end ends: nesting and step markers survive any transform;
* every GPU task (kernel, memcpy, memset, collective) and every task an optimization inserted is
  one event on its device/stream or thread; GPU work carries its launch's correlation id.
args.phase, args.layer and args.kind say what daydream made of each task.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import orjson

from daydream.graph import PHASES, TASK_KINDS
from daydream.graph.schema import GPU_TASK_TYPES, T_IDLE, T_RUNTIME, T_SYNC
from daydream.files import write_atomic
from daydream.sim import Timeline
from daydream.trace.events import ANNOTATION, CPU_OP, PYTHON, RUNTIME


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
    event, launch, corr = t["event"].to_numpy(), t["launch"].to_numpy(), t["corr"].to_numpy()
    start, end = timeline.start, timeline.end
    us = lambda ns: (int(ns) - t0) / 1000.0
    gpu = np.isin(kinds, GPU_TASK_TYPES)
    inserted = (event < 0) & (kinds != T_IDLE)
    # correlation id per launching task: the recorded one, or a fresh one for an inserted call
    fresh = np.where(corr >= 0, corr, FRESH_CORR + np.arange(len(kinds)))
    for i in keep[gpu[keep] | inserted[keep]].tolist():
        r = int(resource[i])
        args = {"phase": PHASES[phase[i]], "layer": str(layers[i]), "kind": TASK_KINDS[kinds[i]]}
        if gpu[i]:
            args.update(device=int(r_pid[r]), stream=int(r_tid[r]))
            if launch[i] >= 0:
                args["correlation"] = int(fresh[launch[i]]) if event[i] < 0 else int(corr[i])
        elif kinds[i] in (T_RUNTIME, T_SYNC):
            args["correlation"] = int(fresh[i])
        events.append({"ph": "X", "name": str(names[i]), "cat": KINETO_CAT[kinds[i]], "pid": pid_of(r),
                       "tid": int(r_tid[r]), "ts": us(start[i]), "dur": (int(end[i]) - int(start[i])) / 1000.0,
                       "args": args})
    events += _cpu_events(timeline, ~gpu & ~inserted, pid_of, r_tid, us)
    out = {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"generator": "daydream", "title": title}}
    props = graph.trace.meta[graph.trace.ranks[0]].get("deviceProperties") if graph.trace.ranks else None
    if props:  # the recording GPU (metadata already scrubbed), so the export is priced on the same device
        out["deviceProperties"] = props
    return out


# Kineto's category per task kind (TASK_KINDS order) and per events-table kind (KIND_NAMES order).
KINETO_CAT = ("cpu_op", "cpu_op", "cuda_runtime", "cuda_runtime", "kernel", "gpu_memcpy", "gpu_memset", "kernel")
EVENT_CAT = {CPU_OP: "cpu_op", ANNOTATION: "user_annotation", PYTHON: "python_function", RUNTIME: "cuda_runtime"}
FRESH_CORR = 1 << 40  # above any recorded correlation id
OP_ARGS = ("Input Dims", "Input type", "Concrete Inputs", "Sequence number", "Fwd thread id", "External id")


def _cpu_events(timeline: Timeline, original: np.ndarray, pid_of, r_tid, us) -> list[dict]:
    """The input's CPU events at their predicted times (module docstring)."""
    graph = timeline.graph
    trace = graph.trace
    t = graph.tasks
    resource = t["resource"].to_numpy()
    obs_start, obs_end = t["obs_start"].to_numpy(), t["obs_end"].to_numpy()
    res = graph.resources
    thread_of = {(int(a), int(b), int(c)): i for i, (k, a, b, c) in
                 enumerate(zip(res["kind"], res["rank"], res["pid"], res["tid"])) if k == "thread"}
    ev = trace.column
    kind = ev("kind")
    rows = np.flatnonzero(np.isin(kind, list(EVENT_CAT)))
    ev_res = np.array([thread_of.get(k, -1) for k in zip(ev("rank")[rows].tolist(), ev("pid")[rows].tolist(),
                                                         ev("tid")[rows].tolist())], np.int64)
    ts, te = ev("ts")[rows], ev("ts")[rows] + ev("dur")[rows]
    starts, ends = np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64)
    tasks = np.flatnonzero(original)
    for r in np.unique(ev_res[ev_res >= 0]).tolist():
        mine = tasks[resource[tasks] == r]
        mine = mine[np.argsort(obs_start[mine], kind="stable")]
        sel = np.flatnonzero(ev_res == r)
        if not len(mine):
            continue
        a = np.clip(np.searchsorted(obs_start[mine], ts[sel], side="left"), 0, len(mine) - 1)
        b = np.clip(np.searchsorted(obs_end[mine], te[sel], side="right") - 1, 0, len(mine) - 1)
        starts[sel] = timeline.start[mine[a]]
        ends[sel] = np.maximum(timeline.end[mine[b]], starts[sel])
    out = []
    names, corr = ev("name"), ev("corr")
    for j in np.flatnonzero(ev_res >= 0).tolist():
        row = int(rows[j])
        args = {}
        if corr[row] >= 0:
            args["correlation"] = int(corr[row])
        if kind[row] == CPU_OP:
            recorded = trace.args_of(row)
            args.update({k: recorded[k] for k in OP_ARGS if k in recorded})
        r = int(ev_res[j])
        out.append({"ph": "X", "name": trace.names[names[row]], "cat": EVENT_CAT[int(kind[row])], "pid": pid_of(r),
                    "tid": int(r_tid[r]), "ts": us(starts[j]), "dur": (int(ends[j]) - int(starts[j])) / 1000.0,
                    "args": args})
    return out


def write_json_atomic(obj, path: str | Path) -> None:
    """Write JSON (gzipped for .gz names) atomically: never half-written."""
    data = orjson.dumps(obj)
    if Path(path).name.endswith(".gz"):
        data = gzip.compress(data, 6)
    write_atomic(path, data)


def export_trace(timeline: Timeline, path: str | Path, title: str = "daydream prediction") -> None:
    write_json_atomic(chrome_trace(timeline, title), path)
