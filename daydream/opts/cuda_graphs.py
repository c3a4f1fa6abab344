"""cuda-graphs -- capture each step's forward, backward and optimizer in a CUDA graph and replay it.

A replayed graph runs none of the host code that built it: one cudaGraphLaunch per step submits
every kernel. So, inside the analysis window, for the forward, backward and optimizer phases:
* removed (duration 0): the kernel launch calls (runtime calls that launched a kernel) and the
  CPU segments (aten dispatch, Python frames, module hooks) -- their only job in a captured region
  is to launch kernels;
* kept: synchronizing calls and memcpy calls (host<->device copies of inputs and results, e.g.
  `.item()`, cannot be captured and still run every step), memsets' and copies' GPU time, the
  data and other phases (data loading, logging), and idle gaps the trace does not attribute to
  any op (uninstrumented host time: the trace cannot tell model code from other work there);
* added: one cudaGraphLaunch per step on the thread that launched the step's first kernel,
  before that launch, costing the device's launch_cpu_s (daydream.hardware: the measured
  cudaLaunchKernel cost -- a straight-line graph launch costs about one kernel launch, NVIDIA
  technical blog "Constant Time Launch for Straight-Line CUDA Graphs", 2024); every captured
  kernel of the step depends on it with launch_cpu_s + launch_gpu_s (the first node starts one
  GPU launch latency after the call), and the old per-kernel launch edges lose their delay. Kernels of a graph follow each other on their stream with
  the trace's own back-to-back kernel gap (the nominal program-order delay), which is what a
  graph's node-to-node dispatch costs.
"""
from __future__ import annotations

import numpy as np

from daydream.errors import DaydreamError
from daydream.graph.schema import T_CPU
from daydream.graph.phases import BACKWARD, FORWARD, OPTIMIZER
from daydream.opts import _cost as C
from daydream.opts.params import GPU_ONLY, Optimization, unchanged_memory
from daydream.transform import primitives as P

CAPTURED = (FORWARD, BACKWARD, OPTIMIZER)


def step_of(graph, idx: np.ndarray) -> np.ndarray:
    """Step number of each task (by its observed start and its rank's step spans; 0 without steps)."""
    t = graph.tasks
    rank = t["rank"].to_numpy()[idx]
    start = t["obs_start"].to_numpy()[idx]
    out = np.zeros(len(idx), np.int64)
    for r, w in graph.trace.windows.items():
        sel = rank == r
        if w.steps and sel.any():
            out[sel] = np.clip(np.searchsorted(w.step_spans[:, 0], start[sel], side="right") - 1, 0, None)
    return out


def apply(graph, params: dict, ctx) -> None:
    if C.is_cpu_trace(graph):
        raise DaydreamError(GPU_ONLY["cuda-graphs"])
    dev = ctx.device
    t = graph.tasks
    kind, phase, inw = t["kind"].to_numpy(), t["phase"].to_numpy(), t["in_window"].to_numpy()
    names = graph.task_names()
    gpu = np.flatnonzero(C.gpu_mask(graph) & inw & np.isin(phase, CAPTURED))
    launch = t["launch"].to_numpy()[gpu]
    ok = launch >= 0
    gpu, launch = gpu[ok], launch[ok]
    is_kernel_launch = np.fromiter(("Launch" in n for n in names[launch]), bool, len(launch))
    gpu, launch = gpu[is_kernel_launch], launch[is_kernel_launch]
    if not len(gpu):
        ctx.notes.append("cuda-graphs: no kernel launches in the forward/backward/optimizer phases")
        return
    calls = np.unique(launch)
    glue = np.flatnonzero((kind == T_CPU) & inw & np.isin(phase, CAPTURED))
    P.set_duration(graph, np.concatenate([calls, glue]), 0)
    # one graph launch per (rank, step), before the step's first launch call
    steps = step_of(graph, calls)
    rank = t["rank"].to_numpy()[calls]
    key = rank * (1 << 32) + steps
    order = np.lexsort((t["obs_start"].to_numpy()[calls], key))
    first = calls[order][np.r_[True, key[order][1:] != key[order][:-1]]]
    cpu_ns = dev.launch_cpu_s * 1e9
    glaunch = P.insert_before(graph, first, dur=cpu_ns, name="cudaGraphLaunch", kind="runtime")
    key_of_first = (t["rank"].to_numpy()[first] * (1 << 32) + step_of(graph, first))
    gl_of_key = dict(zip(key_of_first.tolist(), glaunch.tolist()))
    # a kernel belongs to the step of its launch call (it may run after the step ended)
    gkey = graph.tasks["rank"].to_numpy()[launch] * (1 << 32) + step_of(graph, launch)
    src = np.array([gl_of_key.get(k, -1) for k in gkey.tolist()], np.int64)
    has = src >= 0
    # the per-kernel launch latency is gone: only the graph launch gates the captured kernels
    C.shift_launch_delays(graph, gpu[has], -np.iinfo(np.int32).max)
    P.add_edges(graph, src[has], gpu[has], delay=int(round(cpu_ns + dev.launch_gpu_s * 1e9)),
                kind="launch", from_start=True)
    ctx.notes.append(f"cuda-graphs: {len(calls)} launch calls and {len(glue)} CPU segments replaced by "
                     f"{len(glaunch)} graph launches")


OPTIMIZATION = Optimization(
    name="cuda-graphs",
    summary="capture the step in a CUDA graph: per-kernel launch overhead removed",
    params={},
    apply=apply,
    memory=unchanged_memory("cuda-graphs: the graph's private pool holds the same tensors; unchanged"),
    doc="docs/optimizations/cuda-graphs.md",
)
