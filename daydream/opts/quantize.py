"""quantize:dtype=int8|fp8|int4 -- low-bit GEMMs with quantize/dequantize kernels around them.

On device D (peaks from daydream.hardware; int4 where D has no int4 unit: 2x the int8 peak,
the packing two int4 values per int8 lane gives on Turing/Ampere, stated as an assumption for
newer parts), for every GEMM kernel outside the optimizer (kernel time d = f + work, see _cost):
* op shapes recorded (F FLOPs, B bytes, weight bytes W in the recorded dtype of b_src bytes per
  element): factor = roofline_D(F, B - W + W * b_q / b_src, q) / roofline_D(F, B, src)
  -- the weights shrink to a quarter (int8/fp8 from fp32), a half (from 16-bit), an eighth or a
  quarter (int4);
* otherwise: factor = peak_D[src] / peak_D[q].
* quantize/dequantize kernels (LRQ-DiT-style per-channel scaling, one pass over the data):
  before each GEMM op with recorded shapes a quantize kernel reads its activation input and
  writes it in q: numel(x) * (b_src + b_q) / mem_bw + launch_gpu_s; after it a dequantize kernel
  reads the int32/fp32 accumulators and writes the output in the source dtype:
  numel(out) * (4 + b_src) / mem_bw + launch_gpu_s. Each new kernel is launched by a new launch
  call of launch_cpu_s on the CPU.
CPU traces (int8 dynamic quantization of nn.Linear, torch.ao on fbgemm -- what a CPU runs): the
work replaced is every forward aten::linear call with everything inside it (the weight transpose,
addmm's bias copy, the GEMM, views), found by time containment on its thread; other matmuls
(attention bmm, a tied-embedding projection, backward GEMMs) are not quantized by it.
* A call whose shape the run re-timed (run.json["calibration"]["cpu_linear_shapes"],
  daydream.profile.shapes: fp32 and int8 forward, and training forward +
  backward, at that shape, unprofiled): T' = max(T + t_int8 - t_fp32, 0), forward times without a
  backward phase, training times (weight packing included) with one.
* Otherwise, with the run's reference calibration (run.json["calibration"]["cpu_int8_linear"],
  daydream.profile.calibrate, fp32 traces), a fixed-plus-work split per call: with T the call's
  CPU time, P the profiler's own cost recorded inside it (daydream.transform.profiler_cost, from
  run.json["profiler_event_cost"]; 0 without), c32 and c8 the measured per-call times of the fp32
  and int8 paths and s the measured speed of the int8 path's shape-dependent work over the fp32's,
  the fp32 work of a call is W = max(T~ - P~ - c32, 0) with T~, P~ the medians over the calls of
  its input shapes (one shape, one amount of work: a call that absorbed another process's time
  slice is not more work), and
      T' = T - c32 + c8 - W + W / s
  P and any interruption stay as they were (the events stay in the graph, and the unprofiled step
  time takes P out again).
* Without one: the GEMM segments inside each call scale by peak_cpu[src] / peak_cpu[q], the other
  ops inside it (addmm's bias copy, the weight transpose, views) are dropped, the call's own
  segments stay (the int8 op's dispatch), and a quantize pass of numel(x) * (b_src + b_q) / CPU
  mem_bw is added before the call.
* A trace that trains (has a backward phase) re-quantizes and packs each Linear's weight every
  step (calls not priced at their own shape), the weights having changed: numel(W) * int8_weight_pack_ns_per_element (calibration)
  before each call, or numel(W) * (b_src + b_q) / mem_bw without a calibration.
"""
from __future__ import annotations

import numpy as np

from daydream import costs
from daydream.graph.schema import T_KERNEL
from daydream.graph.phases import BACKWARD, OPTIMIZER
from daydream.opts import _cost as C
from daydream.opts.amp import WEIGHT_INPUT, first_per_op
from daydream.opts.params import Optimization, Param
from daydream.transform import primitives as P
from daydream.transform import profiler_cost

Q_BYTES = {"int8": 1.0, "fp8": 1.0, "int4": 0.5}
ACC_BYTES = 4  # int32 / fp32 accumulators the dequantize pass reads
# The activation input of each matmul op (the other operand is the weight, amp.WEIGHT_INPUT).
ACT_INPUT = {"aten::linear": 0, "aten::addmm": 1, "aten::mm": 0, "aten::matmul": 0,
             "aten::_addmm_activation": 1}


def q_peak(dev, q: str) -> float:
    if q == "int4" and not (dev.peak_flops.get("int4") or 0) > 0:
        return 2 * dev.peak("int8")
    return dev.peak(q)


