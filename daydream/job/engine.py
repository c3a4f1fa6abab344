"""Running a job: per-rank work in this process or on a Dask cluster, the coupled replay here.

Per rank (a worker's part): load that rank's file, build its graph, find its collectives, apply the
optimizations, and reduce it to a `RankSummary` (daydream.job.reduce); nothing else comes back, so
this process holds ranks x collectives, never ranks x events. Here: match the collectives, align
clocks, recover transfer times, and solve the coupled replay (daydream.job.couple).

Where the work runs never changes a number: the same functions run on the same inputs, in this
process (`workers=0`), on a `LocalCluster` of N worker processes (`workers=N`), or on a running
cluster (`scheduler=ADDRESS`, whose workers must see the same paths). Without either, jobs of
AUTO_CLUSTER_RANKS ranks or more start a local cluster of one worker per core (up to 8) when the
machine has at least 4 cores; smaller jobs stay in process.

Ranks come to the executor as a stream (daydream.job.sources.streamed): an archive is read once,
front to back, and each rank's member bytes go to its task as they are inflated, a bounded number
of tasks in flight, so neither this process nor the cluster ever holds every rank's events.

Ranks are stateless on workers: a second pass (optimizations that need the whole job's figures,
such as `straggler`, or the timeline of one rank) reloads the rank's file rather than keeping every
rank's graph in memory.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from daydream.errors import DaydreamError
from daydream.job.collectives import (Matching, RankCollectives, collective_tasks, collectives_of, match,
                                      wire_cpu_waits)
from daydream.job.couple import Coupled, Participants, clock_offsets, recorded_transfer, solve
from daydream.job.reduce import REACHED, summarize
from daydream.job.sources import RankSource, load_rank, rank_sources, streamed
from daydream.opts.context import Context
from daydream.opts.params import OptChoice
from daydream.sim import Timeline, simulate
from daydream.graph import build_graph

AUTO_CLUSTER_RANKS = 256
IN_FLIGHT_PER_WORKER = 4  # tasks queued per worker: enough to keep it busy while results come back


@dataclass
class JobInfo:
    """What optimizations that act across ranks (straggler) know of the job: recorded figures per
    rank, clocks aligned."""
    ranks: list
    compute_ms: dict   # rank -> busy time of its compute per step
    cpu_ms: dict       # rank -> busy time of its busiest CPU thread per step
    step_start: dict   # rank -> window start (ns, aligned clock)
    measured_ms: dict = field(default_factory=dict)  # rank -> measured step time
    stragglers: list = field(default_factory=list)  # ranks whose late arrival held their peers up
    collectives: dict = field(default_factory=dict)  # rank -> RankCollectives (filled on the worker)

    def median(self, what: dict) -> float:
        return float(np.median(list(what.values())))


def _opt_module(name: str):
    try:
        return importlib.import_module(f"daydream.opts.{name.replace('-', '_')}")
    except ModuleNotFoundError:
        raise DaydreamError(f"optimization {name!r} has no time model in this build") from None


def _transformed(trace, graph, coll: RankCollectives, opts, job: JobInfo | None):
    ctx = Context.of(trace)
    ctx.job = job
    if job is not None:
        job.collectives = {coll.rank: coll}
    out = graph.copy()
    for o in opts:
        _opt_module(o.name).apply(out, o.params, ctx)
    return out, ctx.notes


def rank_pass(src: RankSource, rank: int, step_annotation, opts, job: JobInfo | None):
    """A worker's part for one rank: (recorded summary, predicted summary or None, notes)."""
    trace = load_rank(src, rank, step_annotation)
    graph = build_graph(trace)
    wire_cpu_waits(graph)
    coll = collectives_of(graph)
    recorded = summarize(graph, coll)
    if not opts:
        return recorded, None, list(trace.warnings)
    changed, notes = _transformed(trace, graph, coll, opts, job)
    return recorded, summarize(changed, coll, recorded=graph), list(trace.warnings) + notes


