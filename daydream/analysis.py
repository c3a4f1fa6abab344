"""What a (simulated) timeline says: phase breakdown, critical path, GPU busy time, top kernels.

The per-phase breakdown walks the critical path into the end of the window and gives every
nanosecond of the window to the phase of the task that was holding the step back at that moment,
so the phases of a step always add up to its step time (measured or predicted).

pandas is imported by the functions that group with it: `daydream whatif` needs only the phase
breakdown and never pays for the import.
"""
from __future__ import annotations

import numpy as np

from daydream.graph import PHASES, TASK_KINDS, build_graph, kernel_classes
from daydream.graph.schema import GPU_TASK_TYPES, T_IDLE
from daydream.sim import Timeline
from daydream.trace import Trace


def path_increments(timeline: Timeline) -> tuple[np.ndarray, np.ndarray]:
    """Critical-path tasks and the window time each one accounts for (ns)."""
    path = timeline.critical_path()
    start, _ = timeline.window()
    ends = timeline.end[path]
    cursor = np.maximum.accumulate(np.concatenate([[start], ends]))
    return path, np.diff(cursor)


def phase_breakdown(timeline: Timeline) -> dict[str, float]:
    """Milliseconds per step of each phase on the critical path (sums to the step time)."""
    path, inc = path_increments(timeline)
    phase = timeline.graph.column("phase")[path]
    steps = max(timeline.graph.steps, 1)
    per = np.bincount(phase, weights=inc, minlength=len(PHASES)) / steps / 1e6
    return {p: round(float(v), 6) for p, v in zip(PHASES, per)}


def task_categories(timeline: Timeline) -> np.ndarray:
    """Critical-path category per task: CPU work, runtime calls, syncs, idle, or GPU kernel class."""
    graph = timeline.graph
    kind = graph.column("kind")
    cat = np.asarray(TASK_KINDS, dtype=object)[kind]
    gpu = np.isin(kind, GPU_TASK_TYPES)
    if gpu.any():
        cat[gpu] = "gpu_" + kernel_classes(graph)[gpu].astype(object)
    return cat


def critical_path_breakdown(timeline: Timeline) -> dict[str, float]:
    """Milliseconds per step by category along the critical path."""
    import pandas as pd
    path, inc = path_increments(timeline)
    cat = task_categories(timeline)[path]
    steps = max(timeline.graph.steps, 1)
    s = pd.Series(inc, index=cat).groupby(level=0).sum() / steps / 1e6
    return {k: round(float(v), 6) for k, v in s.sort_values(ascending=False).items() if v > 0}


def _union_length(starts: np.ndarray, ends: np.ndarray) -> int:
    """Total length covered by the union of intervals [starts, ends)."""
    if len(starts) == 0:
        return 0
    o = np.argsort(starts, kind="stable")
    s, e = starts[o], ends[o]
    reach = np.maximum.accumulate(e)
    new_block = np.concatenate([[True], s[1:] > reach[:-1]])
    first = np.flatnonzero(new_block)
    return int(np.sum(np.maximum.reduceat(e, first) - s[first]))


def busy_pct(timeline: Timeline, gpu: bool = True) -> float:
    """Share of the window in which the slowest rank's GPU (or its busiest CPU thread) was busy."""
    import pandas as pd
    t = timeline.graph.tasks
    w0, w1 = timeline.window()
    rank = t["rank"].to_numpy()
    r = timeline.slowest_rank
    kind = t["kind"].to_numpy()
    s = np.clip(timeline.start, w0, w1)
    e = np.clip(timeline.end, w0, w1)
    if gpu:
        sel = (rank == r) & np.isin(kind, GPU_TASK_TYPES)
        busy = _union_length(s[sel], e[sel])
    else:
        sel = (rank == r) & (kind != T_IDLE) & ~np.isin(kind, GPU_TASK_TYPES)
        res = t["resource"].to_numpy()
        per = pd.Series(e[sel] - s[sel]).groupby(res[sel]).sum()
        busy = int(per.max()) if len(per) else 0
    return round(100.0 * busy / max(w1 - w0, 1), 3)


def _window_gpu_work(timeline: Timeline) -> np.ndarray:
    """Mask of the slowest rank's GPU tasks in the analysis window (the rank the step time is of)."""
    t = timeline.graph.tasks
    return (t["in_window"].to_numpy() & np.isin(t["kind"].to_numpy(), GPU_TASK_TYPES)
            & (t["rank"].to_numpy() == timeline.slowest_rank))


