"""gpu:target=NAME -- the same run on another device of the hardware table.

Every GPU task moves to the target T from the recorded device S (both from daydream.hardware):

* compute kernels (GEMM, conv, attention) in dtype dt: with the op's shapes recorded,
  factor = roofline_T(F, B, dt) / roofline_S(F, B, dt) (max of F / peak[dt], B / mem_bw), so a
  memory-bound GEMM follows bandwidth and a compute-bound one the dtype's peak; without shapes,
  factor = peak_S[dt] / peak_T[dt].
* memory-bound kernels (elementwise, reduction, normalization, copy, optimizer, other) and
  memsets: factor = mem_bw_S / mem_bw_T.
* memcpy: host<->device copies by PCIe bandwidth, device-to-device by memory bandwidth.
* collectives: intra-node link bandwidth ratio intra_bw_S / intra_bw_T.
Only a kernel's work part scales: d' = f + (d - f) * factor with f the trace's shortest kernel
(its fixed cost, see daydream.opts._cost).
* kernel launch calls on the CPU: duration * launch_cpu_T / launch_cpu_S (the table's measured
  launch API costs), and the launch -> kernel delay changes by launch_gpu_T - launch_gpu_S.
* all other CPU work (Python, aten dispatch, other runtime calls) is unchanged: the host is the
  same machine.
"""
from __future__ import annotations

import numpy as np

from daydream import hardware, kernels
from daydream.errors import DaydreamError
from daydream.graph.build import T_COLLECTIVE, T_MEMCPY, T_MEMSET
from daydream.opts import _cost as C
from daydream.opts.params import Optimization, Param, unchanged_memory
from daydream.transform import primitives as P


def factors(graph, src: hardware.Device, dst: hardware.Device) -> tuple[np.ndarray, np.ndarray]:
    """(GPU task indices, their work factors) for moving from src to dst."""
    idx = np.flatnonzero(C.gpu_mask(graph, collectives=True))
    cls = P.kernel_classes(graph)
    info = C.OpInfo(graph)
    dt = C.task_dtype(graph, info, cls)
    k = C.kinds(graph)
    names = graph.task_names()
    out = np.full(len(graph.tasks), src.mem_bw / dst.mem_bw)
    comp = np.isin(cls, C.COMPUTE_CLASSES) & np.isin(k, (C.T_KERNEL,))
    peak_ratio = np.array([src.peak(d) / dst.peak(d) for d in dt[comp]]) if comp.any() else np.zeros(0)
    out[comp] = peak_ratio
    shaped = comp & info.known()
    if shaped.any():
        fl, by, d = info.flops[shaped], info.bytes[shaped], dt[shaped]
        t_src = kernels.roofline(fl, by, src, d)
        t_dst = kernels.roofline(fl, by, dst, d)
        out[shaped] = np.where(t_src > 0, t_dst / np.where(t_src > 0, t_src, 1), out[shaped])
    memcpy = k == T_MEMCPY
    if memcpy.any():
        d2d = np.fromiter(("DtoD" in n or "PtoP" in n for n in names[memcpy]), bool, int(memcpy.sum()))
        out[memcpy] = np.where(d2d, src.mem_bw / dst.mem_bw, src.pcie_bw / dst.pcie_bw)
    out[k == T_MEMSET] = src.mem_bw / dst.mem_bw
    out[k == T_COLLECTIVE] = src.intra_bw / dst.intra_bw
    return idx, out[idx]


def apply(graph, params: dict, ctx) -> None:
    target = hardware.lookup(params["target"])
    if target.vendor == "cpu":
        raise DaydreamError("--opt gpu: target must be a GPU of the hardware table (see `daydream opts`)")
    if C.is_cpu_trace(graph):
        raise DaydreamError("--opt gpu: the trace has no GPU work to move; record it on a GPU")
    src, target = C.achievable(ctx.device), C.achievable(target)
    floor = C.kernel_floor_ns(graph)
    idx, f = factors(graph, src, target)
    C.scale_work(graph, idx, f, floor)
    calls = C.launch_calls(graph)
    names = graph.task_names()[calls]
    launch = calls[np.fromiter(("Launch" in n for n in names), bool, len(calls))]
    if len(launch) and src.launch_cpu_s > 0:
        P.scale(graph, launch, target.launch_cpu_s / src.launch_cpu_s)
    kern = np.flatnonzero(C.gpu_mask(graph))
    C.shift_launch_delays(graph, kern, int(round((target.launch_gpu_s - src.launch_gpu_s) * 1e9)))
    ctx.notes.append(f"gpu: {src.name} -> {target.name}; host CPU work unchanged (same host assumed)")


OPTIMIZATION = Optimization(
    name="gpu",
    summary="move the run to another device of the hardware table",
    params={
        "target": Param("H100", "device name from `daydream opts` hardware list", str),
    },
    apply=apply,
    memory=unchanged_memory("gpu: same bytes on the target device; the capacity check uses the target"),
    doc="docs/optimizations/gpu.md",
)
