"""The views profiler users expect (TensorBoard plugin, HTA, TraceLens) computed on daydream's tables.

Every view reads the slowest rank (the rank the step time is of) inside the CONTRACT.md analysis
window, from the events table (CPU operators) and the replayed task graph (GPU work, launches,
the task that decided each start), column-wise with numpy:

  operators      per aten op (or per op and input shapes): count, inclusive and self CPU time, GPU
                 time of the kernels it launched itself (the innermost op around the launch, so the
                 GPU column adds up to the GPU work of the window without double counting)
  modules        per nn.Module: count, inclusive CPU time, GPU time of its forward and backward
                 kernels (backward work is matched to its forward module by sequence number)
  kernels        per full kernel name: count, total/mean/min/max, class, tensor-core use where the
                 name tells, achieved occupancy where Kineto recorded it, FLOP and bandwidth
                 utilization where the launching op's shapes price the work
  idle           per GPU stream, the gaps between its kernels by cause (HTA's definitions, below)
  launches       launch -> start delays, short kernels, runtime calls per step
  communication  collective time, overlap with computation, exposed communication

Idle categories. A gap on a stream ends when the next task starts; it is
  host_bound    when that task's launch call started after the previous task ended: the GPU had
                nothing queued and waited for the CPU (HTA's "host wait");
  launch_gap    else, when the gap is under CONSECUTIVE_KERNEL_DELAY_NS: the hardware's own delay
                between back-to-back kernels (HTA's "kernel wait");
  kernel_bound  else, when the replay says the task's start was decided by a task on another
                stream (a cudaStreamWaitEvent or a collective's dependency): waiting on other
                streams or events;
  other         anything else (HTA's "other" is kernel_bound + other).
"""
from __future__ import annotations

import re

import numpy as np

from daydream.graph.schema import GPU_TASK_TYPES, T_COLLECTIVE, T_CPU, T_KERNEL
from daydream.names import CLASSIFY_CHARS
from daydream.sim import Timeline
from daydream.table import column
from daydream.trace import Trace
from daydream.trace.events import CPU_OP, PYTHON, RUNTIME

# HTA's threshold for "kernel wait" (HolisticTraceAnalysis get_idle_time_breakdown,
# consecutive_kernel_delay=30): gaps shorter than this are the back-to-back delay of launching
# kernels that were already queued. HTA documents the value as 30 ns but compares it with its
# timestamps, which are microseconds, so what HTA applies (and what we apply) is 30 us.
CONSECUTIVE_KERNEL_DELAY_NS = 30_000
# A kernel shorter than this cannot cover the CPU cost of launching the next one (a launch call
# costs 5-10 us of host time on current CUDA stacks; NVIDIA CUDA Best Practices Guide, "kernel
# launch overhead"), so a stream of them leaves the GPU waiting on the host.
SHORT_KERNEL_NS = 10_000
# Occupancy is read from at most this many instances per kernel name (args are decoded lazily,
# one JSON object per instance; instances of one name share their launch configuration).
OCCUPANCY_SAMPLES = 32
IDLE_CATEGORIES = ("host_bound", "kernel_bound", "launch_gap", "other")
# Tensor-core (NVIDIA) and matrix-core (AMD) kernels by name: cuBLAS/cuDNN's MMA shape tags
# (h884, s1688, 16816, i8816 ...), HMMA/IMMA/WGMMA/XMMA, CUTLASS "tensorop", Hopper "nvjet"/"sm90
# gmma" kernels, FlashAttention (built on mma instructions); AMD Tensile's MFMA tag (_MI32x32x8).
_TENSOR_CORE = re.compile(r"[hsi]\d{3,4}gemm|\d{3,5}gemm|884|1688|16816|16832|hmma|imma|wgmma|xmma|gmma"
                          r"|tensorop|nvjet|flash|_MI\d+x\d+x\d+|mfma|\btc_|_tc\b", re.I)
