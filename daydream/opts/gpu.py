"""gpu:target=NAME -- the same run on another device of the hardware table.

Every GPU task moves to the target T from the recorded device S (both from daydream.hardware):

* compute kernels (GEMM, conv, attention) in dtype dt: with the op's shapes recorded,
  factor = roofline_T(F, B, dt) / roofline_S(F, B, dt) (max of F / peak[dt], B / mem_bw, peaks
  at the achievable matmul rate), so a memory-bound GEMM follows bandwidth and a compute-bound
  one the dtype's peak; without shapes, the median factor of the same-named kernels that have
  them, else factor = peak_S[dt] / peak_T[dt]. Each class then
  divides by its fitted efficiency on each device (hardware.CLASS_EFFICIENCY):
  factor *= eff_S[class] / eff_T[class] where both devices have one.
  d' = f * f_T / f_S + (d - f) * factor, f = min(d, f_S), with f_S, f_T the devices' kernel
  floors (hardware.KERNEL_FLOOR_S; a device without one: the trace's shortest kernel, unchanged).
* memory-bound kernels (elementwise, reduction, normalization, copy, optimizer, other) and
  memsets, where both devices have a memory line (hardware.MEMORY_LINE: d = a + B / (e * bw)):
  d >= a_S:        d' = a_T + (d - a_S) * r,  r = (e_S * bw_S) / (e_T * bw_T)
  f_S <= d < a_S:  d' = f_T + (d - f_S) * (a_T - f_T) / (a_S - f_S)  (floor to fixed cost)
  d < f_S:         d' = d * f_T / f_S
  Otherwise factor = mem_bw_S / mem_bw_T on the work part, as for compute kernels.
* memcpy: host<->device copies by PCIe bandwidth, device-to-device by memory bandwidth.
* collectives: intra-node link bandwidth ratio intra_bw_S / intra_bw_T.
* kernel launch calls on the CPU (every entry point: cudaLaunchKernel[ExC], cuLaunchKernel,
  hip[Ext]ModuleLaunchKernel, hipLaunchKernel): duration * L_T / L_S, L the runtime's launch
  call cost (hardware.LAUNCH_CALL_S, the median over the device's shared traces; elsewhere the
  device's launch_cpu_s), and the launch -> kernel delay changes by launch_gpu_T - launch_gpu_S.
* all other CPU work is unchanged: the host is the same machine. That includes Python and aten
  dispatch (on the shared pairs the two hosts differ by 12-17% there: a host property) and the
  other runtime calls: synchronizing calls are waiting, which the replay recomputes; memcpy /
  memset / attribute calls are too few and too inconsistent to price per runtime (H100
  cudaMemsetAsync: 0.24 us median on bert-small, 3.60 us on Qwen) and the two stacks make
  different sets of them (cudaFuncGetAttributes vs hipGetDevicePropertiesR0600), docs/hardware.md.
"""
from __future__ import annotations

import numpy as np

from daydream import costs, hardware
from daydream.errors import DaydreamError
from daydream.graph.schema import T_COLLECTIVE, T_MEMCPY, T_MEMSET
from daydream.opts import _cost as C
from daydream.opts.params import GPU_ONLY, Optimization, Param, unchanged_memory
from daydream.transform import primitives as P

# Kernel classes priced with another class's efficiency.
_EFFICIENCY_CLASS = {"optimizer": "elementwise"}


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
        t_src = costs.roofline(fl, by, src, d)
        t_dst = costs.roofline(fl, by, dst, d)
        out[shaped] = np.where(t_src > 0, t_dst / np.where(t_src > 0, t_src, 1), out[shaped])
        # A compute kernel without recorded shapes (queued before the profiler started, or its
        # op not recorded) takes the median factor of the kernels of the same name that have them.
        code = graph.tasks["name"].to_numpy()
        unshaped = np.flatnonzero(comp & ~shaped)
        if len(unshaped):
            sh = np.flatnonzero(shaped)
            names_sh, inv = np.unique(code[sh], return_inverse=True)
            med = np.array([np.median(out[sh][inv == i]) for i in range(len(names_sh))])
            pos = np.clip(np.searchsorted(names_sh, code[unshaped]), 0, len(names_sh) - 1)
            hit = names_sh[pos] == code[unshaped]
            out[unshaped[hit]] = med[pos[hit]]
    out[comp] *= class_efficiency_ratio(cls, src, dst)[comp]
    memcpy = k == T_MEMCPY
    if memcpy.any():
        d2d = np.fromiter(("DtoD" in n or "PtoP" in n for n in names[memcpy]), bool, int(memcpy.sum()))
        out[memcpy] = np.where(d2d, src.mem_bw / dst.mem_bw, src.pcie_bw / dst.pcie_bw)
    out[k == T_MEMSET] = src.mem_bw / dst.mem_bw
    out[k == T_COLLECTIVE] = src.intra_bw / dst.intra_bw
    return idx, out[idx]


