"""Trace -> TaskGraph: Daydream's dependency graph, built column-wise.

Tasks
  * CPU threads are cut into contiguous segments at every event boundary: a runtime call (launch,
    sync, memcpy, ...) is one task; the CPU time between calls is a `cpu` task owned by the innermost
    enclosing op (its phase, its name), or `idle` where no event covers the thread.
  * GPU kernels, memcpys and memsets are tasks on their (device, stream); NCCL/RCCL kernels are
    `collective` tasks.
Edges (src -> dst, with a delay)
  * program order on every thread and stream;
  * launch -> GPU task by correlation id (a GPU task whose launch is missing from the trace gets the
    nearest earlier runtime call of its rank as an inferred launch);
  * GPU -> CPU for synchronizing calls (device/stream/event synchronize, synchronous memcpy): these
    edges constrain the END of the call, whose duration the simulator recomputes;
  * cudaEventRecord -> cudaStreamWaitEvent across streams (from Kineto's cuda_sync events);
  * hand-offs between CPU threads of a rank (the main thread waiting on the autograd thread).
Delays come from the trace: for each task, the incoming edge that bound its observed start keeps
the observed delay, the others keep min(observed, nominal), so replaying the unchanged graph
reproduces the trace while a changed predecessor moves its successors realistically.
"""
from __future__ import annotations

import numpy as np

from daydream import _core
from daydream.errors import DaydreamError
from daydream.graph.phases import (BACKWARD, COMM_KERNEL, COMMUNICATION, FORWARD, OTHER,
                                   UNSET, phase_of_names)
from daydream.names import CLASSIFY_CHARS
from daydream.graph.schema import (E_HANDOFF, E_LAUNCH, E_PROGRAM, E_STREAM_WAIT, E_SYNC,
                                   GPU_TASK_TYPES, NO_RELEASE, T_COLLECTIVE, T_CPU, T_IDLE, T_KERNEL,
                                   T_MEMCPY, T_MEMSET, T_RUNTIME, T_SYNC, TaskGraph)
from daydream.table import column, set_column
from daydream.trace import Trace
from daydream.trace.events import _as_int as as_int
from daydream.trace.events import (ANNOTATION, CPU_OP, GPU_SYNC, GPU_TASK_KINDS, MEMCPY, PYTHON,
                                   MEMSET, RUNTIME)


# Nominal delays (ns) used for edges that did not bind in the trace. Launch latency and the gap
# between back-to-back kernels are measured per rank from the trace itself (medians); these are the
# fallbacks when a trace has too few samples. 5 us launch-to-start and ~1 us inter-kernel gap are
# typical CUDA figures (NVIDIA, "CUDA C++ Best Practices Guide", kernel launch overhead).
DEFAULT_LAUNCH_LATENCY_NS = 5_000
DEFAULT_KERNEL_GAP_NS = 1_000
# A synchronizing call that has to wait still costs its entry and wake-up: 2 us, the order of the
# shortest cudaStreamSynchronize seen in the shared traces.
SYNC_MIN_NS = 2_000
_SYNC_NAME = ("Synchronize",)
# GPU and CPU timestamps come from different clocks: a task a synchronize waited for can appear to
# end a few microseconds after the call returned (7.5 us on the MI300X Qwen trace). A last task
# ending up to this much after the return was waited for (its edge's observed delay is negative,
# which keeps the replay exact; its nominal delay is 0).
SYNC_CLOCK_SKEW_NS = 50_000