# GEMM/conv kernels whose name says they run on the ordinary (SIMT) cores: fp32/fp64 cuBLAS and
# cuDNN paths (sgemm, dgemm, gemv, fp32 "scudnn", Winograd), kernels templated on float/double.
_SIMT = re.compile(r"sgemm|dgemm|gemv|scudnn|winograd|implicit_convolve|<float\b|<double\b", re.I)
_MATRIX_CLASSES = ("gemm", "conv")


def _ms(ns) -> float:
    return round(float(ns) / 1e6, 6)


class _Scope:
    """The slowest rank, its window and steps, and its GPU tasks: what every view reads."""

    def __init__(self, trace: Trace, timeline: Timeline):
        self.trace, self.timeline = trace, timeline
        self.graph = graph = timeline.graph
        self.rank = timeline.slowest_rank
        w = trace.windows.get(self.rank, trace.window)
        self.w0, self.w1, self.steps = w.start, w.end, max(w.steps, 1)
        self.step_spans = w.step_spans if w.steps else np.array([[w.start, w.end]], np.int64)
        t = graph.column
        self.kind = t("kind")
        self.obs_start, self.obs_end = t("obs_start"), t("obs_end")
        mine = t("rank") == self.rank
        self.gpu = mine & np.isin(self.kind, GPU_TASK_TYPES)
        self.gpu_win = self.gpu & t("in_window")

    @property
    def window_ns(self) -> int:
        return max(self.w1 - self.w0, 1)


# ----------------------------------------------------------------------------- operators


def _events_in_window(s: _Scope, kinds) -> np.ndarray:
    ev = s.trace.column
    ts = ev("ts")
    return np.flatnonzero((ev("rank") == s.rank) & np.isin(ev("kind"), kinds) & (ts >= s.w0) & (ts < s.w1))


def _step_name_mask(trace: Trace) -> np.ndarray:
    return np.fromiter((n.startswith("ProfilerStep#") for n in trace.names), bool, len(trace.names))


def operators(trace: Trace, timeline: Timeline, by_shape: bool = False, scope: _Scope | None = None) -> list[dict]:
    """Per aten op (or op and input shapes): count, total and self CPU ms, GPU ms, share of the step."""
    s = scope or _Scope(trace, timeline)
    rows = _events_in_window(s, (CPU_OP,))
    names = trace.column("name")
    rows = rows[~_step_name_mask(trace)[names[rows]]]
    if not len(rows):
        return []
    n_ev = len(names)
    t = s.graph.column
    own = (s.kind == T_CPU) & (t("event") >= 0)
    self_ns = np.bincount(t("event")[own], weights=(s.obs_end - s.obs_start)[own], minlength=n_ev)
    gop = t("op")[s.gpu_win]
    has_op = gop >= 0
    gpu_ns = np.bincount(gop[has_op], weights=(s.obs_end - s.obs_start)[s.gpu_win][has_op], minlength=n_ev)
    dur = trace.column("dur")[rows]
    if by_shape:
        dims = [trace.args_of(int(r)).get("Input Dims") for r in rows]
        shapes = np.asarray(["" if d is None else str(d).replace(" ", "") for d in dims], dtype=object)
        key = np.char.add(np.char.add(names[rows].astype(str), "|"), shapes.astype(str))
    else:
        key = names[rows]
    uniq, inv = np.unique(key, return_inverse=True)
    first = np.zeros(len(uniq), np.int64)
    first[inv[::-1]] = np.arange(len(rows))[::-1]  # first row of each group (its name and shapes)
    count = np.bincount(inv, minlength=len(uniq))
    total = np.bincount(inv, weights=dur, minlength=len(uniq))
    self_ = np.bincount(inv, weights=self_ns[rows], minlength=len(uniq))
    gpu = np.bincount(inv, weights=gpu_ns[rows], minlength=len(uniq))
    order = np.lexsort((-self_, -gpu))
    win = s.window_ns
    out = []
    for i in order.tolist():
        row = int(rows[first[i]])
        entry = {"name": trace.names[names[row]], "count": int(count[i]),
                 "total_ms": _ms(total[i]), "self_ms": _ms(self_[i]), "gpu_ms": _ms(gpu[i]),
                 "step_pct": round(100 * total[i] / win, 3), "gpu_step_pct": round(100 * gpu[i] / win, 3)}
        if by_shape:
            entry["input_dims"] = dims[first[i]]
        out.append(entry)
    return out


