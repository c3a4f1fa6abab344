"""What a job's coupled replay says, rank by rank and collective by collective.

Per rank (per step, in the analysis window, from the coupled replay, which reproduces the trace):
  * `compute_ms`: busy time of its non-collective GPU work (CPU traces: its busiest thread's work);
  * `wait_ms`: time its collectives spent waiting for the last peer, sum of (A - a) over its
    collectives (a: its arrival, A: the last participant's);
  * `exposed_comm_ms`: time its collectives transferred (from max(a, A) to the kernel's end) while
    no compute of its own ran.
Stragglers: at every collective the last participant to arrive is charged with the time the group
waited for it alone (A minus the second-to-last arrival). A rank charged with STRAGGLER_PCT percent
of the job's step time or more is a straggler; why is the larger of how late it started its step
against the median rank and how much longer its slowest phase's compute took than the median
rank's.
Collectives, grouped by (name, group): count, bytes, transfer time (the median participant's
recorded time after the last arrival) and bus bandwidth by the nccl-tests formula
busbw = bytes / time * factor (daydream.opts.network.busbw_factor), against the peak of the link
the collective crossed (daydream.opts.network.recorded_link).
"""
from __future__ import annotations

import numpy as np

from daydream import hardware
from daydream.opts import network
from daydream.job.reduce import REACHED

STRAGGLER_PCT = 5.0


def _overlap(s, rank_off: int, k: int, lo: np.ndarray, hi: np.ndarray) -> int:
    """Compute time of summary `s` inside [lo, hi] (aligned clock) of its collective k."""
    a, b = s.overlap_ptr[k], s.overlap_ptr[k + 1]
    if a == b:
        return 0
    us, ue = s.overlap_start[a:b] + rank_off, s.overlap_end[a:b] + rank_off
    return int(np.maximum(np.minimum(ue, hi) - np.maximum(us, lo), 0).sum())


def per_rank(job, coupled=None, summaries=None) -> list[dict]:
    """The contract's `per_rank` rows of `analyze --json` (see the module docstring)."""
    coupled = coupled or job.replay
    summaries = summaries or job.summaries
    parts = job.parts
    replay = coupled.per_step_ms
    rows = []
    for i, s in enumerate(summaries):
        sl = slice(parts.first[i], parts.first[i + 1])
        a, e = coupled.arrive[sl], coupled.end[sl]
        last = coupled.last_arrival[parts.glob[sl]]
        live = (a > REACHED) & s.coll.in_window
        wait = np.where(live, np.maximum(last - a, 0), 0)
        exposed = 0
        for k in np.flatnonzero(live).tolist():
            lo = max(int(a[k]), int(last[k]))
            exposed += max(int(e[k]) - lo, 0) - _overlap(s, int(job.offsets[i]), k, lo, int(e[k]))
        steps = max(s.steps, 1)
        rows.append({"rank": s.rank, "measured_ms": round(s.measured_ms, 6), "replay_ms": round(float(replay[i]), 6),
                     "compute_ms": round(s.compute_ms, 6), "exposed_comm_ms": round(exposed / steps / 1e6, 6),
                     "wait_ms": round(float(wait.sum()) / steps / 1e6, 6),
                     "step_ms": [round(float(x), 6) for x in s.step_ms]})
    return rows


