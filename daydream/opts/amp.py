"""amp:dtype=bf16|fp16 -- automatic mixed precision (torch.autocast) on a recorded fp32 run.

GPU traces (device D, kernel time d split into fixed part f and work d - f, see _cost):
* GEMM/conv/attention kernels recorded in fp32/tf32 (forward and backward):
  - op shapes recorded (F FLOPs, B bytes): factor = roofline_D(F, B/2, dtype) / roofline_D(F, B, src),
    i.e. the tensor-core peak for the compute-bound ones, half the bytes for the memory-bound ones;
  - otherwise by class: factor = max(peak_D[src] / peak_D[dtype], TYPICAL_FACTOR[class]) -- the
    peak ratio overstates what real layers gain, so the gain is capped at the typical factor
    (below); a device without 16-bit units (peak ratio 1) gains nothing.
* memory-bound kernels (elementwise, reduction, normalization, copy) of the forward and backward
  passes: activations are 16-bit, so bytes halve: factor 0.5 on the work part.
* optimizer kernels, collectives, memcpy/memset: unchanged (autocast keeps fp32 master weights
  and fp32 gradients).
* cast kernels: autocast casts each fp32 weight feeding a GEMM/conv once per forward. One cast
  kernel per forward GEMM/conv op with recorded shapes, before it on its stream: duration =
  numel(weight) * (4 + 2) bytes / mem_bw + launch_gpu_s, launched by a new launch call of
  launch_cpu_s on the CPU (both from daydream.hardware). Activations are not cast again: after
  the first GEMM they are already 16-bit.
* kernels already in 16-bit (name or input types say fp16/bf16) are left alone; a run whose
  GEMM/conv/attention time is mostly 16-bit already is mixed precision, and amp leaves it
  unchanged (its remaining fp32 kernels are ones the model upcasts on purpose, e.g. RMSNorm).

CPU traces (device 'cpu': the aten ops' CPU time is the work): the CPU segments of matmul/conv
ops scale by peak_cpu[fp32] / peak_cpu[dtype] from the hardware table (the generic x86 entry has
no bf16/fp16 units, so the ratio is 1 there: AVX2 parts convert to fp32 and compute at the fp32
rate), and each forward matmul/conv op gets a weight cast of numel * 6 bytes / CPU mem_bw.
"""
from __future__ import annotations

import numpy as np

from daydream import kernels
from daydream.graph.build import T_KERNEL
from daydream.graph.phases import BACKWARD, FORWARD
from daydream.opts import _cost as C
from daydream.transform import primitives as P

# Typical per-kernel speedups of 16-bit tensor-core GEMMs/convs over fp32 on the same GPU when
# the shapes are unknown: NVIDIA, "Train With Mixed Precision" (Deep Learning Performance
# Documentation) reports "up to 3x" overall speedups on Volta/Turing/Ampere for
# arithmetically intense networks, so a third of the time for GEMM/conv; attention (mostly the
# softmax and scaling between its GEMMs) is taken at half.
TYPICAL_FACTOR = {"gemm": 1 / 3, "conv": 1 / 3, "attention": 1 / 2}
MEMORY_FACTOR = 0.5  # 16-bit activations: half the bytes of a memory-bound kernel
CAST_BYTES_PER_ELEMENT = 4 + 2  # read fp32, write 16-bit
WIDE = ("fp32", "tf32")
# Which tensor input of an op is the weight autocast casts (Kineto's Input Dims order).
WEIGHT_INPUT = {"aten::linear": 1, "aten::addmm": 2, "aten::mm": 1, "aten::matmul": 1,
                "aten::_addmm_activation": 2, "aten::conv1d": 1, "aten::conv2d": 1,
                "aten::conv3d": 1, "aten::convolution": 1, "aten::_convolution": 1,
                "aten::cudnn_convolution": 1, "aten::miopen_convolution": 1,
                "aten::mkldnn_convolution": 1, "aten::_slow_conv2d_forward": 1,
                "aten::thnn_conv2d": 1, "aten::slow_conv_dilated2d": 1}


def weight_cast_bytes(info: C.OpInfo, idx: np.ndarray) -> np.ndarray:
    """Bytes a weight cast moves for each task's op (NaN where the weight is unknown)."""
    out = np.full(len(idx), np.nan)
    for j, i in enumerate(idx.tolist()):
        pos = WEIGHT_INPUT.get(info.name[i])
        tens = info.tensors[i]
        if pos is None or not tens or pos >= len(tens):
            continue
        out[j] = kernels._numel(tens[pos][0]) * CAST_BYTES_PER_ELEMENT
    return out


