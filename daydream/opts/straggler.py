"""straggler[:ranks=A+B...,start=true] -- the slow ranks of a job run at the median rank's speed.

Needs the whole job (a multi-rank TRACE): `ctx.job` holds each rank's recorded figures
(daydream.job.engine.JobInfo). The ranks fixed are the ones named (`ranks=3+5`, ranges `0-3`), or
by default every rank slower than the median: the job's stragglers (ranks whose late arrival at
collectives held their peers up, daydream.job.figures) and every rank whose compute per step (GPU
busy time of non-collective work; its busiest CPU thread's work) exceeds the median rank's by more
than SLOWER_PCT percent, or whose step started later than the median rank's by more than SLOWER_PCT
percent of the median step. On each fixed rank:
  * every GPU task except collectives scales by median_gpu / rank_gpu, every CPU task by
    median_cpu / rank_cpu (when the rank is the slower one; a faster part is left alone); the median
    rank is the median of the ranks not named when ranks are named (with 2 ranks, the other one),
    else of all ranks;
  * with start=true (default), a rank that began its step later than the median rank begins with
    it: every task's release time moves earlier by the difference (aligned clocks).
The coupled re-simulation (daydream.job) then decides how much the peers stop waiting.
"""
from __future__ import annotations

import numpy as np

from daydream.errors import DaydreamError
from daydream.graph.schema import GPU_TASK_TYPES, NO_RELEASE, T_COLLECTIVE, T_IDLE
from daydream.table import set_column
from daydream.transform import primitives as P
from daydream.opts.params import Optimization, Param, unchanged_memory

SLOWER_PCT = 1.0


def parse_ranks(text: str) -> list[int]:
    """'3+5+8-11' -> [3, 5, 8, 9, 10, 11]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split("+"))):
        lo, dash, hi = part.partition("-")
        try:
            out += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
        except ValueError:
            raise DaydreamError(f"--opt straggler: ranks={text!r}: write ranks as 3+5 or 0-3") from None
    return out


def chosen(job, text: str) -> list[int]:
    """The ranks to fix (see the module docstring)."""
    if text:
        ranks = parse_ranks(text)
        unknown = sorted(set(ranks) - set(job.ranks))
        if unknown:
            raise DaydreamError(f"--opt straggler: rank(s) {', '.join(map(str, unknown))} not in the job "
                                f"(ranks {min(job.ranks)}-{max(job.ranks)})")
        return ranks
    slow = set(job.stragglers)
    for what in (job.compute_ms, job.cpu_ms):
        med = job.median(what)
        slow |= {r for r in job.ranks if what[r] > med * (1 + SLOWER_PCT / 100)}
    med_start, step_ns = job.median(job.step_start), job.median(job.measured_ms) * 1e6
    slow |= {r for r in job.ranks if job.step_start[r] - med_start > SLOWER_PCT / 100 * step_ns}
    return sorted(slow)


def apply(graph, params: dict, ctx) -> None:
    job = getattr(ctx, "job", None)
    if job is None or len(job.ranks) < 2:
        raise DaydreamError("--opt straggler needs a multi-rank job (a directory or .tar.gz of rank traces)")
    ranks = set(chosen(job, params["ranks"]))
    kind = graph.column("kind")
    rank = graph.column("rank")
    # The median rank: of the ranks left alone where any are (named ranks), else of all.
    ref = [r for r in job.ranks if r not in ranks] if params["ranks"] and len(ranks) < len(job.ranks) else job.ranks
    med = lambda what: float(np.median([what[r] for r in ref]))
    med_gpu, med_cpu = med(job.compute_ms), med(job.cpu_ms)
    med_start = int(med(job.step_start))
    for r in sorted(set(np.unique(rank).tolist()) & ranks):
        mine = rank == r
        gpu = mine & np.isin(kind, GPU_TASK_TYPES) & (kind != T_COLLECTIVE)
        cpu = mine & ~np.isin(kind, GPU_TASK_TYPES) & (kind != T_IDLE)
        fg = med_gpu / job.compute_ms[r] if job.compute_ms[r] > 0 else 1.0
        fc = med_cpu / job.cpu_ms[r] if job.cpu_ms[r] > 0 else 1.0
        if fg < 1 and gpu.any():
            P.scale(graph, gpu, fg)
        if fc < 1 and cpu.any():
            P.scale(graph, cpu, fc)
        late = job.step_start[r] - med_start
        if params["start"] and late > 0:
            release = graph.column("release").copy()
            moved = mine & (release != NO_RELEASE)
            release[moved] -= late
            set_column(graph, "tasks", "release", release)
        speeds = (f"GPU x{min(fg, 1):.3f}, " if gpu.any() else "") + f"CPU x{min(fc, 1):.3f}"
        earlier = f", step started {late / 1e6:.3f} ms earlier" if params["start"] and late > 0 else ""
        ctx.notes.append(f"straggler: rank {r} at the median rank's speed ({speeds}{earlier})")
    if not ranks:
        ctx.notes.append("straggler: no rank is slower than the median by more than "
                         f"{SLOWER_PCT:g}%; nothing changes")


OPTIMIZATION = Optimization(
    name="straggler",
    summary="multi-rank: the slow ranks (named, or all slower than the median) run at the median rank's speed",
    params={
        "ranks": Param("", "ranks to fix, e.g. 3+5 or 0-3 (empty: every rank slower than the median)", str),
        "start": Param(True, "also start a late rank's step when the median rank starts it", bool),
    },
    apply=apply,
    memory=unchanged_memory("straggler: the same work at another speed; device memory unchanged"),
    doc="docs/optimizations/straggler.md",
    checked_against={
        "cpu": "2-rank gloo DDP job with one rank slowed (benchmarks/straggler_validation.py)",
    },
)
