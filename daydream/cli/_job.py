"""The commands on a multi-rank TRACE: one job, its ranks coupled (daydream.job); `--workers N` /
`--scheduler ADDRESS` say where the per-rank work runs (daydream.job.engine.executor).

CONTRACT.md, "Multi-rank jobs": top-level figures are the job's, i.e. its slowest rank's (the rank
with the longest measured step), computed from that rank's timeline in the coupled replay; `ranks`
counts them; `analyze --json` adds `per_rank`, `stragglers` and `collectives`, `whatif --json` adds
`ranks` and `per_rank` ({rank, measured_ms, replay_ms, predicted_ms}).
"""
from __future__ import annotations

from pathlib import Path

from daydream.job.sources import rank_sources

# The job's engine, figures and analysis are imported when a job is opened: a single-rank
# `whatif --json` must not pay for them (nor for pandas, which the network model's module imports).


def is_job(path: str) -> bool:
    """Whether TRACE holds several ranks' traces (a directory or archive of them)."""
    return len(rank_sources(path)) > 1


def open_job(trace: str, step_annotation, workers, scheduler, tick):
    from daydream.job.engine import Job
    return Job(trace, step_annotation, workers=workers, scheduler=scheduler, progress=tick)


def analyze_json(job, trace: str):
    """(the `analyze --json` object of the job, the slowest rank's coupled timeline)."""
    from daydream.analysis import analyze as analyze_trace
    from daydream.job import figures
    timeline = job.timeline(job.slowest)
    out = analyze_trace(timeline.graph.trace, timeline)
    out["trace"] = trace
    out["ranks"] = len(job.ranks)
    out["replay_ms"] = round(float(job.replay.per_step_ms[job.slowest]), 6)
    out["slowest_rank"] = job.ranks[job.slowest]
    out["per_rank"] = figures.per_rank(job)
    detail = figures.stragglers(job)
    out["stragglers"] = [s["rank"] for s in detail]
    out["straggler_detail"] = detail
    out["collectives"] = figures.collectives(job)
    out["warnings"] = list(dict.fromkeys(out["warnings"] + job.notes))
    return out, timeline


def whatif_json(job, trace: str, opts, name: str):
    """(the `whatif --json` object of one scenario, replay timeline, predicted timeline) of the job."""
    from daydream.analysis import phase_breakdown
    pred = job.predict(list(opts))
    slow = job.slowest
    base_tl = job.timeline(slow)
    predicted = pred.coupled.per_step_ms
    # A rank world-size added has its traced template's measured and replayed step.
    replay = job.replay.per_step_ms[pred.templates]
    measured_of = job.measured_ms[pred.templates]
    p_slow = int(predicted.argmax())
    pred_tl = job.timeline(p_slow, list(opts), pred) if opts else base_tl
    measured = float(job.measured_ms[slow])
    replay_ms, predicted_ms = float(job.replay.per_step_ms.max()), float(predicted.max())
    data = {
        "trace": trace,
        "device": job.summaries[slow].device,
        "steps": job.summaries[slow].steps,
        "measured_ms": round(measured, 6),
        "replay_ms": round(replay_ms, 6),
        "predicted_ms": round(predicted_ms, 6),
        "speedup": round(replay_ms / predicted_ms, 6) if predicted_ms > 0 else float("inf"),
        "replay_error_pct": round(100 * abs(replay_ms - measured) / measured, 4) if measured else 0.0,
        "optimizations": [o.as_json() for o in opts],
        "breakdown": {"measured": phase_breakdown(base_tl), "predicted": phase_breakdown(pred_tl)},
        "notes": list(dict.fromkeys(job.notes + pred.notes)),
        "predicted_ranks": len(pred.ranks),
        "ranks": len(job.ranks),
        "per_rank": [{"rank": r, "measured_ms": round(float(m), 6), "replay_ms": round(float(a), 6),
                      "predicted_ms": round(float(b), 6)}
                     for r, m, a, b in zip(pred.ranks, measured_of, replay, predicted)],
    }
    return data, base_tl, pred_tl


