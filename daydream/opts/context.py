"""What an optimization needs to know besides the graph: the device and the run's settings."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daydream import hardware
from daydream.errors import DaydreamError
from daydream.trace import Trace
from daydream.trace.events import KERNEL


def _kernel_names(trace: Trace) -> list[str]:
    """The distinct kernel names of the trace (they may name the GPU architecture)."""
    kernels = trace.column("kind") == KERNEL
    return trace.name_of(np.unique(trace.column("name")[kernels])).tolist()


@dataclass
class Context:
    trace: Trace
    known_device: hardware.Device | None  # None: the trace does not say, and nothing else tells
    batch_size: int | None = None
    run: dict = field(default_factory=dict)  # run.json of a `daydream profile` run directory
    notes: list = field(default_factory=list)  # caveats the optimizations report to the user
    job: object = None  # multi-rank: the whole job's figures (daydream.job.engine.JobInfo), else None
    applied: list = field(default_factory=list)  # per optimization applied: what it did to the graph (whatif.py)
    device_problem: str = ""  # why known_device is None, as the one line a what-if needing it gives
    # op calls (trace event rows) an optimization re-priced from a measurement at their shape: a second
    # one on the same call composes its ratio instead of adding its difference again (amp + batch-size)
    repriced: set = field(default_factory=set)

    @property
    def device(self) -> hardware.Device:
        """The device, for the optimizations whose cost models need its facts; refused (one line
        saying to pass --device) on a trace that does not say and whose kernels do not tell."""
        if self.known_device is None:
            raise DaydreamError(self.device_problem)
        return self.known_device

    @classmethod
    def of(cls, trace: Trace) -> "Context":
        run = trace.run
        notes, problem = [], ""
        if trace.has_gpu:
            device, how = hardware.trace_device(trace.device_properties, _kernel_names(trace),
                                                hardware.assumed_device())
            if device is None:
                problem = f"{trace.path}: {how}"
            elif how:
                notes.append(how)
        else:
            device = hardware.cpu_device()
        batch = run.get("batch_size")
        return cls(trace=trace, known_device=device, batch_size=int(batch) if batch else None, run=run,
                   notes=notes, device_problem=problem)
