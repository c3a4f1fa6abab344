"""One rank reduced to what the coupled simulation needs: its collectives and the compute between them.

Replaying a graph is a longest-path (max-plus) computation, so with the collectives' end times
taken as inputs every other time of a rank is a max of (constant) and (a collective's end + a
constant path length). A rank therefore reduces exactly to:
  * `arrive0[k]`: when collective k would start with no collective holding anything back;
  * `path` (j, k, length): collective k starts no earlier than collective j's end + length, for every
    j from which the graph has a path to k's start that does not pass through another collective's
    end (paths through one are implied by the two hops; dominated hops are pruned);
  * the same for the end of the analysis window (`win_end0`, `win_path`), and its start.
These come from K + 1 replays of the rank's graph (daydream.sim's C walk) in which each collective
end is cut from its start and replaced by a source node: one replay with all sources at -inf gives
the constants, one per collective with only its source at 0 gives the path lengths from it. The
coupled simulation (daydream.job.couple) then works on ranks x collectives, never on events.
A `RankSummary` also carries the recorded figures the job analysis needs, so a Dask worker can
hand back this and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daydream import _core
from daydream.graph import TaskGraph
from daydream.graph.phases import COMMUNICATION
from daydream.graph.schema import GPU_TASK_TYPES, NO_RELEASE, T_COLLECTIVE, T_CPU, T_RUNTIME
from daydream.job.collectives import RankCollectives, collective_tasks
from daydream.table import column

# A start no path reaches: far below any real time, yet far enough above NO_RELEASE (which means
# "time zero" to the replay) that negative edge delays never bring it back down to it.
NEG = NO_RELEASE + 2**52
REACHED = NO_RELEASE // 2  # times above this were reached from a real source


@dataclass
class RankSummary:
    """A rank as the coupled simulation and the job analysis see it (see the module docstring)."""
    rank: int
    source: str
    device: str
    steps: int
    measured_ms: float
    coll: RankCollectives
    arrive0: np.ndarray        # (K,) ns
    path_src: np.ndarray       # (P,) local collective index j
    path_dst: np.ndarray       # (P,) local collective index k
    path_len: np.ndarray       # (P,) ns
    win_start: int             # simulated window start (ns)
    win_end0: int              # window end with no collective holding it (ns)
    win_src: np.ndarray        # collectives the window end depends on
    win_len: np.ndarray        # ... and the path length from their end
    coll_scale: np.ndarray     # (K,) an optimization's factor on each collective's transfer time
    coll_dur: np.ndarray       # (K,) the collective's duration in the simulated graph (ns)
    compute_ms: float          # busy time of non-collective GPU work (CPU work on CPU traces) per step
    cpu_ms: float              # busy time of the busiest CPU thread per step
    phase_ms: dict             # the same per phase
    step_start: int            # recorded window start (ns, the rank's clock)
    step_ms: np.ndarray        # recorded length of each step (its ProfilerStep span; the window if none)
    overlap_ptr: np.ndarray    # (K+1,) offsets into overlap_start/end, per collective
    overlap_start: np.ndarray  # compute intervals inside each collective's recorded span
    overlap_end: np.ndarray
    notes: list = field(default_factory=list)


def _union(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted intervals covering the union of [starts, ends)."""
    if len(starts) == 0:
        return starts.astype(np.int64), ends.astype(np.int64)
    o = np.argsort(starts, kind="stable")
    s, e = starts[o], ends[o]
    reach = np.maximum.accumulate(e)
    new = np.concatenate([[True], s[1:] > reach[:-1]])
    first = np.flatnonzero(new)
    return s[first], np.maximum.reduceat(e, first)