def rank_timeline(src: RankSource, rank: int, step_annotation, opts, job, arrive: np.ndarray,
                  end: np.ndarray) -> Timeline:
    """The rank's timeline in the coupled replay: each collective's duration set to its coupled
    end minus its coupled start (this rank's clock), so that the rank's own replay lands exactly on
    the coupled times."""
    trace = load_rank(src, rank, step_annotation)
    graph = build_graph(trace)
    wire_cpu_waits(graph)
    coll = collectives_of(graph)
    if opts:
        graph, _ = _transformed(trace, graph, coll, opts, job)
    found = collective_tasks(graph)
    pos = {int(e): int(i) for i, e in zip(found.tolist(), graph.column("event")[found].tolist())}
    dur = graph.column("dur").copy()
    for k, ev in enumerate(coll.event.tolist()):
        t = pos.get(int(ev), -1)
        if t >= 0 and arrive[k] > REACHED:
            dur[t] = max(int(end[k] - arrive[k]), 0)
    from daydream.table import set_column
    set_column(graph, "tasks", "dur", dur)
    return simulate(graph)


class _Serial:
    def map(self, fn, items: Iterable[tuple[int, tuple]], n: int, tick=None) -> list:
        """fn(*args) of each (position, args) of `items`, by position (0..n-1), one at a time."""
        out = [None] * n
        for k, a in items:
            out[k] = fn(*a)
            if tick:
                tick()
        return out

    def call(self, fn, *args):
        return fn(*args)

    def close(self):
        pass


class _Dask:
    def __init__(self, workers: int | None, scheduler: str | None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise DaydreamError("--workers/--scheduler need Dask: pip install 'dask[distributed]'") from None
        import logging
        # A rank's DaydreamError comes back here as one line; the workers' own logs of it (with the
        # worker-side traceback) and shutdown chatter would break the one-line error contract.
        for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                     "distributed.core", "distributed.comm"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self.cluster = None
        try:
            if scheduler:
                self.client = Client(scheduler, timeout="20s")
            else:
                # ":0": any free port (None means 8787, and a warning on stderr when another cluster has it)
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=":0", silence_logs=logging.CRITICAL)
                self.client = Client(self.cluster)
        except (OSError, TimeoutError, ValueError) as exc:
            raise DaydreamError(f"cannot reach the Dask scheduler {scheduler or '(local cluster)'}: {exc}") from None

    def map(self, fn, items: Iterable[tuple[int, tuple]], n: int, tick=None) -> list:
        """As _Serial.map, on the cluster: IN_FLIGHT_PER_WORKER tasks per worker submitted at a
        time, the next taken from `items` as one finishes; an archive member's bytes are scattered
        to a worker with their task and released with it, so only those in flight are held."""
        from dask.distributed import as_completed
        items = iter(items)
        out, where = [None] * n, {}
        held = {}  # task key -> the futures of the member bytes it reads
        done = as_completed()

        def submit() -> None:
            nxt = next(items, None)
            if nxt is not None:
                # Member bytes go straight to a worker (scatter), not into the task's spec, which
                # the scheduler in this process would keep.
                data = [self.client.scatter(a, direct=True, hash=False) if getattr(a, "data", None) is not None
                        else None for a in nxt[1]]
                f = self.client.submit(fn, *(d if d is not None else a for d, a in zip(data, nxt[1])), pure=False)
                where[f.key] = nxt[0]
                held[f.key] = [d for d in data if d is not None]
                done.add(f)

        for _ in range(IN_FLIGHT_PER_WORKER * max(len(self.client.scheduler_info()["workers"]), 1)):
            submit()
        for f in done:
            out[where.pop(f.key)] = f.result()  # a worker's exception is raised here (a DaydreamError stays one)
            for d in held.pop(f.key):
                d.release()
            f.release()
            if tick:
                tick()
            submit()
        return out

    def call(self, fn, *args):
        return self.client.submit(fn, *args, pure=False).result()

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def executor(n_ranks: int, workers: int | None, scheduler: str | None):
    """In process, a local cluster, or a running one (see the module docstring)."""
    if scheduler:
        return _Dask(None, scheduler)
    if workers is None and n_ranks >= AUTO_CLUSTER_RANKS and (os.cpu_count() or 1) >= 4:
        workers = min(os.cpu_count(), 8)
    if workers:
        return _Dask(workers, None)
    return _Serial()


