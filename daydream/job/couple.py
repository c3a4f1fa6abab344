"""The coupled simulation of a job: ranks' reduced graphs joined at their collectives.

A collective's transfer starts when its last participant arrives (the latest simulated start of its
kernels, A = max_r a_r) and each participant's kernel ends at A + T_r. T_r, the transfer time, is
recovered from the trace as the recorded time after the last recorded arrival, T_r = e_r - max a_r
(clocks aligned, below): the part of a kernel's recorded duration spent waiting for peers is never
copied; waiting is recomputed from when the peers arrive in the simulation. An optimization that
changes a collective's duration (network bandwidth, another GPU) scales T_r by the same factor.
A participation no peer matched keeps its recorded duration.

Clocks: ranks on one host share a clock; across hosts they may not. Where a matched collective shows
a rank finishing before its last peer arrived (impossible on one clock, beyond CLOCK_SLACK_NS),
every participant's clock is shifted so that the collective's ends coincide (the median end), at
the first such collective, and a note says so.

The solve walks collectives in a topological order of "collective k of a rank starts after
collective j's end" (RankSummary paths); each rank's times are max-plus functions of those ends
(daydream.job.reduce), so this is the exact longest-path replay of all ranks' graphs joined through
one barrier per collective, on ranks x collectives numbers instead of events.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daydream.errors import DaydreamError
from daydream.job.collectives import Matching
from daydream.job.reduce import REACHED, RankSummary

# Kernels of one collective end within a few microseconds of each other on one clock; a rank that
# ends more than this before its last peer arrives means the clocks disagree.
CLOCK_SLACK_NS = 20_000


@dataclass
class Participants:
    """Every (rank, collective) participation as flat columns, grouped by global collective."""
    pos: np.ndarray    # rank position (index into the summaries)
    local: np.ndarray  # the collective's index on its rank
    glob: np.ndarray   # global collective
    first: np.ndarray  # (rank position) -> offset of its participations in these columns

    @classmethod
    def of(cls, summaries: list[RankSummary], matching: Matching) -> "Participants":
        first = np.concatenate([[0], np.cumsum([len(s.coll) for s in summaries])]).astype(np.int64)
        n = int(first[-1])
        glob = np.full(n, -1, np.int64)
        for g, members in enumerate(matching.members):
            for p, i in members:
                glob[first[p] + i] = g
        if (glob < 0).any():
            raise DaydreamError("internal: a collective participation was left out of the matching")
        pos = np.repeat(np.arange(len(summaries)), np.diff(first))
        local = np.arange(n) - first[pos]
        return cls(pos, local, glob, first)


def clock_offsets(summaries: list[RankSummary], matching: Matching) -> tuple[np.ndarray, list[str]]:
    """Per rank position, ns to add to its clock (see the module docstring)."""
    off = np.zeros(len(summaries), np.int64)
    order = sorted((g for g, m in enumerate(matching.members) if len(m) > 1),
                   key=lambda g: min(summaries[p].coll.start[i] for p, i in matching.members[g]))
    for g in order:
        members = matching.members[g]
        a = np.array([summaries[p].coll.start[i] for p, i in members], np.int64)
        e = np.array([summaries[p].coll.end[i] for p, i in members], np.int64)
        if (e < a.max() - CLOCK_SLACK_NS).any():
            ps = np.array([p for p, _ in members])
            off[ps] = int(np.median(e)) - e
            shift = np.abs(off).max()
            gap = (a.max() - e.min()) / 1e6
            return off, [f"rank clocks disagree (at {matching.name[g]} #{g}, a rank ended it {gap:.3f} ms "
                         f"before its last peer arrived); clocks aligned there by shifting ranks up to "
                         f"{shift / 1e6:.3f} ms so that its kernels end together"]
    return off, []


def recorded_transfer(summaries: list[RankSummary], matching: Matching, parts: Participants,
                      off: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per participation: recorded arrival and end (aligned clocks), and transfer time T."""
    start = np.concatenate([s.coll.start for s in summaries]).astype(np.int64) + off[parts.pos]
    end = np.concatenate([s.coll.end for s in summaries]).astype(np.int64) + off[parts.pos]
    last = np.full(len(matching.members), np.iinfo(np.int64).min, np.int64)
    np.maximum.at(last, parts.glob, start)
    transfer = np.maximum(end - last[parts.glob], 0)
    return start, end, transfer


