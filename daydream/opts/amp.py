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

CPU traces (device 'cpu': the aten ops' own CPU time is the work). Whether bf16 is faster or
slower than fp32 on a CPU depends on its ISA (AVX-512-BF16/AMX or not) and on the paths this torch
build takes, which no table can know, so the model reads a MEASURED calibration:
* run directories recorded by `daydream profile` on a CPU carry run.json["calibration"]
  (daydream.profile.calibrate: alternating fp32/bf16 forward+backward microbenchmarks of a
  matmul, a conv, an attention and an elementwise op on the run's threads). With s[class] the
  measured fp32/bf16 forward+backward speedup (< 1: bf16 is slower), the CPU segments of the
  leaf ops of each class in the forward and backward passes scale by 1 / s:
    matmul     aten::mm/addmm/bmm/baddbmm/... (CPU_MATMUL_OPS),
    conv       mkldnn_convolution, _slow_conv2d_*, convolution_backward, ... (CPU_CONV_OPS),
    attention  aten::_scaled_dot_product_*_attention* (CPU_ATTENTION_OPS),
    elementwise the activation and dropout ops that consume the bf16 outputs of those
               (CPU_ACTIVATION_OPS: gelu, silu, relu, tanh, sigmoid, dropout and their backward).
    rnn        oneDNN LSTM layers (aten::mkldnn_rnn_layer and its backward, CPU_RNN_OPS): no class
               speedup (the calibration has no LSTM); only re-timed at their own shapes (below).
    norm_pool  BatchNorm and max-pooling (CPU_NORM_POOL_OPS), which run in their input's dtype
               (bf16 behind a convolution): no class speedup; only re-timed at their own shapes.
  Where the calibration has them, the forward and backward segments use the forward and backward
  speedups apart (cpu_bf16_speedup_fwd/_bwd: a path can be slow one way only -- this host's bf16
  attention backward is ~9x slower than fp32, its forward 1.4x), and matmul segments whose op's
  FLOPs f are known use the two-shape GEMM calibration (cpu_bf16_matmul): per dtype the line
  t = c + f / R through its two points (c the per-call cost, R the GEMM rate), and
      factor = (c_bf16 + f / R_bf16) / (c_fp32 + f / R_fp32)
  applied to the recorded time -- bf16's per-call set-up (~12 us a GEMM on an AVX-512-BF16 EPYC)
  outweighs its faster arithmetic on a 256 x 64 x 64 GEMM and not on a 256 x 256 x 256 one.
  Wrapper ops (aten::linear, aten::conv2d, aten::convolution, aten::scaled_dot_product_attention)
  keep their own time: it is dispatch, not arithmetic. Each forward matmul/conv op gets a weight
  cast before it of numel * 6 bytes / cast_bytes_per_s (the calibration's measured cast rate).
* without a calibration (a plain trace file, a run recorded before calibrations, or a dtype the
  calibration did not measure), matmul/conv segments scale by peak_cpu[fp32] / peak_cpu[dtype]
  from the hardware table (the generic x86 entry has no bf16/fp16 units, so the ratio is 1 there)
  and the casts cost numel * 6 bytes / CPU mem_bw; ctx.notes says that the table was used.
"""
from __future__ import annotations

import re

import numpy as np

from daydream import costs, hardware
from daydream.graph.schema import T_KERNEL
from daydream.graph.phases import BACKWARD, FORWARD
from daydream.opts import _cost as C
from daydream.opts._cost import SIXTEEN_BIT
from daydream.opts.params import Optimization, Param
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
        out[j] = costs.numel(tens[pos][0]) * CAST_BYTES_PER_ELEMENT
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
    if not (dev.peak_flops.get(dtype) or 0.0):
        ctx.notes.append(f"amp: the {dev.name} has no {dtype} tensor cores ({dtype} GEMMs/convs run at the "
                         f"{hardware.FALLBACK.get(dtype, 'fp32')} rate); only the halved bytes of memory-bound "
                         "kernels can gain" + ("; try dtype=fp16" if dev.peak_flops.get("fp16") else ""))
    passes = np.isin(phase, (FORWARD, BACKWARD))
    wide = (kind == T_KERNEL) & np.isin(src, WIDE)
    floor = C.kernel_floor_ns(graph)

    comp = np.flatnonzero(wide & np.isin(cls, C.COMPUTE_CLASSES))
    factor = np.array([max(dev.peak(s) / dev.peak(dtype), TYPICAL_FACTOR[c])
                       for s, c in zip(src[comp], cls[comp])])
    shaped = info.known()[comp]
    if shaped.any():
        i = comp[shaped]
        old = costs.roofline(info.flops[i], info.bytes[i], dev, src[i])
        new = costs.roofline(info.flops[i], info.bytes[i] * 0.5, dev, dtype)
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


# Leaf aten ops whose own CPU time is the arithmetic of each calibrated class (CPU traces).
CPU_MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation",
                  "aten::addbmm", "aten::mv", "aten::addmv")
CPU_CONV_OPS = re.compile(r"mkldnn_convolution|_slow_conv|thnn_conv|slow_conv_dilated|slow_conv_transpose"
                          r"|^aten::convolution_backward$|_conv_depthwise|_nnpack_spatial")
CPU_ATTENTION_OPS = re.compile(r"^aten::_scaled_dot_product_\w*attention|_native_multi_head_attention")
CPU_ACTIVATION_OPS = re.compile(r"^aten::(gelu|silu|relu|threshold|tanh|sigmoid|native_dropout|bernoulli_"
                                r"|clamp_min|hardswish|leaky_relu|elu|mish)(_backward)?_?$")
CPU_RNN_OPS = ("aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward")  # on autocast's CPU bf16 list
# BatchNorm and max-pooling run in their input's dtype, bf16 behind a convolution: priced only at
# their own re-timed shapes (cpu_op_shapes), no class factor (their bf16 paths differ: BatchNorm 4x
# faster on this EPYC at 32x32x64x64, max-pooling 5% slower)
CPU_NORM_POOL_OPS = ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::max_pool2d_with_indices")


def calibration(ctx, dtype: str) -> tuple[dict, float] | None:
    """The run's measured CPU speedups for `dtype` by class and its cast rate (bytes/s, 0 when
    not measured), or None when the run has no calibration for `dtype`."""
    cal = (ctx.run or {}).get("calibration") or {}
    if dtype != "bf16" or not isinstance(cal.get("cpu_bf16_speedup"), dict):
        return None
    speedup = {c: float(v) for c, v in cal["cpu_bf16_speedup"].items()
               if isinstance(v, (int, float)) and v > 0}
    rate = cal.get("cast_bytes_per_s")
    return speedup, float(rate) if isinstance(rate, (int, float)) and rate > 0 else 0.0


def _per_pass(cal: dict, key: str, speedup: dict) -> dict:
    """The forward or backward speedups by class (`key`), the combined one where not measured."""
    part = cal.get(key) if isinstance(cal.get(key), dict) else {}
    return {c: float(part[c]) if isinstance(part.get(c), (int, float)) and part[c] > 0 else v
            for c, v in speedup.items()}


def gemm_line(cal: dict, dtype_key: str) -> tuple[float, float] | None:
    """(c ns, R FLOP/ns) of t = c + f / R through cpu_bf16_matmul's two points, or None."""
    mm = cal.get("cpu_bf16_matmul") or {}
    f, t = mm.get("flops") or [], mm.get(dtype_key) or []
    if len(f) != 2 or len(t) != 2 or not f[1] > f[0] or not t[1] > t[0]:
        return None
    rate = (f[1] - f[0]) / (1e3 * (t[1] - t[0]))
    return max(1e3 * t[0] - f[0] / rate, 0.0), rate


def gemm_factors(cal: dict, flops: np.ndarray) -> np.ndarray | None:
    """bf16 / fp32 time of a GEMM of `flops` FLOPs by the two-shape calibration (NaN where
    unknown), or None when the run has no two-shape calibration."""
    lines = gemm_line(cal, "fp32_us"), gemm_line(cal, "bf16_us")
    if None in lines:
        return None
    (c32, r32), (c16, r16) = lines
    fp32 = c32 + flops / r32  # 0 for a call of no FLOPs when the fp32 line's intercept is clamped to 0
    return np.divide(c16 + flops / r16, fp32, out=np.full(len(fp32), np.nan), where=fp32 > 0)


def cpu_classes(graph, info) -> np.ndarray:
    """Per task: the calibrated class of its CPU segment ('' for other work and non-CPU tasks)."""
    out = np.full(len(info.name), "", dtype=object)
    out[C.cpu_op_segments(graph, info, CPU_MATMUL_OPS)] = "matmul"
    out[C.cpu_op_segments(graph, info, CPU_CONV_OPS)] = "conv"
    out[C.cpu_op_segments(graph, info, CPU_ATTENTION_OPS)] = "attention"
    out[C.cpu_op_segments(graph, info, CPU_ACTIVATION_OPS)] = "elementwise"
    out[C.cpu_op_segments(graph, info, CPU_RNN_OPS)] = "rnn"
    out[C.cpu_op_segments(graph, info, CPU_NORM_POOL_OPS)] = "norm_pool"
    out[np.isin(info.dtype, SIXTEEN_BIT)] = ""  # already 16-bit
    return out


def measured_op_factors(graph, info, raw: dict) -> np.ndarray:
    """Per task: the factor on the CPU segments of an op whose own recorded shape the run re-timed
    (run.json's cpu_op_shapes, daydream.profile.shapes), NaN elsewhere. Additive: with T the op's
    recorded time (its segments' sum) and t32, t16 the measured times, T' = max(T + t16 - t32,
    T * t16 / t32 where that is < T): another process's time slice or the profiler's own cost in T
    is not arithmetic and is not multiplied by a slow path's ratio (a bert trace's 400 us attention
    backward, 97 us re-timed, 14x slower in bf16: x14 would add 5.2 ms, the difference 1.3 ms)."""
    out = np.full(len(info.name), np.nan)
    ops = (raw.get("cpu_op_shapes") or {}).get("ops") or []
    times = {costs.op_shape_key(o["op"], {"Input Dims": o["dims"], "Input Strides": o["strides"],
                                          "Concrete Inputs": o["concrete"]}): (1e3 * o["fp32_us"], 1e3 * o["bf16_us"])
             for o in ops if o.get("fp32_us", 0) > 0 and o.get("bf16_us", 0) > 0}
    if not times:
        return out
    rows, dur = graph.tasks["op"].to_numpy(), graph.tasks["dur"].to_numpy()
    seg = np.flatnonzero(C.cpu_op_segments(graph, info, tuple({o["op"] for o in ops})))
    if not len(seg):
        return out
    row_ids, inverse = np.unique(rows[seg], return_inverse=True)
    total = np.bincount(inverse, weights=dur[seg], minlength=len(row_ids))
    factor = np.full(len(row_ids), np.nan)
    first = np.unique(inverse, return_index=True)[1]
    for j, r in enumerate(row_ids.tolist()):
        t = times.get(costs.op_shape_key(info.name[seg[first[j]]], graph.trace.args_of(r)))
        if t is None or total[j] <= 0:
            continue
        t32, t16 = t
        new = max(total[j] + t16 - t32, total[j] * min(t16 / t32, 1.0))
        factor[j] = new / total[j]
    out[seg] = factor[inverse]
    return out


def refused_bf16(raw: dict, ctx) -> None:
    """A note for each op the run's re-timing could run in fp32 but not in bf16 at its recorded
    shapes (cpu_op_shapes' `bf16_refused`, daydream.profile.shapes): under autocast the user's
    script would stop with that error on the recording CPU, so the prediction is for a run that
    cannot happen there; those calls are not re-priced at their own shapes (an LSTM layer keeps
    its time: there is no class speedup for it)."""
    ops = (raw.get("cpu_op_shapes") or {}).get("ops") or []
    refused = {}
    for o in ops:
        if o.get("bf16_refused"):
            refused.setdefault(o["op"], o["bf16_refused"])
    for op, why in sorted(refused.items()):
        ctx.notes.append(f"amp on CPU: warning: {op} at this run's shapes does not run in bf16 on the recording "
                         f"CPU (torch: {why}); under autocast the script would fail there; its calls are not "
                         "re-priced at their own shapes")


def linear_casts(graph, raw: dict, training: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward aten::linear calls whose shape the run re-timed: (the first own task of each, the
    cast time autocast adds to it in ns -- forward casts, plus the gradients' casts back when the
    trace trains --, and every task inside those calls)."""
    none = np.zeros(0, np.int64)
    if not any("cast_fwd_us" in s for s in (raw.get("cpu_linear_shapes") or {}).get("shapes") or []):
        return none, np.zeros(0), none
    tasks, calls, rows = C.linear_calls(graph)
    op, phase = graph.tasks["op"].to_numpy(), graph.tasks["phase"].to_numpy()
    first, ns, inside = [], [], []
    for j, (r, m) in enumerate(zip(rows.tolist(), C.measured_linears(graph, raw, rows, "cast_fwd_us"))):
        mine = tasks[calls == j]
        own = mine[op[mine] == r]
        if m is None or not len(own) or phase[own[0]] != FORWARD:
            continue
        first.append(own.min())
        ns.append(1e3 * (m["cast_fwd_us"] + (m["cast_bwd_us"] if training else 0.0)))
        inside.append(mine)
    if not first:
        return none, np.zeros(0), none
    return np.array(first), np.array(ns), np.concatenate(inside)


def _apply_cpu(graph, dtype, dev, info, ctx) -> None:
    cls = cpu_classes(graph, info)
    phase = graph.tasks["phase"].to_numpy()
    cal = calibration(ctx, dtype)
    cast_at, cast_ns, cast_inside = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    if cal is not None:
        speedup, cast_rate = cal
        factor = np.ones(len(cls))
        raw = ctx.run["calibration"]
        for ph, key in ((FORWARD, "cpu_bf16_speedup_fwd"), (BACKWARD, "cpu_bf16_speedup_bwd")):
            for c, s in _per_pass(raw, key, speedup).items():
                factor[(cls == c) & (phase == ph)] = 1.0 / s
        gemm = gemm_factors(raw, info.flops)
        if gemm is not None:
            mm = (cls == "matmul") & np.isin(phase, (FORWARD, BACKWARD)) & np.isfinite(gemm) & (info.flops > 0)
            factor[mm] = gemm[mm]
        at_shape = measured_op_factors(graph, info, raw)
        own = np.isfinite(at_shape) & (cls != "") & np.isin(phase, (FORWARD, BACKWARD))
        factor[own] = at_shape[own]
        conv, conv_f, n_conv = (C.measured_conv_calls(graph, raw, "bf16", repriced=ctx.repriced) if dtype == "bf16"
                                else (None, None, 0))
        if n_conv:
            factor[conv] = conv_f  # whole convolution calls, their native/oneDNN children included
        idx = np.flatnonzero(factor != 1.0)
        P.scale(graph, idx, factor[idx])
        if dtype == "bf16":
            training = bool((phase == BACKWARD).any())
            cast_at, cast_ns, cast_inside = linear_casts(graph, raw, training)
        cast_rate = cast_rate or dev.mem_bw
        shown = {c: round(v, 3) for c, v in speedup.items()}
        measured = (f"; {len(np.unique(graph.tasks['op'].to_numpy()[own]))} GEMM/attention/LSTM ops changed by their "
                    f"own shapes' measured {dtype} - fp32 time" if own.any() else "")
        casts = (f"; autocast casts of {len(cast_at)} Linear calls at their shapes' measured copy times"
                 if len(cast_at) else "")
        if n_conv:
            measured += (f"; {n_conv} convolution calls (forward and backward) changed by their own shapes' "
                         f"measured {dtype} - fp32 time")
        ctx.notes.append(f"amp on CPU: measured calibration of this run's CPU (run.json): fp32/{dtype} "
                         f"speedups {shown}; < 1 means {dtype} is slower here{measured}{casts}")
        if dtype == "bf16":
            refused_bf16(raw, ctx)
    else:
        ratio = dev.peak("fp32") / dev.peak(dtype)
        P.scale(graph, np.flatnonzero(np.isin(cls, ("matmul", "conv"))), ratio)
        cast_rate = dev.mem_bw
        if dtype != "bf16":
            why = f"the calibration measures bf16 only, not {dtype}"
        elif ctx.trace.run_dir is not None:
            why = (f"the run directory {ctx.trace.run_dir} has no bf16 calibration in its run.json "
                   "(recorded before calibrations)")
        else:
            why = "the trace is a plain trace file, not a `daydream profile` CPU run directory with a calibration"
        ctx.notes.append(f"amp on CPU: {why}; matmul/conv time x {ratio:.3g} from the hardware table "
                         f"(peak fp32 / peak {dtype} of {dev.name}), which cannot know this CPU's "
                         f"{dtype} paths: re-profile with `daydream profile` for a measured one")
    if len(cast_at):
        P.insert_before(graph, cast_at, dur=cast_ns, name=f"autocast casts fp32<->{dtype} (measured)", kind="cpu")
    fwd = np.flatnonzero(np.isin(cls, ("matmul", "conv")) & (phase == FORWARD))
    fwd = np.setdiff1d(fwd, cast_inside)  # their casts are the measured ones above
    fwd = first_per_op(graph, fwd) if len(fwd) else fwd
    nbytes = weight_cast_bytes(info, fwd)
    ok = np.isfinite(nbytes)
    if ok.any():
        P.insert_before(graph, fwd[ok], dur=nbytes[ok] / cast_rate * 1e9,
                        name=f"autocast weight cast fp32->{dtype}", kind="cpu")


OPTIMIZATION = Optimization(
    name="amp",
    summary="automatic mixed precision: tensor-core GEMMs/convs, half the bytes of memory-bound kernels, cast kernels added",
    params={
        "dtype": Param("bf16", "16-bit type", str, choices=("fp16", "bf16")),
    },
    apply=apply,
    memory="daydream.memory.predict:amp",
    doc="docs/optimizations/amp.md",
    checked_against={
        "cpu": "5 CPU pairs, bf16: resnet50, bert, llama, vit, transformer (traces/pairs)",
    },
    checked_params={"dtype": ("bf16",)},
)
