"""Where a trace's steps, threads, gradients, optimizer steps and forward/backward compute are,
and how the structural optimizations (ddp, fsdp, fused-optimizer, dataloader, activation
checkpointing) insert work into a graph: what they share besides the collective cost model
(daydream/opts/_collectives.py).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from daydream import costs
from daydream.graph.schema import (E_LAUNCH, GPU_TASK_TYPES, T_CPU, T_KERNEL, T_MEMSET, T_RUNTIME, T_SYNC,
                                   TaskGraph)
from daydream.graph.phases import BACKWARD, FORWARD, OPTIMIZER
from daydream.trace.events import CPU_OP
from daydream.opts import _collectives as N
from daydream.opts._cost import is_cpu_trace
from daydream.transform import primitives as P

# Launch -> kernel delay when a graph has no launch edges to measure it from (see daydream.graph).
DEFAULT_LAUNCH_DELAY_NS = 5_000



def launch_delay_ns(graph: TaskGraph) -> int:
    """The graph's own launch -> kernel delay (median nominal of its launch edges)."""
    e = graph.edges
    nominal = e["nominal"].to_numpy()[e["kind"].to_numpy() == E_LAUNCH]
    return int(np.median(nominal)) if len(nominal) else DEFAULT_LAUNCH_DELAY_NS


def thread_keys(graph: TaskGraph) -> np.ndarray:
    """Per task: (rank, pid, tid) of its resource as one int64 key per thread (-1 for streams)."""
    r = graph.resources
    key = np.where(r["kind"].to_numpy() == "thread",
                   _key(r["rank"].to_numpy(), r["pid"].to_numpy(), r["tid"].to_numpy()), -1)
    return key[graph.tasks["resource"].to_numpy()]


def _key(rank, pid, tid):
    return (np.asarray(rank, np.int64) << 48) ^ (np.asarray(pid, np.int64) << 24) ^ np.asarray(tid, np.int64)