@dataclass
class Coupled:
    """The coupled replay: per participation its simulated arrival and end; per rank its window."""
    arrive: np.ndarray
    end: np.ndarray
    last_arrival: np.ndarray  # per global collective
    win_start: np.ndarray     # per rank position (aligned clock)
    win_end: np.ndarray
    steps: np.ndarray
    notes: list = field(default_factory=list)

    @property
    def per_step_ms(self) -> np.ndarray:
        return (self.win_end - self.win_start) / np.maximum(self.steps, 1) / 1e6


def solve(summaries: list[RankSummary], matching: Matching, parts: Participants, transfer: np.ndarray,
          off: np.ndarray) -> Coupled:
    """Replay the job (see the module docstring); `transfer` per participation, `off` per rank."""
    n = len(parts.glob)
    G = len(matching.members)
    arrive0 = np.concatenate([s.arrive0 for s in summaries]).astype(np.int64)
    present = arrive0 > REACHED
    arrive0 = np.where(present, arrive0 + off[parts.pos], arrive0)
    # Path edges between participations, and between their global collectives.
    psrc = np.concatenate([parts.first[i] + s.path_src for i, s in enumerate(summaries)]).astype(np.int64)
    pdst = np.concatenate([parts.first[i] + s.path_dst for i, s in enumerate(summaries)]).astype(np.int64)
    plen = np.concatenate([s.path_len for s in summaries]).astype(np.int64)
    gsrc, gdst = parts.glob[psrc], parts.glob[pdst]
    if (gsrc == gdst).any():
        raise DaydreamError("the matched collectives depend on themselves across ranks (ranks disagree on "
                            "their order); the job cannot be coupled")
    order = _topological(G, gsrc, gdst)
    by_g = np.argsort(parts.glob, kind="stable")
    g_ptr = np.searchsorted(parts.glob[by_g], np.arange(G + 1))
    by_dst = np.argsort(gdst, kind="stable")
    e_ptr = np.searchsorted(gdst[by_dst], np.arange(G + 1))
    arrive = arrive0.copy()
    end = np.zeros(n, np.int64)
    last = np.zeros(G, np.int64)
    for g in order.tolist():
        mine = by_g[g_ptr[g]:g_ptr[g + 1]]
        into = by_dst[e_ptr[g]:e_ptr[g + 1]]
        if len(into):
            np.maximum.at(arrive, pdst[into], end[psrc[into]] + plen[into])
        a = arrive[mine]
        live = a > REACHED
        if not live.any():  # removed by an optimization on every rank
            end[mine] = a
            continue
        last[g] = a[live].max()
        end[mine] = np.where(live, last[g] + transfer[mine], a)
    win_start = np.array([s.win_start for s in summaries], np.int64) + off
    win_end = np.array([s.win_end0 for s in summaries], np.int64) + off
    for i, s in enumerate(summaries):
        if len(s.win_src):
            win_end[i] = max(win_end[i], int((end[parts.first[i] + s.win_src] + s.win_len).max()))
        inw = parts.first[i] + np.flatnonzero(s.coll.in_window & (s.arrive0 > REACHED))
        if len(inw):
            win_end[i] = max(win_end[i], int(end[inw].max()))
    steps = np.array([s.steps for s in summaries], np.int64)
    return Coupled(arrive, end, last, win_start, win_end, steps)


def _topological(G: int, gsrc: np.ndarray, gdst: np.ndarray) -> np.ndarray:
    """Kahn's order of the global collectives; a cycle means the ranks disagree on the order."""
    pairs = np.unique(np.stack([gsrc, gdst], axis=1), axis=0) if len(gsrc) else np.zeros((0, 2), np.int64)
    indeg = np.bincount(pairs[:, 1], minlength=G)
    by_src = np.argsort(pairs[:, 0], kind="stable")
    ptr = np.searchsorted(pairs[by_src, 0], np.arange(G + 1))
    succ = pairs[by_src, 1].tolist()
    ptr = ptr.tolist()
    indeg = indeg.tolist()
    queue = [g for g in range(G) if indeg[g] == 0]
    out = []
    while queue:
        g = queue.pop()
        out.append(g)
        for h in succ[ptr[g]:ptr[g + 1]]:
            indeg[h] -= 1
            if indeg[h] == 0:
                queue.append(h)
    if len(out) != G:
        raise DaydreamError(f"{G - len(out)} matched collectives wait on each other in a cycle (the ranks "
                            "issue them in different orders); the job cannot be coupled as matched")
    return np.asarray(out, np.int64)


__all__ = ["Participants", "Coupled", "clock_offsets", "recorded_transfer", "solve", "CLOCK_SLACK_NS"]