def _max_plus(graph: TaskGraph, coll_tasks: np.ndarray, in_window: np.ndarray):
    """(arrive0, path (j, k, len), win_start, win_end0, win path (j, len)); see the module docstring."""
    t, e = graph.column, lambda k: column(graph, "edges", k)
    n, K = graph.n_tasks, len(coll_tasks)
    src_node = 2 * e("src") + np.where(e("from_start"), 0, 1)
    dst_node = 2 * e("dst") + e("to_end").astype(np.int64)
    is_coll_end = np.zeros(2 * (n + K), bool)
    is_coll_end[2 * coll_tasks + 1] = True
    keep = ~is_coll_end[dst_node]  # a collective's end is an input: nothing else decides it
    src_node, dst_node, delay = src_node[keep], dst_node[keep], e("delay")[keep]
    source_of = np.full(2 * n, -1, np.int64)
    source_of[2 * coll_tasks + 1] = 2 * (n + np.arange(K)) + 1  # the k-th source task's end
    moved = source_of[src_node] >= 0
    src_node = np.where(moved, source_of[src_node], src_node)
    order = np.argsort(src_node, kind="stable")
    nodes = 2 * (n + K)
    ptr = np.searchsorted(src_node[order], np.arange(nodes + 1)).astype(np.int64)
    dst_sorted = np.ascontiguousarray(dst_node[order], np.int64)
    delay_sorted = np.ascontiguousarray(delay[order], np.int64)
    indeg0 = np.bincount(dst_node, minlength=nodes).astype(np.int64)
    indeg0[1::2] += 1
    dur = np.concatenate([t("dur"), np.zeros(K, np.int64)]).astype(np.int64)
    release = np.concatenate([t("release"), np.full(K, NEG, np.int64)])
    has_release = release != NO_RELEASE
    not_coll = np.ones(n, bool)
    not_coll[coll_tasks] = False
    window = np.flatnonzero(in_window & not_coll)
    window_all = np.flatnonzero(in_window)
    pred = np.empty(nodes, np.int64)
    time = np.empty(nodes, np.int64)

    # One topological order of the half-node graph (as daydream.graph.half_nodes), for every run.
    topo = np.empty(nodes, np.int64)
    if _core.order(ptr, dst_sorted, indeg0.copy(), topo) != nodes:
        from daydream.errors import DaydreamError
        raise DaydreamError(f"rank {int(t('rank')[0]) if n else '?'}: the task graph has a cycle")

    def run(starts: np.ndarray) -> np.ndarray:
        best = np.full(nodes, NO_RELEASE, np.int64)
        best[0::2] = starts
        _core.replay(ptr, dst_sorted, delay_sorted, topo, dur, best, pred, time, NO_RELEASE)
        return time

    base = run(release).copy()
    arrive0 = base[2 * coll_tasks]
    s = base[2 * window_all]
    win_start = int(s[s > REACHED].min()) if (s > REACHED).any() else 0
    w = base[2 * window + 1]
    win_end0 = int(w[w > REACHED].max()) if (w > REACHED).any() else win_start
    pj, pk, pl, wj, wl = [], [], [], [], []
    off = np.where(has_release, NEG, NO_RELEASE)
    for j in range(K):
        starts = off.copy()
        starts[n + j] = 0
        tm = run(starts)
        a = tm[2 * coll_tasks]
        reach = np.flatnonzero(a > REACHED)
        reach = reach[reach != j]
        pj.append(np.full(len(reach), j, np.int64)); pk.append(reach); pl.append(a[reach])
        we = tm[2 * window + 1]
        if (we > REACHED).any():
            wj.append(j); wl.append(int(we[we > REACHED].max()))
    cat = lambda x: np.concatenate(x).astype(np.int64) if x else np.zeros(0, np.int64)
    pj, pk, pl = cat(pj), cat(pk), cat(pl)
    pj, pk, pl = _prune(K, pj, pk, pl)
    return arrive0, pj, pk, pl, win_start, win_end0, np.asarray(wj, np.int64), np.asarray(wl, np.int64)


def _prune(K: int, pj, pk, pl):
    """Drop path j -> k where some j -> i -> k is at least as long (i's end >= j's end + len(j, i),
    whatever the transfer times, so the two hops already imply it)."""
    if len(pj) == 0 or K > 2000:  # the dense check is K^3; above that keep every path
        return pj, pk, pl
    L = np.full((K, K), NEG, np.int64)
    L[pj, pk] = pl
    reach = L > REACHED
    keep = np.ones(len(pj), bool)
    for x, (j, k, ln) in enumerate(zip(pj.tolist(), pk.tolist(), pl.tolist())):
        via = reach[j] & reach[:, k]
        via[j] = via[k] = False
        if via.any() and (L[j, via] + L[via, k]).max() >= ln:
            keep[x] = False
    return pj[keep], pk[keep], pl[keep]


