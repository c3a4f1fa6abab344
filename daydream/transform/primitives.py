"""The primitives. Tasks are rows of `graph.tasks`, edges rows of `graph.edges`; see daydream.graph.

Conventions: a selection is a boolean mask over tasks (or an index array); durations and delays
are integer nanoseconds; new tasks are given as columns (all scalars or arrays of one length).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from daydream.errors import DaydreamError
from daydream.graph.schema import E_INSERTED, E_PROGRAM, EDGE_KINDS, NO_RELEASE, TASK_KINDS, TaskGraph
from daydream.graph.phases import PHASES
from daydream.graph.classes import kernel_classes  # also P.kernel_classes for the optimizations


def _codes(values, table: tuple, what: str) -> list[int]:
    values = [values] if isinstance(values, (str, int, np.integer)) else list(values)
    out = []
    for v in values:
        if isinstance(v, str):
            if v not in table:
                raise DaydreamError(f"unknown {what} {v!r}; one of {', '.join(table)}")
            out.append(table.index(v))
        else:
            out.append(int(v))
    return out


def select(graph: TaskGraph, *, kind=None, name: str | None = None, phase=None, layer: str | None = None,
           kernel_class=None, resource=None, stream=None, rank=None, in_window: bool | None = None,
           where: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the tasks matching every given criterion.

    kind: task kind(s) (TASK_KINDS); name/layer: regular expressions (re.search); phase: phase
    name(s); kernel_class: class(es) from daydream.kernels; resource: resource id(s); stream: CUDA
    stream id(s); rank: rank(s); where: an extra mask to AND in.
    """
    t = graph.tasks
    mask = np.ones(len(t), bool) if where is None else np.asarray(where, bool).copy()
    if kind is not None:
        mask &= np.isin(t["kind"].to_numpy(), _codes(kind, TASK_KINDS, "task kind"))
    if phase is not None:
        mask &= np.isin(t["phase"].to_numpy(), _codes(phase, PHASES, "phase"))
    if name is not None:
        rx = re.compile(name)
        hit = np.fromiter((bool(rx.search(n)) for n in graph.names), bool, len(graph.names))
        mask &= hit[t["name"].to_numpy()]
    if layer is not None:
        rx = re.compile(layer)
        names = graph.layer_table()
        hit = np.fromiter((bool(rx.search(n)) for n in names), bool, len(names))
        mask &= hit[t["layer"].to_numpy()]
    if kernel_class is not None:
        classes = [kernel_class] if isinstance(kernel_class, str) else list(kernel_class)
        mask &= np.isin(kernel_classes(graph), classes)
    if resource is not None:
        mask &= np.isin(t["resource"].to_numpy(), np.atleast_1d(resource))
    if stream is not None:
        r = graph.resources
        ids = r.index[(r["kind"] == "stream") & r["tid"].isin(np.atleast_1d(stream))].to_numpy()
        mask &= np.isin(t["resource"].to_numpy(), ids)
    if rank is not None:
        mask &= np.isin(t["rank"].to_numpy(), np.atleast_1d(rank))
    if in_window is not None:
        mask &= t["in_window"].to_numpy() == in_window
    return mask


def _index(graph: TaskGraph, selection) -> np.ndarray:
    sel = np.asarray(selection)
    if sel.dtype == bool:
        if len(sel) != len(graph.tasks):
            raise DaydreamError("selection mask does not match the graph's tasks")
        return np.flatnonzero(sel)
    return sel.astype(np.int64).reshape(-1)


def scale(graph: TaskGraph, selection, factor) -> None:
    """Multiply the durations of the selected tasks by `factor` (scalar or one per selected task)."""
    idx = _index(graph, selection)
    factor = np.asarray(factor, float)
    if np.any(factor < 0):
        raise DaydreamError("scale factor must be >= 0")
    dur = graph.tasks["dur"].to_numpy().copy()
    dur[idx] = np.round(dur[idx] * factor).astype(np.int64)
    graph.tasks["dur"] = dur