@dataclass
class Prediction:
    """A what-if of the job: its ranks' summaries, the coupled replay of them, and, where
    `world-size` changed the number of ranks, the matching and the traced rank each copies."""
    summaries: list
    coupled: Coupled
    notes: list
    parts: Participants | None = None
    templates: np.ndarray | None = None  # rank position -> the traced rank position it copies

    @property
    def ranks(self) -> list[int]:
        return [s.rank for s in self.summaries]


class Job:
    """A multi-rank TRACE: its ranks reduced, matched and replayed coupled (see the module docstring).

    `Job(path)` loads and replays; `predict(opts)` re-simulates the job under optimizations;
    `timeline(pos, ...)` rebuilds one rank's full timeline in the coupled replay."""

    def __init__(self, path: str, step_annotation: str | None = None, workers: int | None = None,
                 scheduler: str | None = None, progress=None, sources: list[RankSource] | None = None):
        self.path = str(path)
        self.step_annotation = step_annotation
        self.sources = sources if sources is not None else rank_sources(path)
        self.ranks_claimed = None
        self._exec = executor(len(self.sources), workers, scheduler)
        self._progress = progress
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- the recorded job and its coupled replay -----------------------------------------------
    def _load(self):
        results = self._each_rank(lambda pos: None, [], None, "rank loaded")
        summaries = [r[0] for r in results]
        claimed = [s.rank for s in summaries]
        self.notes = []
        if len(set(claimed)) != len(claimed):
            self.notes.append("two files claim the same rank; ranks numbered in file order instead")
            for i, s in enumerate(summaries):
                s.rank = s.coll.rank = i
        order = np.argsort([s.rank for s in summaries], kind="stable")
        self.sources = [self.sources[i] for i in order]
        self.summaries = [summaries[i] for i in order]
        warnings = [w for i in order for w in results[i][2]]
        self.notes += list(dict.fromkeys(warnings))
        self.matching: Matching = match([s.coll for s in self.summaries])
        self.notes += self.matching.notes
        self.parts = Participants.of(self.summaries, self.matching)
        self.offsets, clock_notes = clock_offsets(self.summaries, self.matching)
        self.notes += clock_notes
        self.rec_start, self.rec_end, self.transfer = recorded_transfer(self.summaries, self.matching, self.parts,
                                                                        self.offsets)
        self.replay = solve(self.summaries, self.matching, self.parts, self.transfer, self.offsets)

    def _each_rank(self, rank_of, opts, job, what: str) -> list:
        """rank_pass of every source, by position; an archive read once (sources.streamed)."""
        items = ((pos, (src, rank_of(pos), self.step_annotation, opts, job))
                 for pos, src in streamed(enumerate(self.sources)))
        return self._exec.map(rank_pass, items, len(self.sources), self._tick(what))

    def _tick(self, what: str):
        if self._progress is None:
            return None
        return lambda: self._progress(what)

    @property
    def ranks(self) -> list[int]:
        return [s.rank for s in self.summaries]

    @property
    def measured_ms(self) -> np.ndarray:
        return np.array([s.measured_ms for s in self.summaries])

    @property
    def slowest(self) -> int:
        """Position of the rank with the longest measured step (the job's step time is its)."""
        return int(np.argmax(self.measured_ms))

    def info(self) -> JobInfo:
        from daydream.job.figures import stragglers
        return JobInfo(ranks=self.ranks, compute_ms={s.rank: s.compute_ms for s in self.summaries},
                       cpu_ms={s.rank: s.cpu_ms for s in self.summaries},
                       step_start={s.rank: int(s.step_start + o) for s, o in zip(self.summaries, self.offsets)},
                       measured_ms={s.rank: s.measured_ms for s in self.summaries},
                       stragglers=[r["rank"] for r in stragglers(self)])

    # -- what-ifs ----------------------------------------------------------------------------------
    def predict(self, opts: list[OptChoice]) -> Prediction:
        """The job re-simulated coupled after applying `opts` to every rank (in order)."""
        identity = np.arange(len(self.summaries))
        if not opts:
            return Prediction(self.summaries, self.replay, [], self.parts, identity)
        job_level = [o for o in opts if getattr(_opt_module(o.name), "JOB_LEVEL", False)]
        per_rank = [o for o in opts if o not in job_level]
        if per_rank:
            job = self.info()
            ranks = self.ranks
            results = self._each_rank(lambda pos: ranks[pos], per_rank, job, "rank predicted")
            predicted = [r[1] for r in results]
            notes = list(dict.fromkeys(n for r in results for n in r[2] if n not in self.notes))
        else:
            predicted, notes = self.summaries, []
        transfer = (self.transfer * np.concatenate([s.coll_scale for s in predicted])).astype(np.int64)
        matching, parts, offsets, templates = self.matching, self.parts, self.offsets, identity
        for o in job_level:  # world-size (the only job-level optimization)
            from daydream.job.synthesize import synthesize
            from daydream.job.figures import device_of
            predicted, matching, parts, transfer, offsets, picked = synthesize(
                predicted, matching, parts, transfer, offsets, o.params["ranks"], device_of(self),
                o.params["seed"])
            templates = templates[picked]
            notes.append(f"world-size: {len(self.summaries)} traced ranks -> {len(predicted)} ranks"
                         + (f" ({len(predicted) - len(self.summaries)} copies of traced ranks drawn at random)"
                            if len(predicted) > len(self.summaries) else ""))
        coupled = solve(predicted, matching, parts, transfer, offsets)
        return Prediction(predicted, coupled, notes, parts, templates)

    def timeline(self, pos: int, opts: list[OptChoice] = (), prediction: Prediction | None = None) -> Timeline:
        """Rank position `pos`'s full timeline in the coupled replay (or in `prediction`, made with
        `opts`; a rank `world-size` added is its traced template's graph at its own coupled times)."""
        coupled, parts, template = self.replay, self.parts, pos
        if prediction is not None:
            coupled, parts, template = prediction.coupled, prediction.parts, int(prediction.templates[pos])
        sl = slice(parts.first[pos], parts.first[pos + 1])
        off = self.offsets[template]
        per_rank = [o for o in opts if not getattr(_opt_module(o.name), "JOB_LEVEL", False)]
        job = self.info() if per_rank else None
        return self._exec.call(rank_timeline, self.sources[template], self.ranks[template], self.step_annotation,
                               per_rank, job, coupled.arrive[sl] - off, coupled.end[sl] - off)

    def merged_timeline(self) -> Timeline:
        """Every rank in one timeline at its coupled-replay times (for reports: this loads all ranks'
        events into this process). Each rank's collectives take their coupled durations, found by
        (rank, recorded start) in the all-ranks graph; clocks stay each rank's own."""
        from daydream.table import set_column
        from daydream.trace import load
        trace = load(self.path, self.step_annotation)
        graph = build_graph(trace)
        rank, start = graph.column("rank"), graph.column("obs_start")
        coll = collective_tasks(graph)
        where = {(int(r), int(s)): int(t) for t, r, s in zip(coll.tolist(), rank[coll].tolist(), start[coll].tolist())}
        dur = graph.column("dur").copy()
        for pos, s in enumerate(self.summaries):
            sl = slice(self.parts.first[pos], self.parts.first[pos + 1])
            for k, (a, e) in enumerate(zip(self.replay.arrive[sl].tolist(), self.replay.end[sl].tolist())):
                t = where.get((s.rank, int(s.coll.start[k])), -1)
                if t >= 0 and a > REACHED:
                    dur[t] = max(e - a, 0)
        set_column(graph, "tasks", "dur", dur)
        return simulate(graph)

    def collective_bars(self) -> list[dict]:
        """Per rank and in-window collective of the coupled replay: when it arrived, when its last
        peer arrived and when it ended (ms from the earliest window start, aligned clocks)."""
        t0 = int(self.replay.win_start.min())
        out = []
        for pos, s in enumerate(self.summaries):
            sl = slice(self.parts.first[pos], self.parts.first[pos + 1])
            a, e = self.replay.arrive[sl], self.replay.end[sl]
            last = self.replay.last_arrival[self.parts.glob[sl]]
            for k in np.flatnonzero(s.coll.in_window & (a > REACHED)).tolist():
                out.append({"rank": s.rank, "name": s.coll.name[k], "arrive_ms": (int(a[k]) - t0) / 1e6,
                            "start_ms": (max(int(a[k]), int(last[k])) - t0) / 1e6, "end_ms": (int(e[k]) - t0) / 1e6})
        return out

    def close(self):
        self._exec.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["Job", "JobInfo", "Prediction", "rank_pass", "rank_timeline", "executor", "AUTO_CLUSTER_RANKS"]