def summarize(graph: TaskGraph, coll: RankCollectives, recorded: TaskGraph | None = None) -> RankSummary:
    """Reduce a one-rank graph (possibly transformed by optimizations) to its `RankSummary`.

    `coll` lists the collectives as recorded; `recorded` is the untransformed graph (None: `graph`
    is it). A collective's transfer time scales by its duration in `graph` over its recorded one."""
    trace = graph.trace
    event = graph.column("event")
    found = collective_tasks(graph)
    pos = {int(ev): i for i, ev in zip(found.tolist(), event[found].tolist())}
    task = np.asarray([pos.get(int(ev), -1) for ev in coll.event.tolist()], np.int64)
    notes = []
    if (task < 0).any():
        notes.append(f"rank {coll.rank}: {int((task < 0).sum())} recorded collectives were removed by an "
                     "optimization; their peers no longer wait for them")
    here = task >= 0
    in_window = graph.column("in_window")
    ctasks = task[here]
    arrive0 = np.full(len(coll), NEG, np.int64)
    a0, pj, pk, pl, ws, we, wj, wl = _max_plus(graph, ctasks, in_window)
    arrive0[here] = a0
    local = np.flatnonzero(here)  # position among graph collectives -> local index
    dur = np.zeros(len(coll), np.int64)
    dur[here] = graph.column("dur")[ctasks]
    rec = recorded if recorded is not None else graph
    rec_dur = coll.end - coll.start
    scale = np.where(rec_dur > 0, dur / np.maximum(rec_dur, 1), 1.0)
    if recorded is None:
        scale = np.ones(len(coll))
    scale[~here] = 0.0
    # Recorded figures for the job analysis.
    w = trace.window
    rkind, rstart, rend = rec.column("kind"), rec.column("obs_start"), rec.column("obs_end")
    rin = rec.column("in_window").copy()
    rin[collective_tasks(rec)] = False  # compute is what a rank does besides its collectives,
    rin &= rec.column("phase") != COMMUNICATION  # and besides issuing and waiting for them
    gpu = trace.has_gpu
    work = rin & ((np.isin(rkind, GPU_TASK_TYPES) & (rkind != T_COLLECTIVE)) if gpu
                  else np.isin(rkind, (T_CPU, T_RUNTIME)))
    steps = max(w.steps, 1)
    res = rec.column("resource")
    cpu_work = rin & np.isin(rkind, (T_CPU, T_RUNTIME))  # not idle, not waiting in a sync call
    own = rec.column("dur")  # a segment's own share: waiting recomputed from edges is not work
    per_thread = np.bincount(res[cpu_work], weights=own[cpu_work])
    cpu = int(per_thread.max()) if len(per_thread) else 0
    us, ue = _union(rstart[work], rend[work])
    compute = int((ue - us).sum()) if gpu else cpu
    from daydream.graph import PHASES
    phase = rec.column("phase")
    phase_ms = {}
    for p, name in enumerate(PHASES):
        sel = work & (phase == p)
        if sel.any():
            if gpu:
                a, b = _union(rstart[sel], rend[sel])
                busy = float((b - a).sum())
            else:
                busy = float(np.bincount(res[sel], weights=own[sel]).max())
            phase_ms[name] = round(busy / steps / 1e6, 6)
    # Compute intervals inside each collective's recorded span (exposed communication later).
    ptr, os_, oe = [0], [], []
    for s, e in zip(coll.start.tolist(), coll.end.tolist()):
        lo = np.searchsorted(ue, s, side="right")
        hi = np.searchsorted(us, e, side="left")
        os_.append(np.clip(us[lo:hi], s, e)); oe.append(np.clip(ue[lo:hi], s, e))
        ptr.append(ptr[-1] + max(hi - lo, 0))
    cat = lambda x: np.concatenate(x).astype(np.int64) if x else np.zeros(0, np.int64)
    return RankSummary(
        rank=coll.rank, source=trace.path, device=trace.device, steps=w.steps, measured_ms=w.per_step_ms,
        coll=coll, arrive0=arrive0, path_src=local[pj], path_dst=local[pk], path_len=pl,
        win_start=ws, win_end0=we, win_src=local[wj], win_len=wl, coll_scale=scale, coll_dur=dur,
        compute_ms=compute / steps / 1e6, cpu_ms=cpu / steps / 1e6, phase_ms=phase_ms, step_start=w.start,
        step_ms=(np.diff(w.step_spans, axis=1)[:, 0] if w.steps else np.array([w.end - w.start])) / 1e6,
        overlap_ptr=np.asarray(ptr, np.int64), overlap_start=cat(os_), overlap_end=cat(oe), notes=notes)


__all__ = ["RankSummary", "summarize", "NEG", "REACHED"]