def set_duration(graph: TaskGraph, selection, ns) -> None:
    """Set the durations of the selected tasks (ns, scalar or one per selected task)."""
    idx = _index(graph, selection)
    dur = graph.tasks["dur"].to_numpy().copy()
    dur[idx] = np.maximum(np.round(np.asarray(ns, float)), 0).astype(np.int64)
    graph.tasks["dur"] = dur


def add_edges(graph: TaskGraph, src, dst, delay=0, kind: str = "inserted", to_end=False,
              from_start=False) -> None:
    """Add dependency edges src -> dst (delay ns after src ends, or starts with from_start)."""
    src = np.atleast_1d(np.asarray(src, np.int64))
    dst = np.atleast_1d(np.asarray(dst, np.int64))
    n = len(graph.tasks)
    if len(src) and (src.max() >= n or dst.max() >= n or src.min() < 0 or dst.min() < 0):
        raise DaydreamError("edge endpoint is not a task of the graph")
    k = EDGE_KINDS.index(kind)
    new = pd.DataFrame({"src": src, "dst": dst, "kind": np.int8(k),
                        "from_start": np.broadcast_to(np.asarray(from_start, bool), src.shape),
                        "to_end": np.broadcast_to(np.asarray(to_end, bool), src.shape),
                        "delay": np.broadcast_to(np.asarray(delay, np.int64), src.shape),
                        "binding": False, "nominal": np.broadcast_to(np.asarray(delay, np.int64), src.shape)})
    graph.edges = pd.concat([graph.edges, new], ignore_index=True)
    # A task that gains a start edge is no longer released by the clock.
    release = graph.tasks["release"].to_numpy().copy()
    release[dst[~np.broadcast_to(np.asarray(to_end, bool), src.shape)]] = NO_RELEASE
    graph.tasks["release"] = release


def insert_tasks(graph: TaskGraph, *, rank, resource, kind, name, dur, phase="other", layer=-1,
                 anchor=None, in_window=True) -> np.ndarray:
    """Append new tasks (no edges yet) and return their indices.

    `anchor` (task indices) gives each new task the anchor's observed times, for display and
    for ordering on a resource; names are strings, kinds and phases names or codes.
    """
    dur = np.atleast_1d(np.asarray(np.round(np.asarray(dur, float)), np.int64))
    if anchor is not None:
        m = len(np.atleast_1d(anchor))
    else:
        m = len(dur) if dur.size != 1 else max(len(np.atleast_1d(name)), 1)
    cols = lambda v: np.broadcast_to(np.asarray(v), (m,)).copy()
    names = np.atleast_1d(np.asarray(name, dtype=object))
    name_codes = np.asarray([graph.name_code(str(nm)) for nm in names], np.int64)
    t = graph.tasks
    if anchor is not None:
        anchor = cols(np.asarray(anchor, np.int64))
        obs_start = t["obs_start"].to_numpy()[anchor]
        obs_end = t["obs_end"].to_numpy()[anchor]
    else:
        obs_start = obs_end = np.zeros(m, np.int64)
    new = pd.DataFrame({
        "rank": cols(rank).astype(np.int64), "resource": cols(resource).astype(np.int64),
        "kind": cols(_codes(kind, TASK_KINDS, "task kind") if isinstance(kind, str) else kind).astype(np.int8),
        "name": cols(name_codes), "event": -1, "op": -1,
        "layer": cols(layer).astype(np.int64),
        "obs_start": obs_start, "obs_end": obs_end, "dur": cols(dur),
        "phase": cols(_codes(phase, PHASES, "phase") if isinstance(phase, str) else phase).astype(np.int8),
        "in_window": cols(in_window).astype(bool), "corr": -1, "launch": -1, "release": NO_RELEASE,
    })
    first = len(t)
    graph.tasks = pd.concat([t, new], ignore_index=True)
    return np.arange(first, first + m, dtype=np.int64)