def print_job_tables(out, result: dict) -> None:
    """The per-rank, straggler and collective tables of `analyze` on a job (terminal)."""
    from rich.markup import escape
    from rich.table import Table
    t = Table(title="ranks (ms/step; coupled replay, waiting recomputed)")
    for c in ("rank", "measured", "replay", "err %", "compute", "exposed comm", "waiting for peers"):
        t.add_column(c, justify="right")
    slow = {s["rank"] for s in result["straggler_detail"]}
    for r in result["per_rank"]:
        err = 100 * (r["replay_ms"] - r["measured_ms"]) / r["measured_ms"] if r["measured_ms"] else 0.0
        t.add_row(str(r["rank"]) + (" *" if r["rank"] in slow else ""), f"{r['measured_ms']:.3f}",
                  f"{r['replay_ms']:.3f}", f"{err:+.2f}", f"{r['compute_ms']:.3f}", f"{r['exposed_comm_ms']:.3f}",
                  f"{r['wait_ms']:.3f}")
    out.print(t)
    if result["straggler_detail"]:
        for s in result["straggler_detail"]:
            out.print(f"[bold]straggler[/] rank {s['rank']}: held its peers up {s['held_up_ms']:.3f} ms/step; "
                      f"{escape(s['why'])}")
    else:
        out.print("no straggler: no rank held its peers up for 5% of the step or more")
    if result["collectives"]:
        links = sorted({f"{r['link']} {r['link_peak_gbps']:g} GB/s" for r in result["collectives"] if "link" in r})
        c = Table(title="collectives in the window (time: transfer after the last arrival)"
                  + (f"; link peak: {escape(', '.join(links))}" if links else ""))
        for col in ("collective", "group", "ranks", "count", "MB", "ms", "busbw GB/s", "% of peak"):
            c.add_column(col, justify="left" if col in ("collective", "group") else "right", no_wrap=True)
        for r in result["collectives"]:
            c.add_row(escape(r["name"]), escape(str(r["group"])), str(r["ranks"]), str(r["count"]),
                      f"{r['bytes'] / 1e6:.3f}", f"{r['total_ms']:.3f}",
                      "-" if r["busbw_gbps"] is None else f"{r['busbw_gbps']:.2f}",
                      "-" if r.get("busbw_pct_of_peak") is None else f"{r['busbw_pct_of_peak']:.1f}")
        out.print(c)


def _run_dir(src) -> Path | None:
    """The rank's `daydream profile` run directory, where it has the fuller memory record
    (memory.json.gz: what was allocated before profiling began, with categories)."""
    p = Path(src.path)
    if src.member is None and p.name == "trace.json.gz" and (p.parent / "memory.json.gz").is_file():
        return p.parent
    return None


def _memory_peaks(src, step_annotation) -> dict:
    """A worker's part of `memory` on a job: {rank: peak bytes} of one rank's file (empty where it
    recorded no [memory] events), from its run directory's memory.json.gz where it has one."""
    from daydream.job.sources import load_rank
    from daydream.memory import memory
    from daydream.memory.kineto import from_trace_all_ranks
    trace = load_rank(src, None, step_annotation)
    run_dir = _run_dir(src)
    if run_dir is not None:
        return {trace.ranks[0]: int(memory(run_dir, step_annotation=step_annotation).peak_bytes)}
    if trace.memory_events.empty:
        return {}
    return {r: int(tl.peak_bytes) for r, tl in from_trace_all_ranks(trace).items()}


def memory_job(trace: str, choices, step_annotation, workers, scheduler, tick):
    """`memory` on a multi-rank TRACE: every rank's peak found per rank (in this process or on the
    Dask cluster, the archive read once), then the report of the rank with the highest peak
    (`rank`, `rank_peaks`), from its run directory where `daydream profile` wrote one per rank."""
    from daydream.errors import DaydreamError
    from daydream.job.engine import executor
    from daydream.job.sources import load_rank, streamed
    from daydream.memory import memory
    sources = rank_sources(trace)
    ex = executor(len(sources), workers, scheduler)
    try:
        items = ((i, (s, step_annotation)) for i, s in streamed(enumerate(sources)))
        found = ex.map(_memory_peaks, items, len(sources), (lambda: tick("rank read")) if tick else None)
    finally:
        ex.close()
    peaks = {r: p for d in found for r, p in d.items()}
    if not peaks:
        raise DaydreamError(f"{trace}: no [memory] events on any rank")
    rank = max(peaks, key=peaks.get)
    src = next(s for s, d in zip(sources, found) if rank in d)
    run_dir = _run_dir(src)
    report = memory(run_dir if run_dir is not None else load_rank(src, None, step_annotation), choices,
                    step_annotation=step_annotation)
    report.trace, report.rank, report.rank_peaks = trace, rank, peaks
    return report


