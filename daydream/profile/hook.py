"""The profiler inside a script run by `daydream profile -- CMD`.

`sitecustomize` (written by daydream.profile.script) calls `install()` as soon as `torch.optim` has
been imported. From then on every `Optimizer.step()` of any optimizer reports here. The first
process whose optimizer steps claims the run (a file created with O_EXCL), so launchers and
DataLoader workers never profile. A training step is the interval between two steps of the first
optimizer that stepped (a GAN's second optimizer does not start a new step).

Timeline, with W = warm-up, N = profiled and T = timed plain steps (hook = the end of an optimizer step):
  steps 1..W             plain warm-up, untimed
  hook W                 profiler starts: schedule(wait=0, warmup=1, active=N+1)
  step W+1               the profiler's warm-up step (not recorded)
  steps W+2..W+1+N       ProfilerStep#1..#N, one per training step (prof.step() at each hook)
  hook W+1+N             prof.step() closes ProfilerStep#N and opens #N+1 while still recording, so
                         no profiler teardown runs inside a kept step; #N+1 is never kept
  next forward, next     the profiler stops (a global module-forward pre-hook, an optimizer pre-hook
  optimizer step or exit or atexit, whichever comes first), outside every kept step
  steps W+3+N..W+2+N+T   plain steps timed without the profiler: plain_step_ms is their median (the
                         step that stopped the profiler is not timed)
  hook W+2+N+T, or exit  calibrations (CPU: bf16 speed, the profiler's per-event cost), then the run
                         directory is written
The trace keeps whole steps only: a ProfilerStep that a stop or an exit cut short is dropped at export
(daydream.profile.rundir.export_trace). A script that stops early keeps its whole recorded steps,
`complete: false`.
"""
from __future__ import annotations

import atexit
import os
import sys
import time

_state = None


