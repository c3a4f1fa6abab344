"""The profiler inside a script run by `daydream profile -- CMD`.

`sitecustomize` (written by daydream.profile.script) calls `install()` as soon as `torch.optim` has
been imported. From then on every `Optimizer.step()` of any optimizer reports here. The first
process whose optimizer steps claims the run (a file created with O_EXCL), so launchers and
DataLoader workers never profile. A training step is the interval between two steps of the first
optimizer that stepped (a GAN's second optimizer does not start a new step).

Timeline, with W = warm-up and N = profiled steps:
  steps 1..W        plain; intervals between their ends are the no-profiler step times
  end of step W     profiler starts, schedule(wait=0, warmup=1, active=N); ProfilerStep#0 is warm-up
  steps W+2..W+1+N  recorded, one ProfilerStep each (prof.step() at each optimizer step)
  then, or at exit  the run directory is written; a script that stops early leaves what was recorded.
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
        self.with_stack = env.get("DAYDREAM_PROFILE_WITH_STACK", "1") == "1"
        self.claim_path = env["DAYDREAM_PROFILE_CLAIM"]
        self.run_id = env.get("DAYDREAM_PROFILE_RUN_ID", "")
        self.command = env.get("DAYDREAM_PROFILE_COMMAND", "")
        # Under torchrun (RANK and WORLD_SIZE > 1 set for each worker) every rank profiles itself and
        # writes its own run directory, OUT/rank<RANK>; `daydream analyze OUT` reads them as one job.
        if int(env.get("WORLD_SIZE", "1") or 1) > 1 and env.get("RANK", "").isdigit():
            self.out = os.path.join(self.out, f"rank{int(env['RANK'])}")
            self.claim_path = f"{self.claim_path}.rank{int(env['RANK'])}"
        self.pid = None            # set once this process claims the run
        self.first = None          # id() of the optimizer whose steps delimit training steps
        self.count = 0
        self.last = None
        self.plain, self.profiled = [], []
        self.prof = None
        self.device = "cpu"
        self.done = False
        self.handle = None

    def claim(self) -> bool:
        try:
            os.close(os.open(self.claim_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except OSError:
            return False
        self.pid = os.getpid()
        atexit.register(self.finish, False)
        return True

    def on_step(self, optimizer, args, kwargs):
        import torch
        if self.done:
            return
        if self.first is None:
            if not self.claim():
                self.done = True
                self.handle.remove()
                return
            self.first = id(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            if params and params[0].is_cuda:
                self.device = f"cuda:{params[0].device.index or 0}"
        elif id(optimizer) != self.first or os.getpid() != self.pid:
            return
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        interval = None if self.last is None else 1e3 * (now - self.last)
        self.last = now
        self.count += 1
        if self.count <= self.warmup:
            if interval is not None:
                self.plain.append(interval)
            if self.count == self.warmup:
                self.start_profiler()
            return
        if self.count >= self.warmup + 2:
            self.profiled.append(interval)
        self.prof.step()
        if len(self.profiled) >= self.steps:
            self.finish(True)

    def start_profiler(self):
        from torch.profiler import ProfilerActivity, profile, schedule
        activities = [ProfilerActivity.CPU]
        if self.device.startswith("cuda"):
            activities.append(ProfilerActivity.CUDA)
        self.prof = profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=self.steps, repeat=1),
                            record_shapes=True, profile_memory=True, with_stack=self.with_stack, with_modules=True)
        self.prof.start()

    def finish(self, complete: bool):
        """Stop the profiler and write the run directory (at the last step, or at exit)."""
        if self.done or self.pid != os.getpid():
            return
        self.done = True
        self.handle.remove()
        try:
            self._write(complete)
        except Exception as exc:  # at exit: one clear line, never a second traceback
            print(f"daydream: could not write the run directory {self.out}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)

    def _write(self, complete: bool):
        import json
        from datetime import datetime, timezone

        import torch

        from daydream.profile import rundir
        if self.prof is None:
            print(f"daydream: the script ended after {self.count} optimizer step(s), before profiling began "
                  f"(after {self.warmup} warm-up steps); no run directory written", file=sys.stderr)
            return
        self.prof.stop()
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
                "profiler": {"record_shapes": True, "profile_memory": True, "with_stack": self.with_stack,
                             "with_modules": True, "schedule": {"wait": 0, "warmup": 1, "active": self.steps}},
            },
            "versions": rundir.versions(),
            "cpu_count": os.cpu_count(),  # cores the run shared (the dataloader what-if's contention model)
            **rundir.summarize_steps(self.plain, self.profiled),
            "optimizer_steps": self.count,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        with rundir.staged(self.out) as staging:
            info["profiled_steps"] = rundir.export_trace(self.prof, staging)
            error = rundir.export_memory(self.prof, staging, self.device, None)
            info["files"] = {"trace": "trace.json.gz", "memory": None if error else "memory.json.gz"}
            if error:
                info["memory_error"] = error
            info["complete"] = complete
            rundir.write_run_json(staging, info)
        if not complete:
            print(f"daydream: the script stopped after {len(self.profiled)} of {self.steps} profiled steps; "
                  f"wrote what was recorded to {self.out}", file=sys.stderr)


def install():
    """Register the global optimizer-step hook (once per process)."""
    global _state
    if _state is not None or not os.environ.get("DAYDREAM_PROFILE_OUT"):
        return
    from torch.optim.optimizer import register_optimizer_step_post_hook
    _state = _ScriptProfiler()
    _state.handle = register_optimizer_step_post_hook(_state.on_step)