def modules(trace: Trace, timeline: Timeline, scope: _Scope | None = None) -> list[dict]:
    """Per nn.Module (innermost): count, inclusive CPU ms, GPU ms of its forward and backward work."""
    s = scope or _Scope(trace, timeline)
    names = trace.column("name")
    is_module = np.fromiter((n.startswith("nn.Module: ") for n in trace.names), bool, len(trace.names))
    rows = _events_in_window(s, (CPU_OP, PYTHON))
    rows = rows[is_module[names[rows]]]
    if not len(rows):
        return []
    codes = names[rows]
    uniq, inv = np.unique(codes, return_inverse=True)
    count = np.bincount(inv, minlength=len(uniq))
    total = np.bincount(inv, weights=trace.column("dur")[rows], minlength=len(uniq))
    layer = s.graph.column("layer")[s.gpu_win]
    dur = (s.obs_end - s.obs_start)[s.gpu_win]
    known = layer >= 0
    gpu_by_code = np.bincount(layer[known], weights=dur[known], minlength=len(s.graph.names))
    gpu = gpu_by_code[uniq]
    win = s.window_ns
    out = [{"name": trace.names[c].removeprefix("nn.Module: "), "count": int(n), "total_ms": _ms(tot),
            "gpu_ms": _ms(g), "step_pct": round(100 * tot / win, 3), "gpu_step_pct": round(100 * g / win, 3)}
           for c, n, tot, g in zip(uniq.tolist(), count.tolist(), total.tolist(), gpu.tolist())]
    out.sort(key=lambda e: (-e["gpu_ms"], -e["total_ms"]))
    return out


# ----------------------------------------------------------------------------- kernels


def tensor_core(name: str, cls: str) -> bool | None:
    """True where the name shows tensor/matrix-core instructions; False for a GEMM/conv whose name
    shows the ordinary-core path; None where the name does not tell (a Triton or fused attention
    kernel) or the kernel does no matrix multiply."""
    name = name[:CLASSIFY_CHARS]
    if _TENSOR_CORE.search(name):
        return True
    return False if cls in _MATRIX_CLASSES and _SIMT.search(name) else None


