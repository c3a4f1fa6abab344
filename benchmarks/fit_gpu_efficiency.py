"""Fit per-kernel-class achievable efficiencies and kernel floors per GPU from real traces.

    python benchmarks/fit_gpu_efficiency.py [--exclude SUBSTRING ...] [TRACE ...]

For every GPU kernel whose innermost aten op has recorded shapes (FLOPs F and bytes B from
daydream.costs.op_cost), grouped by op call (one op may launch several kernels; the group's
class is that of its longest kernel):

    efficiency[class] = sum(ideal) / sum(time - kernels * floor)

with ideal = B / mem_bw for the memory-bound classes (elementwise, reduction, normalization,
copy) and roofline(F, B) at the achievable matmul rate (MATMUL_EFFICIENCY x peak) for GEMM
and attention, time the op's kernel time and floor the device's kernel floor
(the lowest 5th percentile of kernel durations over its traces). A class
efficiency is the fraction of the spec rate the device's kernels reach on real work, launch
floor excluded; an op whose roofline time is under one kernel floor is left out of GEMM, conv
and attention (its time is the kernel's fixed cost). The kernel floor is the lowest 5th
percentile of kernel durations over the device's traces. Also per device: the kernel-launch API
call's host cost, the median over the device's traces of each trace's median launch call.
Prints one row per device and class with the kernel time it is fitted on. `--exclude` leaves
traces out; `--leave-one-pair-out` prints, after the full fit, the fit without each validated
pair (what benchmarks/gpu_validation.py predicts that pair with, out of sample).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from daydream import costs
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
COMPUTE_FIT = ("gemm", "conv", "attention")  # the classes CLASS_EFFICIENCY holds
# The validated pairs, by the part of the file name both traces of a pair share.
PAIRS = ("bert-small", "Qwen1.5-0.5B")
FLOOR_PERCENTILE = 5


def launch_call_s(graph) -> float:
    """Median host duration (s) of the trace's kernel-launch API calls, every entry point
    (cudaLaunchKernel, cudaLaunchKernelExC, cuLaunchKernel; hipLaunchKernel,
    hipExtModuleLaunchKernel, hipModuleLaunchKernel)."""
    calls = C.launch_calls(graph)
    names = graph.task_names()[calls]
    launch = calls[np.fromiter(("Launch" in n for n in names), bool, len(calls))]
    return float(np.median(graph.tasks["dur"].to_numpy()[launch])) / 1e9 if len(launch) else float("nan")


def op_groups(path) -> tuple[str, pd.DataFrame, float, float]:
    """(device family, one row per op call with its class, kernel time, kernel count, F, B,
    dtype, the trace's kernel floor and its median launch-call duration, both in seconds)."""
    trace = load(path)
    graph = build_graph(trace)
    device = Context.of(trace).device
    k = graph.tasks["kind"].to_numpy()
    kern = np.flatnonzero(k == T_KERNEL)
    dur = graph.tasks["dur"].to_numpy().astype(float) / 1e9
    floor = float(np.percentile(dur[kern], FLOOR_PERCENTILE))
    launch = launch_call_s(graph)
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
    return device, g, floor, launch


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
        device, g, floor, launch = op_groups(p)
        per_device.setdefault(device.family, []).append((device, g, floor, launch))
    for family, items in per_device.items():
        device = items[0][0]
        floor = float(min(f for _, _, f, _ in items))
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
                    # an op whose roofline time is under one kernel floor measures the kernel's
                    # fixed cost, not how well it uses the device: left out of the efficiency
                    keep = t >= floor
                    sel, t = sel[keep], t[keep]
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
        launches = [x for _, _, _, x in items if np.isfinite(x)]
        rows.append({"family": family, "class": "launch call us (median of the traces' medians)",
                     "efficiency": float(np.median(launches)) * 1e6 if launches else float("nan"),
                     "kernel_ms": 0.0, "traces": len(launches)})
    return pd.DataFrame(rows)


def tables(fitted: pd.DataFrame) -> dict:
    """The fit as the cross-GPU model's tables (hardware.KERNEL_FLOOR_S, MEMORY_LINE,
    CLASS_EFFICIENCY, LAUNCH_CALL_S); a device without enough data for one is left out of it."""
    out = {"KERNEL_FLOOR_S": {}, "MEMORY_LINE": {}, "CLASS_EFFICIENCY": {}, "LAUNCH_CALL_S": {}}
    for family, rows in fitted.groupby("family"):
        value = dict(zip(rows["class"], rows.efficiency))
        out["KERNEL_FLOOR_S"][family] = value["floor_us"] * 1e-6
        eff = next(v for k, v in value.items() if k.startswith("memory line: bandwidth"))
        if np.isfinite(eff):
            out["MEMORY_LINE"][family] = (value["memory line: fixed us"] * 1e-6, eff)
        out["CLASS_EFFICIENCY"][family] = {c: value[c] for c in COMPUTE_FIT if c in value}
        launch = value["launch call us (median of the traces' medians)"]
        if np.isfinite(launch):
            out["LAUNCH_CALL_S"][family] = launch * 1e-6
    return out


def leave_one_pair_out(paths, pairs) -> dict:
    """{pair key: fit without the traces whose name contains that key} for each key of pairs."""
    return {key: fit([p for p in paths if key not in p.name]) for key in pairs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("traces", nargs="*")
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--leave-one-pair-out", action="store_true",
                    help="also fit once without each validated pair (" + ", ".join(PAIRS) + ")")
    args = ap.parse_args()
    paths = [Path(p) for p in args.traces] or [SHARED / t for t in TRACES]
    paths = [p for p in paths if not any(x in str(p) for x in args.exclude)]
    show = dict(index=False, float_format=lambda v: f"{v:.3f}")
    print("fitted on:", ", ".join(p.name for p in paths))
    print(fit(paths).to_string(**show))
    if args.leave_one_pair_out:
        for key, fitted in leave_one_pair_out(paths, PAIRS).items():
            print(f"\nwithout the {key} pair, fitted on:",
                  ", ".join(p.name for p in paths if key not in p.name))
            print(fitted.to_string(**show))


if __name__ == "__main__":
    main()
