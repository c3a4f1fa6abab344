"""fused-optimizer: one fused kernel per parameter group instead of per-tensor optimizer kernels.

What changes, per `Optimizer.step` span of each step:
* The span's per-tensor math ops (top-level aten ops such as add_, mul_, addcdiv_, lerp_ and
  the _foreach_* ops, with everything they run: CPU time, launch calls, kernels) are removed.
  Scalar bookkeeping (step counters read with item(), lr tensors) and the Python around the ops
  stay: a fused step (torch.optim with fused=True) still has them.
* One op takes their place: a CPU dispatch of the median removed op's own CPU time and, on a
  GPU, one launch call (median removed launch) and one kernel.
* The fused kernel is one pass over the bytes the update must touch:
      bytes = P * passes,     t_gpu = floor + bytes / mem_bw,     t_cpu = bytes / bw_cpu
  P = parameter bytes of the step (the shapes of the step's AccumulateGrad events, else
  run.json's parameter count in fp32). passes = tensors read or written per parameter element:
  params r+w, grads r, and r+w of each state tensor: SGD 3 (5 with a momentum buffer, seen as
  mul ops), Adam/AdamW/NAdam/RAdam/Adamax 7 (exp_avg, exp_avg_sq), Adagrad/RMSprop 5; unknown
  optimizers 7. floor = the trace's shortest kernel (fixed cost of any kernel). mem_bw is the
  datasheet bandwidth (daydream.hardware). On a CPU, bw_cpu = min(mem_bw, threads x
  CPU_CORE_BW), threads from run.json (torch.get_num_threads()), else the device's cores.
* Where no parameter size is known, the fused kernel keeps the removed kernels' work at the
  bandwidth they achieved and drops their fixed costs: t = floor + sum(max(d_i - floor, 0)).
A fused update is never slower than what it replaces: t is capped at the removed time.
One fused kernel per step is assumed (one parameter group on one device and dtype).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from daydream.graph.build import GPU_TASK_TYPES, T_CPU, T_KERNEL, T_RUNTIME
from daydream.graph.phases import OPTIMIZER
from daydream.opts import _comm as C
from daydream.trace.events import ANNOTATION, CPU_OP, PYTHON
from daydream.transform import primitives as P

MATH_OPS = re.compile(r"^aten::(_foreach_\w+|add_?|sub_?|mul_?|div_?|addcdiv_?|addcmul_?|lerp_?|sqrt_?|"
                      r"rsqrt_?|pow_?|maximum_?|minimum_?|neg_?|sign_?|clamp_?|clamp_min_?|abs_?|exp_?|"
                      r"copy_|clone|zero_)$")
PASSES = {"SGD": 3, "Adam": 7, "AdamW": 7, "NAdam": 7, "RAdam": 7, "Adamax": 7, "Adagrad": 5, "RMSprop": 5}
DEFAULT_PASSES = 7
# One core streams about LFB x line / latency: AMD Zen and Intel cores keep 10-24 outstanding L1
# misses of 64 B against ~80-100 ns DRAM latency, 8-15 GB/s, which is what single-threaded STREAM
# reports on current server parts (J. McCalpin, STREAM results); 12 GB/s is the middle of that.
CPU_CORE_BW = 12e9
# Kernel fixed cost when a trace has too few kernels to measure it (see daydream.opts._cost).
DEFAULT_KERNEL_FLOOR_NS = 2_000


def _passes(optimizer: str, op_names) -> int:
    p = PASSES.get(optimizer, DEFAULT_PASSES)
    if optimizer == "SGD" and any("mul" in n for n in op_names):
        p += 2  # momentum buffer read and written
    return p


def per_tensor_work(graph):
    """The optimizer steps' per-tensor math (see module docstring), or a reason there is none.

    Returns (steps, math, owner, cpu, gpu): the Optimizer.step spans in the steps, their
    top-level math ops (with the span each lies in), per task the math op that owns it (-1),
    and masks of the CPU tasks (CPU time, launch calls) and GPU tasks of that math."""
    spans = C.outermost(C.event_spans(graph, r"^Optimizer\.step#", kinds=(CPU_OP, ANNOTATION, PYTHON)))
    spans = spans[C.step_of(graph, spans["start"].to_numpy(), spans["rank"].to_numpy()) >= 0]
    if spans.empty:
        return "the trace has no Optimizer.step annotation in its steps"
    spans = spans.reset_index(drop=True)
    ops = C.event_spans(graph, r"^aten::", kinds=(CPU_OP,))
    ops = ops[C.locate(spans, ops["key"].to_numpy(), ops["start"].to_numpy()) >= 0]
    if ops["name"].str.contains("_fused_", regex=False).any():
        return "the optimizer step is already fused"
    top = C.outermost(ops)
    math = top[top["name"].map(lambda n: bool(MATH_OPS.match(n))).to_numpy()].reset_index(drop=True)
    if math.empty:
        return "no per-tensor optimizer ops in the Optimizer.step spans"
    math["span"] = C.locate(spans, math["key"].to_numpy(), math["start"].to_numpy())
    t = graph.tasks
    kind = t["kind"].to_numpy()
    owner = C.locate(math, C.thread_keys(graph), t["obs_start"].to_numpy())
    cpu = (owner >= 0) & np.isin(kind, (T_CPU, T_RUNTIME))
    launch = t["launch"].to_numpy()
    gpu = np.isin(kind, GPU_TASK_TYPES) & (launch >= 0) & cpu[np.clip(launch, 0, None)]
    return spans, math, owner, cpu, gpu


def apply(graph, params: dict, ctx) -> None:
    found = per_tensor_work(graph)
    if isinstance(found, str):
        ctx.notes.append(f"fused-optimizer: {found}; nothing changed")
        return
    steps_spans, math, owner, cpu_gone, gpu_gone = found
    t = graph.tasks
    kind = t["kind"].to_numpy()
    dur = t["dur"].to_numpy()
    launch = t["launch"].to_numpy()
    span_of = np.full(len(t), -1, np.int64)
    span_of[cpu_gone] = math["span"].to_numpy()[owner[cpu_gone]]
    span_of[gpu_gone] = span_of[launch[gpu_gone]]

    # the fused op's CPU cost: the median removed op's own CPU time (dispatch), and median launch
    cpu_own = pd.Series(dur[cpu_gone & (kind == T_CPU)]).groupby(owner[cpu_gone & (kind == T_CPU)]).sum()
    dispatch_ns = float(cpu_own.median()) if len(cpu_own) else 0.0
    launches = dur[cpu_gone & (kind == T_RUNTIME)]
    launch_ns = float(np.median(launches)) if len(launches) else ctx.device.launch_cpu_s * 1e9
    kdur = dur[kind == T_KERNEL]
    kdur = kdur[kdur > 0]
    floor = float(kdur.min()) if len(kdur) >= 5 else DEFAULT_KERNEL_FLOOR_NS

    param_bytes, source = C.parameter_bytes(graph, ctx.run)
    on_cpu = C.is_cpu_trace(graph)
    if on_cpu:
        threads = (ctx.run.get("settings") or {}).get("threads") or ctx.device.sm_count
        bw = min(ctx.device.mem_bw, float(threads) * CPU_CORE_BW)
    else:
        bw = ctx.device.mem_bw

    anchors_cpu, anchors_gpu, cpu_ns, gpu_ns, names = [], [], [], [], []
    start = t["obs_start"].to_numpy()
    for s, span in steps_spans.iterrows():
        mine_cpu = np.flatnonzero(cpu_gone & (span_of == s))
        if len(mine_cpu) == 0:
            continue
        mine_gpu = np.flatnonzero(gpu_gone & (span_of == s))
        optimizer = span["name"].split("#", 1)[1].split(".", 1)[0] if "#" in span["name"] else ""
        passes = _passes(optimizer, math.loc[math["span"] == s, "name"])
        moved = param_bytes * passes
        names.append(f"aten::_fused_{optimizer.lower() or 'optimizer'}_")
        anchors_cpu.append(int(mine_cpu[np.argmin(start[mine_cpu])]))
        if on_cpu:
            removed = float(dur[mine_cpu].sum())
            work = moved / bw * 1e9 if moved else removed - dispatch_ns * len(np.unique(owner[mine_cpu]))
            cpu_ns.append(min(dispatch_ns + max(work, 0.0), removed))
            anchors_gpu.append(-1)
            gpu_ns.append(0.0)
        else:
            cpu_ns.append(dispatch_ns)
            kd = dur[mine_gpu].astype(float)
            if moved:
                k_ns = floor + moved / bw * 1e9
            else:
                k_ns = floor + np.maximum(kd - floor, 0).sum()
            gpu_ns.append(min(k_ns, kd.sum()) if len(kd) else 0.0)
            anchors_gpu.append(int(mine_gpu[np.argmin(start[mine_gpu])]) if len(mine_gpu) else -1)
    if not anchors_cpu:
        return
    anchors_cpu = np.asarray(anchors_cpu, np.int64)
    anchors_gpu = np.asarray(anchors_gpu, np.int64)
    new_cpu = P.insert_before(graph, anchors_cpu, dur=np.asarray(cpu_ns), name=names[0], kind="cpu",
                              phase=OPTIMIZER)
    with_gpu = anchors_gpu >= 0
    if with_gpu.any():
        calls = P.insert_after(graph, new_cpu[with_gpu], dur=launch_ns, name="cudaLaunchKernel", kind="runtime")
        kern = P.insert_before(graph, anchors_gpu[with_gpu], dur=np.asarray(gpu_ns)[with_gpu],
                               name=f"multi_tensor_apply_kernel ({names[0]})", kind="kernel", phase=OPTIMIZER)
        P.add_edges(graph, calls, kern, delay=C.launch_delay_ns(graph), kind="launch", from_start=True)
    C.remove_many(graph, np.flatnonzero(cpu_gone | gpu_gone))
    where = f"parameters from {source}" if source else "no parameter sizes; removed kernels' work kept"
    ctx.notes.append(f"fused-optimizer: {int(cpu_gone.sum() + gpu_gone.sum())} per-tensor tasks replaced by "
                     f"{len(anchors_cpu)} fused update(s) ({where})")
