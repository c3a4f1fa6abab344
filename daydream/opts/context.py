"""What an optimization needs to know besides the graph: the device and the run's settings."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from daydream import hardware
from daydream.errors import DaydreamError
from daydream.trace import Trace


@dataclass
class Context:
    trace: Trace
    device: hardware.Device
    batch_size: int | None = None
    run: dict = field(default_factory=dict)  # run.json of a `daydream profile` run directory
    notes: list = field(default_factory=list)  # caveats the optimizations report to the user
    job: object = None  # multi-rank: the whole job's figures (daydream.job.engine.JobInfo), else None

    @classmethod
    def of(cls, trace: Trace) -> "Context":
        run = {}
        if trace.run_dir is not None and (trace.run_dir / "run.json").exists():
            try:
                run = json.loads((trace.run_dir / "run.json").read_text())
            except (OSError, ValueError) as exc:
                raise DaydreamError(f"{trace.run_dir / 'run.json'}: unreadable ({exc})") from None
        if trace.has_gpu:
            device = hardware.from_device_properties(trace.device_properties or [{"name": trace.device}])
        else:
            device = hardware.cpu_device()
        batch = run.get("batch_size")
        return cls(trace=trace, device=device, batch_size=int(batch) if batch else None, run=run)