def _segment_threads(trace: Trace, names: list, name_phase: np.ndarray):
    """Cut every CPU thread into tasks (see module docstring) with one sweep per thread.

    The sweep (daydream/_core.c:segment) walks a thread's events by (start, -end) with a stack of
    open events: the time up to each event start becomes a `cpu` task of the innermost open event
    (or `idle` when none is open), a runtime call becomes its own task and hides the calls nested in
    it, and closing an event emits its remaining own time. Each task carries (start, end, kind,
    event, phase, layer, seq, op, thread); phase, layer, sequence number and aten op are inherited
    from the enclosing event unless the event itself says.
    Returns the task columns, the threads' (rank, pid, tid), the runtime calls nested in another
    call (rows of rank, corr, the enclosing call's task) and, per event, the task its time ends in.
    """
    ev = trace.column
    kind = ev("kind")
    cpu_rows = np.flatnonzero(np.isin(kind, (CPU_OP, ANNOTATION, PYTHON, RUNTIME)))
    rank = ev("rank")
    pid, tid = ev("pid"), ev("tid")
    ts = ev("ts")
    end = ts + ev("dur")
    # Threads in (rank, pid, tid) order; inside a thread by start, longest first, then row.
    order = np.lexsort((cpu_rows, -end[cpu_rows], ts[cpu_rows], tid[cpu_rows], pid[cpu_rows], rank[cpu_rows]))
    cpu_rows = cpu_rows[order]
    keys = np.stack([rank[cpu_rows], pid[cpu_rows], tid[cpu_rows]], axis=1)
    firsts = np.concatenate([[0], np.flatnonzero(np.any(keys[1:] != keys[:-1], axis=1)) + 1]) \
        if len(cpu_rows) else np.zeros(0, np.int64)
    threads = [tuple(int(v) for v in keys[i]) for i in firsts]
    bounds = np.concatenate([firsts, [len(cpu_rows)]]).astype(np.int64)
    is_module = np.fromiter((n.startswith("nn.Module: ") for n in names), np.int8, len(names))
    last_task = np.full(len(ts), -1, np.int64)
    seg_bytes, nested_bytes = _core.segment(
        cpu_rows.astype(np.int64), bounds, rank.astype(np.int32, copy=False), ts, end,
        kind.astype(np.int8, copy=False), ev("name").astype(np.int32, copy=False),
        ev("corr"), ev("seq"), name_phase.astype(np.int8, copy=False), is_module,
        last_task, (CPU_OP, RUNTIME, T_CPU, T_IDLE, T_RUNTIME, UNSET))
    table = np.frombuffer(seg_bytes, np.int64).reshape(-1, 9)
    cols = ("start", "end", "kind", "event", "phase", "layer", "seq", "op", "thread")
    out = {c: table[:, i].copy() for i, c in enumerate(cols)}
    return out, threads, np.frombuffer(nested_bytes, np.int64).reshape(-1, 3), last_task


