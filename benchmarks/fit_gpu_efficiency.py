"""Fit per-kernel-class achievable efficiencies and kernel floors per GPU from real traces.

    python benchmarks/fit_gpu_efficiency.py [--exclude SUBSTRING ...] [TRACE ...]

For every GPU kernel whose innermost aten op has recorded shapes (FLOPs F and bytes B from
daydream.costs.op_cost), grouped by op call (one op may launch several kernels; the group's
class is that of its longest kernel):

    efficiency[class] = sum(ideal) / sum(time - kernels * floor)

with ideal = B / mem_bw for the memory-bound classes (elementwise, reduction, normalization,
copy) and roofline(F, B) at the achievable matmul rate (MATMUL_EFFICIENCY x peak) for GEMM
and attention, time the op's kernel time and floor the device's kernel floor
(hardware.KERNEL_FLOOR_S; for a device without one, the lowest 5th percentile of kernel
durations over its traces). A class
efficiency is the fraction of the spec rate the device's kernels reach on real work, launch
floor excluded. Prints one row per device and class with the kernel-time share it is fitted on.
`--exclude` leaves traces out (leave-one-pair-out: fit without the pair being validated).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from daydream import costs, hardware
from daydream.graph.schema import GPU_TASK_TYPES, T_KERNEL
from daydream.opts import _cost as C
from daydream.opts.context import Context
from daydream.trace import load
from daydream.transform.primitives import kernel_classes
from daydream.graph import build_graph

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "traces"
# Every shared single-device trace of a GPU the cross-GPU pairs use.
TRACES = ("tracelens/gaunernst_bert-small-uncased_h100.json.gz",
          "tracelens/gaunernst_bert-small-uncased_mi300.json.gz",
          "tracelens/Qwen_Qwen1.5-0.5B-Chat_h100.json.gz",
          "tracelens/Qwen_Qwen1.5-0.5B-Chat_mi300.json.gz",
          "tracelens/ddp_resnet18_train_mi300.json.gz")
FIT_CLASSES = ("gemm", "conv", "attention", "normalization", "elementwise", "reduction", "copy")
MEMORY = ("normalization", "elementwise", "reduction", "copy")
FLOOR_PERCENTILE = 5


def op_groups(path) -> tuple[str, pd.DataFrame, float]:
    """(device family, one row per op call with its class, kernel time, kernel count, F, B,
    dtype, and the device's kernel floor in seconds)."""
    trace = load(path)
    graph = build_graph(trace)
    device = Context.of(trace).device
    k = graph.tasks["kind"].to_numpy()
    kern = np.flatnonzero(k == T_KERNEL)
    dur = graph.tasks["dur"].to_numpy().astype(float) / 1e9
    floor = float(np.percentile(dur[kern], FLOOR_PERCENTILE))
    gpu = np.flatnonzero(np.isin(k, GPU_TASK_TYPES))
    info = C.OpInfo(graph)
    cls = kernel_classes(graph)
    dt = C.task_dtype(graph, info, cls)
    df = pd.DataFrame({"op": info.op[gpu], "cls": cls[gpu], "dur": dur[gpu], "flops": info.flops[gpu],
                       "bytes": info.bytes[gpu], "dtype": dt[gpu]})
    df = df[(df.op >= 0) & np.isfinite(df.flops) & np.isfinite(df.bytes) & (df.bytes > 0)]
    df = df.sort_values("dur")
    g = df.groupby("op").agg(cls=("cls", "last"), time=("dur", "sum"), n=("dur", "size"),
                             flops=("flops", "first"), bytes=("bytes", "first"), dtype=("dtype", "last"))
    g["cls"] = g.cls.replace({"optimizer": "elementwise"})
    return device, g, floor


def memory_line(items) -> tuple[float, float, int]:
    """Least-squares d = fixed + B / (efficiency * mem_bw) over the device's single-kernel
    elementwise ops (streaming kernels: the device's achievable bandwidth and the fixed cost of a
    mid-size memory-bound kernel). Returns (fixed seconds, efficiency, ops)."""
    device = items[0][0]
    sel = [g[(g.cls == "elementwise") & (g.n == 1)] for _, g, _, _ in items]
    b = np.concatenate([s.bytes.to_numpy() for s in sel])
    d = np.concatenate([s.time.to_numpy() for s in sel])
    if len(b) < 20:
        return float("nan"), float("nan"), len(b)
    (fixed, slope), *_ = np.linalg.lstsq(np.vstack([np.ones_like(b), b]).T, d, rcond=None)
    return float(fixed), float(1.0 / slope / device.mem_bw) if slope > 0 else float("nan"), len(b)


def fit(paths) -> pd.DataFrame:
    rows = []
    per_device: dict[str, list] = {}
    for p in paths:
        device, g, floor = op_groups(p)
        per_device.setdefault(device.family, []).append((device, g, floor, Path(p).name))
    for family, items in per_device.items():
        device = items[0][0]
        # the table's floor where the device has one (the model subtracts that), else measured
        floor = hardware.KERNEL_FLOOR_S.get(family) or float(min(f for _, _, f, _ in items))
        ach = C.achievable(device)
        for c in FIT_CLASSES:
            ideal = work = total = 0.0
            for dev, g, _, _ in items:
                sel = g[g.cls == c]
                if sel.empty:
                    continue
                if c in MEMORY:
                    t = sel.bytes.to_numpy() / dev.mem_bw
                else:
                    t = costs.roofline(sel.flops.to_numpy(), sel.bytes.to_numpy(), ach, sel.dtype.to_numpy())
                ideal += float(np.sum(t))
                work += float(np.sum(np.maximum(sel.time - sel.n * floor, 0.0)))
                total += float(sel.time.sum())
            if work > 0:
                rows.append({"family": family, "class": c, "efficiency": ideal / work,
                             "kernel_ms": 1e3 * total, "traces": len(items)})
        rows.append({"family": family, "class": "floor_us", "efficiency": floor * 1e6, "kernel_ms": 0.0,
                     "traces": len(items)})
        fixed, eff, n = memory_line(items)
        rows.append({"family": family, "class": f"memory line: bandwidth efficiency ({n} ops)",
                     "efficiency": eff, "kernel_ms": 0.0, "traces": len(items)})
        rows.append({"family": family, "class": "memory line: fixed us", "efficiency": fixed * 1e6,
                     "kernel_ms": 0.0, "traces": len(items)})
    return pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("traces", nargs="*")
    ap.add_argument("--exclude", action="append", default=[])
    args = ap.parse_args()
    paths = [Path(p) for p in args.traces] or [SHARED / t for t in TRACES]
    paths = [p for p in paths if not any(x in str(p) for x in args.exclude)]
    print("fitted on:", ", ".join(p.name for p in paths))
    print(fit(paths).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