def _program_out(graph: TaskGraph, tasks: np.ndarray) -> np.ndarray:
    """Positions (edges keep a fresh RangeIndex, so labels are positions) of the program-order
    edges leaving `tasks`."""
    e = graph.edges
    return e.index[(e["kind"] == E_PROGRAM).to_numpy() & np.isin(e["src"].to_numpy(), tasks)].to_numpy()


def _program_in(graph: TaskGraph, tasks: np.ndarray) -> np.ndarray:
    e = graph.edges
    return e.index[(e["kind"] == E_PROGRAM).to_numpy() & np.isin(e["dst"].to_numpy(), tasks)].to_numpy()


def _insert_beside(graph: TaskGraph, anchors: np.ndarray, dur, name, kind, phase, layer) -> np.ndarray:
    """New tasks on the anchors' resources, inheriting phase, layer and window membership."""
    t = graph.tasks
    return insert_tasks(graph, rank=t["rank"].to_numpy()[anchors], resource=t["resource"].to_numpy()[anchors],
                        kind=kind, name=name, dur=dur, anchor=anchors,
                        phase=t["phase"].to_numpy()[anchors] if phase is None else phase,
                        layer=t["layer"].to_numpy()[anchors] if layer is None else layer,
                        in_window=t["in_window"].to_numpy()[anchors])


def insert_after(graph: TaskGraph, anchors, *, dur, name, kind, phase=None, layer=None) -> np.ndarray:
    """Insert one new task right after each anchor on the anchor's resource (thread or stream).

    The anchor's program-order successor now follows the new task; every other edge of the
    anchor is kept. Phase and layer default to the anchor's.
    """
    anchors = np.atleast_1d(np.asarray(anchors, np.int64))
    new = _insert_beside(graph, anchors, dur, name, kind, phase, layer)
    of = dict(zip(anchors.tolist(), new.tolist()))
    rows = _program_out(graph, anchors)
    src = graph.edges["src"].to_numpy().copy()
    src[rows] = [of[x] for x in src[rows]]
    graph.edges["src"] = src
    add_edges(graph, anchors, new, delay=0, kind="program")
    return new


def insert_before(graph: TaskGraph, anchors, *, dur, name, kind, phase=None, layer=None) -> np.ndarray:
    """Insert one new task right before each anchor on the anchor's resource."""
    anchors = np.atleast_1d(np.asarray(anchors, np.int64))
    was_root = graph.tasks["release"].to_numpy()[anchors] != NO_RELEASE
    new = _insert_beside(graph, anchors, dur, name, kind, phase, layer)
    of = dict(zip(anchors.tolist(), new.tolist()))
    rows = _program_in(graph, anchors)
    dst = graph.edges["dst"].to_numpy().copy()
    dst[rows] = [of[x] for x in dst[rows]]
    graph.edges["dst"] = dst
    release = graph.tasks["release"].to_numpy().copy()
    release[new[was_root]] = release[anchors[was_root]]
    graph.tasks["release"] = release
    add_edges(graph, new, anchors, delay=0, kind="program")
    return new


def topological_positions(graph: TaskGraph) -> np.ndarray:
    """Position (0..n-1) of every task's start in the simulator's topological order.

    The order is the one `daydream.sim.simulate` walks, over the half-node graph (`graph.half_nodes.HalfNodes`):
    a synchronous copy (launched from its call's start, releasing the call's end) is no cycle
    there. On one thread or stream this is the resource's program order, also for inserted tasks,
    whose observed times only repeat their anchor's."""
    from daydream.graph.half_nodes import half_nodes
    order = half_nodes(graph).order
    starts = order[order % 2 == 0] >> 1
    pos = np.empty(len(starts), np.int64)
    pos[starts] = np.arange(len(starts))
    return pos