def build_graph(trace: Trace) -> TaskGraph:
    ev = trace.column
    names = trace.names
    name_phase = phase_of_names(names)
    seg, threads, nested, last_task = _segment_threads(trace, names, name_phase)
    n_cpu = len(seg["start"])

    kind_ev = ev("kind")
    rank_ev = ev("rank")
    ts_ev = ev("ts")
    end_ev = ts_ev + ev("dur")
    name_ev = ev("name")
    corr_ev = ev("corr")

    # ---- tasks ---------------------------------------------------------------------------
    cpu_event = np.asarray(seg["event"], np.int64)
    cpu_kind = np.asarray(seg["kind"], np.int8)
    cpu_res = np.asarray(seg["thread"], np.int64)
    is_sync_name = np.fromiter((any(s in n for s in _SYNC_NAME) for n in names), bool, len(names))

    gpu_rows = np.flatnonzero(np.isin(kind_ev, GPU_TASK_KINDS))
    dev_ev, stream_ev = ev("device"), ev("stream")
    gkeys = np.stack([rank_ev[gpu_rows], dev_ev[gpu_rows], stream_ev[gpu_rows]], axis=1)
    g_order = np.lexsort((ts_ev[gpu_rows], gkeys[:, 2], gkeys[:, 1], gkeys[:, 0]))
    gpu_rows, gkeys = gpu_rows[g_order], gkeys[g_order]
    new_stream = np.ones(len(gkeys), bool)  # gkeys are sorted: a stream starts where they change
    new_stream[1:] = np.any(gkeys[1:] != gkeys[:-1], axis=1)
    streams, gpu_stream = gkeys[new_stream], np.cumsum(new_stream) - 1
    comm = np.fromiter((bool(COMM_KERNEL.search(n[:CLASSIFY_CHARS])) for n in names), bool, len(names))
    gkind = np.select([kind_ev[gpu_rows] == MEMCPY, kind_ev[gpu_rows] == MEMSET, comm[name_ev[gpu_rows]]],
                      [T_MEMCPY, T_MEMSET, T_COLLECTIVE], T_KERNEL).astype(np.int8)

    n_threads = len(threads)
    n = n_cpu + len(gpu_rows)
    if n == 0:
        raise DaydreamError(f"{trace.path}: no timed work in the trace (every event has zero duration)")
    event = np.concatenate([cpu_event, gpu_rows]).astype(np.int64)
    kind = np.concatenate([cpu_kind, gkind])
    resource = np.concatenate([cpu_res, gpu_stream + n_threads])
    obs_start = np.concatenate([np.asarray(seg["start"], np.int64), ts_ev[gpu_rows]])
    obs_end = np.concatenate([np.asarray(seg["end"], np.int64), end_ev[gpu_rows]])
    has_event = event >= 0
    name = np.where(has_event, name_ev[np.clip(event, 0, None)], len(names)).astype(np.int64)
    thread_rank = np.asarray([t[0] for t in threads], np.int64)
    rank = np.concatenate([thread_rank[cpu_res] if n_cpu else np.zeros(0, np.int64), gkeys[:, 0]]).astype(np.int64)
    corr = np.where(has_event, corr_ev[np.clip(event, 0, None)], -1)
    corr[kind == T_CPU] = -1
    phase = np.concatenate([np.asarray(seg["phase"], np.int8), np.full(len(gpu_rows), UNSET, np.int8)])

    resources = {
        "rank": np.asarray([t[0] for t in threads] + streams[:, 0].tolist(), np.int64),
        "kind": np.asarray(["thread"] * n_threads + ["stream"] * len(streams), dtype=object),
        "pid": np.asarray([t[1] for t in threads] + streams[:, 1].tolist(), np.int64),  # device for streams
        "tid": np.asarray([t[2] for t in threads] + streams[:, 2].tolist(), np.int64),  # stream id for streams
    }

    # ---- launch edges ------------------------------------------------------------------------
    rt_idx = np.flatnonzero(kind == T_RUNTIME)
    own = rt_idx[corr[rt_idx] >= 0]
    corr_to_task = _CorrIndex(np.concatenate([rank[own], nested[:, 0]]), np.concatenate([corr[own], nested[:, 1]]),
                              np.concatenate([own, nested[:, 2]]))
    g_idx = np.arange(n_cpu, n)
    launch = corr_to_task.lookup(rank[g_idx], corr[g_idx])
    missing = launch < 0
    if missing.any():
        if missing.mean() > 0.5:
            raise DaydreamError(
                f"{trace.path}: {int(missing.sum())} of {len(g_idx)} GPU events have no launching runtime "
                "call (correlation id); re-record with both CPU and CUDA activities enabled")
        # Inferred launch: the nearest earlier runtime call of the same rank that can launch work
        # (not a synchronize: kernels queued before the profiler started run during the first
        # sync, and taking that sync as their launch would hide what it waited for).
        can_launch = rt_idx[~is_sync_name[name[rt_idx]]]
        rt_sorted = can_launch[np.lexsort((obs_start[can_launch], rank[can_launch]))]
        for r in np.unique(rank[g_idx[missing]]):
            cand = rt_sorted[rank[rt_sorted] == r]
            lost = np.flatnonzero(missing & (rank[g_idx] == r))
            pos = np.searchsorted(obs_start[cand], obs_start[g_idx[lost]], side="right") - 1
            launch[lost] = np.where(pos >= 0, cand[np.clip(pos, 0, None)], -1)
    gpu_launch = launch  # task index of each GPU task's launch (or -1)

    # ---- phases: GPU work inherits from its launch; unclaimed work by position in the step ---
    has_launch = gpu_launch >= 0
    phase[g_idx[has_launch]] = phase[gpu_launch[has_launch]]
    phase[(kind == T_COLLECTIVE)] = COMMUNICATION
    _fill_default_phases(trace, phase, obs_start, rank, kind)
    # GPU work launched from unclaimed CPU work follows the launch's resolved phase.
    phase[g_idx[has_launch]] = np.where(kind[g_idx[has_launch]] == T_COLLECTIVE, COMMUNICATION,
                                        phase[gpu_launch[has_launch]])

    # ---- in-window flags (CONTRACT.md analysis window) -----------------------------------
    in_window = np.zeros(n, bool)
    for r, w in trace.windows.items():
        sel = rank == r
        if w.steps:
            own_start = np.where(has_event, ts_ev[np.clip(event, 0, None)], obs_start)
            _, inside = w.step_of(own_start)
            cpu_in = sel & inside & (np.arange(n) < n_cpu) & (kind != T_IDLE)
            # An event that started inside a step ends with the last task in its span.
            ev_in = (rank_ev == r) & (last_task >= 0) & w.step_of(ts_ev)[1]
            cpu_in[last_task[ev_in]] = True
            in_window |= cpu_in
            gl = gpu_launch >= 0
            g_in = np.zeros(len(g_idx), bool)
            g_in[gl] = cpu_in[gpu_launch[gl]]
            in_window[g_idx] |= g_in & sel[g_idx]
        else:
            in_window |= sel & (kind != T_IDLE)

    # ---- edges ---------------------------------------------------------------------------
    same_res = resource[1:] == resource[:-1]
    prog_src = np.flatnonzero(same_res)
    src = [prog_src]
    dst = [prog_src + 1]
    ekind = [np.full(len(prog_src), E_PROGRAM, np.int8)]
    to_end = [np.zeros(len(prog_src), bool)]
    gl = gpu_launch >= 0
    src.append(gpu_launch[gl]); dst.append(g_idx[gl])
    ekind.append(np.full(gl.sum(), E_LAUNCH, np.int8)); to_end.append(np.zeros(gl.sum(), bool))

    launch_start = np.full(n, np.iinfo(np.int64).max, np.int64)
    launch_start[g_idx[gl]] = obs_start[gpu_launch[gl]]
    # No launch at all, not even an inferred one: queued before the profiler started.
    launch_start[g_idx[~gl]] = NO_RELEASE
    s_src, s_dst, w_src, w_dst = _sync_edges(trace, kind, corr, rank, name, resource, obs_start, obs_end,
                                             gpu_launch, g_idx, n_threads, resources, launch_start,
                                             is_sync_name, corr_to_task)
    kind[np.unique(s_dst)] = np.where(kind[np.unique(s_dst)] == T_RUNTIME, T_SYNC, kind[np.unique(s_dst)])
    src += [s_src, w_src]; dst += [s_dst, w_dst]
    ekind += [np.full(len(s_src), E_SYNC, np.int8), np.full(len(w_src), E_STREAM_WAIT, np.int8)]
    to_end += [np.ones(len(s_src), bool), np.zeros(len(w_src), bool)]
    h_src, waits, wait_dur = _handoff_edges(kind, resource, rank, obs_start, obs_end, n_cpu)
    src.append(h_src); dst.append(waits)
    ekind.append(np.full(len(h_src), E_HANDOFF, np.int8)); to_end.append(np.ones(len(h_src), bool))

    ekind = np.concatenate(ekind)
    src, dst, to_end = np.concatenate(src).astype(np.int64), np.concatenate(dst).astype(np.int64), np.concatenate(to_end)
    # No self-loops; of duplicate (src, dst, to_end) edges the first stays.
    key = (src * n + dst) * 2 + to_end
    _, first = np.unique(np.where(src != dst, key, -1), return_index=True)
    keep = np.sort(first[(src != dst)[first]])
    edges = {"src": src[keep], "dst": dst[keep], "kind": ekind[keep], "from_start": ekind[keep] == E_LAUNCH,
             "to_end": to_end[keep]}

    # ---- layers: the innermost nn.Module of forward work; backward work by sequence number ---
    layer = np.concatenate([np.asarray(seg["layer"], np.int64), np.full(len(gpu_rows), -1, np.int64)])
    seg_seq = np.concatenate([np.asarray(seg["seq"], np.int64), np.full(len(gpu_rows), -1, np.int64)])
    fwd = (layer >= 0) & (seg_seq >= 0) & (phase != BACKWARD)
    seqs, first = np.unique(seg_seq[fwd], return_index=True)  # each sequence number's first forward layer
    need = (layer < 0) & (seg_seq >= 0) & (phase == BACKWARD)
    layer[need] = _lookup(seqs, layer[fwd][first], seg_seq[need], -1)
    layer[g_idx[has_launch]] = layer[gpu_launch[has_launch]]
    # The innermost aten op around each task (its recorded shapes price the task's work).
    op = np.concatenate([np.asarray(seg["op"], np.int64), np.full(len(gpu_rows), -1, np.int64)])
    op[g_idx[has_launch]] = op[gpu_launch[has_launch]]

    dur = obs_end - obs_start
    # Waiting segments keep only their own share; the rest is recomputed from the hand-off.
    dur[waits] = wait_dur
    tasks = {
        "rank": rank, "resource": resource, "kind": kind, "name": name, "event": event, "layer": layer, "op": op,
        "obs_start": obs_start, "obs_end": obs_end, "dur": dur,
        "phase": phase, "in_window": in_window, "corr": corr,
        "launch": np.concatenate([np.full(n_cpu, -1, np.int64), gpu_launch]),
    }
    graph = TaskGraph(tasks, edges, resources, trace, trace.steps, list(names) + ["<idle>"])
    assign_delays(graph, nominal=_nominal_delays(graph))
    return graph


