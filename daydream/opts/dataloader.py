"""dataloader:workers=W,prefetch=P[,load_ms=L] -- DataLoader worker processes load batches in the background.

Both directions, from the workers the trace already uses (`trace_workers`: run.json, else the
iterator class in the `enumerate(DataLoader)#...` span). From num_workers=0 the data span is the
loading, modelled below. From num_workers>0 the data span is only the hand-off of a ready batch
(never called loading); one batch's loading time L comes from the workers' own recorded work, else
load_ms, else the batch's host-to-device bytes x LOAD_NS_PER_BYTE (an estimate, noted). workers=0
then puts L on the main thread in place of the hand-off and takes out what the workers cost the
main process (`uncontended`); other counts recompute the wait below with that L.

With num_workers=0 the main thread loads every batch itself (the `data` phase: the DataLoader
iterator's __next__, collate, transforms). With W workers that work runs in W other processes
and the main thread only takes a finished batch off the result queue. What stays on the main
thread is what the trace shows outside the DataLoader span: moving the batch to the GPU
(pin-memory / H2D copy calls, which now may wait for the previous step's GPU work because no
data loading separates them) -- those tasks are left as they are and replayed.

Per step s, with L_s the data-phase CPU time of the main thread in step s (its batch's load
time), L the mean over the steps, R_s the rest of the step (simulated step time - L_s, plus the
interference below where the workers are new):
* production: W workers each load one batch in L, a fluid W / L batches per ns, into a queue
  of at most W x P batches (P = prefetch_factor);
* consumption: one batch at the start of each step. If a whole batch is queued it is taken at
  once, else the main thread stalls until it is: stall_s = (1 - B) x L / W;
* the main thread pays HANDOFF + stall_s in place of L_s (HANDOFF: the run's measured DataLoader
  calibration where run.json has one, else HANDOFF_NS; see the comment above COLLATE_BYTES_PER_ELEMENT).
The queue starts full at the first step the profiler saw, drained by the steps before it
(ProfilerStep#N says there were N) at the rate production fell short. In steady state this is
stall = max(0, L / W - R): the workers hide loading when W batches take no longer than W steps.
Core contention. The main process runs m threads (run.json settings.threads, torch's intra-op
threads; 1 if unrecorded) on a host of C cores (the `cores` parameter, else run.json's
cpu_count; where neither is known contention is not modelled and a note says so). Where
m + W > C, the W workers loading together and the main threads share the cores fairly, each
at C / (m + W) of a core (the Linux CFS fair share):
* a worker loads a batch in L' = L x (m + W) / C instead of L (fewer batches per ns above);
* the workers need L of CPU per step, so they are runnable for L (m + W) / (W C) of it, and
  the main thread loses 1 - C / (m + W) of its progress meanwhile:
      contention_s = L x (m + W - C) / (W x C)        (0 where m + W <= C)
  which the main thread pays per step on top of the hand-off and the stall.
Interference. Even with cores to spare, loading workers slow the main process: they share its
caches, memory bandwidth and (with SMT) its cores' pipelines. From num_workers=0 to W > 0 the main
process's CPU work of each step (CPU segments and runtime calls on its threads, outside the data
phase; copy and synchronize calls, which wait for the GPU, excluded) grows by
      interference_s = WORKER_INTERFERENCE x L              (ms of main-process CPU per step)
spread over that work in proportion to its durations (each task x (1 + interference_s / C_s),
C_s the step's total of such work); the simulator decides how much of it reaches the critical
path. The loading per step is L whatever W is, so other changes of a W > 0 trace keep the
interference it recorded, and workers=0 takes it out (`uncontended`, read off the trace itself).
Not modelled: other processes on the host (a shared machine makes every figure slower), and
the workers' cost of moving a batch into shared memory.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from daydream.graph.schema import T_CPU, T_MEMCPY, T_RUNTIME
from daydream.graph.phases import DATA
from daydream.opts import _structure as C
from daydream.opts.params import Optimization, Param, unchanged_memory
from daydream.sim import simulate
from daydream.transform import primitives as P

# Main-thread cost of taking a ready batch from the workers' result queue: queue.get plus
# unpickling the batch's shared-memory tensor handles (rebuild_storage_fd). The ResNet-50 V100
# num_workers=4 trace (torch 1.8 era) shows 83-87 us for _MultiProcessingDataLoaderIter.__next__
# when the batch was ready; 100 us is that order. Caveat: `benchmarks/validate_structure.py
# --measure-handoff` (torch 2.11, 2 workers, 32 x 3 x 224 x 224 fp32 batches already queued,
# idle 16-core host) measured a median of 2.7-3.1 ms, i.e. current torch pays about 7 GB/s per
# batch byte on hand-off; batches of that size will be slower than predicted by that much.
HANDOFF_NS = 100_000
# Loading time per byte of the batch a DataLoader produces, where the workers did the loading and
# were not profiled (the torch profiler does not follow worker processes) and load_ms is not given.
# Source: the num_workers=0 ResNet-50 V100 trace (../shared/traces/kineto), whose main thread loads a
# 19,267,584-byte batch (32 CIFAR-10 images resized to 224x224, ToTensor, Normalize, collate) in
# 69.3 ms: 3.6 ns per batch byte. It is one pipeline's figure: synthetic tensors cost ~0.2 ns/B
# (tbd_suite's samplers, traces/pairs), JPEG decoding with random crops ~20 ns/B (ImageNet at
# ~100 images/s per core). The note names the estimate; load_ms=N replaces it.
LOAD_NS_PER_BYTE = 3.6
# Main-process CPU time lost per unit of CPU time the workers spend loading, on a host with cores
# to spare (see the module docstring). Source: the ResNet-50 V100 pair (DGX Station, 20-core Xeon:
# 4 workers + 2 main threads do not oversubscribe it): the main process's non-data CPU segments and
# runtime calls (copy/synchronize calls excluded) take 96.5 ms/step with num_workers=0 and 120.1
# ms/step with num_workers=4 (+24%, in every step: 104.9-145.7 against 93.6-98.7), while the
# workers load 69.3 ms/step: (120.1 - 96.5) / 69.3 = 0.34 (benchmarks/validate_structure.py
# --measure-interference prints these figures). One pair, one host, and the same pair as the 0 -> 4
# check in docs/validation.md: that check is in-sample for this constant.
WORKER_INTERFERENCE = 0.34
# Where the run carries a measured DataLoader calibration (run.json["calibration"]["dataloader"],
# daydream.profile.calibrate.measure_dataloader: a real DataLoader with W workers over a trivial
# dataset on the recording machine, batch already queued), the hand-off is
#     handoff = handoff_fixed_us + handoff_ns_per_byte x batch bytes
# in place of HANDOFF_NS, and the main process's CPU work of each step (as for the interference
# above) grows by compute_stretch x that work on top of WORKER_INTERFERENCE x L. Batch bytes: the
# H2D copies per step (GPU traces), else the collate's aten::stack inputs (CPU traces, with
# record_shapes), counted at COLLATE_BYTES_PER_ELEMENT.
COLLATE_BYTES_PER_ELEMENT = 4  # fp32 samples; integer labels (8 B) are a few elements per sample
_WAITS_FOR_GPU = re.compile(r"Memcpy|Synchronize")
_STEP_NUMBER = re.compile(r"#(\d+)$")
_SINGLE, _MULTI = "_SingleProcessDataLoaderIter", "_MultiProcessingDataLoaderIter"
_H2D = re.compile(r"HtoD|Host to Device|H2D", re.I)


def _steps_before(trace) -> int:
    """Steps the loader served before the profiled ones (N of the first ProfilerStep#N)."""
    names = [n for n in trace.names if n.startswith("ProfilerStep#")]
    nums = [int(m.group(1)) for n in names if (m := _STEP_NUMBER.search(n))]
    return min(nums) if nums else 0


def stalls(load_ns: np.ndarray, rest_ns: np.ndarray, workers: int, prefetch: int, before: int,
           handoff: float = HANDOFF_NS) -> np.ndarray:
    """Main-thread wait per step for its batch (see module docstring)."""
    load = float(np.mean(load_ns))
    if load <= 0:
        return np.zeros(len(rest_ns))
    rate = workers / load
    cap = float(workers * prefetch)
    mean_rest = float(np.mean(rest_ns)) + handoff
    backlog = cap
    for _ in range(before):
        backlog = min(cap, max(backlog - 1, 0.0) + mean_rest * rate) if backlog >= 1 else \
            min(cap, mean_rest * rate)
    out = np.zeros(len(rest_ns))
    for s, rest in enumerate(rest_ns):
        if backlog >= 1:
            backlog -= 1
        else:
            out[s] = (1 - backlog) / rate
            backlog = 0.0
        backlog = min(cap, backlog + (rest + handoff) * rate)
    return out


def contention(load_ns: float, workers: int, threads: int, cores: int) -> tuple[float, float]:
    """(slowdown of a worker's load, main-thread time lost per step in ns) when `workers`
    workers and `threads` main threads share `cores` cores (see module docstring)."""
    busy = threads + workers
    if cores <= 0 or busy <= cores:
        return 1.0, 0.0
    return busy / cores, load_ns * (busy - cores) / (workers * cores)


def trace_workers(ctx) -> tuple[int | None, str]:
    """DataLoader workers the trace already uses (None: some, count unknown) and how that is known:
    run.json's settings, else the iterator class torch names in the `enumerate(DataLoader)#...` span
    (`_SingleProcessDataLoaderIter` for num_workers=0, `_MultiProcessingDataLoaderIter` otherwise)."""
    settings = ctx.run.get("settings") or {}
    if settings.get("workers") is not None:
        return int(settings["workers"]), "run.json"
    names = ctx.trace.names
    if any(_MULTI in n for n in names):
        return None, _MULTI
    if any(_SINGLE in n for n in names):
        return 0, _SINGLE
    return 0, "no DataLoader iterator named in the trace: data-phase work on the main thread taken as loading"


def batch_bytes(graph, steps: np.ndarray, rank: int) -> float:
    """Median over steps of the host-to-device bytes a step copies: the batch the loader produced
    (parameters and optimizer state stay on the device between steps). 0 where nothing is copied."""
    t = graph.tasks
    sel = np.flatnonzero((t["kind"].to_numpy() == T_MEMCPY) & (t["rank"].to_numpy() == rank) & (steps >= 0))
    sel = sel[[_H2D.search(n) is not None for n in graph.task_names()[sel]]]
    if not len(sel):
        return 0.0
    ev = t["event"].to_numpy()[sel]
    nbytes = np.array([float(graph.trace.args_of(int(e)).get("bytes") or 0) if e >= 0 else 0.0 for e in ev])
    per_step = np.bincount(steps[sel], weights=nbytes)
    per_step = per_step[per_step > 0]
    return float(np.median(per_step)) if len(per_step) else 0.0


def collated_bytes(graph, data: np.ndarray) -> float:
    """Bytes per batch that the collate stacked (aten::stack inputs in the main thread's data phase,
    record_shapes), per batch taken: a CPU trace's batch size, where no H2D copy shows it."""
    idx = np.flatnonzero(data)
    names = graph.task_names()[idx]
    ev = graph.tasks["event"].to_numpy()[idx]
    total = 0.0
    for e in np.unique(ev[(names == "aten::stack") & (ev >= 0)]):
        dims = (graph.trace.args_of(int(e)).get("Input Dims") or [[]])[0] or []
        total += sum(float(np.prod(d)) if d else 1.0 for d in dims if isinstance(d, list))
    return total * COLLATE_BYTES_PER_ELEMENT / max(batches(graph, data), 1)


def calibrated_handoff(cal: dict, nbytes: float) -> float:
    """The measured hand-off in ns of a batch of `nbytes` (see the comment above COLLATE_BYTES...)."""
    return float(cal["handoff_fixed_us"]) * 1e3 + float(cal.get("handoff_ns_per_byte") or 0.0) * nbytes


def batches(graph, data: np.ndarray) -> int:
    """How many batches the main thread took: its DataLoader iterator spans among the data tasks."""
    idx = np.flatnonzero(data)
    named = np.array(["DataLoader" in n for n in graph.task_names()[idx]], bool)
    return len(np.unique(graph.tasks["event"].to_numpy()[idx[named]]))


def worker_load_ns(graph, rank: int, main: int, n_steps: int) -> float:
    """Per-batch loading time the worker processes recorded (data-phase CPU work of the rank in
    processes other than the main thread's), 0 where the workers were not profiled (torch's profiler
    does not follow DataLoader worker processes, so usually 0)."""
    t = graph.tasks
    pid = graph.resources["pid"].to_numpy()
    res = t["resource"].to_numpy()
    sel = ((t["rank"].to_numpy() == rank) & (t["phase"].to_numpy() == DATA) & (t["kind"].to_numpy() == T_CPU)
           & t["in_window"].to_numpy() & (pid[res] != pid[main]))
    return float(t["dur"].to_numpy()[sel].sum()) / max(n_steps, 1)


def uncontended(graph, rank: int, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tasks, durations) that take out what worker processes cost the rank's CPU threads.

    Workers load in bursts (W batches together, every W steps, after the start), and while they
    run, the main and autograd threads run slower (the ResNet-50 V100 num_workers=4 trace: conv2d
    calls 1.3-1.65x their median in 2 of 6 steps). Without workers each CPU task takes at most its
    median over the profiled steps, a task being the same op at the same place of every step: the
    k-th task of one name on one thread in the step."""
    t = graph.tasks
    sel = np.flatnonzero((t["rank"].to_numpy() == rank) & (steps >= 0)
                         & np.isin(t["kind"].to_numpy(), (T_CPU, T_RUNTIME)))
    if len(sel) == 0 or int(steps[sel].max()) < 2:
        return sel[:0], np.zeros(0)
    frame = pd.DataFrame({"res": t["resource"].to_numpy()[sel], "name": t["name"].to_numpy()[sel],
                          "step": steps[sel], "start": t["obs_start"].to_numpy()[sel],
                          "dur": t["dur"].to_numpy()[sel]}).sort_values("start", kind="stable")
    frame["k"] = frame.groupby(["res", "name", "step"]).cumcount()
    median = frame.groupby(["res", "name", "k"])["dur"].transform("median")
    order = sel[frame.index.to_numpy()]
    new = np.minimum(frame["dur"].to_numpy(), median.to_numpy())
    return order, new


def main_process_work(graph, rank: int, main: int, steps: np.ndarray) -> np.ndarray:
    """The rank's main-process CPU segments and runtime calls in the steps, outside the data phase,
    without the copy/synchronize calls that wait for the GPU: the work the workers interfere with."""
    t = graph.tasks
    pid = graph.resources["pid"].to_numpy()
    sel = np.flatnonzero((t["rank"].to_numpy() == rank) & (steps >= 0) & (t["phase"].to_numpy() != DATA)
                         & np.isin(t["kind"].to_numpy(), (T_CPU, T_RUNTIME))
                         & (pid[t["resource"].to_numpy()] == pid[main]))
    return sel[[_WAITS_FOR_GPU.search(n) is None for n in graph.task_names()[sel]]]


def interfered(graph, work: np.ndarray, steps: np.ndarray, added_ns: float) -> np.ndarray:
    """Durations of `work` with `added_ns` more per step, spread in proportion to each task's own."""
    dur = graph.tasks["dur"].to_numpy()[work].astype(float)
    per_step = np.bincount(steps[work], weights=dur)
    scale = 1 + added_ns / np.maximum(per_step[steps[work]], 1.0)
    return np.round(dur * scale).astype(np.int64)


def apply(graph, params: dict, ctx) -> None:
    workers, prefetch = int(params["workers"]), int(params["prefetch"])
    had, how = trace_workers(ctx)
    if had is not None and had == workers:
        ctx.notes.append(f"dataloader: the trace already loads with workers={workers} ({how}); nothing changed")
        return
    settings = ctx.run.get("settings") or {}
    threads = int(settings.get("threads") or 1)
    cores = int(params.get("cores") or ctx.run.get("cpu_count") or settings.get("cpu_count") or 0)
    if not cores and workers:
        ctx.notes.append("dataloader: the host's core count is not recorded (pass cores=N); workers are assumed "
                         "to have cores of their own")
    t = graph.tasks
    steps = C.task_steps(graph)
    launchers = np.zeros(len(t), bool)
    launch = t["launch"].to_numpy()
    launchers[launch[launch >= 0]] = True
    kind = t["kind"].to_numpy()
    cal = ((ctx.run or {}).get("calibration") or {}).get("dataloader")
    timeline = simulate(graph)
    keep, drop, new_dur = [], [], []
    for rank in np.unique(t["rank"].to_numpy()):
        main = C.main_thread(graph, int(rank))
        data = ((t["resource"].to_numpy() == main) & (t["phase"].to_numpy() == DATA) & (steps >= 0)
                & np.isin(kind, (T_CPU, T_RUNTIME)) & ~launchers)
        if not data.any():
            continue
        mine = (t["rank"].to_numpy() == rank) & (steps >= 0)
        n_steps = int(steps[mine].max()) + 1
        step_start = np.full(n_steps, np.iinfo(np.int64).max)
        np.minimum.at(step_start, steps[mine], timeline.start[mine])
        step_end = np.r_[step_start[1:], timeline.end[mine].max()]
        main_data = np.bincount(steps[data], weights=t["dur"].to_numpy()[data], minlength=n_steps)
        # steps that load a batch: by their data-phase tasks, not by a positive duration (without the
        # profiler's cost a cheap loader's tasks can be 0 ns)
        has = np.bincount(steps[data], minlength=n_steps) > 0
        rest = np.maximum((step_end - step_start) - main_data, 0)[has]
        if batches(graph, data) > int(has.sum()):
            ctx.notes.append(f"dataloader: rank {rank}: {batches(graph, data)} batches in {int(has.sum())} step(s) "
                             "(no ProfilerStep marks each batch's step); the loader model needs one batch per "
                             "step (pass --step-annotation); nothing changed")
            continue
        stretch = 0.0
        if had == 0:
            # the main thread's data phase is the loading itself
            load, handoff, source = float(main_data[has].mean()), HANDOFF_NS, "recorded on the main thread"
            if cal and workers:
                nbytes = batch_bytes(graph, steps, int(rank)) or collated_bytes(graph, data)
                handoff, stretch = calibrated_handoff(cal, nbytes), float(cal.get("compute_stretch") or 0.0)
                ctx.notes.append(f"dataloader: rank {rank}: hand-off {handoff / 1e6:.2f} ms per batch of "
                                 f"{nbytes / 1e3:.1f} kB and main-thread compute x {1 + stretch:.3f} from this "
                                 f"run's measured DataLoader calibration ({cal.get('workers')} workers; run.json)")
        else:
            # the main thread's data phase is the hand-off (plus any wait for a batch); the loading
            # ran in the workers: recorded there, given as load_ms, or estimated from the batch bytes
            handoff = float(main_data[has].min())  # a hand-off whose batch was ready
            load, source = worker_load_ns(graph, int(rank), main, int(has.sum())), "recorded in the worker processes"
            if not load and params.get("load_ms"):
                load, source = float(params["load_ms"]) * 1e6, "load_ms"
            if not load:
                nbytes = batch_bytes(graph, steps, int(rank))
                if not nbytes:
                    ctx.notes.append(f"dataloader: rank {rank}: the trace's workers were not profiled and no "
                                     "batch is copied to a device to size the loading by; pass load_ms=N (one "
                                     "batch's loading time); nothing changed")
                    continue
                load = nbytes * LOAD_NS_PER_BYTE
                source = (f"estimated: {nbytes / 1e6:.1f} MB batch x {LOAD_NS_PER_BYTE} ns/B, the workers were not "
                          "profiled; pass load_ms=N for your pipeline")
        if workers == 0:
            wait, lost = np.full(int(has.sum()), load), 0.0
            calm, calm_dur = uncontended(graph, int(rank), steps)  # had != 0: workers=0 is a change
            freed = float((t["dur"].to_numpy()[calm] - calm_dur).sum()) / n_steps
            P.set_duration(graph, calm, calm_dur)
        else:
            slow, lost = contention(load, workers, threads, cores)
            added = WORKER_INTERFERENCE * load if had == 0 else 0.0
            work = main_process_work(graph, int(rank), main, steps)
            if had == 0 and stretch and len(work):  # measured stretch of the main process's work
                added += stretch * float(t["dur"].to_numpy()[work].sum()) / int(has.sum())
            # the interference lengthens the rest of the step, during which the workers fill the queue
            wait = handoff + stalls(np.full(int(has.sum()), load * slow), rest + added, workers, prefetch,
                                    _steps_before(graph.trace), handoff) + lost
            if added and len(work):
                P.set_duration(graph, work, interfered(graph, work, steps, added))
        idx = np.flatnonzero(data)
        idx = idx[np.lexsort((idx, t["obs_start"].to_numpy()[idx]))]
        first = np.r_[True, steps[idx][1:] != steps[idx][:-1]]
        keep.append(idx[first])
        drop.append(idx[~first])
        new_dur.append(wait)
        was = main_data[has].mean() / 1e6
        if workers == 0:
            ctx.notes.append(f"dataloader: rank {rank}: the main thread loads each batch itself: {load / 1e6:.2f} "
                             f"ms/step ({source}) in place of the {was:.2f} ms/step hand-off from the workers "
                             f"({how}); without workers its CPU tasks no longer run slower in some steps: "
                             f"{freed / 1e6:.2f} ms/step of CPU time taken out (each task capped at its median "
                             "over the steps)")
        elif had == 0:
            ctx.notes.append(f"dataloader: rank {rank}: {load / 1e6:.2f} ms/step of loading moved to "
                             f"{workers} workers; main thread takes {wait.mean() / 1e6:.2f} ms/step for batches "
                             f"(hand-off and waiting)"
                             + (f", {lost / 1e6:.2f} ms of it sharing {cores} cores with {threads} main "
                                f"thread(s)" if lost else "")
                             + f"; the loading workers slow the main process's other CPU work by "
                               f"{added / 1e6:.2f} ms/step ({WORKER_INTERFERENCE} x the loading"
                               + (f" + {stretch:g} x its CPU work, measured" if stretch else "") + ")")
        else:
            ctx.notes.append(f"dataloader: rank {rank}: {workers} worker(s) load batches of {load / 1e6:.2f} ms "
                             f"({source}); the main thread's hand-off and waiting go from {was:.2f} to "
                             f"{wait.mean() / 1e6:.2f} ms/step"
                             + (f" ({lost / 1e6:.2f} ms of it sharing {cores} cores with {threads} main "
                                f"thread(s))" if lost else ""))
    if not keep:
        if not any(n.startswith("dataloader: rank") for n in ctx.notes):
            ctx.notes.append("dataloader: no data-loading work on the main thread in the steps; nothing changed")
        return
    keep = np.concatenate(keep)
    P.set_duration(graph, keep, np.concatenate(new_dur))
    P.set_duration(graph, np.concatenate(drop), 0)
    P.remove(graph, np.concatenate(drop))


OPTIMIZATION = Optimization(
    name="dataloader",
    summary="background workers and prefetching hide data loading behind compute",
    params={
        "workers": Param(4, "DataLoader num_workers", int, 0, 256),
        "prefetch": Param(2, "batches prefetched per worker", int, 1, 64),
        "cores": Param(0, "CPU cores of the host (0: run.json's cpu_count; unrecorded: no core contention)",
                       int, 0, 65536),
        "load_ms": Param(0.0, "one batch's loading time in ms where the trace's workers were not profiled "
                              "(0: estimated from the batch's bytes; docs/optimizations/dataloader.md)",
                         float, 0, 1e7),
    },
    apply=apply,
    memory=unchanged_memory("dataloader: workers use host memory only; device memory unchanged"),
    doc="docs/optimizations/dataloader.md",
    checked_against={
        "cpu": "5 CPU pairs, num_workers 0 -> 2 (traces/pairs)",
        "gpu": "ResNet-50 on a V100, num_workers 0 <-> 4 (shared kineto traces)",
    },
)