def pass_bytes(info: C.OpInfo, idx: np.ndarray, q: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per task: (quantize bytes, dequantize bytes, weight bytes saved); NaN where unknown."""
    qb = Q_BYTES[q]
    out = np.full((3, len(idx)), np.nan)
    for j, i in enumerate(idx.tolist()):
        name, tens = info.name[i], info.tensors[i]
        a, w = ACT_INPUT.get(name), WEIGHT_INPUT.get(name)
        if a is None or not tens or max(a, w) >= len(tens):
            continue
        (x, xb), (wt, wb) = tens[a], tens[w]
        k = x[-1] if x else 0
        out_numel = info.flops[i] / (2 * k) if k and np.isfinite(info.flops[i]) else np.nan
        out[0, j] = costs.numel(x) * (xb + qb)
        out[1, j] = out_numel * (ACC_BYTES + xb)
        out[2, j] = costs.numel(wt) * max(wb - qb, 0.0)
    return out[0], out[1], out[2]


def apply(graph, params: dict, ctx) -> None:
    q = params["dtype"]
    dev = ctx.device
    info = C.OpInfo(graph)
    peak_q = q_peak(dev, q)
    if C.is_cpu_trace(graph):
        _apply_cpu(graph, q, dev, info, ctx, peak_q)
        return
    t = graph.tasks
    cls = P.kernel_classes(graph)
    src = C.task_dtype(graph, info, cls)
    gemm = np.flatnonzero((t["kind"].to_numpy() == T_KERNEL) & (cls == "gemm")
                          & (t["phase"].to_numpy() != OPTIMIZER) & ~np.isin(src, ("int8", "fp8", "int4", "fp4")))
    if not len(gemm):
        ctx.notes.append("quantize: no GEMM kernels outside the optimizer (or all already low-bit); nothing changed")
        return
    factor = np.array([dev.peak(s) / peak_q for s in src[gemm]])
    qbytes, dqbytes, wsaved = pass_bytes(info, gemm, q)
    shaped = info.known()[gemm] & np.isfinite(wsaved)
    if shaped.any():
        i = gemm[shaped]
        old = costs.roofline(info.flops[i], info.bytes[i], dev, src[i])
        new_bytes = np.maximum(info.bytes[i] - wsaved[shaped], 0)
        new = costs.roofline(info.flops[i], new_bytes, C.with_peak(dev, q, peak_q), q)
        factor[shaped] = np.where(old > 0, new / np.where(old > 0, old, 1), 1.0)
    C.scale_work(graph, gemm, factor, C.kernel_floor_ns(graph))
    ops = first_per_op(graph, gemm) if len(gemm) else gemm
    qbytes, dqbytes, _ = pass_bytes(info, ops, q)
    ok = np.isfinite(qbytes) & np.isfinite(dqbytes)
    lat = dev.launch_gpu_s * 1e9
    if ok.any():
        C.insert_kernel_before(graph, ops[ok], qbytes[ok] / dev.mem_bw * 1e9 + lat, f"quantize to {q} (per-channel)", dev)
        C.insert_kernel_before(graph, ops[ok], dqbytes[ok] / dev.mem_bw * 1e9 + lat, f"dequantize from {q}", dev,
                               after=True)
    ctx.notes.append(f"quantize: {len(gemm)} GEMM kernels at {q} ({int(shaped.sum())} priced by the roofline "
                     f"from their shapes), {int(ok.sum())} quantize/dequantize pass pairs added")
    if (~ok).any():
        ctx.notes.append(f"quantize: {int((~ok).sum())} GEMM ops have no recorded shapes; "
                         "their quantize/dequantize passes are not modelled")


def _measured_deltas(graph, rows, cal: dict, training: bool) -> np.ndarray:
    """Per call row: the measured change of its time, ns (int8 - fp32 at its own shape, training or
    inference; run.json["calibration"]["cpu_linear_shapes"]), NaN where its shape was not measured."""
    new, old = ("int8_train_us", "fp32_train_us") if training else ("int8_fwd_us", "fp32_fwd_us")
    return np.array([1e3 * (m[new] - m[old]) if m else np.nan
                     for m in C.measured_linears(graph, cal, rows, "int8_fwd_us")], dtype=float)


def _apply_cpu(graph, q: str, dev, info: C.OpInfo, ctx, peak_q: float) -> None:
    tasks, calls, rows = C.linear_calls(graph)
    if not len(tasks):
        ctx.notes.append("quantize: no aten::linear calls in the CPU trace (dynamic quantization replaces "
                         "nn.Linear only); nothing changed")
        return
    t = graph.tasks
    op = t["op"].to_numpy()
    own = tasks[np.isin(op[tasks], rows)]
    own = own[np.unique(op[own], return_index=True)[1]]  # one own task per call, in row order
    src = np.where(info.dtype[own] != "", info.dtype[own], "fp32")
    cal = (ctx.run or {}).get("calibration") or {}
    fp32_int8 = q == "int8" and np.all(src == "fp32")
    lin = cal.get("cpu_int8_linear") if fp32_int8 else None
    training = bool((t["phase"].to_numpy() == BACKWARD).any())
    dur = t["dur"].to_numpy()
    before = dur[tasks].sum()
    total = np.bincount(calls, weights=dur[tasks], minlength=len(rows))
    # 1. calls whose own shape was re-timed at calibration: T' = T + (int8 - fp32) at that shape
    delta = _measured_deltas(graph, rows, cal, training) if fp32_int8 else np.full(len(rows), np.nan)
    at_shape = np.isfinite(delta)
    if at_shape.any():
        new = np.maximum(total + np.where(at_shape, delta, 0), 0)
        sel = at_shape[calls]
        P.scale(graph, tasks[sel], (new / np.where(total > 0, total, 1))[calls[sel]])
    rest = ~at_shape[calls]  # tasks of the calls left to the models below
    left = own[~at_shape]  # and those calls' own tasks
    how = []
    if at_shape.any():
        how.append(f"{int(at_shape.sum())} calls of {len(rows)} at their own shapes' measured int8 - fp32 "
                   f"{'training (forward + backward, weights packed per call)' if training else 'forward'} time")
    if rest.any() and lin:
        # 2. a fixed-plus-work split from the two reference shapes (module docstring)
        cost = None if graph.without_profiler else profiler_cost.event_cost_of(graph.trace, graph)
        prof = (np.bincount(calls, weights=profiler_cost.profiler_cost_ns(graph, cost.us_per_event, cost.outside_model_us)[tasks],
                            minlength=len(rows))
                if cost else np.zeros(len(rows)))
        prof = np.minimum(prof, total)
        # calls of one shape do the same work: their median is the call without host interruptions
        # (another process's time slice inside a call is not GEMM work and stays as it was)
        shape = np.unique([repr(graph.trace.args_of(r).get("Input Dims")) for r in rows], return_inverse=True)[1]
        typical = np.array([np.median(total[shape == k]) for k in range(shape.max() + 1)])[shape]
        typical_prof = np.array([np.median(prof[shape == k]) for k in range(shape.max() + 1)])[shape]
        c32, c8 = 1e3 * lin["fp32_call_us"], 1e3 * lin["int8_call_us"]
        work = np.maximum(typical - typical_prof - c32, 0)
        new = np.maximum(total + c8 - c32 + work / lin["work_speedup"] - work, 0)
        P.scale(graph, tasks[rest], (new / np.where(total > 0, total, 1))[calls[rest]])
        how.append(f"{int((~at_shape).sum())} calls by this run's measured int8 linear calibration "
                   f"({lin['int8_call_us']:g} us a call, work {lin['work_speedup']:g}x the fp32 path's after "
                   f"its {lin['fp32_call_us']:g} us a call)")
    elif rest.any():
        # 3. no measurement: peak ratios
        mine = tasks[rest]
        is_gemm = np.isin(info.name[mine], C.MATMUL_OPS) & (info.name[mine] != "aten::linear")
        gemm = mine[is_gemm]
        tsrc = np.where(info.dtype[gemm] != "", info.dtype[gemm], "fp32")
        P.scale(graph, gemm, np.array([dev.peak(s) / peak_q for s in tsrc]))
        # what the int8 op does not do: addmm's bias copy, the weight transpose, views (the linear
        # call's own segments stay, as the int8 op's dispatch)
        P.scale(graph, mine[~is_gemm & ~np.isin(op[mine], rows)], 0.0)
        qbytes = np.array([costs.numel(info.tensors[i][0][0]) * (info.tensors[i][0][1] + Q_BYTES[q])
                           if info.tensors[i] else np.nan for i in left])
        ok = np.isfinite(qbytes)
        if ok.any():
            P.insert_before(graph, left[ok], dur=qbytes[ok] / dev.mem_bw * 1e9, name=f"quantize to {q}", kind="cpu")
        how.append(f"{int((~at_shape).sum())} calls with GEMMs at the {dev.name} entry's {q}/"
                   f"{tsrc[0] if len(tsrc) else 'fp32'} peak ratio, bias copies and transposes dropped, quantize "
                   "passes added (no measured int8 calibration in this run)")
    pack = ""
    if training and len(left):
        # weights re-quantized and packed every step (the calls priced at their own shapes include it)
        wnumel = np.array([costs.numel(info.tensors[i][1][0]) if info.tensors[i] and len(info.tensors[i]) > 1
                           else np.nan for i in left])
        per_el = cal.get("int8_weight_pack_ns_per_element") if lin else None
        ns = wnumel * per_el if per_el else wnumel * (4 + Q_BYTES[q]) / dev.mem_bw * 1e9
        ok = np.isfinite(ns)
        if ok.any():
            P.insert_before(graph, left[ok], dur=ns[ok], name=f"quantize+pack weight to {q}", kind="cpu")
        pack = f"; training: weights re-quantized and packed before each of {int(ok.sum())} other calls"
    steps = max(graph.steps, 1)
    ctx.notes.append(f"quantize: {len(own)} aten::linear calls on CPU, {before / steps / 1e6:.3f} -> "
                     f"{t['dur'].to_numpy()[tasks].sum() / steps / 1e6:.3f} ms/step: {'; '.join(how)}{pack}")


OPTIMIZATION = Optimization(
    name="quantize",
    summary="low-bit GEMMs with quantize/dequantize kernels",
    params={
        "dtype": Param("int8", "GEMM input type", str, choices=("int8", "fp8", "int4")),
    },
    apply=apply,
    memory="daydream.memory.predict:quantize",
    doc="docs/optimizations/quantize.md",
    checked_against={
        "cpu": "5 CPU pairs, int8 inference and training-like (traces/pairs)",
    },
    checked_params={"dtype": ("int8",)},
)