class _CorrIndex:
    """(rank, correlation id) -> the task of the runtime call with that id (the last one listed wins)."""

    def __init__(self, rank: np.ndarray, corr: np.ndarray, task: np.ndarray):
        order = np.lexsort((np.arange(len(corr)), corr, rank))
        rank, corr, task = rank[order], corr[order], task[order]
        last = np.ones(len(order), bool)
        last[:-1] = (rank[1:] != rank[:-1]) | (corr[1:] != corr[:-1])
        self.rank, self.corr, self.task = rank[last], corr[last], task[last]

    def lookup(self, rank: np.ndarray, corr: np.ndarray) -> np.ndarray:
        """Task per (rank, corr) pair, -1 where no runtime call has that id."""
        out = np.full(len(corr), -1, np.int64)
        for r in np.unique(rank).tolist():
            lo, hi = np.searchsorted(self.rank, [r, r + 1])
            sel = np.flatnonzero(rank == r)
            out[sel] = _lookup(self.corr[lo:hi], self.task[lo:hi], corr[sel], -1)
        return out

    def get(self, rank: int, corr: int) -> int | None:
        task = int(self.lookup(np.array([rank]), np.array([corr]))[0])
        return task if task >= 0 else None


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray, default: int) -> np.ndarray:
    """values[i] where keys[i] == query (keys sorted and unique), else default."""
    if len(keys) == 0:
        return np.full(len(queries), default, np.int64)
    pos = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return np.where(keys[pos] == queries, values[pos], default)