def remove(graph: TaskGraph, selection) -> np.ndarray:
    """Remove the selected tasks, keeping the dependencies that ran through them.

    Each predecessor -> removed -> successor pair becomes a direct edge whose delay is the sum of
    both delays (the removed task's own duration disappears). The removed tasks' starts and ends
    are bridged in the simulator's half-node order (`graph.half_nodes.HalfNodes`), so every removed
    predecessor of a node is bridged before it, also across a synchronous copy (call start ->
    copy -> call end), and a run of removed neighbours costs time linear in its length. Returns
    the old -> new index map (-1 for removed tasks).
    """
    from daydream.graph.half_nodes import half_nodes
    idx = _index(graph, selection)
    if len(idx) == 0:
        return np.arange(len(graph.tasks))
    gone = np.zeros(len(graph.tasks), bool)
    gone[idx] = True
    order = half_nodes(graph).order
    nodes = order[gone[order >> 1]]
    e = graph.edges
    cols = ["src", "dst", "kind", "from_start", "to_end", "delay"]
    touching = gone[e["src"].to_numpy()] | gone[e["dst"].to_numpy()]
    keep_edges = e[~touching]
    ins, outs = {}, {}
    for row in e.loc[touching, cols].itertuples(index=False, name=None):
        if gone[row[1]] and not gone[row[0]]:
            ins.setdefault(row[1], []).append(row)  # in-edges from removed tasks are bridged upstream
        if gone[row[0]]:
            outs.setdefault((row[0], not row[3]), []).append(row)  # by source half-node
    release = graph.tasks["release"].to_numpy().copy()
    new_rows = []
    for node in nodes.tolist():
        r, at_end = node >> 1, bool(node & 1)
        r_in = ins.get(r, [])  # complete for this half-node: its removed sources came earlier
        feeds = r_in if at_end else [x for x in r_in if not x[4]]
        for o in outs.pop((r, at_end), []):
            o_src, o_dst, o_kind, o_fs, o_te, o_delay = o
            if not feeds and release[r] != NO_RELEASE and not o_te:
                release[o_dst] = max(release[o_dst], release[r] + o_delay)
            for i in feeds:
                edge = (i[0], o_dst, o_kind if i[2] == o_kind else E_INSERTED, i[3], o_te, i[5] + o_delay)
                if gone[o_dst]:
                    ins.setdefault(o_dst, []).append(edge)
                else:
                    new_rows.append(edge)
    bridged = pd.DataFrame(new_rows, columns=cols)
    if len(bridged):
        bridged = bridged.astype({"src": np.int64, "dst": np.int64, "kind": np.int8, "from_start": bool,
                                  "to_end": bool, "delay": np.int64})
    edges = pd.concat([keep_edges, bridged], ignore_index=True)
    edges = edges.sort_values("delay", kind="stable").drop_duplicates(["src", "dst", "from_start", "to_end"],
                                                                      keep="last")
    mapping = np.cumsum(~gone) - 1
    mapping[gone] = -1
    edges["src"] = mapping[edges["src"].to_numpy()]
    edges["dst"] = mapping[edges["dst"].to_numpy()]
    edges["binding"] = edges["binding"].fillna(False).astype(bool)
    edges["nominal"] = edges["nominal"].fillna(0).astype(np.int64)
    t = graph.tasks.assign(release=release)[~gone].reset_index(drop=True)
    launch = t["launch"].to_numpy()
    t["launch"] = np.where(launch >= 0, mapping[np.clip(launch, 0, None)], -1)
    graph.tasks = t
    graph.edges = edges.reset_index(drop=True)
    _release_orphans(graph)
    return mapping


def _release_orphans(graph: TaskGraph) -> None:
    """A task left with no start edge (its predecessors were removed or reordered away) starts
    when it was observed to, not at time zero."""
    has_start = np.zeros(len(graph.tasks), bool)
    e = graph.edges
    has_start[e.loc[~e["to_end"].to_numpy(bool), "dst"].to_numpy(np.int64)] = True
    release = graph.tasks["release"].to_numpy()
    orphan = ~has_start & (release == NO_RELEASE)
    if orphan.any():
        graph.tasks["release"] = np.where(orphan, graph.tasks["obs_start"].to_numpy(), release)


