"""`daydream profile --model tbd:NAME`: run a TBD suite workload under torch.profiler.

Order of work: build; `warmup` plain steps; `steps` timed plain steps (the no-profiler baseline);
one step with saved-tensor hooks that attributes saved activation bytes to modules; then the
profiled run with schedule(wait=1, warmup=1, active=steps), one ProfilerStep per training step;
on a CPU, the bf16 calibration microbenchmark (daydream.profile.calibrate, about 1 s) that
the amp what-if reads from run.json["calibration"]; last, the profiler's per-event cost under the
run's settings (daydream.profile.overhead, about 1 s), run.json["profiler_event_cost"], from which
analyze and whatif estimate the step time without the profiler (`unprofiled_ms`).
"""
from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from daydream.errors import DaydreamError
from daydream.profile import calibrate, overhead, rundir, shapes
from daydream.trace import load
from daydream.names import escape_markup


def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_step(workload, clock=None, optimizer_ms: list | None = None, faults: list | None = None) -> float:
    """One training step's wall time (ms); with a rundir.OptimizerClock, its time inside optimizer
    steps is appended to `optimizer_ms`, and its minor page faults to `faults`."""
    if clock is not None:
        clock.take()
    f0 = rundir.minor_faults()
    t0 = time.perf_counter()
    workload.step()
    _sync(workload.device)
    ms = 1e3 * (time.perf_counter() - t0)
    if faults is not None:
        faults.append(rundir.minor_faults() - f0)
    if clock is not None:
        optimizer_ms.append(clock.take())
    return ms


def saved_activation_bytes(workload, convolutions: list | None = None) -> dict[str, int]:
    """Bytes of tensors autograd saves for backward during one training step, by the innermost module
    running when each was saved. Parameters are left out and a storage counts once, so views of one
    buffer are not double counted. Under activation checkpointing only what the checkpoints keep is
    seen, which is the point. When `convolutions` is a list, every convolution call's input, weight
    and output shapes are appended to it (the memory model sizes CPU im2col buffers from them)."""
    import torch
    model = workload.model
    names = {m: n or "<root>" for n, m in model.named_modules()}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    stack, seen, totals = [], set(), defaultdict(int)

    def pack(t):
        if stack and isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in params and ptr not in seen:
                seen.add(ptr)
                totals[stack[-1]] += storage.nbytes()
        return t

    def enter(mod, args):  # hooks must return None, or they replace the module's input/output
        stack.append(names[mod])

    def leave(mod, args, out):
        stack.pop()
        if convolutions is not None and isinstance(mod, torch.nn.modules.conv._ConvNd) and args \
                and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
            convolutions.append({"module": names[mod], "input": list(args[0].shape),
                                 "weight": list(mod.weight.shape), "output": list(out.shape)})

    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(enter))
        handles.append(m.register_forward_hook(leave, always_call=True))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            workload.step()
        _sync(workload.device)
    finally:
        for h in handles:
            h.remove()
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def _memory_facts(dev, convolutions: list) -> dict:
    """What the memory what-ifs need to know about this recording besides the timeline."""
    import torch
    facts = {"convolutions": convolutions}
    if dev.type == "cpu":  # without oneDNN bf16 kernels, bf16 convs take ATen's im2col path
        facts["cpu_bf16_onednn"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return facts


def _profiled_run(workload, activities, steps, with_stack, advance, clock=None):
    """`steps` recorded training steps after one skipped and one warm-up step of the profiler
    schedule; returns the profiler, the wall-clock times of the recorded steps and their time inside
    optimizer steps (empty without a clock)."""
    from torch.profiler import profile, schedule
    times, optimizer_ms = [], []
    with profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=steps, repeat=1),
                 record_shapes=True, profile_memory=True, with_stack=with_stack, with_modules=True) as prof:
        for i in range(steps + 2):
            opt = []
            ms = _timed_step(workload, clock, opt)
            if i >= 2:
                times.append(ms)
                optimizer_ms.extend(opt)
            prof.step()
            advance("profiling" if with_stack or steps > 1 else "memory timeline")
    return prof, times, optimizer_ms