def class_efficiency_ratio(classes: np.ndarray, src: hardware.Device, dst: hardware.Device) -> np.ndarray:
    """Per task, eff_S[class] / eff_T[class] (1 where either device has no fitted efficiency)."""
    a = hardware.CLASS_EFFICIENCY.get(src.family, {})
    b = hardware.CLASS_EFFICIENCY.get(dst.family, {})
    out = np.ones(len(classes))
    keys = np.array([_EFFICIENCY_CLASS.get(c, c) for c in classes.tolist()], dtype=object)
    for c in set(a) & set(b):
        if b[c] > 0:
            out[keys == c] = a[c] / b[c]
    return out


def launch_call_s(device: hardware.Device) -> float:
    """Host cost of one kernel-launch API call on `device`'s runtime: the cross-GPU table
    (hardware.LAUNCH_CALL_S, median over several traces) where it has the family, else the
    device entry's single-trace measurement."""
    return hardware.LAUNCH_CALL_S.get(device.family, device.launch_cpu_s)


def memory_kernel_durations(d: np.ndarray, src: hardware.Device, dst: hardware.Device,
                            floor_s: float, floor_t: float) -> np.ndarray:
    """Target durations (ns) of memory-bound kernels of durations d (ns) by the devices' memory
    lines (module docstring)."""
    (a_s, e_s), (a_t, e_t) = hardware.MEMORY_LINE[src.family], hardware.MEMORY_LINE[dst.family]
    a_s, a_t = a_s * 1e9, a_t * 1e9
    r = (e_s * src.mem_bw) / (e_t * dst.mem_bw)
    d = np.asarray(d, float)
    big = a_t + (d - a_s) * r
    mid = floor_t + (d - floor_s) * (a_t - floor_t) / max(a_s - floor_s, 1.0)
    small = d * floor_t / max(floor_s, 1.0)
    return np.where(d >= a_s, big, np.where(d >= floor_s, mid, small))


def apply(graph, params: dict, ctx) -> None:
    target = hardware.lookup(params["target"])
    if target.vendor == "cpu":
        raise DaydreamError("--opt gpu: target must be a GPU of the hardware table (see `daydream opts`)")
    if C.is_cpu_trace(graph):
        raise DaydreamError(GPU_ONLY["gpu"])
    src, target = C.achievable(ctx.device), C.achievable(target)
    floor_s = hardware.KERNEL_FLOOR_S.get(src.family)
    floor_t = hardware.KERNEL_FLOOR_S.get(target.family)
    floor = int(round(floor_s * 1e9)) if floor_s else C.kernel_floor_ns(graph)
    new_floor = int(round(floor_t * 1e9)) if floor_s and floor_t else None
    idx, f = factors(graph, src, target)
    # memory-bound kernels and memsets by the memory lines where both devices have one
    by_line = np.zeros(len(idx), bool)
    if new_floor and src.family in hardware.MEMORY_LINE and target.family in hardware.MEMORY_LINE:
        k = C.kinds(graph)[idx]
        cls = P.kernel_classes(graph)[idx]
        by_line = ((k == C.T_KERNEL) & ~np.isin(cls, C.COMPUTE_CLASSES + ("communication",))) | (k == T_MEMSET)
    C.scale_work(graph, idx[~by_line], f[~by_line], floor, new_floor)
    if by_line.any():
        mem = idx[by_line]
        d = graph.tasks["dur"].to_numpy()[mem]
        P.set_duration(graph, mem, memory_kernel_durations(d, src, target, floor, new_floor))
    calls = C.launch_calls(graph)
    names = graph.task_names()[calls]
    launch = calls[np.fromiter(("Launch" in n for n in names), bool, len(calls))]
    cost_s, cost_t = launch_call_s(src), launch_call_s(target)
    if len(launch) and cost_s > 0:
        P.scale(graph, launch, cost_t / cost_s)
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
    checked_against={
        "gpu": "bert-small and Qwen1.5-0.5B, H100 <-> MI300X (shared tracelens traces)",
    },
)