def stragglers(job, coupled=None) -> list[dict]:
    """Ranks that held their peers up, most first: {rank, held_up_ms, why}."""
    coupled = coupled or job.replay
    parts = job.parts
    blame = np.zeros(len(job.summaries))
    in_window = np.concatenate([s.coll.in_window for s in job.summaries])
    for g, members in enumerate(job.matching.members):
        if len(members) < 2:
            continue
        idx = np.array([parts.first[p] + i for p, i in members])
        a = coupled.arrive[idx]
        if not in_window[idx].any() or (a <= REACHED).any():
            continue
        o = np.argsort(a)
        blame[members[o[-1]][0]] += (a[o[-1]] - a[o[-2]]) / max(job.summaries[members[o[-1]][0]].steps, 1) / 1e6
    step = float(coupled.per_step_ms.max())
    starts = np.array([s.step_start for s in job.summaries]) + job.offsets
    med_start = float(np.median(starts))
    phases = sorted({p for s in job.summaries for p in s.phase_ms})
    med_phase = {p: float(np.median([s.phase_ms.get(p, 0.0) for s in job.summaries])) for p in phases}
    out = []
    for i in np.argsort(-blame).tolist():
        if blame[i] < STRAGGLER_PCT / 100 * step or blame[i] <= 0:
            break
        s = job.summaries[i]
        late = (starts[i] - med_start) / 1e6
        excess = {p: s.phase_ms.get(p, 0.0) - med_phase[p] for p in phases}
        worst = max(excess, key=excess.get) if excess else None
        if worst is not None and excess[worst] > max(late, 0):
            why = (f"{worst} compute {s.phase_ms.get(worst, 0.0):.3f} ms/step, {excess[worst]:.3f} ms more than "
                   "the median rank")
        elif late > 0:
            why = f"started its step {late:.3f} ms after the median rank"
        else:
            why = "arrived last at collectives without a slower phase or a late start in the window"
        out.append({"rank": s.rank, "held_up_ms": round(float(blame[i]), 6), "why": why})
    return out


def collectives(job) -> list[dict]:
    """The contract's `collectives` rows: per (name, group), in-window collectives of the job."""
    parts = job.parts
    m = job.matching
    device = device_of(job)
    in_window = np.concatenate([s.coll.in_window for s in job.summaries])
    rows: dict = {}
    for g, members in enumerate(m.members):
        idx = np.array([parts.first[p] + i for p, i in members])
        if not in_window[idx].any():
            continue
        steps = max(job.summaries[members[0][0]].steps, 1)
        n = len(members)
        t = float(np.median(job.transfer[idx]))
        r = rows.setdefault((m.name[g], m.group[g]), {"name": m.name[g], "group": m.group[g], "ranks": n,
                                                       "count": 0, "bytes": 0, "total_ms": 0.0,
                                                       "_bus": 0.0, "_t": 0.0, "_steps": steps})
        r["count"] += 1
        r["ranks"] = max(r["ranks"], n)
        if m.nbytes[g] >= 0:
            r["bytes"] += m.nbytes[g]
            if n > 1 and t > 0:
                r["_bus"] += m.nbytes[g] * network.busbw_factor(m.name[g], n)
                r["_t"] += t
        r["total_ms"] += t / 1e6
    out = []
    for r in rows.values():
        steps = r.pop("_steps")
        bus, t = r.pop("_bus"), r.pop("_t")
        r["count_per_step"] = round(r["count"] / steps, 3)
        r["total_ms"] = round(r["total_ms"], 6)
        r["busbw_gbps"] = round(bus / (t / 1e9) / 1e9, 3) if t > 0 else None
        if device is not None and r["ranks"] > 1:
            link = network.recorded_link(device, r["ranks"])
            r["link"] = link.name
            r["link_peak_gbps"] = round(link.bw / 1e9, 3)
            r["busbw_pct_of_peak"] = round(100 * r["busbw_gbps"] / r["link_peak_gbps"], 3) \
                if r["busbw_gbps"] is not None else None
        out.append(r)
    return sorted(out, key=lambda r: -r["total_ms"])


def device_of(job):
    """The job's device from the hardware table (its first rank's), or None if the table lacks it."""
    name = job.summaries[0].device
    if name == "cpu":
        return hardware.cpu_device()
    try:
        return hardware.from_device_properties([{"name": name}])
    except Exception:  # an unknown device: no peak to compare with
        return None


__all__ = ["per_rank", "stragglers", "collectives", "device_of", "STRAGGLER_PCT"]
