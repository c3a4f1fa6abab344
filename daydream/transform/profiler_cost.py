"""The profiler's own per-event cost taken out of a graph: the step time without the profiler.

The cost per event kind is calibrated when `daydream profile` records a run
(daydream/profile/overhead.py, which documents the model and the calibration) and stored in
run.json as `profiler_event_cost`. Here, a CPU task of the graph loses c_op, c_py or c_mem for every
event that starts inside it (a memory event goes to the segment of its rank that started last):

    unprofiled dur = max(0, dur - c_op * n_op - c_py * n_py - c_mem * n_mem)

with any excess carried to the next CPU tasks of the same thread. `unprofiled_ms` and
`predicted_unprofiled_ms` are the simulated step times of graphs so transformed.

Which costs. The calibration measures c_op, c_py and c_mem on a small training step of its own, and
the events of a real step pay more or less than that one's (0.38-0.67 us against 0.27-0.64 charged
on the suite models, docs/profiling.md): on its own it left `unprofiled_ms` within 15% of the
un-profiled step on 5 of 13 CPU models. A CPU-only run of `daydream profile` also measured the
profiler's cost on its own step: the median profiled step minus the median plain step (run.json
`profiled_step_ms_median`, `plain_step_ms_median`: one timer, one process). On such a trace every
recorded event costs the same, what the run paid per event:

    c = (profiled median - plain median) / (the events of the median step: the median over the
                                            window's steps of the events each records)

The run measures only the total; the calibration's split between kinds is noise-dominated (one
kind's cost doubles between calibrations while the weighted sum moves much less, and a kind can
come out 0), and a split that charges, say, memory events 1.35 us and operators 0 moves cost
between phases (an optimizer's many allocations) and distorts what-ifs that remove them: with the
calibration's ratios, fused-optimizer predicted a slower step without the profiler on a user script
(5.52 -> 5.71 ms; 5.50 -> 5.49 ms with one cost; the CPU corpus, recorded without Python stacks,
scores the same either way, docs/profiling.md). The run's figure is accepted where it is within
RUN_SCALE_BAND of the calibration's (s = c sum_k n_k / sum_k c_k n_k, n_k the mean events of kind k per step, c_k the
calibration's wall-clock costs); outside it the two medians disagree with the calibration by more than its own
spread (e.g. a plain median slower than the profiled one on a loaded host) and the calibration is
used as it is, with a note. Checked against run.json's own `plain_step_ms` this is in-sample (the unprofiled replay of a
CPU-only step then lands near the plain median by construction); the out-of-sample check is an
independent timing of the same script in another process (benchmarks/profile_overhead.py). GPU
traces and multi-rank jobs keep the calibration: a GPU step hides CPU cost behind the GPU, so the
step difference does not measure the per-event cost there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daydream.table import set_column

KINDS = ("op", "python", "memory")
# The run's own measurement replaces the calibration's level when it is within a factor of 4 of it:
# fresh calibrations charge 0.27-0.64 us per event where the suite's steps pay 0.38-0.67 (a factor
# of 2.5 at worst, docs/profiling.md); beyond 4 the step medians are noise, not the profiler.
RUN_SCALE_BAND = (0.25, 4.0)


@dataclass(frozen=True)
class EventCost:
    """What `without_profiler` takes out per recorded event, and where it comes from."""
    us_per_event: dict         # wall-clock us per event by kind (KINDS)
    source: str                # "run": scaled to this run's measured step difference; "calibration": as calibrated
    scale: float               # the factor s applied to the calibration (1.0 for "calibration")
    note: str | None = None    # why the run's own measurement was not used, where it exists

    def to_json(self) -> dict:
        return {"us_per_event": {k: round(v, 4) for k, v in self.us_per_event.items()}, "source": self.source,
                "scale": round(self.scale, 4), **({"note": self.note} if self.note else {})}


def calibrated_cost(run: dict | None) -> dict | None:
    """Wall-clock us per event by kind as the run's calibration measured it, or None without one."""
    calibration = (run or {}).get("profiler_event_cost") or {}
    cost = calibration.get("us_per_event_wall") or calibration.get("us_per_event")
    if not isinstance(cost, dict):
        return None
    return {k: float(cost.get(k) or 0.0) for k in KINDS}