class _ScriptProfiler:
    def __init__(self):
        env = os.environ
        self.out = env["DAYDREAM_PROFILE_OUT"]
        self.steps = int(env.get("DAYDREAM_PROFILE_STEPS", "5"))
        self.warmup = max(1, int(env.get("DAYDREAM_PROFILE_WARMUP", "3")))
        self.time_steps = max(0, int(env.get("DAYDREAM_PROFILE_TIME_STEPS", "10")))
        self.with_stack = env.get("DAYDREAM_PROFILE_WITH_STACK", "1") == "1"
        self.claim_path = env["DAYDREAM_PROFILE_CLAIM"]
        self.status_path = env.get("DAYDREAM_PROFILE_STATUS")
        self.run_id = env.get("DAYDREAM_PROFILE_RUN_ID", "")
        self.command = env.get("DAYDREAM_PROFILE_COMMAND", "")
        # Under torchrun (RANK and WORLD_SIZE > 1 set for each worker) every rank profiles itself and
        # writes its own run directory, OUT/rank<RANK>; `daydream analyze OUT` reads them as one job.
        if int(env.get("WORLD_SIZE", "1") or 1) > 1 and env.get("RANK", "").isdigit():
            self.out = os.path.join(self.out, f"rank{int(env['RANK'])}")
            self.claim_path = f"{self.claim_path}.rank{int(env['RANK'])}"
        self.pid = None            # set once this process claims the run
        self.first = None          # id() of the optimizer whose steps delimit training steps
        self.count = 0             # optimizer steps (hooks) so far
        self.last = None
        self.plain, self.profiled = [], []
        self.plain_kinds, self.profiled_kinds = [], []  # other optimizers' steps in each timed step
        # minor page faults of each plain, warm-up and profiled step (rundir.minor_faults), and the
        # warm-up steps' wall time: the script's own state, before any profiler ran
        self.plain_faults, self.warmup_faults, self.profiled_faults = [], [], []
        self.warmup_ms = []
        self.last_faults = None
        self.plain_optimizer, self.profiled_optimizer = [], []  # ms inside Optimizer.step() in each
        self.clock = None          # rundir.OptimizerClock, installed with the step hook
        self.optimizer_parameters = None  # what the first optimizer updates: tensors, elements, bytes
        self.others = 0
        self.prof = None
        self.stopped_at = None     # hook count at which the profiler was stopped
        self.device = "cpu"
        self.stopped_inside_step = 0
        self.done = False
        self.step_handle = None
        self.stop_hooks = []
        self.status_fd = None

    # -- bookkeeping ---------------------------------------------------------------------------
    def claim(self) -> bool:
        try:
            os.close(os.open(self.claim_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except OSError:
            return False
        self.pid = os.getpid()
        atexit.register(self.finish, False)
        return True

    def status(self, phase: str) -> None:
        """One line for the parent's progress bar: phase, steps done in it, its total (a few us: the
        file stays open and is rewritten in place)."""
        if not self.status_path:
            return
        done = {"warm-up": self.count, "profiling": len(self.profiled),
                "timing without profiler": len(self.plain)}.get(phase, 0)
        total = {"warm-up": self.warmup, "profiling": self.steps,
                 "timing without profiler": self.time_steps}.get(phase, 0)
        try:
            if self.status_fd is None:
                self.status_fd = os.open(self.status_path, os.O_WRONLY | os.O_CREAT, 0o600)
            line = f"{phase}\t{done}\t{total}\n".encode().ljust(64)
            os.pwrite(self.status_fd, line, 0)
        except OSError:
            self.status_path = None

    def remove_hooks(self) -> None:
        if self.step_handle is not None:
            self.step_handle.remove()
            self.step_handle = None
        if self.clock is not None:
            self.clock.remove()
        self.remove_stop_hooks()

    # -- the step hook -------------------------------------------------------------------------
    def on_step(self, optimizer, args, kwargs):
        import torch
        if self.done:
            return
        if self.first is None:
            if not self.claim():
                self.done = True
                self.remove_hooks()
                return
            self.first = id(optimizer)
            from daydream.profile.rundir import optimizer_parameters
            self.optimizer_parameters = optimizer_parameters([optimizer])
            params = [p for g in optimizer.param_groups for p in g["params"]]
            if params and params[0].is_cuda:
                self.device = f"cuda:{params[0].device.index or 0}"
        elif os.getpid() != self.pid:
            return
        elif id(optimizer) != self.first:
            self.others += 1  # another optimizer's step inside this training step (a GAN's generator)
            return
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        interval = None if self.last is None else 1e3 * (now - self.last)
        from daydream.profile.rundir import minor_faults
        faults_now = minor_faults()
        faults = None if self.last_faults is None else faults_now - self.last_faults
        self.last_faults = faults_now
        kind, self.others = self.others, 0
        optimizer_ms = self.clock.take() if self.clock is not None else None
        self.last = now
        self.count += 1
        w, n = self.warmup, self.steps
        if self.count <= w and interval is not None:  # the steps before any profiler ran: the script's own state
            self.warmup_ms.append(interval)
            self.warmup_faults.append(faults)
        if self.count < w:
            self.status("warm-up")
        elif self.count == w:
            self.start_profiler()
            self.status("profiling")
        elif self.count <= w + 1 + n:
            if self.count >= w + 2:
                self.profiled.append(interval)
                self.profiled_faults.append(faults)
                self.profiled_kinds.append(kind)
                self.profiled_optimizer.append(optimizer_ms)
            self.status("profiling")
            if self.count == w + 1 + n:
                self.arm_stop()
            # Last in the hook: a kept step ends here, and nothing of the hook runs on after it.
            # At hook W+1+N this opens the step that is never kept.
            self.prof.step()
        else:
            if self.stopped_at is None:  # no forward ran since the last profiled step
                self.stop_profiler()
            elif self.count > self.stopped_at + self.stopped_inside_step:
                self.plain.append(interval)
                self.plain_kinds.append(kind)
                self.plain_optimizer.append(optimizer_ms)
                self.plain_faults.append(faults)
            self.status("timing without profiler")
            if len(self.plain) >= self.time_steps:
                self.finish(True)

    def start_profiler(self):
        from torch.profiler import ProfilerActivity, profile, schedule
        activities = [ProfilerActivity.CPU]
        if self.device.startswith("cuda"):
            activities.append(ProfilerActivity.CUDA)
        self.prof = profile(activities=activities,
                            schedule=schedule(wait=0, warmup=1, active=self.steps + 1, repeat=1),
                            record_shapes=True, profile_memory=True, with_stack=self.with_stack, with_modules=True)
        self.prof.start()

    def arm_stop(self):
        """Stop the profiler at the next module forward or optimizer step, outside the kept steps."""
        from torch.nn.modules.module import register_module_forward_pre_hook  # imported already by torch
        from torch.optim.optimizer import register_optimizer_step_pre_hook
        self.stop_hooks = [register_module_forward_pre_hook(lambda *_: self.stop_profiler(inside_step=True)),
                           register_optimizer_step_pre_hook(lambda *_: self.stop_profiler(inside_step=True))]

    def stop_profiler(self, inside_step: bool = False):
        """Stop recording. Inside a step (from a pre-hook) that step is not timed; at a hook the next
        step is the first clean one."""
        if self.stopped_at is not None or self.prof is None or os.getpid() != self.pid:
            return
        self.prof.stop()
        self.stopped_at = self.count
        self.stopped_inside_step = int(inside_step)
        self.remove_stop_hooks()

    def remove_stop_hooks(self) -> None:
        for h in self.stop_hooks:
            h.remove()
        self.stop_hooks = []

    # -- writing ---------------------------------------------------------------------------------
    def finish(self, complete: bool):
        """Stop the profiler and write the run directory (after the timed steps, or at exit)."""
        if self.done or self.pid != os.getpid():
            return
        self.done = True
        self.remove_hooks()
        try:
            self._write(complete)
        except Exception as exc:  # at exit: one clear line, never a second traceback
            print(f"daydream: could not write the run directory {self.out}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)

    def _write(self, complete: bool):
        import json
        from datetime import datetime, timezone

        import torch

        from daydream.profile import calibrate, overhead, rundir, shapes
        from daydream.trace import load
        if self.prof is None:
            print(f"daydream: the script ended after {self.count} optimizer step(s), before profiling began "
                  f"(after {self.warmup} warm-up steps); no run directory written", file=sys.stderr)
            return
        self.stop_profiler()
        kept = len(self.profiled)
        if kept == 0:
            print(f"daydream: the script ended after {self.count} optimizer step(s), before a whole step was "
                  "profiled; no run directory written", file=sys.stderr)
            return
        self.status("calibrating")
        settings = {"record_shapes": True, "profile_memory": True, "with_stack": self.with_stack,
                    "with_modules": True}
        try:  # the steps are recorded: a calibration that fails must not lose them
            calibration = ({**calibrate.measure(), **calibrate.measure_dataloader()} if self.device == "cpu"
                           else None)
        except Exception as exc:  # noqa: BLE001 -- reported in run.json, the what-ifs fall back
            calibration = {"calibration_error": f"{type(exc).__name__}: {exc}"[:300]}
        event_cost = overhead.measure_event_cost(settings)
        info = {
            "schema": rundir.RUN_SCHEMA,
            "kind": "script",
            "run_id": self.run_id,
            "command": json.loads(self.command) if self.command else [],
            "model": None,
            "device": self.device.split(":")[0],
            "device_name": rundir.device_name(self.device),
            "batch_size": None,
            "steps": self.steps,
            "warmup": self.warmup,
            "amp": None,
            "settings": {
                "step_marker": "optimizer step of the first optimizer that stepped",
                "threads": torch.get_num_threads(),
                "profiler": {**settings, "schedule": {"wait": 0, "warmup": 1, "active": self.steps + 1},
                             "kept_steps": "ProfilerStep#1..#N; the open step after them is dropped"},
            },
            "versions": rundir.versions(),
            "cpu_count": os.cpu_count(),  # cores the run shared (the dataloader what-if's contention model)
            **rundir.summarize_steps(self.plain, self.profiled, self.plain_kinds, self.profiled_kinds,
                                     self.plain_optimizer, self.profiled_optimizer, self.plain_faults,
                                     self.warmup_faults, self.profiled_faults),
            "warmup_step_ms": [round(x, 4) for x in self.warmup_ms],
            "time_steps": self.time_steps,
            "optimizer_steps": self.count,
            **({"optimizer_parameters": self.optimizer_parameters} if self.optimizer_parameters else {}),
            **({"calibration": calibration} if calibration else {}),
            "profiler_event_cost": event_cost,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.status("writing")
        with rundir.staged(self.out) as staging:
            info["profiled_steps"] = rundir.export_trace(self.prof, staging, keep_steps=kept)
            if calibration is not None:  # at the run's own shapes, read from the trace just written
                calibration.update(shapes.measure_run_shapes_or_note(load, staging / "trace.json.gz"))
            recording = None
            if self.device == "cpu":  # what memory's amp needs to know (daydream.memory.predict)
                recording = {"cpu_bf16_onednn": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}
            error = rundir.export_memory(self.prof, staging, self.device, None, recording=recording)
            info["files"] = {"trace": "trace.json.gz", "memory": None if error else "memory.json.gz"}
            if error:
                info["memory_error"] = error
            info["complete"] = complete and info["profiled_steps"] == self.steps
            rundir.write_run_json(staging, info)
        if kept < self.steps:
            print(f"daydream: the script stopped after {kept} of {self.steps} profiled steps; wrote those "
                  f"{kept} whole steps to {self.out} (complete: false)", file=sys.stderr)
        elif len(self.plain) < self.time_steps:
            print(f"daydream: the script ended {len(self.plain)} of {self.time_steps} timed plain steps after "
                  f"profiling; plain_step_ms is the median of {len(self.plain)}", file=sys.stderr)


def install():
    """Register the global optimizer-step hook (once per process)."""
    global _state
    if _state is not None or not os.environ.get("DAYDREAM_PROFILE_OUT"):
        return
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from daydream.profile.rundir import OptimizerClock
    _state = _ScriptProfiler()
    _state.clock = OptimizerClock()  # its post-hook first: a step's optimizer time is in when on_step reads it
    _state.step_handle = register_optimizer_step_post_hook(_state.on_step)