def _fill_default_phases(trace, phase, obs_start, rank, kind):
    """Unclaimed work inside a step: forward before the step's first backward task, else other."""
    unset = phase == UNSET
    phase[unset] = OTHER
    cpu_bwd = (phase == BACKWARD) & ~np.isin(kind, GPU_TASK_TYPES)  # GPU work lags the CPU
    for r, w in trace.windows.items():
        if not w.steps:
            continue
        idx, inside = w.step_of(obs_start)
        inside &= rank == r
        first_bwd = np.full(len(w.step_spans), np.iinfo(np.int64).max, np.int64)
        bwd = inside & cpu_bwd
        np.minimum.at(first_bwd, idx[bwd], obs_start[bwd])
        fwd = inside & unset
        fwd[fwd] = obs_start[fwd] < first_bwd[idx[fwd]]
        phase[fwd] = FORWARD


def _sync_edges(trace, kind, corr, rank, name, resource, obs_start, obs_end, gpu_launch, g_idx,
                n_threads, resources, launch_start, is_sync_name, corr_to_task):
    """GPU -> CPU end edges of synchronizing calls, and event-record -> stream-wait edges."""
    ev = trace.column
    stream_tasks = {}  # resource -> (task indices in stream order, running max of their launch times)
    for res in np.unique(resource[g_idx]):
        tasks = g_idx[resource[g_idx] == res]
        stream_tasks[int(res)] = (tasks, np.maximum.accumulate(launch_start[tasks]))
    # Streams by (rank, device, stream id): one rank may drive several GPUs with equal stream ids.
    stream_res = {(int(r), int(d), int(s)): n_threads + i for i, (r, d, s) in
                  enumerate(zip(*(resources[k][n_threads:].tolist() for k in ("rank", "pid", "tid"))))}
    rank_streams = {}
    for (r, _, _), res in stream_res.items():
        rank_streams.setdefault(r, []).append(res)
    # Kineto's cuda_sync events say what a sync waited on (current traces only).
    sync_info = {}
    for row in np.flatnonzero(ev("kind") == GPU_SYNC).tolist():
        a = trace.args_of(row)
        sync_info[(int(ev("rank")[row]), int(ev("corr")[row]))] = (
            trace.names[ev("name")[row]], int(ev("device")[row]), as_int(a.get("stream")),
            as_int(a.get("wait_on_stream")), as_int(a.get("wait_on_cuda_event_record_corr_id")))

    def last_on(res, cut):
        """The last task on stream `res` launched before `cut`."""
        tasks, launched = stream_tasks.get(res, (None, None))
        if tasks is None:
            return -1
        pos = int(np.searchsorted(launched, cut, side="left")) - 1
        return int(tasks[pos]) if pos >= 0 else -1

    def first_on(res, cut):
        """The first task on stream `res` launched at or after `cut`."""
        tasks, launched = stream_tasks.get(res, (None, None))
        if tasks is None:
            return -1
        pos = int(np.searchsorted(launched, cut, side="left"))
        return int(tasks[pos]) if pos < len(tasks) else -1

    s_src, s_dst, w_src, w_dst = [], [], [], []
    rt = np.flatnonzero(kind == T_RUNTIME)
    names = trace.names
    for t in rt[is_sync_name[name[rt]]].tolist():
        r = int(rank[t])
        info = sync_info.get((r, int(corr[t])))
        cut = obs_start[t]
        targets = rank_streams.get(r, [])
        if info is not None:
            sname, dev, stream, wait_stream, rec_corr = info
            if "Stream Wait" in sname:
                continue
            if wait_stream >= 0 and (r, dev, wait_stream) in stream_res:
                targets = [stream_res[(r, dev, wait_stream)]]
                rec = corr_to_task.get(r, rec_corr)
                if rec is not None:
                    cut = obs_start[rec]
            elif stream >= 0 and (r, dev, stream) in stream_res:
                targets = [stream_res[(r, dev, stream)]]
        # Without cuda_sync details a stream/event sync waited on the streams that finished in time;
        # a target that ended after the call returned was not waited on, whatever the call was.
        for res in targets:
            g = last_on(res, cut)
            if g >= 0 and obs_end[g] <= obs_end[t] + SYNC_CLOCK_SKEW_NS:
                s_src.append(g); s_dst.append(t)
    # Synchronous copies: the call returns after its own memcpy finished.
    is_copy_name = np.fromiter(("emcpy" in n for n in names), bool, len(names))
    is_copy_call = is_copy_name[name[rt]]
    copy_calls = set(rt[is_copy_call].tolist())
    gl = gpu_launch >= 0
    for g, t in zip(g_idx[gl].tolist(), gpu_launch[gl].tolist()):
        if t in copy_calls and obs_start[t] <= obs_end[g] <= obs_end[t] and kind[g] == T_MEMCPY:
            s_src.append(g); s_dst.append(t)
    # cudaStreamWaitEvent: the next task on the waiting stream follows the recorded one.
    for (r, c), (sname, dev, stream, wait_stream, rec_corr) in sync_info.items():
        if "Stream Wait" not in sname or (r, dev, stream) not in stream_res or \
                (r, dev, wait_stream) not in stream_res:
            continue
        call = corr_to_task.get(r, c)
        rec = corr_to_task.get(r, rec_corr)
        if call is None or rec is None:
            continue
        a = last_on(stream_res[(r, dev, wait_stream)], obs_start[rec])
        b = first_on(stream_res[(r, dev, stream)], obs_start[call])
        if a >= 0 and b >= 0:
            w_src.append(a); w_dst.append(b)
    as_arr = lambda v: np.asarray(v, np.int64)
    return as_arr(s_src), as_arr(s_dst), as_arr(w_src), as_arr(w_dst)