def first_per_op(graph, idx: np.ndarray) -> np.ndarray:
    """The first task (by index) of each distinct op among `idx`."""
    op = graph.tasks["op"].to_numpy()[idx]
    _, first = np.unique(op, return_index=True)
    return np.sort(idx[first])


def apply(graph, params: dict, ctx) -> None:
    dtype = params["dtype"]
    dev = ctx.device
    info = C.OpInfo(graph)
    if C.is_cpu_trace(graph):
        _apply_cpu(graph, dtype, dev, info, ctx)
        return
    t = graph.tasks
    kind, phase = t["kind"].to_numpy(), t["phase"].to_numpy()
    cls = P.kernel_classes(graph)
    src = C.task_dtype(graph, info, cls)
    run_dtype = C.dominant_dtype(graph, src, cls)
    if run_dtype not in WIDE:
        ctx.notes.append(f"amp: the run already computes in {run_dtype}; nothing to change")
        return
    passes = np.isin(phase, (FORWARD, BACKWARD))
    wide = (kind == T_KERNEL) & np.isin(src, WIDE)
    floor = C.kernel_floor_ns(graph)

    comp = np.flatnonzero(wide & np.isin(cls, C.COMPUTE_CLASSES))
    factor = np.array([max(dev.peak(s) / dev.peak(dtype), TYPICAL_FACTOR[c])
                       for s, c in zip(src[comp], cls[comp])])
    shaped = info.known()[comp]
    if shaped.any():
        i = comp[shaped]
        old = kernels.roofline(info.flops[i], info.bytes[i], dev, src[i])
        new = kernels.roofline(info.flops[i], info.bytes[i] * 0.5, dev, dtype)
        factor[shaped] = np.where(old > 0, new / np.where(old > 0, old, 1), 1.0)
    C.scale_work(graph, comp, factor, floor)

    mem = np.flatnonzero(wide & passes & np.isin(cls, ("elementwise", "reduction", "normalization", "copy")))
    C.scale_work(graph, mem, MEMORY_FACTOR, floor)

    # weight casts before each forward GEMM/conv op with recorded shapes
    fwd = comp[(phase[comp] == FORWARD) & np.isin(cls[comp], ("gemm", "conv"))]
    fwd = first_per_op(graph, fwd) if len(fwd) else fwd
    nbytes = weight_cast_bytes(info, fwd)
    ok = np.isfinite(nbytes)
    if ok.any():
        dur = nbytes[ok] / dev.mem_bw * 1e9 + dev.launch_gpu_s * 1e9
        C.insert_kernel_before(graph, fwd[ok], dur, f"autocast weight cast fp32->{dtype}", dev)
    skipped = int((~np.isfinite(nbytes)).sum()) if len(fwd) else 0
    if skipped:
        ctx.notes.append(f"amp: {skipped} forward GEMM/conv ops have no recorded weight shape; "
                         "their weight casts are not modelled")
    if not len(comp) and not len(mem):
        ctx.notes.append("amp: no fp32 GEMM/conv/memory-bound kernels found; the trace may already be 16-bit")


def _apply_cpu(graph, dtype, dev, info, ctx) -> None:
    mm = C.cpu_op_segments(graph, info, C.MATMUL_OPS) | C.cpu_op_segments(graph, info, C.CONV_OPS_RX)
    mm &= ~np.isin(info.dtype, ("fp16", "bf16"))
    idx = np.flatnonzero(mm)
    ratio = dev.peak("fp32") / dev.peak(dtype)
    P.scale(graph, idx, ratio)
    phase = graph.tasks["phase"].to_numpy()
    fwd = idx[phase[idx] == FORWARD]
    fwd = first_per_op(graph, fwd) if len(fwd) else fwd
    nbytes = weight_cast_bytes(info, fwd)
    ok = np.isfinite(nbytes)
    if ok.any():
        P.insert_before(graph, fwd[ok], dur=nbytes[ok] / dev.mem_bw * 1e9,
                        name=f"autocast weight cast fp32->{dtype}", kind="cpu")
    ctx.notes.append(f"amp on CPU: matmul/conv time x {ratio:.3g} (peak fp32 / peak {dtype} of {dev.name})")
