"""batch-size:factor=F -- the same step with F times the samples.

Per-sample work scales, per-step work does not:
* GPU traces: the kernels of the forward and backward passes (weight-gradient GEMMs included:
  their reduction dimension is the batch) except optimizer and communication kernels, and the
  memcpy/memset of the forward and data phases (input copies). A kernel that does not fill the
  device does not slow down until it does: with `blocks` = the grid's block count (Kineto's
  kernel `grid` argument) and `SMs` the device's SM/CU count,
      fill = blocks / SMs,   factor' = max(1, F * fill) / max(1, fill)
  (time in waves, at least one wave); kernels without a recorded grid scale by F. Only the work
  part scales (d = f + work, f the trace's shortest kernel, see _cost).
* CPU traces (the aten ops' CPU time is the work): the CPU segments of aten ops that touch tensor
  data (daydream.costs.op_cost gives them bytes or FLOPs, or does not know them) in the forward
  and backward passes scale by F; metadata ops (view, empty, ...) and Python/framework glue
  (segments with no aten op) are per-step.
  One exception, PyTorch's own CPU convolution dispatch (aten/src/ATen/native/Convolution.cpp,
  ConvParams::use_mkldnn): an fp32 1x1, stride-1 convolution runs on the native im2col+GEMM path
  (_slow_conv2d_forward/_backward: "THNN is faster when single-threaded") only while the batch is
  below MKLDNN_MIN_BATCH = 16 and torch runs one intra-op thread, else on oneDNN. When the new
  batch crosses 16, those ops are priced as the GEMMs oneDNN runs them as, on the run's
  calibrated fp32 GEMM line (see slow_conv_switch); without a calibration they scale by F.
  Where the run re-timed its convolutions at 1x and 2x its batch (run.json calibration
  cpu_conv_shapes, daydream.profile.shapes: aten::convolution, so on the path the dispatcher
  picks at each batch), each forward aten::convolution and backward aten::convolution_backward
  call of a measured shape, with everything inside it, becomes T + (F - 1) * (t_2x - t_1x) for
  1 < F <= 2 (floored as _cost.measured_conv_calls says), the F = 2 figure x F/2 above; F <= 1
  keeps the per-sample scaling (the line says nothing outside its points when the path changes).
* both: CPU work of the data phase (loading, collating) scales by F.
Per-step and unchanged: the optimizer, collectives (gradients do not grow with the batch),
kernel launches and other runtime calls, Python overhead.
"""
from __future__ import annotations

import re

import numpy as np

from daydream.graph.schema import T_CPU, T_KERNEL, T_MEMCPY, T_MEMSET
from daydream.graph.phases import BACKWARD, DATA, FORWARD
from daydream.opts import _cost as C
from daydream.opts.params import Optimization, Param
from daydream.transform import primitives as P


def grid_blocks(graph, idx: np.ndarray) -> np.ndarray:
    """Blocks in each GPU task's launch grid (NaN where the trace does not record one)."""
    tr = graph.trace
    ev = graph.tasks["event"].to_numpy()[idx]
    out = np.full(len(idx), np.nan)
    for j, row in enumerate(ev.tolist()):
        if row < 0:
            continue
        grid = tr.args_of(row).get("grid")
        if isinstance(grid, (list, tuple)) and grid and all(isinstance(g, (int, float)) for g in grid):
            out[j] = float(np.prod(grid))
    return out


def occupancy_factor(factor: float, blocks: np.ndarray, sms: int) -> np.ndarray:
    """max(1, F * fill) / max(1, fill), fill = blocks / SMs; F where blocks is unknown."""
    fill = blocks / max(sms, 1)
    out = np.maximum(1.0, factor * fill) / np.maximum(1.0, fill)
    return np.where(np.isfinite(blocks), out, factor)


# ConvParams::use_mkldnn (PyTorch 2.x): fp32 1x1 stride-1 convolutions go to oneDNN from this batch on.
MKLDNN_MIN_BATCH = 16
SLOW_CONV_FWD, SLOW_CONV_BWD = "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward"
REF_GEMM_FLOPS = 2 * 128 * 256 * 256  # the calibration's reference fp32 linear (cpu_int8_linear)


def gemm_line(run: dict | None) -> tuple[float, float] | None:
    """(c ns, R FLOP/ns) of the run's fp32 GEMM, t = c + f / R, from its calibration
    (run.json["calibration"]["cpu_int8_linear"], daydream.profile.calibrate: an fp32 F.linear at
    x 1 x 8, W 8 x 8 -- the per-call cost c -- and at x 128 x 256, W 256 x 256), or None."""
    lin = ((run or {}).get("calibration") or {}).get("cpu_int8_linear") or {}
    call, ref = lin.get("fp32_call_us"), lin.get("ref_fp32_us")
    if not isinstance(call, (int, float)) or not isinstance(ref, (int, float)) or ref <= call:
        return None
    return 1e3 * call, REF_GEMM_FLOPS / (1e3 * (ref - call))


