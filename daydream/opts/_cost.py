"""Cost helpers shared by the compute-side optimizations (amp, quantize, sparse-attention, gpu,
batch-size, cuda-graphs): what each task is (kernel class, dtype, op shapes) and how to add a
kernel together with its launch, all through the transform primitives.

Conventions used by every model here:

* A GPU kernel's measured time d is split into a fixed part and a work part. The fixed part is
  what a kernel costs with (almost) no work: the shortest kernel of the trace (`kernel_floor_ns`,
  measured from the trace being transformed, so it carries that device's and driver's own
  floor). Work-dependent models scale only the work part: d' = f + (d - f) * factor.
* Kernel classes come from `daydream.kernels.classify`; GEMM, conv and attention are the compute
  classes, everything else is memory-bound (elementwise, reduction, normalization, copy,
  optimizer, other) except communication (links).
* A kernel's dtype is its op's compute dtype where the op's `Input type` is recorded, else what
  its name says (`bf16`, `half`, `tf32`, ...), else fp32 (PyTorch's default).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from daydream import costs
from daydream.graph.schema import (GPU_TASK_TYPES, T_COLLECTIVE, T_CPU, T_KERNEL, T_MEMCPY, T_MEMSET,
                                   T_RUNTIME, TaskGraph)
from daydream.names import CLASSIFY_CHARS
from daydream.transform import primitives as P

COMPUTE_CLASSES = ("gemm", "conv", "attention")
MEMORY_CLASSES = ("elementwise", "reduction", "normalization", "copy", "optimizer", "other")
# Matmul-like aten ops whose CPU time is dense FLOPs (CPU traces) and whose shapes price GEMMs.
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
              "aten::_addmm_activation", "aten::addbmm", "aten::mv", "aten::addmv")
CONV_OPS_RX = re.compile(r"conv|mkldnn_convolution")
# Fallback fixed cost of a kernel when a trace has too few kernels to measure one: 2 us, the
# order of an empty kernel's duration on current NVIDIA/AMD parts (the shortest kernels in the
# shared traces are 1.0-2.5 us).
DEFAULT_KERNEL_FLOOR_NS = 2_000

# dtype words in kernel names (cuBLAS/CUTLASS/Tensile/ATen template arguments), most specific first
_NAME_DTYPES = (
    ("fp8", re.compile(r"e4m3|e5m2|fp8|f8f8", re.I)),
    ("int8", re.compile(r"\bi8|int8|imma|s8s8|_i8", re.I)),
    ("bf16", re.compile(r"bf16|bfloat16|BFloat16", re.I)),
    ("fp16", re.compile(r"f16|fp16|half|hgemm|h884|h1688|h16816|hmma|_hh|Hgemm", re.I)),
    ("tf32", re.compile(r"tf32", re.I)),
    ("fp32", re.compile(r"sgemm|float|f32|fp32|s1688|s884|_ss", re.I)),
)
SIXTEEN_BIT = ("fp16", "bf16")

# Maximum achievable matmul FLOP/s as a fraction of the datasheet peak, per device family: the
# "Maximum Achievable Matmul FLOPS comparison table" (BF16, mean of 100 iterations at the best
# shape found by mamf-finder.py) of S. Bekman, "Machine Learning Engineering",
# compute/accelerator/README.md: A100 SXM 271.2/312, H100 SXM 794.5/989 (H200 the same),
# B200 1745/2250, MI250X 147.0/191.5 per GCD, MI300X 668.4/1300 (torch 2.5.1, ROCm 6.3,
# TunableOp). Devices the table has not measured take the NVIDIA median, 0.80. Spec-sheet peaks
# overstate how fast a GEMM runs by different amounts on different parts (the MI300X's tensor
# cores reach about half of their peak, an H100's four fifths), so moving a compute-bound kernel
# between devices divides by these achievable rates, not by the peaks.
MATMUL_EFFICIENCY = {"A100": 271.2 / 312, "H100": 794.5 / 989, "H200": 794.5 / 989,
                     "B200": 1745.0 / 2250, "MI250X": 147.0 / 191.5, "MI250": 147.0 / 191.5,
                     "MI300X": 668.4 / 1300}
DEFAULT_MATMUL_EFFICIENCY = 0.80


def with_peak(device, dtype: str, rate: float):
    """`device` with peak FLOP/s `rate` for `dtype` (an emulated dtype, e.g. int4 as 2x int8)."""
    import dataclasses
    return dataclasses.replace(device, peak_flops={**device.peak_flops, dtype: rate})


def achievable(device):
    """`device` with its peak FLOP/s scaled to the achievable matmul rate (MATMUL_EFFICIENCY)."""
    import dataclasses
    eff = MATMUL_EFFICIENCY.get(device.family, DEFAULT_MATMUL_EFFICIENCY)
    if device.vendor == "cpu":
        return device
    return dataclasses.replace(device, peak_flops={d: r * eff for d, r in device.peak_flops.items()})


def name_dtype(names) -> np.ndarray:
    """dtype a kernel name says it computes in ('' when the name does not say)."""
    names = pd.Series(np.asarray(names, dtype=object)).fillna("").astype(str)
    codes, uniq = pd.factorize(names)
    out = np.full(len(uniq), "", dtype=object)
    for i, n in enumerate(uniq):
        n = n[:CLASSIFY_CHARS]
        for dt, rx in _NAME_DTYPES:
            if rx.search(n):
                out[i] = dt
                break
    return out[codes] if len(codes) else np.zeros(0, dtype=object)


class OpInfo:
    """Per task: the name, FLOPs, bytes, compute dtype and tensor inputs of its innermost aten op
    (NaN / '' where the task has no op or the op's shapes are not recorded)."""

    def __init__(self, graph: TaskGraph):
        tr = graph.trace
        op = graph.tasks["op"].to_numpy()
        self.op = op
        n = len(op)
        self.name = np.full(n, "", dtype=object)
        self.flops = np.full(n, np.nan)
        self.bytes = np.full(n, np.nan)
        self.dtype = np.full(n, "", dtype=object)
        self.tensors = np.full(n, None, dtype=object)  # list of (shape, elem bytes)
        has = op >= 0
        if not has.any():
            return
        rows, inv = np.unique(op[has], return_inverse=True)
        names = np.asarray(tr.names, dtype=object)[tr.events["name"].to_numpy()[rows]]
        args = [tr.args_of(r) for r in rows]
        dims = [a.get("Input Dims") for a in args]
        types = [a.get("Input type") for a in args]
        conc = [a.get("Concrete Inputs") for a in args]
        fl, by = costs.op_costs(list(names), dims, types, conc)
        dt = np.asarray([costs.compute_dtype(t) if t else "" for t in types], dtype=object)
        tens = np.empty(len(rows), dtype=object)
        for i, (d, t) in enumerate(zip(dims, types)):
            try:
                tens[i] = costs.tensors_of(d, t) if d is not None and t is not None else None
            except Exception:  # noqa: BLE001 - odd metadata on one op must not stop the model
                tens[i] = None
        idx = np.flatnonzero(has)
        self.name[idx] = names[inv]
        self.flops[idx] = fl[inv]
        self.bytes[idx] = by[inv]
        self.dtype[idx] = dt[inv]
        self.tensors[idx] = tens[inv]

    def known(self) -> np.ndarray:
        """Tasks whose op cost is determined (finite, positive bytes)."""
        return np.isfinite(self.flops) & np.isfinite(self.bytes) & (self.bytes > 0)


def kinds(graph: TaskGraph) -> np.ndarray:
    return graph.tasks["kind"].to_numpy()


def gpu_mask(graph: TaskGraph, *, collectives: bool = False) -> np.ndarray:
    k = kinds(graph)
    types = GPU_TASK_TYPES if collectives else (T_KERNEL, T_MEMCPY, T_MEMSET)
    return np.isin(k, types)


def task_dtype(graph: TaskGraph, info: OpInfo, classes: np.ndarray) -> np.ndarray:
    """Per task: the dtype it computes in (see module docstring)."""
    by_name = name_dtype(graph.task_names())
    out = by_name.astype(object).copy()
    # the op's recorded inputs decide for compute kernels (a memset inside addmm says nothing)
    use_op = (info.dtype != "") & np.isin(classes, COMPUTE_CLASSES)
    out[use_op] = info.dtype[use_op]
    # memory kernels without a dtype in their name take their op's dtype
    mem = (by_name == "") & (info.dtype != "") & ~np.isin(classes, COMPUTE_CLASSES)
    out[mem] = info.dtype[mem]
    # the rest run in the run's dominant compute dtype: the dtype of most GEMM/conv/attention
    # kernel time (activations flow between those kernels in that dtype), fp32 when none says
    out[out == ""] = dominant_dtype(graph, out, classes)
    return out


def dominant_dtype(graph: TaskGraph, dtypes: np.ndarray, classes: np.ndarray) -> str:
    """The dtype of most GEMM/conv/attention kernel time ('fp32' when no kernel says)."""
    comp = (dtypes != "") & np.isin(classes, COMPUTE_CLASSES) & gpu_mask(graph)
    if not comp.any():
        return "fp32"
    per = pd.Series(graph.tasks["dur"].to_numpy()[comp]).groupby(dtypes[comp]).sum()
    return str(per.idxmax())


def kernel_floor_ns(graph: TaskGraph) -> int:
    """The fixed cost of one kernel on the recorded device: the trace's shortest kernel."""
    k = kinds(graph)
    dur = graph.tasks["dur"].to_numpy()[k == T_KERNEL]
    dur = dur[dur > 0]
    return int(dur.min()) if len(dur) >= 5 else DEFAULT_KERNEL_FLOOR_NS


def scale_work(graph: TaskGraph, idx: np.ndarray, factor, floor_ns: int, new_floor_ns: int | None = None) -> None:
    """d' = f' + max(d - f, 0) * factor for the tasks idx (f: fixed kernel cost, f' on the target)."""
    idx = np.asarray(idx, np.int64)
    if len(idx) == 0:
        return
    d = graph.tasks["dur"].to_numpy()[idx].astype(float)
    f = np.minimum(d, floor_ns)
    f_new = f if new_floor_ns is None else f * (new_floor_ns / max(floor_ns, 1))
    P.set_duration(graph, idx, f_new + (d - f) * np.asarray(factor, float))


def launch_calls(graph: TaskGraph, tasks=None) -> np.ndarray:
    """Runtime tasks that launched GPU work (of `tasks` when given), unique and sorted."""
    t = graph.tasks
    launch = t["launch"].to_numpy()
    sel = np.isin(kinds(graph), GPU_TASK_TYPES)
    if tasks is not None:
        m = np.zeros(len(t), bool)
        m[np.asarray(tasks, np.int64)] = True
        sel &= m
    out = np.unique(launch[sel])
    out = out[out >= 0]
    return out[kinds(graph)[out] == T_RUNTIME]


def insert_kernel_before(graph: TaskGraph, anchors: np.ndarray, dur_ns, name: str, device,
                         after: bool = False) -> np.ndarray:
    """A new kernel right before (or after) each GPU task in `anchors` on its stream, launched by
    a new launch call of `device.launch_cpu_s` inserted right before the anchor's own launch call
    (so the CPU pays the launch too). Launch -> kernel delay: call time + `device.launch_gpu_s`
    (launch edges leave from the call's start). Anchors without a launch call get the kernel only.
    Returns the new kernels' indices."""
    anchors = np.asarray(anchors, np.int64)
    if len(anchors) == 0:
        return anchors
    launch = graph.tasks["launch"].to_numpy()[anchors]
    ins = P.insert_after if after else P.insert_before
    new = ins(graph, anchors, dur=dur_ns, name=name, kind="kernel")
    has = launch >= 0
    if has.any():
        cpu_ns = device.launch_cpu_s * 1e9
        # one new call per new kernel: several anchors of one launch (a graph launch) get a chain
        calls = np.empty(int(has.sum()), np.int64)
        pending = np.flatnonzero(has)
        while len(pending):
            _, first = np.unique(launch[pending], return_index=True)
            now = pending[first]
            calls[np.searchsorted(np.flatnonzero(has), now)] = P.insert_before(
                graph, launch[now], dur=cpu_ns, name="cudaLaunchKernel", kind="runtime")
            pending = np.setdiff1d(pending, now)
        lt = graph.tasks["launch"].to_numpy().copy()
        P.add_edges(graph, calls, new[has], delay=int(round(cpu_ns + device.launch_gpu_s * 1e9)),
                    kind="launch", from_start=True)
        # keep the launch column consistent for later optimizations (launch_calls, cuda-graphs)
        lt[new[has]] = calls
        graph.tasks["launch"] = lt
    return new


def shift_launch_delays(graph: TaskGraph, kernels_idx: np.ndarray, delta_ns) -> None:
    """Change the launch -> kernel delay of `kernels_idx` by delta_ns (clipped at 0)."""
    from daydream.transform import select_edges, set_delay
    rows = select_edges(graph, kind="launch", dst=np.asarray(kernels_idx, np.int64))
    delay = graph.edges["delay"].to_numpy()[rows]
    set_delay(graph, rows, np.maximum(delay + np.asarray(delta_ns, np.int64), 0))


def is_cpu_trace(graph: TaskGraph) -> bool:
    """Whether the run had no GPU: decided by the trace, not by tasks earlier optimizations added
    (a ddp over a CPU run inserts collectives, which are not GPU work)."""
    return not graph.trace.has_gpu


def cpu_op_segments(graph: TaskGraph, info: OpInfo, ops: tuple | re.Pattern) -> np.ndarray:
    """CPU segments (kind cpu) owned by one of `ops` (names, or a pattern searched in the name)."""
    k = kinds(graph)
    if isinstance(ops, re.Pattern):
        hit = np.fromiter((bool(ops.search(n)) for n in info.name), bool, len(info.name))
    else:
        hit = np.isin(info.name, ops)
    return (k == T_CPU) & hit


def linear_calls(graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """op_calls of aten::linear."""
    return op_calls(graph, "aten::linear")


def op_calls(graph, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CPU tasks inside the calls of op `name`: (task indices, the index of their call in the third
    array's order), and the trace event rows of those calls. A call's tasks are the CPU tasks on
    its thread whose observed time lies within its span (its own segments and its children's)."""
    tr, t = graph.trace, graph.tasks
    names = np.asarray(tr.names, dtype=object)[tr.events["name"].to_numpy()]
    rows = np.flatnonzero(names == name)
    kind, op, res = t["kind"].to_numpy(), t["op"].to_numpy(), t["resource"].to_numpy()
    start, end = t["obs_start"].to_numpy(), t["obs_end"].to_numpy()
    cpu = np.flatnonzero(kind == T_CPU)
    own = cpu[np.isin(op[cpu], rows)]
    rows = np.intersect1d(rows, op[own])  # calls with a segment of their own in the graph
    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), rows
    first_own = {int(o): int(i) for i, o in zip(own[::-1], op[own][::-1])}
    call_res = np.array([res[first_own[int(r)]] for r in rows])
    ts = tr.events["ts"].to_numpy()[rows]
    te = ts + tr.events["dur"].to_numpy()[rows]
    tasks, calls = [], []
    for r in np.unique(call_res):
        mine = cpu[res[cpu] == r]
        mine = mine[np.argsort(start[mine], kind="stable")]
        sel = np.flatnonzero(call_res == r)
        lo = np.searchsorted(start[mine], ts[sel], side="left")
        hi = np.searchsorted(start[mine], te[sel], side="left")
        for c, a, b in zip(sel.tolist(), lo.tolist(), hi.tolist()):
            inside = mine[a:b]
            inside = inside[end[inside] <= te[c]]
            tasks.append(inside)
            calls.append(np.full(len(inside), c))
    return np.concatenate(tasks), np.concatenate(calls), rows


def measured_linears(graph, calibration: dict, rows, needs: str) -> list:
    """Per aten::linear call (event rows `rows`): the run's re-timing of its shape
    (calibration["cpu_linear_shapes"], daydream.profile.shapes) where that has `needs`, else None."""
    measured = {costs.linear_shape_key(s): s for s in ((calibration.get("cpu_linear_shapes") or {}).get("shapes") or [])
                if needs in s}
    out = []
    for r in np.asarray(rows).tolist():
        shape = costs.linear_shape(graph.trace.args_of(r).get("Input Dims")) if measured else None
        out.append(measured.get(costs.linear_shape_key(shape)) if shape else None)
    return out


CONV_FWD, CONV_BWD = "aten::convolution", "aten::convolution_backward"


def measured_conv_calls(graph, calibration: dict, variant: str, scale: float = 1.0, repriced: set | None = None
                        ) -> tuple[np.ndarray, np.ndarray, int]:
    """CPU convolution calls (forward aten::convolution, backward aten::convolution_backward) in
    fp32 whose shape the run re-timed (calibration["cpu_conv_shapes"], daydream.profile.shapes):
    (the CPU tasks inside them, each task's factor, the number of calls). With t0 = t_fp32, t1 =
    t_variant ("bf16" or "fp32_x2") of the call's direction, s = `scale` and r = t1 / t0, a call's
    recorded time T becomes
        max(T + s (t1 - t0), T min(1 + s (r - 1), 1), T / 20)
    -- additive, like amp's op shapes (host noise and the profiler's own cost in T are not
    multiplied), never below what the ratio says for a faster path -- or T (1 + s (r - 1)) where
    another measured re-pricing already changed that call (`repriced`, the context's set of such
    calls, which this extends): two differences measured against the same fp32 call must not add."""
    measured = {costs.conv_shape_key(s): s for s in ((calibration.get("cpu_conv_shapes") or {}).get("shapes") or [])
                if f"{variant}_fwd_us" in s}
    none = np.zeros(0, np.int64)
    if not measured:
        return none, np.zeros(0), 0
    repriced = set() if repriced is None else repriced
    dur = graph.tasks["dur"].to_numpy()
    out_tasks, out_factor, n = [], [], 0
    for name, part in ((CONV_FWD, "fwd"), (CONV_BWD, "bwd")):
        tasks, calls, rows = op_calls(graph, name)
        if not len(rows):
            continue
        total = np.bincount(calls, weights=dur[tasks], minlength=len(rows))
        factor = np.full(len(rows), np.nan)
        for j, r in enumerate(rows.tolist()):
            a = graph.trace.args_of(r)
            m = measured.get(costs.conv_key(name, a.get("Input Dims"), a.get("Concrete Inputs")))
            if m is None or total[j] <= 0 or (a.get("Input type") or [""])[0] != "float":
                continue
            t0, t1 = m[f"fp32_{part}_us"], m[f"{variant}_{part}_us"]
            if t0 <= 0:
                continue
            ratio = 1 + scale * (t1 / t0 - 1)
            if r in repriced:
                factor[j] = max(ratio, 0.05)
            else:
                new = max(total[j] + 1e3 * scale * (t1 - t0), total[j] * min(ratio, 1.0), total[j] / 20)
                factor[j] = new / total[j]
            repriced.add(r)
        ok = np.isfinite(factor[calls])
        out_tasks.append(tasks[ok])
        out_factor.append(factor[calls][ok])
        n += int(np.isfinite(factor).sum())
    if not out_tasks:
        return none, np.zeros(0), 0
    return np.concatenate(out_tasks), np.concatenate(out_factor), n


__all__ = ["OpInfo", "COMPUTE_CLASSES", "MEMORY_CLASSES", "MATMUL_OPS", "name_dtype", "task_dtype",
           "kernel_floor_ns", "scale_work", "launch_calls", "insert_kernel_before", "gpu_mask",
           "shift_launch_delays", "is_cpu_trace", "cpu_op_segments", "linear_calls", "op_calls", "measured_linears", "measured_conv_calls", "T_COLLECTIVE"]