def select_edges(graph: TaskGraph, *, kind=None, src=None, dst=None) -> np.ndarray:
    """Boolean mask over edges: kind(s) from EDGE_KINDS, and endpoints within the given task masks/indices."""
    e = graph.edges
    mask = np.ones(len(e), bool)
    if kind is not None:
        mask &= np.isin(e["kind"].to_numpy(), _codes(kind, EDGE_KINDS, "edge kind"))
    for col, sel in (("src", src), ("dst", dst)):
        if sel is not None:
            hit = np.zeros(len(graph.tasks), bool)
            hit[_index(graph, sel)] = True
            mask &= hit[e[col].to_numpy()]
    return mask


def set_delay(graph: TaskGraph, edges, ns) -> None:
    """Set the delay (ns, scalar or one per selected edge) of the selected edges.

    How an optimization shortens or lengthens a dependency that stays, e.g. a launch latency.
    """
    sel = np.asarray(edges)
    rows = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(np.int64)
    delay = graph.edges["delay"].to_numpy().copy()
    delay[rows] = np.round(np.asarray(ns, float)).astype(np.int64)
    graph.edges["delay"] = delay


def add_resource(graph: TaskGraph, rank: int, kind: str = "stream", label: str = "") -> int:
    """A new thread or stream (e.g. a communication channel); returns its id."""
    r = graph.resources
    fresh = int(min(r["tid"].min(), 0)) - 1
    if kind == "thread":  # a thread of the rank's main process
        threads = r[(r["rank"] == rank) & (r["kind"] == "thread")]
        pid = int(threads["pid"].iloc[0]) if len(threads) else 0
    else:  # a stream of the rank's first GPU
        gpus = r[(r["rank"] == rank) & (r["kind"] == "stream")]
        pid = int(gpus["pid"].min()) if len(gpus) else 0
    row = pd.DataFrame({"rank": [rank], "kind": [kind], "pid": [pid], "tid": [fresh], "label": [label]})
    graph.resources = pd.concat([r, row], ignore_index=True)
    return len(graph.resources) - 1


def reschedule(graph: TaskGraph, resource: int, order, gap_ns: int = 0) -> None:
    """Run the tasks of `resource` in `order` (a permutation of them), replacing its program order.

    Edges between tasks that stay neighbours keep their delays; new neighbours get `gap_ns`.
    """
    order = np.asarray(order, np.int64)
    on = np.flatnonzero(graph.tasks["resource"].to_numpy() == resource)
    if len(order) != len(on) or set(order.tolist()) != set(on.tolist()):
        raise DaydreamError("reschedule: order must list every task of the resource exactly once "
                            "(move tasks there first with move_to_resource)")
    _rechain(graph, order, gap_ns)


def move_to_resource(graph: TaskGraph, selection, resource: int, gap_ns: int = 0) -> None:
    """Move tasks to another resource, keeping observed order there; the old resources close ranks."""
    idx = _index(graph, selection)
    t = graph.tasks
    old = np.unique(t["resource"].to_numpy()[idx])
    res = t["resource"].to_numpy().copy()
    res[idx] = resource
    graph.tasks["resource"] = res
    for r in list(old) + [resource]:
        on = np.flatnonzero(res == r)
        on = on[np.lexsort((on, t["obs_start"].to_numpy()[on]))]
        _rechain(graph, on, gap_ns)


def _rechain(graph: TaskGraph, ordered: np.ndarray, gap_ns: int) -> None:
    """Program-order edges along `ordered`, keeping existing edges' delays where they survive."""
    e = graph.edges
    prog = e["kind"].to_numpy() == E_PROGRAM
    touching = prog & (np.isin(e["src"].to_numpy(), ordered) | np.isin(e["dst"].to_numpy(), ordered))
    old = {(s, d): dl for s, d, dl in zip(e.loc[touching, "src"], e.loc[touching, "dst"], e.loc[touching, "delay"])}
    graph.edges = e[~touching].reset_index(drop=True)
    if len(ordered) > 1:
        pairs = list(zip(ordered[:-1].tolist(), ordered[1:].tolist()))
        add_edges(graph, ordered[:-1], ordered[1:], delay=[old.get(p, gap_ns) for p in pairs], kind="program")
    _release_orphans(graph)