def validate_job(base: str, optimized: str, choices, step_annotation, workers, scheduler, tick) -> dict:
    """`validate` with a multi-rank BASE: OPTIMIZED's job step (its slowest rank; one trace: its
    step) against BASE's job re-simulated coupled under the optimizations (CONTRACT.md keys).
    BASE and OPTIMIZED look unrelated only if BASE's slowest and fastest ranks both do: a slowed
    rank runs work its peers do not (the straggler a what-if removes)."""
    from daydream.trace import load
    from daydream.validate import unrelated
    from daydream.job.sources import load_rank
    with open_job(base, step_annotation, workers, scheduler, tick) as job:
        data, _, _ = whatif_json(job, base, choices, "validate")
        compared = [(job.sources[p], job.ranks[p]) for p in dict.fromkeys((job.slowest, int(job.measured_ms.argmin())))]
        tick("base predicted")
        if is_job(optimized):
            with open_job(optimized, step_annotation, workers, scheduler, tick) as other:
                opt_ms = float(other.measured_ms.max())
                other_src, other_rank = other.sources[other.slowest], other.ranks[other.slowest]
            opt_trace = load_rank(other_src, other_rank, step_annotation)
        else:
            opt_trace = load(optimized, step_annotation)
            opt_ms = opt_trace.measured_ms
        tick("optimized loaded")
        mismatches = [unrelated(load_rank(s, r, step_annotation), opt_trace) for s, r in compared]
        mismatch = mismatches[0] if all(mismatches) else []
    base_ms, replay_ms, pred_ms = data["measured_ms"], data["replay_ms"], data["predicted_ms"]
    return {
        "base": base, "optimized": optimized, "optimizations": data["optimizations"],
        "base_measured_ms": base_ms, "base_replay_ms": replay_ms, "optimized_measured_ms": round(opt_ms, 6),
        "predicted_ms": pred_ms,
        "measured_speedup": round(base_ms / opt_ms, 6) if opt_ms > 0 else None,
        "predicted_speedup": round(replay_ms / pred_ms, 6) if pred_ms > 0 else None,
        "error_pct": round(100 * abs(pred_ms - opt_ms) / opt_ms, 4) if opt_ms > 0 else None,
        "notes": data["notes"], "ranks": data["ranks"], "per_rank": data["per_rank"],
        "warnings": [f"BASE and OPTIMIZED look unrelated: {w}" for w in mismatch],
    }


def slowest_timeline(trace: str, step_annotation, workers, scheduler, tick):
    """(the job's slowest rank's trace, its timeline in the coupled replay, its rank), for the
    commands that compare or rank one timeline (`diff`, `suggest`)."""
    with open_job(trace, step_annotation, workers, scheduler, tick) as job:
        timeline = job.timeline(job.slowest)
        return timeline.graph.trace, timeline, job.ranks[job.slowest]


def suggest_of_job(result: dict, trace: str, rank: int) -> None:
    """`suggest` on a job ranks optimizations of its slowest rank, alone (per-rank optimizations):
    say so, and point the job-level what-ifs, which `suggest` skipped as needing a job, at `whatif`."""
    result["rank"], result["ranks"] = rank, len(rank_sources(trace))
    for k in result["skipped"]:
        if k["name"].split(":")[0] in ("straggler", "world-size"):
            k["why"] = (f"acts across the job's ranks, not on one: see `daydream whatif {trace} --opt {k['name']}`"
                        " (suggest ranks the slowest rank's own optimizations)")
