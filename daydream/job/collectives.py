"""A rank's collectives, and matching them to their peers on the other ranks.

Each NCCL/RCCL kernel (a `collective` task of the graph) is one participation in a collective. What
it is comes from, in this order:
  1. the kernel's own args (Kineto since 2023: `Collective name`, `Process Group Name`,
     `Process Group Ranks`, `In/Out msg nelems`, `dtype`);
  2. the CPU-side `record_param_comms` (same keys) or `nccl:NAME` annotation around its launch
     (2021-2023 traces: the name, and `Input Dims`/`Input type` for the message size);
  3. the kernel name (`ncclKernel_AllReduce_...` -> all_reduce).
On CPU-only (gloo) traces the collectives are the `gloo:NAME` spans on gloo's work threads
(`collective_tasks`): their start is when the work thread took the collective up, their end when it
completed, waiting for peers included, as for a kernel.
The group is the process group's name where recorded, else `world` (every rank of the job).

Matching (`match`) pairs the n-th collective of a (group, name) on each rank with the n-th on its
peers. Where ranks hold different counts, each rank's list is aligned to the longest by message
size (a collective missing in the middle does not shift the ones after it); a collective is coupled
among the ranks that have it, one no peer shares is simulated on its own rank, and a note says so.
Point-to-point sends and receives pair in order
within a two-rank group; without a recorded peer they are not coupled (a note says how many).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from daydream.graph import TaskGraph
from daydream.graph.schema import NO_RELEASE, T_COLLECTIVE, T_CPU, T_IDLE
from daydream.trace.events import ANNOTATION, CPU_OP, RUNTIME

# Bytes per element of the dtype names Kineto writes (`dtype` args and aten `Input type`).
DTYPE_BYTES = {"float": 4, "double": 8, "half": 2, "bfloat16": 2, "c10::half": 2, "c10::bfloat16": 2,
               "long int": 8, "long": 8, "int": 4, "short": 2, "char": 1, "signed char": 1,
               "unsigned char": 1, "byte": 1, "bool": 1, "float8_e4m3fn": 1, "float8_e5m2": 1,
               "complexfloat": 8, "complexdouble": 16}

_CANON = [  # (pattern over a collective or kernel name, canonical name); first match wins
    (re.compile(r"reduce_?scatter|ReduceScatter", re.I), "reduce_scatter"),
    (re.compile(r"all_?gather|AllGather", re.I), "all_gather"),
    (re.compile(r"all_?reduce|AllReduce", re.I), "all_reduce"),
    (re.compile(r"all_?to_?all", re.I), "all_to_all"),
    (re.compile(r"broadcast", re.I), "broadcast"),
    (re.compile(r"^(nccl:)?(i?recv)$|^recv", re.I), "recv"),
    (re.compile(r"^(nccl:)?(i?send)$|^send$", re.I), "send"),
    (re.compile(r"SendRecv|send_?recv", re.I), "send_recv"),
    (re.compile(r"barrier", re.I), "barrier"),
    (re.compile(r"Reduce", re.I), "reduce"),
]
P2P = ("send", "recv")
_COMM_CPU = re.compile(r"^(nccl|rccl|gloo):|^record_param_comms$")


def canonical(name: str) -> str:
    """all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, reduce, send, recv,
    send_recv, barrier; else the name itself."""
    for rx, canon in _CANON:
        if rx.search(name):
            return canon
    return name


def _nbytes(args: dict, name: str) -> int:
    """Message size in bytes from collective args or aten Input Dims/type; -1 where unknown."""
    dtype = str(args.get("dtype", "")).lower()
    nin, nout = args.get("In msg nelems"), args.get("Out msg nelems")
    if isinstance(nin, int) and dtype in DTYPE_BYTES:
        n = max(nin, nout) if isinstance(nout, int) and name in ("all_gather", "reduce_scatter") else nin
        return int(n) * DTYPE_BYTES[dtype]
    dims, types = args.get("Input Dims"), args.get("Input type")
    if isinstance(dims, list) and isinstance(types, list) and dims and isinstance(dims[0], list) and dims[0]:
        size = DTYPE_BYTES.get(str(types[0]).lower())
        if size and all(isinstance(d, int) for d in dims[0]):
            return int(np.prod(dims[0])) * size
    return -1


@dataclass
class RankCollectives:
    """One rank's collectives in order of their recorded start (columns, one entry per kernel)."""
    rank: int
    task: np.ndarray       # task index in the rank's graph
    event: np.ndarray      # events row of the kernel (stable under optimizations that copy graphs)
    name: list             # canonical collective name
    group: list            # process group name ('world' where not recorded)
    group_size: np.ndarray  # ranks in the group (0: not recorded)
    nbytes: np.ndarray     # message size (-1: not recorded)
    start: np.ndarray      # recorded start (ns, this rank's clock): the rank's arrival
    end: np.ndarray        # recorded end (ns)
    in_window: np.ndarray  # launched inside the analysis window

    def __len__(self) -> int:
        return len(self.task)


