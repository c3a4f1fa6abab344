"""dataloader:workers=W,prefetch=P -- DataLoader worker processes load batches in the background.

With num_workers=0 the main thread loads every batch itself (the `data` phase: the DataLoader
iterator's __next__, collate, transforms). With W workers that work runs in W other processes
and the main thread only takes a finished batch off the result queue. What stays on the main
thread is what the trace shows outside the DataLoader span: moving the batch to the GPU
(pin-memory / H2D copy calls, which now may wait for the previous step's GPU work because no
data loading separates them) -- those tasks are left as they are and replayed.

Per step s, with L_s the data-phase CPU time of the main thread in step s (its batch's load
time), L the mean over the steps, R_s the rest of the step (simulated step time - L_s):
* production: W workers each load one batch in L, a fluid W / L batches per ns, into a queue
  of at most W x P batches (P = prefetch_factor);
* consumption: one batch at the start of each step. If a whole batch is queued it is taken at
  once, else the main thread stalls until it is: stall_s = (1 - B) x L / W;
* the main thread pays HANDOFF_NS + stall_s in place of L_s.
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
Not modelled: other processes on the host (a shared machine makes every figure slower), and
the workers' cost of moving a batch into shared memory.
"""
from __future__ import annotations

import re

import numpy as np

from daydream.graph.build import T_CPU, T_RUNTIME
from daydream.graph.phases import DATA
from daydream.opts import _comm as C
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
_STEP_NUMBER = re.compile(r"#(\d+)$")


def _steps_before(trace) -> int:
    """Steps the loader served before the profiled ones (N of the first ProfilerStep#N)."""
    names = [n for n in trace.names if n.startswith("ProfilerStep#")]
    nums = [int(m.group(1)) for n in names if (m := _STEP_NUMBER.search(n))]
    return min(nums) if nums else 0


def stalls(load_ns: np.ndarray, rest_ns: np.ndarray, workers: int, prefetch: int, before: int) -> np.ndarray:
    """Main-thread wait per step for its batch (see module docstring)."""
    load = float(np.mean(load_ns))
    if load <= 0:
        return np.zeros(len(rest_ns))
    rate = workers / load
    cap = float(workers * prefetch)
    mean_rest = float(np.mean(rest_ns)) + HANDOFF_NS
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
        backlog = min(cap, backlog + (rest + HANDOFF_NS) * rate)
    return out


def contention(load_ns: float, workers: int, threads: int, cores: int) -> tuple[float, float]:
    """(slowdown of a worker's load, main-thread time lost per step in ns) when `workers`
    workers and `threads` main threads share `cores` cores (see module docstring)."""
    busy = threads + workers
    if cores <= 0 or busy <= cores:
        return 1.0, 0.0
    return busy / cores, load_ns * (busy - cores) / (workers * cores)


def apply(graph, params: dict, ctx) -> None:
    workers, prefetch = int(params["workers"]), int(params["prefetch"])
    if workers == 0:
        ctx.notes.append("dataloader: workers=0 is how the trace loads data already; nothing changed")
        return
    settings = ctx.run.get("settings") or {}
    threads = int(settings.get("threads") or 1)
    cores = int(params.get("cores") or ctx.run.get("cpu_count") or settings.get("cpu_count") or 0)
    if not cores:
        ctx.notes.append("dataloader: the host's core count is not recorded (pass cores=N); workers are assumed "
                         "to have cores of their own")
    t = graph.tasks
    steps = C.task_steps(graph)
    launchers = np.zeros(len(t), bool)
    launch = t["launch"].to_numpy()
    launchers[launch[launch >= 0]] = True
    kind = t["kind"].to_numpy()
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
        load = np.bincount(steps[data], weights=t["dur"].to_numpy()[data], minlength=n_steps)
        has = load > 0
        rest = np.maximum((step_end - step_start) - load, 0)[has]
        slow, lost = contention(float(load[has].mean()), workers, threads, cores)
        wait = stalls(load[has] * slow, rest, workers, prefetch, _steps_before(graph.trace)) + lost
        idx = np.flatnonzero(data)
        idx = idx[np.lexsort((idx, t["obs_start"].to_numpy()[idx]))]
        first = np.r_[True, steps[idx][1:] != steps[idx][:-1]]
        keep.append(idx[first])
        drop.append(idx[~first])
        new_dur.append(HANDOFF_NS + wait)
        ctx.notes.append(f"dataloader: rank {rank}: {load[has].mean() / 1e6:.2f} ms/step of loading moved to "
                         f"{workers} workers; main thread waits {wait.mean() / 1e6:.2f} ms/step for batches"
                          + (f" ({lost / 1e6:.2f} ms of it sharing {cores} cores with {threads} main "
                             f"thread(s))" if lost else ""))
    if not keep:
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
    },
    apply=apply,
    memory=unchanged_memory("dataloader: workers use host memory only; device memory unchanged"),
    doc="docs/optimizations/dataloader.md",
)