def events_per_step(trace) -> dict:
    """Recorded events of each kind per step inside the trace's window (all CPU threads)."""
    from daydream.trace.events import ANNOTATION, CPU_OP, PYTHON
    from daydream.table import column
    w = trace.window
    ts, kind = trace.column("ts"), trace.column("kind")
    inside = (ts >= w.start) & (ts < w.end)
    mem_ts = column(trace, "memory_events", "ts")
    steps = max(w.steps, 1)
    return {"op": int((inside & np.isin(kind, (CPU_OP, ANNOTATION))).sum()) / steps,
            "python": int((inside & (kind == PYTHON)).sum()) / steps,
            "memory": int(((mem_ts >= w.start) & (mem_ts < w.end)).sum()) / steps}


def events_in_median_step(trace) -> float:
    """The median over the window's steps of the events (all kinds) recorded in each step: the step
    that the run's median step times describe. Steps can differ (a GAN's generator step records more
    than its critic steps), and a median step time over mean events would undercharge them."""
    from daydream.trace.events import ANNOTATION, CPU_OP, PYTHON
    from daydream.table import column
    spans = trace.window.step_spans
    if not len(spans):
        return 0.0
    ts, kind = trace.column("ts"), trace.column("kind")
    stamps = np.sort(np.concatenate([ts[np.isin(kind, (CPU_OP, ANNOTATION, PYTHON))],
                                     column(trace, "memory_events", "ts")]))
    counts = np.searchsorted(stamps, spans[:, 1], side="left") - np.searchsorted(stamps, spans[:, 0], side="left")
    return float(np.median(counts))


def event_cost_of(trace) -> EventCost | None:
    """The per-event cost to take out of `trace`'s graphs (see the module docstring), or None when its
    run was not calibrated (a plain trace file)."""
    run = trace.run or {}
    cost = calibrated_cost(run)
    if cost is None:
        return None
    profiled, plain = run.get("profiled_step_ms_median"), run.get("plain_step_ms_median")
    if trace.has_gpu or len(trace.ranks) != 1 or not profiled or not plain:
        return EventCost(cost, "calibration", 1.0)
    n = events_per_step(trace)
    charged_ms = sum(cost[k] * n[k] for k in KINDS) / 1e3
    if charged_ms <= 0:
        return EventCost(cost, "calibration", 1.0)
    median_events = events_in_median_step(trace)
    if median_events <= 0:
        return EventCost(cost, "calibration", 1.0)
    per_event = (profiled - plain) * 1e3 / median_events  # us
    scale = per_event * sum(n.values()) / 1e3 / charged_ms
    low, high = RUN_SCALE_BAND
    if not low <= scale <= high:
        return EventCost(cost, "calibration", 1.0,
                         f"the run's profiled and plain step medians ({profiled:.3f} and {plain:.3f} ms) imply "
                         f"{scale:.2f}x the calibrated per-event cost, outside {low:g}-{high:g}x: the calibration "
                         "is used as it is")
    return EventCost(dict.fromkeys(KINDS, per_event), "run", scale)


