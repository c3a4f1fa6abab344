"""Categories from Kineto `[memory]` events, which carry only sizes, addresses and times.

Each allocation is paired with its free (next event at the same address) and labelled by when it
lives, against the phases read from the trace's CPU events (the rules torch's memory profiler applies
to tensors, restated for blocks without tensor identity):
- freed before the end of the top-level CPU op that allocated it: `temporary`;
- allocated by `aten::to`/`aten::_to_copy`/`aten::copy_` in the forward and alive after it: `input`;
- allocated in the forward, alive into the backward: `activation`; freed within the forward: `temporary`;
- allocated in the backward, alive after it: `gradient`; freed within it: `autograd_detail`;
- allocated in the optimizer step, alive after it: `optimizer_state`; freed within it: `temporary`;
- anything else, and every byte already allocated when the trace began (parameters and optimizer
  state of an earlier step among them), is `unknown`: Kineto events cannot tell them apart.
Phases per step (`ProfilerStep#N`, else the whole trace): backward = first to last autograd event
(`autograd::engine::evaluate_function*`, `*Backward[N]`); optimizer = `Optimizer.step*` annotations,
else from the end of the backward to the end of the step; forward = step start to backward start.
Traces whose `[memory]` events carry no address (Kineto before 2022) keep every byte `unknown`.
"""
from __future__ import annotations

import re

import numpy as np

from daydream.errors import DaydreamError
from daydream.memory.timeline import COL, Timeline, coalesce
from daydream.names import CLASSIFY_CHARS

_BACKWARD = re.compile(r"^autograd::engine::evaluate_function|Backward\d*$")
_OPTIMIZER = re.compile(r"^Optimizer\.step")
_INPUT_COPY = {"aten::to", "aten::_to_copy", "aten::copy_"}
CPU_OP, ANNOTATION = 0, 1  # daydream.trace.events kinds


def pick_device(mem) -> tuple[int, int] | None:
    """The accelerator with the most memory events, else the CPU."""
    if mem.empty:
        return None
    counts = mem.groupby(["device_type", "device_id"]).size()
    accel = counts[counts.index.get_level_values(0) != 0]
    best = (accel if len(accel) else counts).idxmax()
    return int(best[0]), int(best[1])


def step_phases(trace, rank: int) -> list[dict]:
    """Forward/backward/optimizer spans (ns) of each step of one rank."""
    ev = trace.events
    ev = ev[ev["rank"].to_numpy() == rank]
    names = np.asarray(trace.names, dtype=object)
    code_backward = np.fromiter((bool(_BACKWARD.search(n[:CLASSIFY_CHARS])) for n in names), bool, len(names))
    code_optim = np.fromiter((bool(_OPTIMIZER.match(n)) for n in names), bool, len(names))
    kind = ev["kind"].to_numpy()
    name = ev["name"].to_numpy()
    ts = ev["ts"].to_numpy()
    end = ts + ev["dur"].to_numpy()
    cpu = (kind == CPU_OP) | (kind == ANNOTATION)
    is_bwd = cpu & code_backward[name]
    is_opt = cpu & code_optim[name]
    window = trace.windows.get(rank)
    spans = window.step_spans if window is not None and len(window.step_spans) else \
        np.array([[ts[cpu].min() if cpu.any() else 0, end[cpu].max() if cpu.any() else 0]])
    out = []
    for s, e in spans:
        inside = (ts >= s) & (ts <= e)
        b, o = is_bwd & inside, is_opt & inside
        if b.any():
            bwd = (int(ts[b].min()), int(end[b].max()))
        else:
            bwd = (int(e), int(e))  # forward only (inference)
        opt = (int(ts[o].min()), int(end[o].max())) if o.any() else (bwd[1], int(e)) if b.any() else (int(e), int(e))
        out.append({"step": (int(s), int(e)), "forward": (int(s), bwd[0]), "backward": bwd, "optimizer": opt})
    return out