def _handoff_edges(kind, resource, rank, obs_start, obs_end, n_cpu):
    """Hand-offs between CPU threads of a rank, and the waiting they replace.

    Both kinds of waiting below become end edges onto the waiting segment, as GPU -> sync edges do
    for a synchronizing call: the segment keeps only its own share of time, and its end is
    recomputed from the thread it waited on.
    * An idle stretch before a thread starts working (the autograd engine's thread at the start of
      backward) waited for the latest task on another thread that ended before the wake-up; its own
      share is zero.
    * A long CPU segment during which another thread of the rank was busy most of the time (the
      main thread blocked in `loss.backward()`) waited for that thread's last task there; its own
      share is the time before the other thread took over.
    Returns (src, dst, new_dur) arrays: dst is the waiting segment.
    """
    empty = np.zeros(0, np.int64)
    if n_cpu == 0:
        return empty, empty, empty
    src, dst, new_dur = [], [], []
    cpu = np.arange(n_cpu)
    res, k = resource[:n_cpu], kind[:n_cpu]
    first = np.ones(n_cpu, bool)
    first[1:] = res[1:] != res[:-1]
    busy = k != T_IDLE
    for r in np.unique(rank[:n_cpu]):
        in_rank = cpu[(rank[:n_cpu] == r)]
        threads = np.unique(res[in_rank])
        if len(threads) < 2:
            continue
        done = in_rank[busy[in_rank]]
        per_thread = {int(t): done[res[done] == t] for t in threads}
        for t in per_thread:
            mine = in_rank[res[in_rank] == t]
            others = done[res[done] != t]
            by_end = others[np.argsort(obs_end[others], kind="stable")]
            # 1) wake-ups after idle: the latest task of another thread ending before the wake
            wake = mine[busy[mine] & ~first[mine]]
            wake = wake[k[wake - 1] == T_IDLE]
            pos = np.searchsorted(obs_end[by_end], obs_start[wake], side="right") - 1
            ok = pos >= 0
            wake, came = wake[ok], by_end[pos[ok]]
            ok = obs_end[came] >= obs_start[wake - 1]  # it happened while this thread idled
            src.append(came[ok]); dst.append(wake[ok] - 1)
            new_dur.append(np.zeros(ok.sum(), np.int64))
            # 2) waits: long segments while another thread was busy most of the time
            long = mine[(k[mine] == T_CPU) & (obs_end[mine] - obs_start[mine] >= 20_000)]
            long = long[(long + 1 < n_cpu)]
            long = long[res[long + 1] == t]
            taken = np.zeros(len(long), bool)
            for u, v in per_thread.items():
                if u == t or len(v) == 0 or len(long) == 0:
                    continue
                prefix = np.concatenate([[0], np.cumsum(obs_end[v] - obs_start[v])])
                i0 = np.searchsorted(obs_start[v], obs_start[long], side="left")
                i1 = np.searchsorted(obs_end[v], obs_end[long], side="right")
                hit = ~taken & (i1 > i0) & (prefix[i1] - prefix[np.minimum(i0, i1)] >=
                                              0.5 * (obs_end[long] - obs_start[long]))
                taken |= hit
                src.append(v[i1[hit] - 1]); dst.append(long[hit])
                new_dur.append(obs_start[v[i0[hit]]] - obs_start[long[hit]])
    cat = lambda x: np.concatenate(x).astype(np.int64) if x else np.zeros(0, np.int64)
    return cat(src), cat(dst), cat(new_dur)


