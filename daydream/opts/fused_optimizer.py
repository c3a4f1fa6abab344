"""fused-optimizer: one fused kernel per parameter group instead of per-tensor optimizer kernels.

What changes, per `Optimizer.step` span of each step:
* The span's per-tensor math ops (top-level aten ops such as add_, mul_, addcdiv_, lerp_ and
  the _foreach_* ops, with everything they run: CPU time, launch calls, kernels) are removed,
  except the step-count increment (`state_steps += 1`: an add_/_foreach_add_ of 1 opening the
  span's math, all operands 0-dim or a list) which torch's fused Adam/AdamW/... run too.
* So is the per-parameter Python between the first and the last removed op: the scalar reads
  (aten::item, one or two per parameter for the bias corrections of the for-loop and foreach
  paths) and the span's own CPU time there (the interpreter looping over parameters and
  building per-parameter lists). A fused step calls one op with the tensor lists instead. The
  span's own CPU time before the first math op (_init_group collecting params, grads and
  states, which a fused step runs as well) and after the last stays.
* One op takes their place: its CPU call costs `gap`, the median time between the end of the
  top-level op before a removed math op and that op's start (the Python that prepares one op
  call, measured in the span), plus on a GPU the median removed op's own CPU time (dispatch),
  one launch call (median removed launch) and one kernel; on a CPU, the math itself.
* The fused update is one pass over the bytes the update must touch:
      bytes = P * passes,     t_gpu = floor + bytes / mem_bw,     t_cpu = gap + bytes / bw_cpu
  P = parameter bytes of the step (the shapes of the step's AccumulateGrad events, else
  run.json's parameter count in fp32). passes = tensors read or written per parameter element:
  params r+w, grads r, and r+w of each state tensor: SGD 3 (5 with a momentum buffer, seen as
  mul ops), Adam/AdamW/NAdam/RAdam/Adamax 7 (exp_avg, exp_avg_sq), Adagrad/RMSprop 5; unknown
  optimizers 7. floor = the trace's shortest kernel (fixed cost of any kernel). mem_bw is the
  datasheet bandwidth (daydream.hardware). On a CPU, bw_cpu = min(mem_bw, r), r the run's measured
  in-place streaming rate beyond the caches on its own threads (run.json calibration
  `dram_bytes_per_s`, daydream.profile.calibrate: ~61 GB/s on one thread of this repository's
  EPYC VM), else threads x CPU_CORE_BW, threads from run.json (torch.get_num_threads()), else the
  device's cores -- DRAM streaming. A working set no larger than the one the run's calibration streamed
  (run.json["calibration"]: an fp32 -> bf16 copy of 2**20 elements, 6 bytes each, on the
  run's threads: cast_bytes_per_s, daydream.profile.calibrate) stays in the caches between the
  passes, and streams at that measured rate instead: the small suite models' 4-6 MB updates run
  their fused Adam at ~45 GB/s on the corpus's EPYC (one thread), not 12 GB/s. Where the run
  recorded its CPU's last-level cache (run.json calibration `cpu_llc_bytes`, from sysfs), a
  working set up to half of it counts as in cache too (the other half holds the rest of the
  step: activations, the model's other tensors): a user's 400 k-parameter MLP (AdamW, 6.4 MB)
  was priced at DRAM speed, 0.93 ms, above the for-loop's own 0.65 ms, so "no change", where
  torch's fused AdamW took 0.38 ms (this EPYC: 32 MiB L3). The working set is
  the update's distinct tensors, P * (passes + 1) // 2 (params, grads and the state tensors; SGD
  with momentum 3 P, Adam 4 P), not the bytes moved: resnet50-small's fused SGD with momentum
  touches 6.1 MB (10.2 MB moved) and runs in 0.126 ms (81 GB/s) on that EPYC, where 12 GB/s
  said 0.85 ms.
* Where no parameter size is known, the fused kernel keeps the removed kernels' work at the
  bandwidth they achieved and drops their fixed costs: t = floor + sum(max(d_i - floor, 0)).
A fused update is never slower than what it replaces: t is capped at the removed time.
One fused kernel per step is assumed (one parameter group on one device and dtype).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from daydream.graph.schema import GPU_TASK_TYPES, T_CPU, T_KERNEL, T_RUNTIME
from daydream.graph.phases import OPTIMIZER
from daydream.opts import _structure as C
from daydream.opts.params import Optimization
from daydream.trace.events import ANNOTATION, CPU_OP, PYTHON
from daydream.transform import primitives as P

MATH_OPS = re.compile(r"^aten::(_foreach_\w+|add_?|sub_?|mul_?|div_?|addcdiv_?|addcmul_?|lerp_?|sqrt_?|"
                      r"rsqrt_?|pow_?|maximum_?|minimum_?|neg_?|sign_?|clamp_?|clamp_min_?|abs_?|exp_?|"
                      r"copy_|clone|zero_)$")
PASSES = {"SGD": 3, "Adam": 7, "AdamW": 7, "NAdam": 7, "RAdam": 7, "Adamax": 7, "Adagrad": 5, "RMSprop": 5}
DEFAULT_PASSES = 7
# Where the run did not measure its streaming rate (runs recorded before `dram_bytes_per_s`): one
# core streams about LFB x line / latency, 10-24 outstanding L1 misses of 64 B against ~80-100 ns
# DRAM latency, 8-15 GB/s, what single-threaded STREAM reports on older server parts (J. McCalpin,
# STREAM results); 12 GB/s is the middle of that. Newer cores do far more: 61 GB/s measured on one
# thread of this repository's EPYC VM (in-place add over 134 MB), so the measured rate comes first.
CPU_CORE_BW = 12e9
# The working set of the calibration's cast (daydream.profile.calibrate: CAST_ELEMENTS = 2**20
# fp32 elements read, bf16 written, 6 bytes each); opts sit below profile, so it is restated here
# (tests/test_opts_compute.py checks the two agree).
CALIBRATION_CAST_BYTES = (1 << 20) * (4 + 2)
# Kernel fixed cost when a trace has too few kernels to measure it (see daydream.opts._cost).
DEFAULT_KERNEL_FLOOR_NS = 2_000


def cache_stream(run: dict | None) -> tuple[float, float]:
    """(bytes/s, working-set bytes) of the run's calibrated in-cache copy (module docstring): the
    working set it holds is the larger of the calibration's own and half the recording CPU's
    last-level cache (run.json `cpu_llc_bytes`, where recorded); (0, 0) for a run without one."""
    cal = (run or {}).get("calibration") or {}
    rate = cal.get("cast_bytes_per_s")
    if not isinstance(rate, (int, float)) or rate <= 0:
        return 0.0, 0.0
    llc = cal.get("cpu_llc_bytes")
    half_llc = llc / 2 if isinstance(llc, (int, float)) and llc > 0 else 0.0
    return float(rate), max(float(CALIBRATION_CAST_BYTES), half_llc)


def _passes(optimizer: str, op_names) -> int:
    p = PASSES.get(optimizer, DEFAULT_PASSES)
    if optimizer == "SGD" and any("mul" in n for n in op_names):
        p += 2  # momentum buffer read and written
    return p


def _is_step_count(trace, row: int, name: str) -> bool:
    """Whether op `row` is the optimizer's step-count increment (`steps += 1`, or
    `_foreach_add_(steps, tensor(1.))`): an in-place add whose operands are all 0-dim tensors,
    scalars or one tensor list, adding 1."""
    if name not in ("aten::add_", "aten::_foreach_add_"):
        return False
    a = trace.args_of(row)
    dims, types, concrete = a.get("Input Dims") or [], a.get("Input type") or [], a.get("Concrete Inputs") or []
    if any(d not in ([], None) for d in dims) or sum(str(t) == "TensorList" for t in types) > 1:
        return False
    ones = []
    for c in concrete:
        try:
            ones.append(float(c) == 1.0)
        except (TypeError, ValueError):
            continue
    return any(ones)


def per_tensor_work(graph):
    """The optimizer steps' per-tensor work (see module docstring), or a reason there is none.

    Returns (spans, math, gap_ns, cpu, gpu): the Optimizer.step spans in the steps, their
    removed top-level math ops (with the span each lies in), the median Python time before
    one op call, and masks of the CPU tasks (the math's CPU time and launch calls, the
    per-parameter scalar reads and Python between the math) and GPU tasks to remove."""
    spans = C.outermost(C.event_spans(graph, r"^Optimizer\.step#", kinds=(CPU_OP, ANNOTATION, PYTHON)))
    spans = spans[C.step_of(graph, spans["start"].to_numpy(), spans["rank"].to_numpy()) >= 0]
    if spans.empty:
        return "the trace has no Optimizer.step annotation in its steps"
    spans = spans.reset_index(drop=True)
    ops = C.event_spans(graph, r"^aten::", kinds=(CPU_OP,))
    ops = ops[C.locate(spans, ops["key"].to_numpy(), ops["start"].to_numpy()) >= 0]
    if ops["name"].str.contains("_fused_", regex=False).any():
        return "the optimizer step is already fused"
    top = C.outermost(ops).sort_values(["key", "start"]).reset_index(drop=True)
    top["span"] = C.locate(spans, top["key"].to_numpy(), top["start"].to_numpy())
    # the Python before each op: back to the previous top-level op of the span (or its start)
    prev_end = top.groupby("span")["end"].shift(1).to_numpy()
    opened = spans["start"].to_numpy()[top["span"].to_numpy()]
    top["gap"] = top["start"].to_numpy() - np.where(np.isnan(prev_end), opened, prev_end)
    is_math = top["name"].map(lambda n: bool(MATH_OPS.match(n))).to_numpy()
    first_math = top[is_math].groupby("span").head(1).index
    step_count = np.zeros(len(top), bool)
    for i in first_math:
        step_count[i] = _is_step_count(graph.trace, int(top.at[i, "row"]), top.at[i, "name"])
    math = top[is_math & ~step_count]
    if math.empty:
        return "no per-tensor optimizer ops in the Optimizer.step spans"
    lo = math.groupby("span")["start"].min().reindex(range(len(spans))).to_numpy()
    hi = math.groupby("span")["end"].max().reindex(range(len(spans))).to_numpy()
    sp = top["span"].to_numpy()
    between = (top["start"].to_numpy() >= lo[sp]) & (top["end"].to_numpy() <= hi[sp])
    removed = top[(is_math & ~step_count) | ((top["name"] == "aten::item").to_numpy() & between)]
    t = graph.tasks
    kind = t["kind"].to_numpy()
    keys = C.thread_keys(graph)
    start = t["obs_start"].to_numpy()
    owner = C.locate(removed.reset_index(drop=True), keys, start)
    span_of = C.locate(spans, keys, start)
    in_top = C.locate(top, keys, start)
    ok = span_of >= 0
    python = ok & (in_top < 0) & (kind == T_CPU)
    python[ok] &= (start[ok] >= lo[span_of[ok]]) & (start[ok] < hi[span_of[ok]])
    cpu = ((owner >= 0) & np.isin(kind, (T_CPU, T_RUNTIME))) | python
    launch = t["launch"].to_numpy()
    gpu = np.isin(kind, GPU_TASK_TYPES) & (launch >= 0) & cpu[np.clip(launch, 0, None)]
    gap_ns = float(np.median(math["gap"].to_numpy()))
    return spans, math.reset_index(drop=True), gap_ns, cpu, gpu


def apply(graph, params: dict, ctx) -> None:
    found = per_tensor_work(graph)
    if isinstance(found, str):
        ctx.notes.append(f"fused-optimizer: {found}; nothing changed")
        return
    steps_spans, math, gap_ns, cpu_gone, gpu_gone = found
    t = graph.tasks
    kind = t["kind"].to_numpy()
    dur = t["dur"].to_numpy()
    launch = t["launch"].to_numpy()
    start = t["obs_start"].to_numpy()
    keys = C.thread_keys(graph)
    span_of = np.full(len(t), -1, np.int64)
    span_of[cpu_gone] = C.locate(steps_spans, keys[cpu_gone], start[cpu_gone])
    span_of[gpu_gone] = span_of[launch[gpu_gone]]
    math_of = np.full(len(t), -1, np.int64)
    math_of[cpu_gone] = C.locate(math, keys[cpu_gone], start[cpu_gone])

    # the fused op's CPU cost: one op call's Python (gap), on a GPU the median removed op's own
    # CPU time (dispatch) and the median launch
    own = cpu_gone & (kind == T_CPU) & (math_of >= 0)
    cpu_own = pd.Series(dur[own]).groupby(math_of[own]).sum()
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
        dram = ((ctx.run or {}).get("calibration") or {}).get("dram_bytes_per_s")
        # the calibration ran on the run's threads already: its rate is the total, not per thread
        measured = isinstance(dram, (int, float)) and dram > 0
        bw = min(ctx.device.mem_bw, float(dram) if measured else float(threads) * CPU_CORE_BW)
        cached_bw, cached_bytes = cache_stream(ctx.run)
    else:
        bw = ctx.device.mem_bw

    anchors_cpu, anchors_gpu, cpu_ns, gpu_ns, names = [], [], [], [], []
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
        removed = float(dur[mine_cpu].sum())
        if on_cpu:
            # without sizes: the math ops' own CPU time is the work, the Python around it goes
            # in cache when the update's working set (its distinct tensors: (passes + 1) // 2 of
            # P bytes) is no larger than the one the calibration streamed
            footprint = param_bytes * ((passes + 1) // 2)
            rate = cached_bw if moved and footprint <= cached_bytes else bw
            work = moved / rate * 1e9 if moved else float(dur[mine_cpu[math_of[mine_cpu] >= 0]].sum())
            cpu_ns.append(min(gap_ns + work, removed))
            anchors_gpu.append(-1)
            gpu_ns.append(0.0)
        else:
            cpu_ns.append(min(gap_ns + dispatch_ns, removed))
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
    P.remove(graph, np.flatnonzero(cpu_gone | gpu_gone))
    where = f"parameters from {source}" if source else "no parameter sizes; removed kernels' work kept"
    ctx.notes.append(f"fused-optimizer: {len(math)} per-tensor ops ({int(cpu_gone.sum() + gpu_gone.sum())} tasks, "
                     f"with the per-parameter Python between them) replaced by {len(anchors_cpu)} fused update(s) "
                     f"({where})")


OPTIMIZATION = Optimization(
    name="fused-optimizer",
    summary="one fused kernel per parameter group instead of per-tensor optimizer kernels",
    params={},
    apply=apply,
    memory="daydream.memory.predict:fused_optimizer",
    doc="docs/optimizations/fused-optimizer.md",
    checked_against={
        "cpu": "5 CPU pairs: resnet50, bert, llama, vit, transformer (traces/pairs)",
    },
)