def _top_level_ops(trace, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outermost CPU ops (start, end, name code), sorted by start."""
    ev = trace.events
    sel = (ev["rank"].to_numpy() == rank) & (ev["kind"].to_numpy() == CPU_OP)
    ts = ev["ts"].to_numpy()[sel]
    end = ts + ev["dur"].to_numpy()[sel]
    name = ev["name"].to_numpy()[sel]
    order = np.argsort(ts, kind="stable")
    ts, end, name = ts[order], end[order], name[order]
    if not len(ts):
        return ts, end, name
    reach = np.maximum.accumulate(end)
    outer = np.r_[True, ts[1:] >= reach[:-1]]
    return ts[outer], end[outer], name[outer]


def from_trace(trace, rank: int) -> Timeline | None:
    """Timeline of one rank's busiest device from its `[memory]` events; None if it has none."""
    mem = trace.memory_events
    mem = mem[mem["rank"].to_numpy() == rank]
    device = pick_device(mem)
    if device is None:
        return None
    mem = mem[(mem["device_type"].to_numpy() == device[0]) & (mem["device_id"].to_numpy() == device[1])]
    ts = mem["ts"].to_numpy()
    delta = mem["bytes"].to_numpy()
    addr = mem["addr"].to_numpy()
    n = len(ts)
    total = mem["total_allocated"].to_numpy()
    live = np.cumsum(delta)
    # Bytes allocated before the trace began: what Kineto reports beyond our running sum, else the
    # least that keeps the running sum non-negative.
    known = total >= 0
    baseline = int(np.median(total[known] - live[known])) if known.any() else int(max(0, -live.min()))
    cols = np.full(n, COL["unknown"], np.int64)
    notes = []
    has_addr = (addr >= 0).any()
    if has_addr:
        cols = _classify(trace, rank, ts, delta, addr)
    else:
        notes.append("the trace's [memory] events carry no addresses; every byte is 'unknown'")
    first_ts = np.r_[ts[:1], ts]
    times, bytes_ = coalesce(first_ts, np.r_[COL["unknown"], cols], np.r_[baseline, delta])
    phases = step_phases(trace, rank) if len(trace.events) else []
    optimizer = [p["optimizer"] for p in phases if p["optimizer"][1] > p["optimizer"][0]]
    kind = {0: "cpu", 1: "cuda"}.get(device[0], f"device type {device[0]}")
    tl = Timeline(times, bytes_, f"{trace.path} [memory] events, rank {rank}, {kind}:{device[1]}",
                  optimizer=optimizer, notes=notes)
    return tl


def _classify(trace, rank, ts, delta, addr) -> np.ndarray:
    """Category column of each memory event (see the module docstring)."""
    n = len(ts)
    order = np.lexsort((np.arange(n), addr))
    nxt = np.full(n, -1, np.int64)
    same = addr[order][1:] == addr[order][:-1]
    nxt[order[:-1][same]] = order[1:][same]
    is_alloc = delta > 0
    paired = is_alloc & (nxt >= 0)
    paired[paired] &= delta[nxt[paired]] < 0
    free_ts = np.full(n, np.iinfo(np.int64).max, np.int64)
    free_ts[paired] = ts[nxt[paired]]

    op_start, op_end, op_name = _top_level_ops(trace, rank)
    names = np.asarray(trace.names, dtype=object)
    copy_code = np.fromiter((n_ in _INPUT_COPY for n_ in names), bool, len(names))
    k = np.searchsorted(op_start, ts, side="right") - 1
    in_op = (k >= 0) & (ts <= op_end[np.clip(k, 0, None)]) if len(op_start) else np.zeros(n, bool)
    kc = np.clip(k, 0, None)
    owner_end = np.where(in_op, op_end[kc] if len(op_end) else 0, -1)
    by_copy = in_op & (copy_code[op_name[kc]] if len(op_name) else False)

    cat = np.full(n, COL["unknown"], np.int64)
    for ph in step_phases(trace, rank):
        for phase, alive_cat, freed_cat in (("forward", "activation", "temporary"),
                                             ("backward", "gradient", "autograd_detail"),
                                             ("optimizer", "optimizer_state", "temporary")):
            s, e = ph[phase]
            sel = is_alloc & (ts >= s) & (ts < e if phase != "optimizer" else ts <= e)
            alive = free_ts > e
            cat[sel] = np.where(alive[sel], COL[alive_cat], COL[freed_cat])
            if phase == "forward":
                cat[sel & alive & by_copy] = COL["input"]
    cat[is_alloc & in_op & (free_ts <= owner_end)] = COL["temporary"]
    # A free carries the category of its allocation; unpaired frees stay unknown.
    cat[nxt[paired]] = cat[paired]
    cat[~is_alloc & ~np.isin(np.arange(n), nxt[paired])] = COL["unknown"]
    return cat


def from_trace_all_ranks(trace) -> dict:
    """rank -> Timeline for every rank with `[memory]` events."""
    if trace.memory_events.empty:
        raise DaydreamError(f"{trace.path}: the trace holds no [memory] events; record it with "
                            "profile_memory=True (or use `daydream profile`, which also records categories)")
    out = {}
    for rank in trace.ranks:
        tl = from_trace(trace, rank)
        if tl is not None:
            out[rank] = tl
    return out