QUIET_SPREAD = 1.2  # max / min of a window's profiled step times at which it counts as undisturbed


def _spread(times: list[float]) -> float:
    return max(times) / min(times) if times and min(times) > 0 else float("inf")


def _quietest_window(workload, activities, steps, with_stack, advance, tries: int, clock=None):
    """`_profiled_run` up to `tries` times until the recorded steps are within QUIET_SPREAD of each
    other, keeping the window whose steps spread least (and how many windows were recorded). On a
    shared host another process preempts the profiled thread for a scheduler slice (about 4 ms on
    the development host) now and then; a step of a few ms that absorbs one is no longer the
    workload's, and every what-if predicted from the trace would carry it. Preemption only adds
    time, so the least spread window is the least disturbed."""
    best = _profiled_run(workload, activities, steps, with_stack, advance, clock)
    windows = 1
    while windows < tries and _spread(best[1]) > QUIET_SPREAD:
        again = _profiled_run(workload, activities, steps, with_stack, lambda desc: None, clock)
        windows += 1
        if _spread(again[1]) < _spread(best[1]):
            best = again
    return (*best, windows)


def _progress(enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    console = Console(stderr=True)  # stdout stays for results
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def _block_sparse(sparse: dict | None):
    if not sparse:
        return None
    from tbd_suite.variants import BlockSparse
    return BlockSparse(**sparse)


def profile_model(name: str, device: str = "cpu", batch_size: int | None = None, steps: int = 5,
                  warmup: int = 3, amp: bool | str = False, out_dir: str | Path | None = None,
                  size: str = "small", workers: int = 0, fused: bool = False, checkpointing: bool = False,
                  seed: int = 0, with_stack: bool = True, layers: bool = True, threads: int | None = None,
                  time_steps: int | None = None, progress: bool = True, quantize: bool = False,
                  inference: bool = False, sparse: dict | None = None, profile_tries: int = 1) -> dict:
    """Profile `steps` training steps of TBD model `name`; write the run directory; return run.json
    (plus `run_dir`). `time_steps` plain steps (default: `steps`) give the no-profiler step time.
    `quantize`, `inference` and `sparse` (BlockSparse fields) select the workload variants of
    tbd_suite.variants that the quantize and sparse-attention pairs of `daydream capture` record.
    `profile_tries` > 1: the least disturbed of up to that many profiled windows (_quietest_window)."""
    import torch
    from torch.profiler import ProfilerActivity

    import tbd_suite

    if steps < 1 or warmup < 0:
        raise DaydreamError(f"--steps must be >= 1 and --warmup >= 0 (got {steps}, {warmup})")
    try:
        workload = tbd_suite.get(name)
    except KeyError as exc:
        raise DaydreamError(exc.args[0]) from None
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DaydreamError("--device cuda asked for, but this torch has no CUDA device; use --device cpu")
    if threads:
        torch.set_num_threads(int(threads))
    # Suite runs time compute, not glibc's page faults: the allocator is pinned before anything
    # runs (the own-shape re-timing pins it anyway, and `capture` profiles several runs in one
    # process, so the pairs' runs all see the same allocator; docs/profiling.md, "Page faults").
    pinned = shapes.pin_allocator()
    try:
        workload.build(size=size, batch_size=batch_size, device=device, amp=amp, fused=fused,
                       checkpointing=checkpointing, workers=workers, seed=seed, quantize=quantize,
                       inference=inference, sparse=_block_sparse(sparse))
    except ValueError as exc:
        raise DaydreamError(f"tbd:{workload.name}: {exc}") from None
    dev = workload.device
    model_name = f"tbd:{workload.name}"
    out = Path(out_dir) if out_dir else Path("runs") / (
        f"{workload.name}-{dev.type}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    rundir.check_target(out)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    time_steps = time_steps or steps
    total = warmup + time_steps + int(layers) + steps + 2 + (0 if with_stack else 3) + int(dev.type == "cpu") + 1
    plain, plain_optimizer, plain_faults, peak = [], [], [], None
    with _progress(progress) as bar, rundir.OptimizerClock() as clock:
        task = bar.add_task(f"{model_name} warm-up", total=total) if bar else None

        def advance(desc):
            if bar:
                bar.update(task, advance=1, description=f"{model_name} {desc}")

        for _ in range(warmup):
            workload.step()
            advance("warm-up")
        _sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        for _ in range(time_steps):
            plain.append(_timed_step(workload, clock, plain_optimizer, plain_faults))
            advance("timing without profiler")
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(dev)
        module_bytes = None
        convolutions: list = []
        if layers:
            module_bytes = saved_activation_bytes(workload, convolutions)
            advance("saved activations by module")
        prof, profiled, profiled_optimizer, windows = _quietest_window(
            workload, activities, steps, with_stack, advance, profile_tries, clock)
        clock.remove()
        memory_prof = prof
        if not with_stack:  # torch's memory profiler needs Python stacks: one more, memory-only step
            memory_prof = _profiled_run(workload, activities, 1, True, advance)[0]
        # what the first optimizer updates (the one a training step is counted by, as in hook.py)
        updated = (rundir.optimizer_parameters(workload.optimizers[:1])
                   if workload.optimizers and not workload.settings.inference else None)
        workload.close()
        calibration = None
        if dev.type == "cpu":  # same process, same thread count as the profiled steps
            calibration = {**calibrate.measure(), **calibrate.measure_dataloader(max(int(workers or 0), 2))}
            advance("bf16 calibration")
        profiler_settings = {"record_shapes": True, "profile_memory": True, "with_stack": with_stack,
                             "with_modules": True}
        event_cost = overhead.measure_event_cost(profiler_settings)
        advance("profiler cost per event")

        info = {
            "schema": rundir.RUN_SCHEMA,
            "kind": "model",
            "model": model_name,
            "paper": workload.paper,
            "device": dev.type,
            "device_name": rundir.device_name(dev),
            "batch_size": workload.settings.batch_size,
            "steps": steps,
            "warmup": warmup,
            "amp": workload.settings.amp or False,
            "settings": {
                "size": size, "workers": workers, "fused": fused, "checkpointing": checkpointing, "seed": seed,
                "quantize": quantize, "inference": inference, "sparse": sparse,
                "optimizer": workload.optimizer_name, "loss": workload.loss_name,
                "threads": torch.get_num_threads(),
                "allocator": "glibc malloc pinned (daydream.profile.shapes.pin_allocator)" if pinned else "as is",
                "profiler": {**profiler_settings, "schedule": {"wait": 1, "warmup": 1, "active": steps}},
            },
            "parameters": workload.parameters_count,
            **({"optimizer_parameters": updated} if updated and updated["tensors"] else {}),
            "versions": rundir.versions(),
            "cpu_count": os.cpu_count(),  # cores the run shared (the dataloader what-if's contention model)
            **rundir.summarize_steps(plain, profiled, plain_optimizer=plain_optimizer,
                                     profiled_optimizer=profiled_optimizer, plain_faults=plain_faults),
            "cuda_max_allocated_bytes": peak,
            **({"calibration": calibration} if calibration else {}),
            "profiler_event_cost": event_cost,
            "time_steps": time_steps,
            "profile_windows": windows,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if bar:
            bar.update(task, description=f"{model_name} writing {escape_markup(out)}")
        with rundir.staged(out) as staging:
            info["profiled_steps"] = rundir.export_trace(prof, staging)
            if calibration is not None:  # at the run's own shapes, read from the trace just written
                calibration.update(shapes.measure_run_shapes_or_note(load, staging / "trace.json.gz"))
            error = rundir.export_memory(memory_prof, staging, str(dev), module_bytes,
                                         aligned=with_stack, recording=_memory_facts(dev, convolutions))
            info["files"] = {"trace": "trace.json.gz", "memory": None if error else "memory.json.gz"}
            if error:
                info["memory_error"] = error
            info["complete"] = info["profiled_steps"] == steps
            rundir.write_run_json(staging, info)
    return {**info, "run_dir": str(out)}