_CPU_COLLECTIVE = re.compile(r"^gloo:")


def collective_tasks(graph: TaskGraph) -> np.ndarray:
    """Task indices of a graph's collectives: its NCCL/RCCL kernels, or on a trace without them the
    `gloo:NAME` spans of gloo's work threads (one CPU task each; a span cut into several tasks by
    nested events is left out)."""
    kind = graph.column("kind")
    gpu = np.flatnonzero(kind == T_COLLECTIVE)
    if len(gpu):
        return gpu
    event = graph.column("event")
    names = graph.trace.names
    is_gloo = np.fromiter((bool(_CPU_COLLECTIVE.search(n)) for n in names), bool, len(names))
    ev_name = graph.trace.column("name")
    cand = np.flatnonzero((kind == T_CPU) & (event >= 0))
    cand = cand[is_gloo[ev_name[event[cand]]]]
    ev, first, count = np.unique(event[cand], return_index=True, return_counts=True)
    return np.sort(cand[first[count == 1]])


# A thread that waited for a gloo collective resumes within this of the collective's end.
CPU_WAIT_SLACK_NS = 500_000
# ... or, blocked in a gap of an annotation (no op runs there: only Python between ops, or
# waiting), up to this much after it: on a loaded machine the thread waits for a core. Seen in
# the gloo runs of benchmarks/straggler_validation.py: 2.2-3.5 ms on the shared 2-core machine;
# missed, that waiting counted as the rank's CPU work (docs/validation.md).
ANNOTATION_WAIT_SLACK_NS = 5_000_000


def wire_cpu_waits(graph: TaskGraph) -> int:
    """Make the CPU segments that waited for a gloo collective wait for it in the graph too.

    gloo runs a collective on its own work thread; the thread that needs the result blocks inside a
    plain CPU segment (often a gap of the step annotation) that ends when the collective ends. For
    each `gloo:` span, the longest CPU segment on another thread of the rank that overlaps it and
    ends within CPU_WAIT_SLACK_NS of its end (failing that, the longest gap of an annotation that
    ends up to ANNOTATION_WAIT_SLACK_NS after it) gets an end edge from it (delay: the recorded gap) and
    keeps only its share before the collective began, so its waiting is recomputed like a sync
    call's. A span the recording left without a predecessor (the first on its thread) starts after
    the latest task of the rank's other threads that ended before it (the enqueuing op). Returns how
    many waiting segments were wired; GPU collectives need none (sync calls are)."""
    coll = collective_tasks(graph)
    if not len(coll) or (graph.column("kind")[coll] == T_COLLECTIVE).any():
        return 0
    kind, res = graph.column("kind"), graph.column("resource")
    start, end = graph.column("obs_start"), graph.column("obs_end")
    cpu = np.setdiff1d(np.flatnonzero(kind == T_CPU), coll)
    event = graph.column("event")[cpu]
    ev_kind = graph.trace.column("kind")
    annotation = cpu[(event >= 0) & (ev_kind[np.maximum(event, 0)] == ANNOTATION)]
    src, dst, delay, own = [], [], [], []
    taken, wired = set(), set()
    # Tight matches first, so that a wide one never takes a segment a tight one would have.
    for pool, late, early in ((cpu, CPU_WAIT_SLACK_NS, CPU_WAIT_SLACK_NS), (annotation, ANNOTATION_WAIT_SLACK_NS, 0)):
        for c in coll.tolist():
            if c in wired:
                continue
            near = pool[(res[pool] != res[c]) & (start[pool] < end[c]) & (end[pool] - end[c] <= late)
                        & (end[c] - end[pool] <= early) & (end[pool] > start[c])]
            near = [t for t in near.tolist() if t not in taken]
            if not near:
                continue
            t = max(near, key=lambda t: end[t] - start[t])
            taken.add(t)
            wired.add(c)
            src.append(c); dst.append(t); delay.append(int(end[t] - end[c]))
            own.append(int(min(max(start[c] - start[t], 0), end[t] - start[t])))
    # A span released by the clock (the first on its thread in the recording) was handed over by the
    # rank's other threads: it starts after the latest of their tasks that ended before it did.
    release = graph.column("release")
    others = np.setdiff1d(np.flatnonzero(kind != T_IDLE), coll)
    others = others[np.argsort(end[others], kind="stable")]
    h_src, h_dst, h_delay = [], [], []
    for c in coll[release[coll] != NO_RELEASE].tolist():
        cand = others[res[others] != res[c]]
        i = int(np.searchsorted(end[cand], start[c], side="right")) - 1
        if i >= 0:
            h_src.append(int(cand[i])); h_dst.append(c); h_delay.append(int(start[c] - end[cand[i]]))
    # The graph builder may have taken a gloo span for a thread waiting on the rank's other threads;
    # its end is its peers' business: drop such end edges and give it back its recorded length.
    edges = graph.edges
    into = edges["to_end"].to_numpy() & np.isin(edges["dst"].to_numpy(), coll)
    if into.any():
        graph.edges = edges[~into].reset_index(drop=True)
    from daydream.transform import primitives as P
    P.set_duration(graph, coll, end[coll] - start[coll])
    if h_src:
        P.add_edges(graph, h_src, h_dst, delay=np.asarray(h_delay, np.int64), kind="handoff")
    if src:
        P.add_edges(graph, src, dst, delay=np.asarray(delay, np.int64), kind="handoff", to_end=True)
        P.set_duration(graph, np.asarray(dst, np.int64), np.asarray(own, np.int64))
    return len(src)