def _nominal_delays(graph: TaskGraph) -> np.ndarray:
    """Per edge, the delay to use when the edge did not bind in the trace: latencies measured
    from the trace where nothing else held the task, never queueing.

    * launch -> GPU task: the median launch-start -> task-start delay of GPU tasks whose stream
      was idle when their launch call began (the previous task on the stream had ended) and that
      no other stream held (no stream-wait edge), launched by their own call (correlation id,
      not an inferred launch). On a deep queue most launch -> start delays are queueing (tens of
      ms); the idle-stream ones are the latency (5-30 us in the shared traces).
    * GPU program order: the median gap between back-to-back tasks on a stream (under 10 us).
    * hand-offs between CPU threads (end edges onto a waiting segment): the median observed
      delay of the same kind of hand-off in the trace, wake-ups after idle and waits inside a
      busy segment apart (the autograd thread's wake-up latency, ~0.15-0.25 ms on the V100 and
      2080 Ti traces; waits on other ranks in a gloo job, tens of ms).
    * CPU program order, GPU -> sync and stream-wait edges: 0 (a sync call's own cost is its
      recomputed duration, SYNC_MIN_NS).
    """
    t, e = graph.column, lambda k: column(graph, "edges", k)
    kind = t("kind")
    src, dst = e("src"), e("dst")
    ek = e("kind")
    obs_start, obs_end = t("obs_start"), t("obs_end")
    gpu_dst = np.isin(kind[dst], GPU_TASK_TYPES)
    nominal = np.zeros(len(src), np.int64)
    lat = obs_start[dst] - obs_start[src]  # launch edges leave from the call's start
    prog_gpu = (ek == E_PROGRAM) & gpu_dst
    gap = obs_start[dst] - obs_end[src]
    # End of the previous task on each GPU task's stream (none: the stream was idle).
    prev_end = np.full(graph.n_tasks, np.iinfo(np.int64).min, np.int64)
    prev_end[dst[prog_gpu]] = obs_end[src[prog_gpu]]
    waited = np.zeros(graph.n_tasks, bool)
    waited[dst[ek == E_STREAM_WAIT]] = True
    corr = t("corr")
    own_call = corr[src] == corr[dst]
    idle_launch = ((ek == E_LAUNCH) & own_call & (prev_end[dst] <= obs_start[src]) & ~waited[dst]
                   & (lat >= 0))
    lat0 = int(np.median(lat[idle_launch])) if idle_launch.sum() >= 5 else DEFAULT_LAUNCH_LATENCY_NS
    small = prog_gpu & (gap >= 0) & (gap < 10_000)
    gap0 = int(np.median(gap[small])) if small.sum() >= 5 else DEFAULT_KERNEL_GAP_NS
    nominal[ek == E_LAUNCH] = lat0
    nominal[prog_gpu] = gap0
    handoff = np.flatnonzero(ek == E_HANDOFF)
    if len(handoff):
        observed = obs_end[dst[handoff]] - obs_end[src[handoff]]
        wake = kind[dst[handoff]] == T_IDLE
        for sel in (wake, ~wake):
            if sel.any():
                nominal[handoff[sel]] = max(int(np.median(observed[sel])), 0)
    return nominal