def profiler_cost_ns(graph, us_per_event: dict) -> np.ndarray:
    """Per task, the profiler's cost (ns) recorded inside it (see the module docstring)."""
    from daydream.graph.schema import T_CPU
    from daydream.table import column
    from daydream.trace.events import ANNOTATION, CPU_OP, PYTHON
    trace = graph.trace
    kind = graph.column("kind")
    res = graph.column("resource")
    start, end = graph.column("obs_start"), graph.column("obs_end")
    cpu = (kind == T_CPU) & (graph.column("event") >= 0)
    cost = np.zeros(graph.n_tasks)
    r_rank, r_kind = column(graph, "resources", "rank"), column(graph, "resources", "kind")
    r_pid, r_tid = column(graph, "resources", "pid"), column(graph, "resources", "tid")
    ev_kind, ev_rank = trace.column("kind"), trace.column("rank")
    ev_pid, ev_tid, ev_ts = trace.column("pid"), trace.column("tid"), trace.column("ts")
    c_op, c_py, c_mem = (1e3 * us_per_event.get(k, 0.0) for k in KINDS)
    mem_rank, mem_ts = column(trace, "memory_events", "rank"), column(trace, "memory_events", "ts")
    best_start = np.full(len(mem_ts), np.iinfo(np.int64).min)
    best_task = np.full(len(mem_ts), -1)
    for r in np.flatnonzero(r_kind == "thread"):
        tasks = np.flatnonzero(cpu & (res == r))
        if not len(tasks):
            continue
        tasks = tasks[np.argsort(start[tasks], kind="stable")]
        s, e = start[tasks], end[tasks]
        on = (ev_rank == r_rank[r]) & (ev_pid == r_pid[r]) & (ev_tid == r_tid[r])
        for kinds, c in (((CPU_OP, ANNOTATION), c_op), ((PYTHON,), c_py)):
            if c <= 0:
                continue
            ts = np.sort(ev_ts[on & np.isin(ev_kind, kinds)])
            n = np.searchsorted(ts, e, side="left") - np.searchsorted(ts, s, side="left")
            cost[tasks] += c * n
        if c_mem > 0 and len(mem_ts):
            mine = np.flatnonzero(mem_rank == r_rank[r])
            i = np.searchsorted(s, mem_ts[mine], side="right") - 1
            ok = (i >= 0) & (mem_ts[mine] < e[np.clip(i, 0, None)])
            later = ok & (s[np.clip(i, 0, None)] > best_start[mine])
            best_start[mine[later]] = s[i[later]]
            best_task[mine[later]] = tasks[i[later]]
    if c_mem > 0 and (best_task >= 0).any():
        cost += c_mem * np.bincount(best_task[best_task >= 0], minlength=graph.n_tasks)
    return cost


def removable_ns(graph, cost: np.ndarray) -> np.ndarray:
    """Per task, the part of `cost` its duration can give up. A cost larger than its task (an event's
    cost lands partly in the segments after its start) carries over to the next CPU tasks of the same
    thread: with S_i = sum_{k<=i} (cost_k - dur_k) per thread, the backlog after task i is
    b_i = S_i - min(0, min_{j<=i} S_j) (Lindley's recursion, closed form) and task i gives up
    min(dur_i, b_{i-1} + cost_i)."""
    dur = graph.column("dur").astype(np.float64)
    res = graph.column("resource")
    tasks = np.flatnonzero(cost > 0)
    if not len(tasks):
        return np.zeros(graph.n_tasks)
    from daydream.graph.schema import T_CPU
    cpu = np.flatnonzero((graph.column("kind") == T_CPU) & np.isin(res, np.unique(res[tasks])))
    order = cpu[np.lexsort((graph.column("obs_start")[cpu], res[cpu]))]
    r = res[order]
    first = np.ones(len(order), bool)
    first[1:] = r[1:] != r[:-1]
    group = np.cumsum(first) - 1
    step = cost[order] - dur[order]
    s = np.cumsum(step)
    base = np.concatenate([[0.0], s])[np.flatnonzero(first)][group]  # S before each thread's first task
    s -= base
    low = np.minimum(s, 0.0)
    for g_first in np.split(np.arange(len(order)), np.flatnonzero(first)[1:]):
        low[g_first] = np.minimum.accumulate(low[g_first])
    backlog = s - low
    before = np.where(first, 0.0, np.concatenate([[0.0], backlog[:-1]]))
    out = np.zeros(graph.n_tasks)
    out[order] = np.minimum(dur[order], before + cost[order])
    return out


def without_profiler(graph, us_per_event: dict):
    """A copy of `graph` with the profiler's per-event cost taken out of its CPU tasks."""
    out = graph.copy()
    cut = removable_ns(out, profiler_cost_ns(out, us_per_event))
    set_column(out, "tasks", "dur", out.column("dur") - np.rint(cut).astype(np.int64))
    out.without_profiler = True
    return out