def collectives_of(graph: TaskGraph) -> RankCollectives:
    """The collectives of a one-rank graph (see the module docstring for where each field comes from)."""
    trace = graph.trace
    tasks = collective_tasks(graph)
    tasks = tasks[np.argsort(graph.column("obs_start")[tasks], kind="stable")]
    rank = int(graph.column("rank")[tasks[0]]) if len(tasks) else int(trace.ranks[0])
    ev = trace.column
    names = trace.names
    ev_kind, ev_name, ev_ts = ev("kind"), ev("name"), ev("ts")
    ev_end = ev_ts + ev("dur")
    ev_tid = ev("tid")
    is_comm_name = np.fromiter((bool(_COMM_CPU.search(n)) for n in names), bool, len(names))
    cpu_comm = np.flatnonzero(np.isin(ev_kind, (CPU_OP, ANNOTATION)) & is_comm_name[ev_name])
    launch = graph.column("launch")[tasks]
    event = graph.column("event")
    out_name, out_group, size, nbytes = [], [], [], []
    for t, lt in zip(tasks.tolist(), launch.tolist()):
        kargs = trace.args_of(int(event[t]))
        kname = names[ev_name[event[t]]]
        cargs, annot = {}, (int(event[t]) if _CPU_COLLECTIVE.search(kname) else None)
        if lt >= 0 and event[lt] >= 0 and ev_kind[event[lt]] == RUNTIME:
            le = int(event[lt])
            around = cpu_comm[(ev_ts[cpu_comm] <= ev_ts[le]) & (ev_end[cpu_comm] >= ev_end[le])
                              & (ev_tid[cpu_comm] == ev_tid[le])]
            for row in around[np.argsort(-ev_ts[around], kind="stable")].tolist():  # innermost first
                n = names[ev_name[row]]
                if n == "record_param_comms":
                    cargs = cargs or trace.args_of(row)
                elif annot is None:
                    annot = row
        given = kargs.get("Collective name") or cargs.get("Collective name")
        name = canonical(str(given)) if given else (
            canonical(names[ev_name[annot]].split(":", 1)[1]) if annot is not None else canonical(kname))
        group = kargs.get("Process Group Name", cargs.get("Process Group Name"))
        gsize = kargs.get("Group size", cargs.get("Group size"))
        b = _nbytes(kargs, name)
        if b < 0:
            b = _nbytes(cargs, name)
        if b < 0 and annot is not None:
            b = _nbytes(trace.args_of(annot), name)
        out_name.append(name)
        out_group.append(str(group) if group is not None else "world")
        size.append(int(gsize) if isinstance(gsize, int) else 0)
        nbytes.append(b)
    return RankCollectives(rank, tasks, event[tasks].copy(), out_name, out_group, np.asarray(size, np.int64),
                           np.asarray(nbytes, np.int64), graph.column("obs_start")[tasks].copy(),
                           graph.column("obs_end")[tasks].copy(), graph.column("in_window")[tasks].copy())


@dataclass
class Matching:
    """Which participations form one collective.

    `members[g]` lists (rank position, local index) of global collective g; a participation no peer
    matched is a global collective of one. `name`, `group`, `nbytes` describe each g."""
    members: list = field(default_factory=list)
    name: list = field(default_factory=list)
    group: list = field(default_factory=list)
    nbytes: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def coupled(self) -> int:
        return sum(len(m) > 1 for m in self.members)


