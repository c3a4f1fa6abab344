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
CPU traces: the matmul ops' CPU segments scale by peak_cpu[src] / peak_cpu[q] (1 on the generic
x86 entry, which has no int8/fp8 units in the table), with the quantize pass as CPU time
before each op (bytes / CPU mem_bw).
"""
from __future__ import annotations

import numpy as np

from daydream import costs
from daydream.graph.schema import T_KERNEL
from daydream.graph.phases import OPTIMIZER
from daydream.opts import _cost as C
from daydream.opts.amp import WEIGHT_INPUT, first_per_op
from daydream.opts.params import Optimization, Param
from daydream.transform import primitives as P

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
        seg = np.flatnonzero(C.cpu_op_segments(graph, info, C.MATMUL_OPS))
        if not len(seg):
            ctx.notes.append("quantize: no matmul ops in the CPU trace; nothing changed")
            return
        src = np.where(info.dtype[seg] != "", info.dtype[seg], "fp32")
        gain = np.array([dev.peak(s) / peak_q for s in src])
        P.scale(graph, seg, gain)
        if np.all(gain >= 1):
            ctx.notes.append(f"quantize: the {dev.name} entry of the hardware table has no {q} units faster "
                             f"than {src[0]}: matmul time is unchanged and the quantize passes are added")
        else:
            ctx.notes.append(f"quantize: {len(seg)} matmul segments run at the {dev.name} entry's {q} rate "
                             f"({1 / float(np.median(gain)):.3g}x its {src[0]} rate), quantize passes added; "
                             "(work that fp32 addmm does and int8 kernels skip, such as its bias copy, is not modelled)")
        ops = first_per_op(graph, seg) if len(seg) else seg
        qbytes, _, _ = pass_bytes(info, ops, q)
        ok = np.isfinite(qbytes)
        if ok.any():
            P.insert_before(graph, ops[ok], dur=qbytes[ok] / dev.mem_bw * 1e9, name=f"quantize to {q}", kind="cpu")
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


OPTIMIZATION = Optimization(
    name="quantize",
    summary="low-bit GEMMs with quantize/dequantize kernels",
    params={
        "dtype": Param("int8", "GEMM input type", str, choices=("int8", "fp8", "int4")),
    },
    apply=apply,
    memory="daydream.memory.predict:quantize",
    doc="docs/optimizations/quantize.md",
)