def _op_work(s: _Scope, device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per GPU task of the window: FLOPs, bytes and peak FLOP/s from its launching op's shapes.

    Only an op call that launched exactly one GPU task prices it (an op whose work is split over
    several kernels - cuDNN's split-K GEMM and its reduction, a BatchNorm's statistics and apply
    passes - does not say which kernel did which part). NaN where the op has no recorded shapes,
    no cost model, or several kernels."""
    from daydream.costs import compute_dtype, op_costs
    trace = s.trace
    idx = np.flatnonzero(s.gpu_win)
    op = s.graph.column("op")[idx]
    n = len(idx)
    flops, bytes_, peak = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    has = op >= 0
    if not has.any() or device is None:
        return flops, bytes_, peak
    ops, inv = np.unique(op[has], return_inverse=True)
    args = [trace.args_of(o) for o in ops.tolist()]
    shaped = np.array([a.get("Input Dims") is not None for a in args], bool)
    if not shaped.any():
        return flops, bytes_, peak
    sh = np.flatnonzero(shaped)
    types = [args[i].get("Input type", []) for i in sh]
    f, b = op_costs(trace.name_of(trace.column("name")[ops[sh]]), [args[i]["Input Dims"] for i in sh], types,
                    [args[i].get("Concrete Inputs") for i in sh])
    op_f, op_b, op_p = np.full(len(ops), np.nan), np.full(len(ops), np.nan), np.full(len(ops), np.nan)
    op_f[sh], op_b[sh] = f, b
    op_p[sh] = [device.peak(compute_dtype(t)) for t in types]
    single = np.bincount(inv, minlength=len(ops))[inv] == 1
    share = np.where(single, 1.0, np.nan)
    flops[has], bytes_[has], peak[has] = op_f[inv] * share, op_b[inv] * share, op_p[inv]
    return flops, bytes_, peak


def kernels(trace: Trace, timeline: Timeline, device=None, scope: _Scope | None = None) -> list[dict]:
    """Per full kernel name (memcpy/memset included): count, total/mean/min/max ms and what the
    trace tells about its efficiency; biggest total first."""
    from daydream.kernels import classify
    s = scope or _Scope(trace, timeline)
    idx = np.flatnonzero(s.gpu_win)
    if not len(idx):
        return []
    g = s.graph
    codes = g.column("name")[idx]
    dur = (s.obs_end - s.obs_start)[idx]
    uniq, inv = np.unique(codes, return_inverse=True)
    k = len(uniq)
    count = np.bincount(inv, minlength=k)
    total = np.bincount(inv, weights=dur, minlength=k)
    lo = np.full(k, np.iinfo(np.int64).max)
    hi = np.zeros(k, np.int64)
    np.minimum.at(lo, inv, dur)
    np.maximum.at(hi, inv, dur)
    names = [g.names[c] for c in uniq.tolist()]
    classes = classify(np.asarray(names, dtype=object))
    # occupancy: duration-weighted mean over the first OCCUPANCY_SAMPLES instances of each name
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(k))
    events = g.column("event")[idx]
    occupancy = []
    for j in range(k):
        sample = order[starts[j]:starts[j] + min(count[j], OCCUPANCY_SAMPLES)]
        vals, weights = [], []
        for i in sample.tolist():
            v = trace.args_of(int(events[i])).get("est. achieved occupancy %")
            if isinstance(v, (int, float)):
                vals.append(float(v)); weights.append(float(max(dur[i], 1)))
        occupancy.append(round(float(np.average(vals, weights=weights)), 2) if vals else None)
    flops, bytes_, peak = _op_work(s, device)
    priced = np.isfinite(flops) & np.isfinite(bytes_)
    pf = np.bincount(inv[priced], weights=flops[priced], minlength=k)
    pb = np.bincount(inv[priced], weights=bytes_[priced], minlength=k)
    pt = np.bincount(inv[priced], weights=dur[priced].astype(float), minlength=k)
    peak_t = np.bincount(inv[priced], weights=np.where(peak[priced] > 0, flops[priced] / np.where(
        peak[priced] > 0, peak[priced], 1), 0.0), minlength=k)
    out = []
    for j in np.argsort(-total, kind="stable").tolist():
        e = {"name": names[j], "count": int(count[j]), "total_ms": _ms(total[j]),
             "mean_ms": _ms(total[j] / count[j]), "min_ms": _ms(lo[j]), "max_ms": _ms(hi[j]),
             "step_pct": round(100 * total[j] / s.window_ns, 3), "class": str(classes[j]),
             "tensor_core": tensor_core(names[j], str(classes[j]))}
        if occupancy[j] is not None:
            e["occupancy_pct"] = occupancy[j]
        if pt[j] > 0 and device is not None:
            secs = pt[j] / 1e9
            if pf[j] > 0:
                e["flops_utilization_pct"] = round(100 * peak_t[j] / secs, 3)
                e["tflops_per_s"] = round(pf[j] / secs / 1e12, 4)
            if pb[j] > 0:
                e["bandwidth_utilization_pct"] = round(100 * pb[j] / secs / device.mem_bw, 3)
        out.append(e)
    return out


# ----------------------------------------------------------------------------- idle time


def _overlap(a0: np.ndarray, a1: np.ndarray, b0, b1) -> np.ndarray:
    return np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)


def stream_gaps(s: _Scope, res: int, edges: bool = True,
                threshold_ns: int = CONSECUTIVE_KERNEL_DELAY_NS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaps on stream `res` of the rank: (gap start, gap end, category code into IDLE_CATEGORIES).

    With `edges`, the stream's time before its first task (back to the window start) and after its
    last one (up to the window end) count too: nothing was queued, so the GPU waited on the host.
    Without, only gaps between two tasks count (HTA's definition)."""
    t = s.graph.column
    tasks = np.flatnonzero(s.gpu & (t("resource") == res))
    tasks = tasks[np.argsort(s.obs_start[tasks], kind="stable")]
    z = np.zeros(0, np.int64)
    if not len(tasks):
        return z, z, z
    start, end = s.obs_start[tasks], s.obs_end[tasks]
    prev_end = np.maximum.accumulate(end)
    lead = min(s.w0, int(start[0])) if edges else int(start[0])
    prev_end = np.concatenate([[lead], prev_end[:-1]])
    g0, g1 = prev_end, np.maximum(start, prev_end)
    launch = t("launch")[tasks]
    launch_start = np.where(launch >= 0, s.obs_start[np.maximum(launch, 0)], np.iinfo(np.int64).min)
    pred = s.timeline.start_pred[tasks]
    pred_ok = pred >= 0
    other_stream = np.zeros(len(tasks), bool)
    other_stream[pred_ok] = (np.isin(s.kind[pred[pred_ok]], GPU_TASK_TYPES)
                             & (t("resource")[pred[pred_ok]] != res))
    cat = np.select([launch_start > prev_end, (g1 - g0) < threshold_ns, other_stream],
                    [0, 2, 1], 3)
    if edges:
        last = int(end.max())
        g0 = np.append(g0, last)
        g1 = np.append(g1, max(last, s.w1))
        cat = np.append(cat, 0)
    return g0, g1, cat


def idle(trace: Trace, timeline: Timeline, scope: _Scope | None = None) -> dict:
    """GPU idle time by cause (module docstring), ms per step: the busiest stream's at the top
    level, every stream under `streams`, the busiest stream's per step under `per_step`."""
    s = scope or _Scope(trace, timeline)
    t = s.graph.column
    res_all = t("resource")
    streams = np.unique(res_all[s.gpu])
    rows = []
    busiest, busiest_busy = None, -1
    for res in streams.tolist():
        on = s.gpu & (res_all == res)
        busy = _union_clipped(s.obs_start[on], s.obs_end[on], s.w0, s.w1)
        g0, g1, cat = stream_gaps(s, res)
        inside = _overlap(g0, g1, s.w0, s.w1)
        by_cat = np.bincount(cat, weights=inside, minlength=len(IDLE_CATEGORIES))
        row = {"device": int(column(s.graph, "resources", "pid")[res]),
               "stream": int(column(s.graph, "resources", "tid")[res]),
               "busy_ms": _ms(busy / s.steps), "idle_ms": _ms((s.window_ns - busy) / s.steps)}
        row.update({f"{c}_ms": _ms(v / s.steps) for c, v in zip(IDLE_CATEGORIES, by_cat)})
        rows.append(row)
        if busy > busiest_busy:
            busiest, busiest_busy, best = res, busy, (row, g0, g1, cat)
    if busiest is None:
        return {}
    row, g0, g1, cat = best
    per_step = []
    for i, (a, b) in enumerate(s.step_spans.tolist()):
        ov = _overlap(g0, g1, a, min(b, s.w1))
        v = np.bincount(cat, weights=ov, minlength=len(IDLE_CATEGORIES))
        per_step.append({"step": i, **{f"{c}_ms": _ms(x) for c, x in zip(IDLE_CATEGORIES, v)}})
    out = {k: row[k] for k in ("device", "stream", "busy_ms", "idle_ms")}
    out.update({f"{c}_ms": row[f"{c}_ms"] for c in IDLE_CATEGORIES})
    out["streams"] = rows
    out["per_step"] = per_step
    return out


def _union_clipped(s0: np.ndarray, s1: np.ndarray, w0: int, w1: int) -> int:
    from daydream.analysis import _union_length
    a, b = np.clip(s0, w0, w1), np.clip(s1, w0, w1)
    keep = b > a
    return _union_length(a[keep], b[keep])


# ----------------------------------------------------------------------------- launches


def launches(trace: Trace, timeline: Timeline, scope: _Scope | None = None) -> dict:
    """Launch -> start delays (HTA's launch delay: kernel start - launch call end, floored at 0),
    short kernels and runtime calls per step."""
    s = scope or _Scope(trace, timeline)
    idx = np.flatnonzero(s.gpu_win)
    launch = s.graph.column("launch")[idx]
    has = launch >= 0
    delay = np.clip(s.obs_start[idx][has] - s.obs_end[launch[has]], 0, None) / 1e3  # us
    kern = idx[s.kind[idx] != T_COLLECTIVE] if len(idx) else idx
    kern = kern[np.isin(s.kind[kern], (T_KERNEL,))]
    kdur = s.obs_end[kern] - s.obs_start[kern]
    short = kdur < SHORT_KERNEL_NS
    runtime = _events_in_window(s, (RUNTIME,))
    out = {"launched": int(has.sum()),
           "delay_us": ({f"p{p}": round(float(np.percentile(delay, p)), 3) for p in (50, 90, 99)}
                        | {"mean": round(float(delay.mean()), 3), "max": round(float(delay.max()), 3)})
           if len(delay) else {},
           "short_kernel_us": SHORT_KERNEL_NS / 1e3,
           "short_kernels": int(short.sum()),
           "short_kernel_count_pct": round(100 * float(short.mean()), 3) if len(kern) else 0.0,
           "short_kernel_time_pct": round(100 * float(kdur[short].sum()) / max(float(kdur.sum()), 1), 3) if len(kern) else 0.0,
           "kernels_per_step": round(len(kern) / s.steps, 3),
           "runtime_calls_per_step": round(len(runtime) / s.steps, 3),
           "runtime_ms_per_step": _ms(trace.column("dur")[runtime].sum() / s.steps)}
    return out


# ----------------------------------------------------------------------------- communication


def comm_overlap(start: np.ndarray, end: np.ndarray, is_comm: np.ndarray, is_comp: np.ndarray,
                 w0: int, w1: int) -> tuple[int, int, int]:
    """(communication time, of it overlapped with computation, computation time), each the length of
    a union of intervals clipped to [w0, w1): |comm ∩ comp| = |comm| + |comp| - |comm ∪ comp|."""
    c = _union_clipped(start[is_comm], end[is_comm], w0, w1)
    k = _union_clipped(start[is_comp], end[is_comp], w0, w1)
    both = _union_clipped(start[is_comm | is_comp], end[is_comm | is_comp], w0, w1)
    return c, c + k - both, k


def communication(trace: Trace, timeline: Timeline, scope: _Scope | None = None) -> dict:
    """Collective time per step, its overlap with computation kernels (%) and the exposed rest."""
    s = scope or _Scope(trace, timeline)
    on = s.gpu
    comm = on & (s.kind == T_COLLECTIVE)
    if not (comm & s.graph.column("in_window")).any():
        return {"comm_ms": 0.0, "overlap_pct": None, "exposed_ms": 0.0, "exposed_step_pct": 0.0, "count": 0}
    comp = on & (s.kind == T_KERNEL)
    c, ov, _ = comm_overlap(s.obs_start, s.obs_end, comm, comp, s.w0, s.w1)
    return {"comm_ms": _ms(c / s.steps), "overlap_pct": round(100 * ov / c, 3) if c else None,
            "exposed_ms": _ms((c - ov) / s.steps), "exposed_step_pct": round(100 * (c - ov) / s.window_ns, 3),
            "count": int((comm & s.graph.column("in_window")).sum())}


# ----------------------------------------------------------------------------- all of them


def views(trace: Trace, timeline: Timeline, device=None, by_shape: bool = False) -> dict:
    """The views as `analyze --json` keys (CONTRACT.md)."""
    s = _Scope(trace, timeline)
    comm = communication(trace, timeline, s)
    return {"operators": operators(trace, timeline, by_shape, s), "modules": modules(trace, timeline, s),
            "kernels": kernels(trace, timeline, device, s), "idle": idle(trace, timeline, s),
            "launches": launches(trace, timeline, s), "communication": comm, "overlap_pct": comm["overlap_pct"]}