def step_of(graph: TaskGraph, times: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Step index of each time on its rank (-1 outside the steps; 0 when a trace has no steps)."""
    times = np.asarray(times, np.int64)
    rank = np.asarray(rank)
    out = np.full(len(times), -1, np.int64)
    for r, w in graph.trace.windows.items():
        sel = rank == r
        if not w.steps:
            out[sel] = 0
            continue
        sp = w.step_spans
        idx = np.searchsorted(sp[:, 0], times[sel], side="right") - 1
        ok = (idx >= 0) & (times[sel] <= sp[np.clip(idx, 0, None), 1])
        out[sel] = np.where(ok, idx, -1)
    return out


def task_steps(graph: TaskGraph) -> np.ndarray:
    """Step of every task: CPU tasks by their own start, GPU tasks by their launch's start."""
    t = graph.tasks
    start = t["obs_start"].to_numpy().copy()
    launch = t["launch"].to_numpy()  # inserted GPU tasks have none: their own (anchor's) start
    has = launch >= 0
    start[has] = start[launch[has]]
    out = step_of(graph, start, t["rank"].to_numpy())
    out[~t["in_window"].to_numpy()] = -1
    return out


def main_thread(graph: TaskGraph, rank: int) -> int:
    """The resource that runs the forward pass of `rank`: the most forward CPU tasks, then the most
    CPU time. Counting tasks, not time: a helper thread blocked in one long call (a Python `sleep`
    inside the step reads as forward work) must not outweigh the thousands of ops of the real one."""
    t = graph.tasks
    sel = ((t["rank"].to_numpy() == rank) & np.isin(t["kind"].to_numpy(), (T_CPU, T_RUNTIME))
           & t["in_window"].to_numpy())
    res = t["resource"].to_numpy()[sel]
    if len(res) == 0:
        raise ValueError("no CPU work")
    forward = t["phase"].to_numpy()[sel] == FORWARD
    by_res = pd.DataFrame({"res": res, "fwd": forward, "dur": t["dur"].to_numpy()[sel]}).groupby("res").sum()
    return int(by_res.sort_values(["fwd", "dur"], ascending=False).index[0])


def compute_stream(graph: TaskGraph, rank: int) -> int:
    """The stream with the most kernel time of `rank` (-1 for a CPU trace)."""
    t = graph.tasks
    sel = (t["rank"].to_numpy() == rank) & (t["kind"].to_numpy() == T_KERNEL)
    if not sel.any():
        return -1
    return int(pd.Series(t["dur"].to_numpy()[sel]).groupby(t["resource"].to_numpy()[sel]).sum().idxmax())


def event_spans(graph: TaskGraph, pattern: str, kinds=None) -> pd.DataFrame:
    """CPU events whose name matches `pattern`: rank, key (thread), start, end, row, name."""
    tr = graph.trace
    ev = tr.events
    rx = re.compile(pattern)
    hit = np.fromiter((bool(rx.search(n)) for n in tr.names), bool, len(tr.names))
    sel = hit[ev["name"].to_numpy()]
    if kinds is not None:
        sel &= np.isin(ev["kind"].to_numpy(), kinds)
    rows = np.flatnonzero(sel)
    ts = ev["ts"].to_numpy()[rows]
    return pd.DataFrame({"rank": ev["rank"].to_numpy()[rows],
                         "key": _key(ev["rank"].to_numpy()[rows], ev["pid"].to_numpy()[rows],
                                     ev["tid"].to_numpy()[rows]),
                         "start": ts, "end": ts + ev["dur"].to_numpy()[rows], "row": rows,
                         "name": np.asarray(tr.names, dtype=object)[ev["name"].to_numpy()[rows]]}
                        ).sort_values(["key", "start"]).reset_index(drop=True)


def outermost(spans: pd.DataFrame) -> pd.DataFrame:
    """The spans not nested inside another span of the same thread."""
    if spans.empty:
        return spans
    s = spans.sort_values(["key", "start", "end"], ascending=[True, True, False])
    reach = s.groupby("key")["end"].cummax().shift(1)
    same = s["key"].eq(s["key"].shift(1))
    keep = ~(same & (s["start"] < reach) & (s["end"] <= reach))
    return s[keep.to_numpy()].reset_index(drop=True)


def tasks_in_spans(graph: TaskGraph, spans: pd.DataFrame, keys: np.ndarray | None = None) -> np.ndarray:
    """Per task: index (into `spans`, which must not overlap per thread) of the span its start lies
    in on its own thread, or -1."""
    keys = thread_keys(graph) if keys is None else keys
    return locate(spans, keys, graph.tasks["obs_start"].to_numpy())


def locate(spans: pd.DataFrame, keys: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per (thread key, time): index of the span of that thread holding the time, or -1."""
    out = np.full(len(keys), -1, np.int64)
    if spans.empty:
        return out
    for k, grp in spans.groupby("key"):
        mine = np.flatnonzero(keys == k)
        if len(mine) == 0:
            continue
        order = np.argsort(grp["start"].to_numpy(), kind="stable")
        st, en = grp["start"].to_numpy()[order], grp["end"].to_numpy()[order]
        idx = np.searchsorted(st, starts[mine], side="right") - 1
        ok = (idx >= 0) & (starts[mine] < en[np.clip(idx, 0, None)])
        out[mine[ok]] = grp.index.to_numpy()[order][idx[ok]]
    return out


def op_numel_bytes(trace, row: int) -> tuple[int, float]:
    """Elements and bytes of the first tensor input of events row `row` ((0, 0) if unrecorded)."""
    a = trace.args_of(row)
    dims, types = a.get("Input Dims"), a.get("Input type")
    if not dims or not types:
        return 0, 0.0
    try:
        tensors = costs.tensors_of(dims, types)
    except Exception:  # noqa: BLE001 - odd metadata on one op must not stop the model
        return 0, 0.0
    if not tensors:
        return 0, 0.0
    shape, elem = tensors[0]
    n = int(math.prod(int(s) for s in shape)) if shape is not None else 0
    return n, n * float(elem)


def gradients(graph: TaskGraph) -> pd.DataFrame:
    """One row per gradient accumulated in the steps, in the order they became ready.

    From the `torch::autograd::AccumulateGrad` events (one per parameter per step; their
    recorded shape is the parameter's): rank, step, task (the last CPU task of the event, where
    DDP's hook fires), kernel (the GPU task that produced the gradient: the last one launched on
    the compute stream up to that point, -1 on CPU), bytes (0 where shapes were not recorded).
    """
    t = graph.tasks
    spans = outermost(event_spans(graph, r"^torch::autograd::AccumulateGrad$", kinds=(CPU_OP,)))
    cols = ["rank", "step", "task", "kernel", "bytes", "time"]
    if spans.empty:
        return pd.DataFrame(columns=cols)
    owner = tasks_in_spans(graph, spans)
    has = np.flatnonzero((owner >= 0) & np.isin(t["kind"].to_numpy(), (T_CPU, T_RUNTIME, T_SYNC)))
    if len(has) == 0:
        return pd.DataFrame(columns=cols)
    last = pd.Series(has).groupby(owner[has]).max()
    spans = spans.loc[last.index]
    task = last.to_numpy()
    rank = t["rank"].to_numpy()[task]
    step = step_of(graph, spans["start"].to_numpy(), rank)
    keep = (step >= 0) & t["in_window"].to_numpy()[task]
    nbytes = np.asarray([op_numel_bytes(graph.trace, r)[1] for r in spans["row"].to_numpy()])
    out = pd.DataFrame({"rank": rank, "step": step, "task": task, "bytes": nbytes,
                        "time": t["obs_end"].to_numpy()[task]})[keep]
    out["kernel"] = last_launched_before(graph, out["rank"].to_numpy(), out["time"].to_numpy())
    return out.sort_values(["rank", "time"]).reset_index(drop=True)[cols]


def last_launched_before(graph: TaskGraph, rank: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Per (rank, time): the last task on the rank's compute stream launched at or before time."""
    t = graph.tasks
    out = np.full(len(times), -1, np.int64)
    launch = t["launch"].to_numpy()
    for r in np.unique(rank):
        s = compute_stream(graph, int(r))
        if s < 0:
            continue
        on = np.flatnonzero((t["resource"].to_numpy() == s) & (launch >= 0))
        at = t["obs_start"].to_numpy()[launch[on]]
        order = np.argsort(at, kind="stable")
        on, at = on[order], at[order]
        sel = np.flatnonzero(rank == r)
        pos = np.searchsorted(at, np.asarray(times)[sel], side="right") - 1
        out[sel] = np.where(pos >= 0, on[np.clip(pos, 0, None)], -1)
    return out


def first_launched_after(graph: TaskGraph, rank: int, time: int, phase: int | None = None) -> int:
    """The first task on the rank's compute stream launched after `time` (of `phase` if given)."""
    t = graph.tasks
    s = compute_stream(graph, rank)
    launch = t["launch"].to_numpy()
    sel = (t["resource"].to_numpy() == s) & (launch >= 0)
    if phase is not None:
        sel &= t["phase"].to_numpy() == phase
    on = np.flatnonzero(sel)
    if len(on) == 0:
        return -1
    at = t["obs_start"].to_numpy()[launch[on]]
    later = at > time
    if not later.any():
        return -1
    return int(on[later][np.argmin(at[later])])


def parameter_bytes(graph: TaskGraph, run: dict) -> tuple[float, str]:
    """Bytes of the model's gradients (= parameters) per step, and where the number came from: what
    `daydream profile` read off the optimizer (run.json `optimizer_parameters`), else the shapes of
    the step's AccumulateGrad events -- once per backward pass, so a step of k backward passes whose
    sequence of gradient sizes is k identical repeats (gradient accumulation over k micro-batches)
    counts one of them; identical layers in one pass repeat too and are not divided --,
    else run.json's parameter count in fp32, else a DDP trace's all-reduce sizes."""
    recorded = run.get("optimizer_parameters")
    exact = recorded.get("bytes") if isinstance(recorded, dict) else None
    if isinstance(exact, (int, float)) and not isinstance(exact, bool) and exact > 0:
        return float(exact), "the optimizer's parameters (run.json)"
    g = gradients(graph)
    if len(g) and (g["bytes"] > 0).all():
        passes = backward_passes(graph)
        per_step = []
        for (rank, step), b in g.groupby(["rank", "step"])["bytes"]:
            k = _repeats(b.to_numpy())
            # identical layers repeat too: only k repeats from k backward passes are accumulation
            per_step.append(b.sum() / (k if k == passes.get((rank, step), 1) else 1))
        return float(np.mean(per_step)), "AccumulateGrad shapes"
    if run.get("parameters"):
        return float(run["parameters"]) * 4.0, "run.json parameter count (fp32)"
    # a DDP trace: its gradient all-reduces carry the bucket sizes
    calls = outermost(event_spans(graph, r"^record_param_comms$", kinds=(CPU_OP,)))
    if not calls.empty:
        tr = graph.trace
        step = step_of(graph, calls["start"].to_numpy(), calls["rank"].to_numpy())
        sizes = np.zeros(len(calls))
        for i, row in enumerate(calls["row"].to_numpy()):
            a = tr.args_of(int(row))
            if N.collective_kind(str(a.get("Collective name", ""))) == "all_reduce" and a.get("In msg nelems"):
                sizes[i] = float(a["In msg nelems"]) * N.C10D_DTYPE_BYTES.get(str(a.get("dtype")), 4)
        ok = step >= 0
        if sizes[ok].sum() > 0:
            per = pd.Series(sizes[ok]).groupby([calls["rank"].to_numpy()[ok], step[ok]]).sum()
            return float(per.mean()), "DDP all-reduce sizes"
    return 0.0, ""


def backward_passes(graph: TaskGraph) -> dict:
    """(rank, step) -> backward passes in the step: the CPU tasks' changes into the backward phase
    from another phase, along each thread in time order (the most on any thread of the rank)."""
    from daydream.graph.phases import BACKWARD, UNSET
    t = graph.tasks
    cpu = np.flatnonzero((t["kind"].to_numpy() == T_CPU) & (t["phase"].to_numpy() != UNSET))
    if not len(cpu):
        return {}
    res, start = t["resource"].to_numpy()[cpu], t["obs_start"].to_numpy()[cpu]
    cpu = cpu[np.lexsort((start, res))]
    phase, res, rank = t["phase"].to_numpy()[cpu], t["resource"].to_numpy()[cpu], t["rank"].to_numpy()[cpu]
    step = step_of(graph, t["obs_start"].to_numpy()[cpu], rank)
    enters = np.zeros(len(cpu), bool)
    enters[1:] = (phase[1:] == BACKWARD) & ((phase[:-1] != BACKWARD) | (res[1:] != res[:-1]))
    enters[0] = phase[0] == BACKWARD
    counts = pd.Series(enters.astype(int)).groupby([rank, res, step]).sum()
    out = counts.groupby(level=[0, 2]).max()
    return {(int(r), int(s)): int(n) for (r, s), n in out.items() if s >= 0}


def _repeats(sequence: np.ndarray) -> int:
    """The largest k such that `sequence` is one block of at least 2 repeated k times (1 if none)."""
    n = len(sequence)
    for k in range(n // 2, 1, -1):
        if n % k == 0 and (sequence.reshape(k, n // k) == sequence[: n // k]).all():
            return k
    return 1


def first_in_step(graph: TaskGraph, mask: np.ndarray, steps: np.ndarray) -> pd.Series:
    """Per step: the earliest (by observed start) task of `mask`."""
    idx = np.flatnonzero(mask & (steps >= 0))
    if len(idx) == 0:
        return pd.Series(dtype=np.int64)
    start = graph.tasks["obs_start"].to_numpy()[idx]
    order = np.lexsort((idx, start))
    idx = idx[order]
    s = pd.Series(idx, index=steps[idx])
    return s[~s.index.duplicated(keep="first")]


def forward_backward_steps(graph: TaskGraph, steps: np.ndarray):
    """Per rank and step that has both: (rank, step, forward compute tasks, backward compute tasks),
    each in program order (see compute_tasks)."""
    positions = P.topological_positions(graph)
    for rank in np.unique(graph.tasks["rank"].to_numpy()):
        fwd_all = compute_tasks(graph, int(rank), FORWARD, steps, positions)
        bwd_all = compute_tasks(graph, int(rank), BACKWARD, steps, positions)
        for step in np.unique(steps[fwd_all]):
            fwd = fwd_all[steps[fwd_all] == step]
            bwd = bwd_all[steps[bwd_all] == step]
            if len(fwd) and len(bwd):
                yield int(rank), int(step), fwd, bwd


def compute_tasks(graph: TaskGraph, rank: int, phase: int, steps: np.ndarray,
                  positions: np.ndarray | None = None) -> np.ndarray:
    """The phase's compute work of `rank`, in program order: GPU kernels/memsets on the compute
    stream (GPU traces) or non-idle CPU tasks of the main thread (CPU traces). Program order, not
    observed start: tasks inserted by an earlier optimization share their anchor's start.
    `positions`: the graph's topological positions, when the caller already has them."""
    t = graph.tasks
    kind = t["kind"].to_numpy()
    base = (t["rank"].to_numpy() == rank) & (t["phase"].to_numpy() == phase) & (steps >= 0)
    s = compute_stream(graph, rank)
    if s >= 0:
        base &= (t["resource"].to_numpy() == s) & np.isin(kind, (T_KERNEL, T_MEMSET))
    else:
        base &= np.isin(kind, (T_CPU, T_RUNTIME)) & (t["resource"].to_numpy() == main_thread(graph, rank))
    idx = np.flatnonzero(base)
    if positions is None:
        positions = P.topological_positions(graph)
    return idx[np.argsort(positions[idx], kind="stable")]


def split_by_time(dur: np.ndarray, groups: int) -> np.ndarray:
    """Group index per item when items (in order) are cut into min(groups, items) runs of about
    equal total duration. The ids are 0, 1, ... with no gap: every group is non-empty."""
    n = len(dur)
    groups = max(1, min(groups, n))
    if n == 0:
        return np.zeros(0, np.int64)
    cum = np.cumsum(np.maximum(np.asarray(dur, float), 1.0))
    mid = (cum - np.maximum(np.asarray(dur, float), 1.0) / 2) / cum[-1]
    g = np.maximum.accumulate(np.minimum((mid * groups).astype(np.int64), groups - 1))
    # An item longer than a group's share makes the raw ids jump (0, 0, 2, ...), leaving a group
    # empty. Rise by at most one per item, g[i] = min(g[i], g[i-1] + 1) with g[0] = 0, which is
    # i + running min of (g - i); then rise by at least enough to reach the last group by the
    # last item, g[i] >= groups - (n - i). Both bounds move by at most one per item, so the
    # result still rises by 0 or 1 per item: contiguous ids, all `groups` of them.
    g[0] = 0
    pos = np.arange(n)
    g = pos + np.minimum.accumulate(g - pos)
    return np.maximum(g, groups - (n - pos))


def mirror_groups(fwd_dur: np.ndarray, fwd_group: np.ndarray, bwd_dur: np.ndarray, groups: int) -> np.ndarray:
    """Backward group (= the forward group whose gradients it computes) per backward item.

    Backward runs the forward in reverse, each part taking the same share of backward time as
    its forward took of forward time: the forward's cumulative time fractions, mirrored, cut the
    backward's cumulative time."""
    if len(bwd_dur) == 0:
        return np.zeros(0, np.int64)
    share = np.bincount(fwd_group, weights=np.maximum(fwd_dur, 1.0), minlength=groups)
    share = share / share.sum()
    # backward order: group groups-1 first
    edges = np.cumsum(share[::-1])
    cum = np.cumsum(np.maximum(np.asarray(bwd_dur, float), 1.0))
    mid = (cum - np.maximum(np.asarray(bwd_dur, float), 1.0) / 2) / cum[-1]
    rev = np.minimum(np.searchsorted(edges, mid, side="right"), groups - 1)
    return groups - 1 - np.maximum.accumulate(rev)


def insert_collectives(graph, ctx, lnk, world, launchers, producers, nbytes, kinds, consumers, label,
                       launch_call) -> np.ndarray:
    """One collective per launcher on a new communication resource per rank (a stream; a thread on
    a CPU trace), in the launchers' observed order there. Each starts once its launcher started
    (plus the graph's launch delay on a GPU; `launch_call` first inserts a launch call of the
    device's launch cost after the launcher) and its producer (-1: none) ended; its consumer
    (-1: none) starts after it ends. Returns the new tasks."""
    t = graph.tasks
    launchers = np.asarray(launchers, np.int64)
    cpu = is_cpu_trace(graph)
    dur = np.asarray([N.collective_s(k, b, world, lnk) for k, b in zip(kinds, nbytes)]) * 1e9
    ranks = t["rank"].to_numpy()[launchers]
    calls = launchers
    if launch_call and not cpu and ctx.device.launch_cpu_s > 0:
        calls = P.insert_after(graph, launchers, dur=ctx.device.launch_cpu_s * 1e9, name="ncclLaunchKernel",
                               kind="runtime", phase="communication")
    new = np.empty(len(launchers), np.int64)
    for r in np.unique(ranks):
        sel = np.flatnonzero(ranks == r)
        res = P.add_resource(graph, int(r), "thread" if cpu else "stream", label=label)
        new[sel] = P.insert_tasks(graph, rank=int(r), resource=res, kind="collective",
                                  name=[f"{label} {k}" for k in np.asarray(kinds)[sel]], dur=dur[sel],
                                  phase="communication", anchor=calls[sel],
                                  in_window=graph.tasks["in_window"].to_numpy()[calls[sel]])
        order = sel[np.argsort(graph.tasks["obs_start"].to_numpy()[calls[sel]], kind="stable")]
        if len(order) > 1:
            P.add_edges(graph, new[order[:-1]], new[order[1:]], kind="program")
    P.add_edges(graph, calls, new, delay=0 if cpu else launch_delay_ns(graph), kind="launch" if not cpu else "inserted",
                from_start=True)
    producers = np.asarray(producers, np.int64)
    ok = producers >= 0
    if ok.any():
        P.add_edges(graph, producers[ok], new[ok], delay=0, kind="inserted")
    consumers = np.asarray(consumers, np.int64)
    ok = consumers >= 0
    if ok.any():
        P.add_edges(graph, new[ok], consumers[ok], delay=0, kind="inserted")
    return new


def first_optimizer_task(graph, rank: int, step: int, after: int, steps: np.ndarray) -> int:
    """The task that must wait for the step's gradients: the first optimizer kernel (GPU) or the
    first optimizer CPU task of the main thread (CPU trace) starting after `after`."""
    t = graph.tasks
    sel = ((t["rank"].to_numpy() == rank) & (steps == step) & (t["phase"].to_numpy() == OPTIMIZER)
           & (t["obs_start"].to_numpy() >= after))
    if is_cpu_trace(graph):
        sel &= (t["resource"].to_numpy() == main_thread(graph, rank)) & np.isin(t["kind"].to_numpy(),
                                                                                  (T_CPU, T_RUNTIME))
    else:
        sel &= np.isin(t["kind"].to_numpy(), GPU_TASK_TYPES)
    idx = np.flatnonzero(sel)
    return int(idx[np.argmin(t["obs_start"].to_numpy()[idx])]) if len(idx) else -1



def units(fwd_dur: np.ndarray, fwd_layer: np.ndarray, requested: int) -> np.ndarray:
    """Unit (FSDP unit, checkpoint segment) per forward compute task, in forward order.

    `requested` units, or by default about sqrt(n) of them for n forward tasks (the segment count
    of Chen et al., "Training Deep Nets with Sublinear Memory Cost", 2016, which is also about
    one per block of the usual models), cut at about equal forward time; where the trace names
    modules, each cut moves forward to the next change of module."""
    n = len(fwd_dur)
    k = requested if requested > 0 else int(math.ceil(math.sqrt(n)))
    g = split_by_time(fwd_dur, k)
    if n and (fwd_layer >= 0).mean() > 0.5:
        change = np.r_[False, fwd_layer[1:] != fwd_layer[:-1]]
        starts = np.flatnonzero(np.r_[False, g[1:] != g[:-1]])
        bounds = np.r_[starts, n]
        for i, b in enumerate(starts):
            nxt = np.flatnonzero(change[b:bounds[i + 1]])
            if len(nxt) and nxt[0] > 0:
                g[b:b + nxt[0]] = g[b - 1]
    return g


def program_pred(graph: TaskGraph, idx: np.ndarray) -> np.ndarray:
    """The task before each of `idx` on its resource (-1: first)."""
    from daydream.graph.schema import E_PROGRAM
    e = graph.edges
    prog = e[e["kind"].to_numpy() == E_PROGRAM]
    pred = pd.Series(prog["src"].to_numpy(), index=prog["dst"].to_numpy())
    pred = pred[~pred.index.duplicated()]
    return pred.reindex(np.asarray(idx)).fillna(-1).to_numpy(np.int64)