def _align(ref: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """For each entry of `seq`, its position in `ref` (message sizes; -1: unaligned), keeping order.

    Greedy: an entry pairs with the next reference entry of the same size; sizes not recorded (-1)
    pair in order."""
    out = np.full(len(seq), -1, np.int64)
    j = 0
    for i, b in enumerate(seq.tolist()):
        k = j
        while k < len(ref) and b >= 0 and ref[k] >= 0 and ref[k] != b:
            k += 1
        if k >= len(ref):
            continue
        out[i] = k
        j = k + 1
    return out


def match(ranks: list[RankCollectives]) -> Matching:
    """Pair every rank's collectives with their peers' (see the module docstring)."""
    m = Matching()
    keyed: dict = {}  # (group, name) -> {rank position: local indices in order}
    for pos, rc in enumerate(ranks):
        for i in range(len(rc)):
            keyed.setdefault((rc.group[i], rc.name[i]), {}).setdefault(pos, []).append(i)
    n_ranks = len(ranks)
    p2p = {}  # group -> {rank position: {"send": [...], "recv": [...]}}
    for key in [k for k in keyed if k[1] in P2P]:
        for p, v in keyed.pop(key).items():
            p2p.setdefault(key[0], {}).setdefault(p, {"send": [], "recv": []})[key[1]] = v
    p2p_unpaired = 0
    for group, per in p2p.items():
        if len(per) == 2:  # a two-rank group: a's n-th send is b's n-th recv, and back
            a, b = sorted(per)
            for x, y in ((a, b), (b, a)):
                sends, recvs = per[x]["send"], per[y]["recv"]
                for i, j in zip(sends, recvs):
                    m.members.append(sorted([(x, i), (y, j)]))
                    m.name.append("send_recv"); m.group.append(group)
                    m.nbytes.append(int(ranks[x].nbytes[i]))
                for i in sends[len(recvs):]:
                    _single(m, ranks, x, i); p2p_unpaired += 1
                for j in recvs[len(sends):]:
                    _single(m, ranks, y, j); p2p_unpaired += 1
        else:
            for p, d in per.items():
                for i in d["send"] + d["recv"]:
                    _single(m, ranks, p, i); p2p_unpaired += 1
    for (group, name), per in sorted(keyed.items(), key=lambda kv: min(ranks[p].start[v[0]]
                                                                        for p, v in kv[1].items())):
        idx = {p: np.asarray(v, np.int64) for p, v in per.items()}
        expected = max((int(ranks[p].group_size[v[0]]) for p, v in idx.items()), default=0) or n_ranks
        counts = {p: len(v) for p, v in idx.items()}
        ref_pos = max(counts, key=lambda p: (counts[p], -p))
        ref = ranks[ref_pos].nbytes[idx[ref_pos]]
        slots = [[(ref_pos, int(i))] for i in idx[ref_pos]]
        for p, v in idx.items():
            if p == ref_pos:
                continue
            at = np.arange(len(v)) if counts[p] == counts[ref_pos] else _align(ref, ranks[p].nbytes[v])
            for i, k in zip(v.tolist(), at.tolist()):
                if k >= 0:
                    slots[k].append((p, i))
                else:
                    _single(m, ranks, p, i)
        if len(set(counts.values())) > 1 or len(idx) < expected and expected <= n_ranks:
            have = ", ".join(f"rank {ranks[p].rank}: {c}" for p, c in sorted(counts.items()))
            missing = [ranks[p].rank for p in range(n_ranks) if p not in idx] if expected == n_ranks else []
            m.notes.append(f"collectives {name} in group {group} disagree across ranks ({have}"
                           + (f"; none on rank(s) {', '.join(map(str, missing))}" if missing else "")
                           + "); each is coupled among the ranks that have it (alone: simulated on its rank)")
        for members in slots:
            sizes = {int(ranks[p].nbytes[i]) for p, i in members} - {-1}
            if len(sizes) > 1 and name not in ("all_to_all", "send_recv"):
                m.notes.append(f"{name} #{len(m.members)} in group {group}: message sizes differ across ranks "
                               f"({', '.join(map(str, sorted(sizes)))} bytes); matched by order")
            m.members.append(sorted(members))
            m.name.append(name)
            m.group.append(group)
            b = [int(ranks[p].nbytes[i]) for p, i in members if ranks[p].nbytes[i] >= 0]
            m.nbytes.append(int(np.median(b)) if b else -1)
    if p2p_unpaired:
        m.notes.append(f"{p2p_unpaired} point-to-point sends/receives have no peer found (matched only "
                       "inside a two-rank group); they are simulated on their own rank, not coupled")
    return m


def _single(m: Matching, ranks, p: int, i: int) -> None:
    m.members.append([(p, i)])
    m.name.append(ranks[p].name[i])
    m.group.append(ranks[p].group[i])
    m.nbytes.append(int(ranks[p].nbytes[i]))


__all__ = ["RankCollectives", "Matching", "collective_tasks", "collectives_of", "match", "canonical", "DTYPE_BYTES"]