def top_kernels(timeline: Timeline, n: int = 10) -> list[dict]:
    """The GPU work of the (slowest rank's) window that took the most time."""
    import pandas as pd
    sel = _window_gpu_work(timeline)
    if not sel.any():
        return []
    names = timeline.graph.task_names()[sel]
    dur = (timeline.end - timeline.start)[sel]
    g = pd.DataFrame({"name": names, "dur": dur}).groupby("name")["dur"].agg(["sum", "count"])
    g = g.sort_values("sum", ascending=False).head(n)
    return [{"name": k, "total_ms": round(float(v["sum"]) / 1e6, 6), "count": int(v["count"])}
            for k, v in g.iterrows()]


def flops_utilization_pct(timeline: Timeline, device) -> float | None:
    """Achieved FLOP/s of the window's kernels over the device's peak, where shapes were recorded.

    FLOPs come from the recorded input shapes of the aten op that launched each kernel
    (daydream.costs.op_cost); the peak is the device's dense peak for the op's dtype.
    """
    from daydream.costs import compute_dtype, op_costs
    graph = timeline.graph
    t = graph.tasks
    trace = graph.trace
    sel = _window_gpu_work(timeline) & (t["op"].to_numpy() >= 0)
    ops = np.unique(t["op"].to_numpy()[sel])
    args = [trace.args_of(op) for op in ops.tolist()]
    shaped = [i for i, a in enumerate(args) if a.get("Input Dims") is not None]
    if not shaped:
        return None
    names = trace.name_of(trace.column("name")[ops[shaped]])
    types = [args[i].get("Input type", []) for i in shaped]
    flops, _ = op_costs(names, [args[i]["Input Dims"] for i in shaped], types,
                        [args[i].get("Concrete Inputs") for i in shaped])  # once per distinct op shape
    peak = np.array([device.peak(compute_dtype(t)) for t in types])
    counted = flops > 0
    total = float(flops[counted].sum())
    peak_time = float((flops[counted] / peak[counted]).sum())
    if total == 0:
        return None
    w0, w1 = timeline.window()
    return round(100.0 * peak_time / ((w1 - w0) / 1e9), 3)


def without_profiler(graph, trace: Trace):
    """A copy of `graph` with the profiler's per-event cost (profiler_cost.event_cost_of: the run.json
    calibration, scaled to the run's own measured overhead on a CPU-only trace) taken out of its CPU
    tasks; None for a run without a calibration, which then imports neither the transforms nor
    pandas."""
    if not (trace.run or {}).get("profiler_event_cost"):
        return None
    from daydream.transform import profiler_cost
    cost = profiler_cost.event_cost_of(trace, graph)
    if cost is None:
        return None
    return profiler_cost.without_profiler(graph, cost)


def unprofiled_ms(graph, trace: Trace) -> float | None:
    """Step time of `graph` once the profiler's per-event cost is out (without_profiler); None for a
    run without a calibration."""
    clean = without_profiler(graph, trace)
    if clean is None:
        return None
    from daydream.sim import simulate
    return simulate(clean).per_step_ms


def analyze(trace: Trace, timeline: Timeline | None = None, device=None) -> dict:
    """The contract's `analyze --json` object."""
    from daydream.opts.context import Context
    from daydream.sim import simulate
    ctx = Context.of(trace)
    timeline = timeline or simulate(build_graph(trace))
    device = device or ctx.known_device  # None: the trace does not say, and nothing tells
    measured = trace.measured_ms
    out = {
        "trace": trace.path,
        "device": trace.device,
        "steps": trace.steps,
        "measured_ms": round(measured, 6),
        "breakdown": {"measured": phase_breakdown(timeline)},
        # null, not 0.0, on a trace with no GPU events: nothing was measured (`has_gpu` says why)
        "gpu_busy_pct": busy_pct(timeline, gpu=True) if trace.has_gpu else None,
        "has_gpu": bool(trace.has_gpu),
        "cpu_busy_pct": busy_pct(timeline, gpu=False),
        "top_kernels": top_kernels(timeline),
        "critical_path": critical_path_breakdown(timeline),
        "ranks": len(trace.ranks),
        "device_model": device.name if device else None,
        "warnings": list(trace.warnings) + ctx.notes + ([ctx.device_problem] if device is None else []),
    }
    unprofiled = unprofiled_ms(timeline.graph, trace)
    out["unprofiled_ms"] = None if unprofiled is None else round(unprofiled, 6)
    if unprofiled is not None:
        from daydream.transform import profiler_cost
        out["profiler_cost"] = profiler_cost.event_cost_of(trace, timeline.graph).to_json()
    if ctx.run.get("plain_step_ms"):
        out["plain_step_ms"] = ctx.run["plain_step_ms"]
    if ctx.batch_size:
        out["throughput_per_s"] = round(ctx.batch_size / (measured / 1000.0), 3)
    if trace.has_gpu and device is not None:
        util = flops_utilization_pct(timeline, device)
        if util is not None:
            out["flops_utilization_pct"] = util
    return out
