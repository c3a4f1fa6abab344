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
* both: CPU work of the data phase (loading, collating) scales by F.
Per-step and unchanged: the optimizer, collectives (gradients do not grow with the batch),
kernel launches and other runtime calls, Python overhead.
"""
from __future__ import annotations

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
        P.scale(graph, seg, factor)
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
)
