"""The profiler's own cost, calibrated on the recording machine, and the step time without it.

Model. Recording an event costs the thread that runs it a fixed time, by kind of event:

    c_op   per operator or record_function span (Kineto `cpu_op` and `user_annotation` events),
    c_py   per Python function or C-call event (`python_function`, only with with_stack=True),
    c_mem  per allocation or free (`[memory]` instant events, only with profile_memory=True),

each under the run's own profiler settings (record_shapes makes c_op larger, for example). A CPU
task of the dependency graph (a segment of a thread between event boundaries, daydream.graph)
loses c_op, c_py or c_mem for every event that starts inside it (a memory event goes to the
segment running on its rank at that moment that started last):

    unprofiled dur = max(0, dur - c_op * n_op - c_py * n_py - c_mem * n_mem)

and `unprofiled_ms` is the simulated step time of the graph so transformed (the same for the
predicted graph: `predicted_unprofiled_ms`). GPU time and CUDA runtime calls are left as they are
(CUPTI's cost is not calibrated here).

Calibration (`measure_event_cost`, about 1 s at the end of `daydream profile`, in the profiled
process, so on its machine and allocator state, on one intra-op thread): a small training step (CALIBRATION_MODEL:
a block of Linear, LayerNorm, GELU and a softmax attention product, cross-entropy, AdamW; the
small-op mix of a real step, with realistic inputs for record_shapes and realistic Python calls for
the tracer) is stepped in alternating blocks of BLOCK_STEPS steps, REPS rounds, under four settings:
    plain                      no profiler
    ops                        CPU activity, record_shapes as the run          -> c_op  = d_ops / n_op
    ops+memory                 ... plus profile_memory as the run              -> c_mem = d_mem / n_mem
    ops+memory+stack           ... plus with_stack/with_modules as the run     -> c_py  = d_py / n_py
where d is the increase of the per-step thread CPU time (time.thread_time, which a busy machine's
other processes inflate far less than wall time) over the previous setting and n the events of that
kind recorded per step (counted in the profiler's own trace). d is estimated robustly: each
round's blocks give one paired difference of their median steps (the blocks of one round run
back to back, so they share the machine's load of that moment), and the cost is the median over
the REPS rounds. A single burst of load then moves one round, not the result (before: medians
pooled over all rounds; a burst made seq2seq's calibration charge 0.95 us per event against 0.45
paid, docs/profiling.md). The first step after each profiler start is kept: dropping it (tried,
2026-11-28 17:47, quiet host) lowered the charge to 0.29-0.42 us/event in the profiled process and
left 12 of 13 models under-corrected by 16-52 %, where the first step's extra cost had matched
what a long profiled run pays per event. A cost that the noise makes negative is 0.
The trace's durations are wall clock, so the costs are scaled by the calibration's own plain steps'
wall / CPU time (>= 1; about 1 on an idle machine, the factor by which other processes stretch this
one's CPU work on a busy one): `us_per_event_wall`, what the model subtracts.

Accuracy (docs/profiling.md, "Why three models missed"): measured in one process, the events of
seq2seq, wgan, resnet50 and bert cost 0.43-0.50 us each under daydream's settings, and fresh
calibrations charge 0.35-0.54 us per event of the same mix; a calibration hit by a burst of load
charges up to twice that (seq2seq's -41 %). A model whose step has a large working set pays more per
event than this small cached step (the tiny classifier: 0.77 us), and is under-corrected.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time

from daydream.transform.profiler_cost import KINDS

METHOD = ("a small training step in alternating blocks without the profiler and with its settings added one "
          "at a time; median over rounds of the paired differences of the "
          "blocks' median thread CPU time per step, over recorded events (daydream.profile.overhead)")


CALIBRATION_MODEL = "Linear 64, LayerNorm, GELU, softmax attention, batch 4 x 16 tokens, AdamW"
# Few profiled steps in all: torch turns every recorded event into a Python object at stop (~1 s per
# 10k events on a busy machine), which is most of the calibration's cost. REPS rounds, median over
# rounds of the paired differences.
BLOCK_STEPS = 2
REPS = 5


def _calibration_step():
    import torch
    from torch import nn
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, dim=64):
            super().__init__()
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.norm, self.ff = nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(),
                                                                   nn.Linear(2 * dim, dim))

        def forward(self, x):
            q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
            att = torch.softmax(q @ k.transpose(-2, -1) / 8.0, dim=-1)
            x = x + self.proj(att @ v)
            return x + self.ff(x)

    model = nn.Sequential(Block(), nn.Flatten(), nn.Linear(16 * 64, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(4, 16, 64), torch.randint(0, 10, (4,))

    def step():
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def _count(trace_events: list) -> dict:
    """Events of each kind in a trace."""
    counts = dict.fromkeys(KINDS, 0)
    for e in trace_events:
        cat = e.get("cat")
        if cat in ("cpu_op", "user_annotation"):
            counts["op"] += 1
        elif cat == "python_function":
            counts["python"] += 1
        elif cat == "cpu_instant_event" and e.get("name") == "[memory]":
            counts["memory"] += 1
    return counts


def measure_event_cost(settings: dict, reps: int = REPS, block: int = BLOCK_STEPS) -> dict:
    """The run.json `profiler_event_cost` object: microseconds per recorded event of each kind."""
    import torch
    # One intra-op thread: the calibration's small ops would not use more, and the main thread's CPU
    # time then equals its wall time on an idle machine (so wall / CPU measures only the load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _quiet_native_stderr():  # Kineto prints two lines per profiler start/stop; 20 of them here
            return _measure(settings, reps, block, threads)
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _quiet_native_stderr():
    """File descriptor 2 to /dev/null while the calibration starts and stops its profilers (the
    USDT lines come from C++, under Python's sys.stderr); restored afterwards, even on error."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _measure(settings: dict, reps: int, block: int, threads: int) -> dict:
    import orjson
    from torch.profiler import ProfilerActivity, profile

    shapes, memory = bool(settings.get("record_shapes")), bool(settings.get("profile_memory"))
    stack, modules = bool(settings.get("with_stack")), bool(settings.get("with_modules"))
    levels = {"plain": None, "ops": dict(record_shapes=shapes)}
    if memory:
        levels["memory"] = dict(record_shapes=shapes, profile_memory=True)
    if stack or modules:
        levels["python"] = dict(record_shapes=shapes, profile_memory=memory, with_stack=stack, with_modules=modules)
    step = _calibration_step()
    for _ in range(3):
        step()
    times = {k: [] for k in levels}  # per level: one list of timed steps per round
    plain_wall = []
    counts = None
    for r in range(reps):
        for name, kw in levels.items():
            prof = profile(activities=[ProfilerActivity.CPU], **kw) if kw is not None else None
            if prof is not None:
                prof.start()
            try:
                timed = []
                for _ in range(block):
                    t0, w0 = time.thread_time(), time.perf_counter()
                    step()
                    timed.append(time.thread_time() - t0)
                    if kw is None:
                        plain_wall.append(time.perf_counter() - w0)
                times[name].append(timed)
            finally:
                if prof is not None:
                    prof.stop()
            if prof is not None and r == reps - 1 and name == list(levels)[-1]:
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "calibration.json")
                    prof.export_chrome_trace(path)
                    with open(path, "rb") as f:
                        counts = _count(orjson.loads(f.read()).get("traceEvents", []))
    per_step = {k: v / block for k, v in (counts or dict.fromkeys(KINDS, 0)).items()}
    # One median step per block (level, round); a level's step_us is the median over rounds.
    block_us = {k: [1e6 * statistics.median(b) for b in v] for k, v in times.items()}
    median_us = {k: statistics.median(v) for k, v in block_us.items()}
    names = list(levels)
    cost = dict.fromkeys(KINDS, 0.0)
    for prev, cur in zip(names, names[1:]):
        kind = {"ops": "op", "memory": "memory", "python": "python"}[cur]
        n = per_step[kind]
        if n > 0:
            paired = [c - p for c, p in zip(block_us[cur], block_us[prev])]
            cost[kind] = max(0.0, statistics.median(paired) / n)
    # The trace's durations are wall clock: on a machine whose other processes take CPU from this one
    # every CPU task, the profiler's work included, is stretched by wall / CPU time.
    plain_cpu = [t for b in times["plain"] for t in b]
    stretch = max(1.0, statistics.median(plain_wall) / statistics.median(plain_cpu))
    return {
        "us_per_event": {k: round(v, 4) for k, v in cost.items()},
        "wall_per_cpu": round(stretch, 4),
        "us_per_event_wall": {k: round(v * stretch, 4) for k, v in cost.items()},
        "step_us": {k: round(v, 2) for k, v in median_us.items()},
        "events_per_step": {k: round(v, 1) for k, v in per_step.items()},
        "settings": {"record_shapes": shapes, "profile_memory": memory, "with_stack": stack, "with_modules": modules},
        "model": CALIBRATION_MODEL, "block_steps": block, "reps": reps, "threads": 1, "run_threads": threads,
        "method": METHOD,
    }
