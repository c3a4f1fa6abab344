"""A traced N-rank job scaled to M ranks (`--opt world-size:ranks=M`), on the reduced ranks.

Ranks: the first min(N, M) are the traced ones; each further rank is a copy of a traced rank drawn
uniformly at random (seeded), so the synthesized job's ranks follow the traced ranks' distribution of
compute per phase, step starts and arrival times at every collective (a copy keeps its template's
reduced graph, `RankSummary`, and its clock offset). With M < N the first M ranks are kept.

Collectives: every matched collective must span all N ranks (the world group); it then spans all M.
Its transfer time on each rank scales by the ring model (daydream.opts.network):
    T' = T x t_model(name, B, M, link(M)) / t_model(name, B, N, link(N))
with link(n) the device's GPU-GPU link up to 8 ranks and the node fabric above, so the efficiency
the job achieved is kept and a job that grows past one node pays the fabric. Without a recorded
message size only the bandwidth term's share changes. A participation no peer matched stays a
collective of one on each copy, at its recorded duration.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from daydream.errors import DaydreamError
from daydream.job.collectives import Matching
from daydream.job.couple import Participants
from daydream.opts import network


def _ratio(name: str, nbytes: int, n: int, m: int, device) -> float:
    """t_model(m ranks) / t_model(n ranks) for one collective (see the module docstring)."""
    if n == m:
        return 1.0
    if nbytes < 0:
        share = lambda k: network.busbw_factor(name, k) or 1.0
        return share(m) / share(n) * network.recorded_link(device, n).bw / network.recorded_link(device, m).bw
    return (network.model_s(name, nbytes, m, network.recorded_link(device, m))
            / network.model_s(name, nbytes, n, network.recorded_link(device, n)))


def synthesize(summaries: list, matching: Matching, parts: Participants, transfer: np.ndarray,
               offsets: np.ndarray, m: int, device, seed: int = 0):
    """(summaries, matching, participants, transfer, offsets, templates) of the M-rank job."""
    n = len(summaries)
    for members in matching.members:
        if 1 < len(members) < n:
            raise DaydreamError(f"--opt world-size: the job has collectives over a subgroup ({len(members)} of "
                                f"{n} ranks); only jobs whose collectives span every rank can be rescaled")
    rng = np.random.default_rng(seed)
    templates = np.concatenate([np.arange(min(n, m)), rng.integers(0, n, max(m - n, 0))]).astype(np.int64)
    new = [summaries[t] if i < n else replace(summaries[t], rank=i, coll=replace(summaries[t].coll, rank=i))
           for i, t in enumerate(templates.tolist())]
    out = Matching(notes=list(matching.notes))
    kept = set(templates.tolist())
    ratio_of = {}  # (rank position, local index) -> factor on the template's transfer time
    for g, members in enumerate(matching.members):
        if len(members) > 1:
            local = dict(members)  # template rank position -> its local index
            groups = [[(i, local[t]) for i, t in enumerate(templates.tolist())]]
            ratio = _ratio(matching.name[g], matching.nbytes[g], len(members), m, device)
        else:
            (p, k), = members
            if p not in kept:
                continue
            groups = [[(i, k)] for i, t in enumerate(templates.tolist()) if t == p]
            ratio = 1.0
        for grp in groups:
            out.members.append(grp)
            out.name.append(matching.name[g])
            out.group.append(matching.group[g])
            out.nbytes.append(matching.nbytes[g])
            ratio_of.update({pk: ratio for pk in grp})
    new_parts = Participants.of(new, out)
    new_transfer = np.zeros(len(new_parts.glob), np.int64)
    for i, t in enumerate(templates.tolist()):
        lo, n_i = new_parts.first[i], new_parts.first[i + 1] - new_parts.first[i]
        for k in range(n_i):
            new_transfer[lo + k] = int(round(transfer[parts.first[t] + k] * ratio_of.get((i, k), 1.0)))
    return new, out, new_parts, new_transfer, offsets[templates], templates


__all__ = ["synthesize"]