def assign_delays(graph: TaskGraph, nominal: np.ndarray) -> None:
    """Observed delay on each task's binding edge, min(observed, nominal) on the others.

    Start edges bind a task's start, end edges (GPU -> sync call, thread -> waiting thread) its
    end. A synchronizing call held by the GPU keeps only SYNC_MIN_NS of its own duration.
    """
    t, e = graph.column, lambda k: column(graph, "edges", k)
    src, dst = e("src"), e("dst")
    to_end = e("to_end")
    obs_start, obs_end = t("obs_start"), t("obs_end")
    dur = t("dur").copy()
    origin = np.where(e("from_start"), obs_start[src], obs_end[src])
    target = np.where(to_end, obs_end[dst], obs_start[dst])
    observed = target - origin
    key = origin + nominal
    # The binding edge per (dst, to_end): the one whose nominal arrival is latest.
    group = dst * 2 + to_end
    order = np.lexsort((key, group))
    last = np.ones(len(order), bool)
    last[:-1] = group[order][1:] != group[order][:-1]
    binding = np.zeros(len(src), bool)
    binding[order[last]] = True
    set_column(graph, "edges", "delay", np.where(binding, observed, np.minimum(observed, nominal)))
    set_column(graph, "edges", "binding", binding)
    set_column(graph, "edges", "nominal", nominal)
    # Sync calls: if the GPU edge arrives after the call could have returned, the call waited.
    end_b = binding & to_end
    waited = dst[end_b][key[end_b] >= obs_start[dst[end_b]] + SYNC_MIN_NS]
    waited = waited[t("kind")[waited] == T_SYNC]
    dur[waited] = np.minimum(dur[waited], SYNC_MIN_NS)
    set_column(graph, "tasks", "dur", dur)
    has_start_pred = np.zeros(graph.n_tasks, bool)
    has_start_pred[dst[~to_end]] = True
    set_column(graph, "tasks", "release", np.where(has_start_pred, NO_RELEASE, obs_start))


__all__ = ["build_graph", "assign_delays"]