def slow_conv_switch(graph, info, factor: float, seg: np.ndarray, run: dict | None
                     ) -> tuple[np.ndarray, np.ndarray, str]:
    """(tasks, new durations, note) for the native-path 1x1 convolutions (segments of `seg`) that
    the new batch moves onto oneDNN (module docstring); empty when none does or the run has no
    fp32 GEMM calibration to price them with.

    A 1x1 stride-1 convolution is a GEMM of (N H W) x Cin x Cout; oneDNN runs it as one, so each
    of its GEMMs costs what the run's calibrated fp32 GEMM line says (gemm_line):
        GEMMs   = 1 forward; backward: grad_input and/or grad_weight (output_mask), 1 or 2
        f       = 2 N' H W Cin Cout,  N' = N x F
        time'   = GEMMs x (c + f / R)
    An op split into several segments gets time' in proportion to their recorded durations."""
    tr = graph.trace
    dur = graph.tasks["dur"].to_numpy().astype(float)
    cand = seg[np.isin(info.name[seg], (SLOW_CONV_FWD, SLOW_CONV_BWD))]
    line = gemm_line(run)
    if not len(cand) or line is None:
        return np.empty(0, np.int64), np.empty(0), ""
    c_ns, rate = line
    tasks, new = [], []
    for row in np.unique(info.op[cand]):
        args = tr.args_of(row)
        mine = cand[info.op[cand] == row]
        name = str(info.name[mine[0]])
        dims, conc = args.get("Input Dims") or [], args.get("Concrete Inputs") or []
        x, w = (dims[0], dims[1]) if name == SLOW_CONV_FWD else (dims[1], dims[2]) if len(dims) > 2 else ([], [])
        if len(x) != 4 or len(w) != 4 or list(w[2:]) != [1, 1]:
            continue
        batch = x[0]
        if not (batch < MKLDNN_MIN_BATCH <= round(batch * factor)):
            continue
        gemms = 1
        if name == SLOW_CONV_BWD:
            mask = re.findall(r"True|False", conc[6]) if len(conc) > 6 and conc[6] else ["True", "True"]
            gemms = max(mask[:2].count("True"), 1)
        flops = 2.0 * batch * factor * w[0] * w[1] * x[2] * x[3]
        tasks.append(mine)
        new.append(gemms * (c_ns + flops / rate) * dur[mine] / max(dur[mine].sum(), 1.0))
    if not tasks:
        return np.empty(0, np.int64), np.empty(0), ""
    tasks, new = np.concatenate(tasks), np.concatenate(new)
    steps = max(int(getattr(tr, "steps", 1) or 1), 1)
    note = (f"batch-size: {len(np.unique(info.op[tasks])) / steps:g} native-path 1x1 convolution ops a step cross "
            f"batch {MKLDNN_MIN_BATCH} and move to oneDNN (PyTorch's CPU dispatch), priced as GEMMs on the run's "
            f"calibrated fp32 GEMM line ({c_ns / 1e3:.1f} us a call + {rate:.0f} GFLOP/s): "
            f"{dur[tasks].sum() / 1e6 / steps:.3f} -> {new.sum() / 1e6 / steps:.3f} ms a step")
    return tasks, new, note


def apply(graph, params: dict, ctx) -> None:
    factor = float(params["factor"])
    t = graph.tasks
    kind, phase = t["kind"].to_numpy(), t["phase"].to_numpy()
    passes = np.isin(phase, (FORWARD, BACKWARD))
    data_cpu = np.flatnonzero((kind == T_CPU) & (phase == DATA))
    P.scale(graph, data_cpu, factor)
    if C.is_cpu_trace(graph):
        info = C.OpInfo(graph)
        tensor_work = (info.op >= 0) & ~((info.flops == 0) & (info.bytes == 0))
        seg = np.flatnonzero((kind == T_CPU) & passes & tensor_work)
        # convolutions the run re-timed at twice its batch (daydream.profile.shapes): linear in the
        # batch through the two measured points, whichever path (native, oneDNN) each one takes
        # (1 < F <= 2: the line; F > 2: the 2x point, then x F/2; F <= 1: the per-sample scaling below,
        # the line being no guide outside the two points when the path changes between them)
        conv, conv_f, n = (C.measured_conv_calls(graph, (ctx.run or {}).get("calibration") or {}, "fp32_x2",
                                                 scale=min(factor, 2.0) - 1.0, repriced=ctx.repriced)
                           if factor > 1 else (np.zeros(0, np.int64), np.zeros(0), 0))
        if factor > 2:
            conv_f = conv_f * factor / 2
        seg = np.setdiff1d(seg, conv)
        switched, switched_ns, note = slow_conv_switch(graph, info, factor, seg, ctx.run)
        P.scale(graph, np.setdiff1d(seg, switched), factor)
        if len(switched):
            P.set_duration(graph, switched, switched_ns)
            ctx.notes.append(note)
        if n:
            P.scale(graph, conv, conv_f)
            steps = max(graph.steps, 1)
            ctx.notes.append(f"batch-size: {n / steps:g} convolution calls a step (forward and backward) priced by "
                             "this run's re-timed convolutions at 1x and 2x its batch"
                             + ("" if factor == 2 else ", linear in the batch between them" if factor < 2
                                else f", the 2x time x {factor / 2:g}"))
    else:
        cls = P.kernel_classes(graph)
        kern = np.flatnonzero((kind == T_KERNEL) & passes & ~np.isin(cls, ("optimizer", "communication")))
        f = occupancy_factor(factor, grid_blocks(graph, kern), ctx.device.sm_count)
        C.scale_work(graph, kern, f, C.kernel_floor_ns(graph))
        copies = np.flatnonzero(np.isin(kind, (T_MEMCPY, T_MEMSET)) & np.isin(phase, (FORWARD, DATA)))
        P.scale(graph, copies, factor)
    if ctx.batch_size:
        ctx.notes.append(f"batch-size: {ctx.batch_size} -> {ctx.batch_size * factor:g} samples per step")


OPTIMIZATION = Optimization(
    name="batch-size",
    summary="scale the batch: per-sample work scales, per-step work does not",
    params={
        "factor": Param(2.0, "new batch size / recorded batch size", float, 0.01, 1024),
    },
    apply=apply,
    memory="daydream.memory.predict:batch_size",
    doc="docs/optimizations/batch-size.md",
    checked_against={
        "cpu": "5 CPU pairs, batch x2: resnet50, bert, llama, vit, transformer (traces/pairs)",
    },
)
