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

Forward and backward against the rest. One figure per event is wrong where what-ifs look: the
events of the forward and backward passes cost several times those of the Python around them. On
a user's AdamW script (conv1d + attention + MLP, 1 thread; each part of the step timed with
perf_counter in one process, 4 rounds of 15 plain and 8 profiled steps, events counted in the
trace) the profiler added per event: data loading 0.42 us, forward 3.65, backward 2.83, optimizer
step 0.31; one figure for the step (0.83 us) took the optimizer from 0.83 to 0.05 ms a step, and
a fused optimizer then had nothing left to save. Where the run timed its `Optimizer.step()` calls
with and without the profiler (run.json `optimizer_step_ms`, daydream.profile.rundir.OptimizerClock)
the step difference D splits:

    c_out   = (profiled - plain optimizer-step median) / (events inside `Optimizer.step#` spans
              of the median step)                       every event outside forward and backward
    c_model = (D - c_out x n_out) / n_model             every event of a forward or backward task

(n_model, n_out: median over the window's steps of the events in CPU tasks of the forward or
backward phase, and in the others; daydream.graph.phases). The optimizer step is the part of the
rest that the run can time; data loading, zero_grad and the loop are Python of the same kind and
are charged its rate. A negative part (noise between the two phases), an optimizer rate above
RUN_SCALE_BAND's top times the calibration's mean cost per event (its medians are noise, as for
the step's) or a region without events keeps one figure, with a note.
"""
from __future__ import annotations

import dataclasses
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
    outside_model_us: float | None = None  # us per event outside forward/backward tasks (None: us_per_event)

    def to_json(self) -> dict:
        return {"us_per_event": {k: round(v, 4) for k, v in self.us_per_event.items()}, "source": self.source,
                "scale": round(self.scale, 4),
                **({"us_per_event_outside_model": round(self.outside_model_us, 4)}
                   if self.outside_model_us is not None else {}),
                **({"note": self.note} if self.note else {})}


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


def events_in_median_step(trace, only_optimizer: bool = False) -> float:
    """The median over the window's steps of the events (all kinds) recorded in each step: the step
    that the run's median step times describe. Steps can differ (a GAN's generator step records more
    than its critic steps), and a median step time over mean events would undercharge them.
    `only_optimizer`: only the events inside `Optimizer.step#` spans."""
    from daydream.trace.events import ANNOTATION, CPU_OP, PYTHON
    from daydream.table import column
    spans = trace.window.step_spans
    if not len(spans):
        return 0.0
    ts, kind = trace.column("ts"), trace.column("kind")
    cpu = np.isin(kind, (CPU_OP, ANNOTATION, PYTHON))
    mem_ts, mem_rank = column(trace, "memory_events", "ts"), column(trace, "memory_events", "rank")
    if only_optimizer:
        optimizer_spans = _optimizer_spans(trace)
        stamps = np.concatenate([ts[optimizer_event_mask(trace, cpu, optimizer_spans)],
                                 mem_ts[optimizer_memory_mask(trace, mem_rank, mem_ts, optimizer_spans)]])
    else:
        stamps = np.concatenate([ts[cpu], mem_ts])
    stamps = np.sort(stamps)
    counts = np.searchsorted(stamps, spans[:, 1], side="left") - np.searchsorted(stamps, spans[:, 0], side="left")
    return float(np.median(counts))


OPTIMIZER_STEP = "Optimizer.step#"


def _optimizer_spans(trace) -> dict:
    """(rank, pid, tid) -> (starts, ends) of the outermost `Optimizer.step#` spans on that thread."""
    from daydream.trace.events import ANNOTATION, CPU_OP, PYTHON
    names = np.fromiter((str(n).startswith(OPTIMIZER_STEP) for n in trace.names), bool, len(trace.names))
    sel = names[trace.column("name")] & np.isin(trace.column("kind"), (CPU_OP, ANNOTATION, PYTHON))
    rows = np.flatnonzero(sel)
    out = {}
    rank, pid, tid = trace.column("rank")[rows], trace.column("pid")[rows], trace.column("tid")[rows]
    start = trace.column("ts")[rows]
    end = start + trace.column("dur")[rows]
    for key in set(zip(rank.tolist(), pid.tolist(), tid.tolist())):
        mine = (rank == key[0]) & (pid == key[1]) & (tid == key[2])
        order = np.lexsort((-end[mine], start[mine]))
        st, en = start[mine][order], end[mine][order]
        reach = np.maximum.accumulate(en)
        keep = np.ones(len(st), bool)
        keep[1:] = st[1:] >= reach[:-1]  # nested inside an earlier span: not outermost
        out[key] = (st[keep], en[keep])
    return out


def _inside(spans: tuple, ts: np.ndarray) -> np.ndarray:
    st, en = spans
    i = np.searchsorted(st, ts, side="right") - 1
    return (i >= 0) & (ts < en[np.clip(i, 0, None)])


def optimizer_event_mask(trace, rows: np.ndarray | None = None, spans: dict | None = None) -> np.ndarray:
    """Per event (or per event of the boolean mask `rows`): inside an `Optimizer.step#` span of its
    thread (`spans`: _optimizer_spans(trace), when the caller has them)."""
    n = len(trace.column("ts"))
    out = np.zeros(n, bool)
    spans = _optimizer_spans(trace) if spans is None else spans
    rank, pid, tid, ts = (trace.column(c) for c in ("rank", "pid", "tid", "ts"))
    base = np.ones(n, bool) if rows is None else rows
    for (r, p, t), sp in spans.items():
        mine = base & (rank == r) & (pid == p) & (tid == t)
        out[mine] = _inside(sp, ts[mine])
    return out


def optimizer_memory_mask(trace, mem_rank: np.ndarray, mem_ts: np.ndarray, spans: dict | None = None) -> np.ndarray:
    """Per memory event: inside an `Optimizer.step#` span of any thread of its rank."""
    out = np.zeros(len(mem_ts), bool)
    for (r, _, _), sp in (_optimizer_spans(trace) if spans is None else spans).items():
        mine = mem_rank == r
        out[mine] |= _inside(sp, mem_ts[mine])
    return out


def event_cost_of(trace, graph=None) -> EventCost | None:
    """The per-event cost to take out of `trace`'s graphs (see the module docstring), or None when its
    run was not calibrated (a plain trace file). With the trace's `graph`, split between forward and
    backward and the rest where the run timed its optimizer steps."""
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
    uniform = EventCost(dict.fromkeys(KINDS, per_event), "run", scale)
    calibrated_us = charged_ms * 1e3 / sum(n.values())
    return uniform if graph is None else _split_at_model(trace, graph, run, profiled - plain, uniform, calibrated_us)


def model_task_mask(graph) -> np.ndarray:
    """CPU tasks of the forward or backward phase: the events charged c_model (module docstring)."""
    from daydream.graph.phases import BACKWARD, FORWARD
    return np.isin(graph.column("phase"), (FORWARD, BACKWARD))


def _split_at_model(trace, graph, run: dict, step_diff_ms: float, uniform: EventCost,
                    calibrated_us: float) -> EventCost:
    """The run's per-event cost split between forward/backward and the rest, where the run timed its
    optimizer steps with and without the profiler (module docstring); else `uniform`. The optimizer's
    rate is held to the band the step's is (RUN_SCALE_BAND x the calibration's mean per event,
    `calibrated_us`): beyond it the two optimizer medians are noise, not the profiler."""
    timed = run.get("optimizer_step_ms") or {}
    opt_plain, opt_profiled = timed.get("plain_median"), timed.get("profiled_median")
    if opt_plain is None or opt_profiled is None:
        return uniform
    n_opt = events_in_median_step(trace, only_optimizer=True)
    counts = profiler_cost_ns(graph, dict.fromkeys(KINDS, 1e-3))  # 1 ns per event: events per task
    step, inside = trace.window.step_of(graph.column("obs_start"))
    model = model_task_mask(graph)
    per_step = [np.bincount(step[inside & m], weights=counts[inside & m], minlength=trace.window.steps)
                for m in (model, ~model)]
    n_model, n_out = (float(np.median(x)) if len(x) else 0.0 for x in per_step)
    opt_diff = opt_profiled - opt_plain
    c_out = opt_diff * 1e3 / n_opt if n_opt > 0 else -1.0
    model_us = step_diff_ms * 1e3 - c_out * n_out
    if c_out > RUN_SCALE_BAND[1] * calibrated_us:
        return dataclasses.replace(uniform, note=(
            f"one cost for every event: the optimizer steps took {opt_plain:.3f} ms without and {opt_profiled:.3f} "
            f"ms with the profiler, {c_out:.2f} us for each of their {n_opt:.0f} events, above {RUN_SCALE_BAND[1]:g}x "
            f"the calibrated {calibrated_us:.2f} us"))
    if n_opt <= 0 or n_model <= 0 or opt_diff < 0 or model_us <= 0:
        return dataclasses.replace(uniform, note=(
            f"one cost for every event: the optimizer steps took {opt_plain:.3f} ms without and {opt_profiled:.3f} "
            f"ms with the profiler ({n_opt:.0f} events), the step {step_diff_ms:.3f} ms more ({n_model:.0f} "
            "forward and backward events)"))
    return dataclasses.replace(uniform, us_per_event=dict.fromkeys(KINDS, model_us / n_model), outside_model_us=c_out)


def profiler_cost_ns(graph, us_per_event: dict, outside_model_us: float | None = None) -> np.ndarray:
    """Per task, the profiler's cost (ns) recorded inside it (see the module docstring); with
    `outside_model_us`, the events of tasks outside forward and backward cost that instead."""
    if outside_model_us is not None:
        model = model_task_mask(graph)
        return np.where(model, profiler_cost_ns(graph, us_per_event),
                        profiler_cost_ns(graph, dict.fromkeys(KINDS, outside_model_us)))
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


def without_profiler(graph, cost: EventCost):
    """A copy of `graph` with the profiler's per-event cost taken out of its CPU tasks."""
    out = graph.copy()
    cut = removable_ns(out, profiler_cost_ns(out, cost.us_per_event, cost.outside_model_us))
    set_column(out, "tasks", "dur", out.column("dur") - np.rint(cut).astype(np.int64))
    out.without_profiler = True
    return out
