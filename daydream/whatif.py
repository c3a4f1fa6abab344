"""The what-if pipeline: trace -> graph -> optimizations (in the order given) -> simulate.

`whatif(trace, ["amp", "fsdp:world_size=8"])` returns a `WhatIf` holding the measured, replayed
and predicted step times, both timelines and both breakdowns.
"""
from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass, field

from daydream.analysis import phase_breakdown
from daydream.errors import DaydreamError
from daydream.graph import TaskGraph
from daydream.opts.context import Context
from daydream.opts.params import OptChoice, parse_opt
from daydream.sim import Timeline, simulate
from daydream.trace import Trace, load


def optimization(name: str):
    """The module that implements optimization `name` (its `apply(graph, params, ctx)`)."""
    try:
        return importlib.import_module(f"daydream.opts.{name.replace('-', '_')}")
    except ModuleNotFoundError:
        raise DaydreamError(f"optimization {name!r} has no time model in this build") from None


def apply_optimizations(graph: TaskGraph, opts: list[OptChoice], ctx: Context) -> TaskGraph:
    """A transformed copy of `graph`; the opts apply in the order given."""
    out = graph.copy()
    for opt in opts:
        optimization(opt.name).apply(out, opt.params, ctx)
    return out


def run_json(trace: Trace) -> dict:
    """run.json of a `daydream profile` run directory ({} for anything else or an unreadable one)."""
    if trace.run_dir is None:
        return {}
    try:
        return json.loads((trace.run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class WhatIf:
    trace: Trace
    optimizations: list[OptChoice]
    base: Timeline
    predicted: Timeline
    notes: list[str] = field(default_factory=list)

    @property
    def measured_ms(self) -> float:
        return self.trace.measured_ms

    @property
    def replay_ms(self) -> float:
        return self.base.per_step_ms

    @property
    def predicted_ms(self) -> float:
        return self.predicted.per_step_ms

    @property
    def speedup(self) -> float:
        return self.replay_ms / self.predicted_ms if self.predicted_ms > 0 else float("inf")

    @functools.cached_property
    def _unprofiled(self) -> tuple[float | None, float | None]:
        """(replay, predicted) step times once the profiler's calibrated per-event cost is taken out
        of the CPU tasks (daydream.profile.overhead); None without a calibration in run.json."""
        from daydream.profile import overhead
        cost = overhead.event_cost_of(run_json(self.trace))
        if cost is None:
            return None, None
        replay = simulate(overhead.without_profiler(self.base.graph, cost)).per_step_ms
        if self.predicted is self.base:
            return replay, replay
        return replay, simulate(overhead.without_profiler(self.predicted.graph, cost)).per_step_ms

    @property
    def unprofiled_ms(self) -> float | None:
        return self._unprofiled[0]

    @property
    def predicted_unprofiled_ms(self) -> float | None:
        return self._unprofiled[1]

    def to_json(self) -> dict:
        unprofiled, predicted_unprofiled = self._unprofiled
        return {
            "trace": self.trace.path,
            "device": self.trace.device,
            "steps": self.trace.steps,
            "measured_ms": round(self.measured_ms, 6),
            "replay_ms": round(self.replay_ms, 6),
            "predicted_ms": round(self.predicted_ms, 6),
            "speedup": round(self.speedup, 6),
            "unprofiled_ms": None if unprofiled is None else round(unprofiled, 6),
            "predicted_unprofiled_ms": None if predicted_unprofiled is None else round(predicted_unprofiled, 6),
            "replay_error_pct": round(100 * abs(self.replay_ms - self.measured_ms) / self.measured_ms, 4)
            if self.measured_ms else 0.0,
            "optimizations": [o.as_json() for o in self.optimizations],
            "breakdown": {"measured": phase_breakdown(self.base), "predicted": phase_breakdown(self.predicted)},
            "notes": self.notes,
        }


def whatif(trace: Trace | str, opts: list[OptChoice | str] = (), progress=None) -> WhatIf:
    """Predict the step time of `trace` under `opts` (none: replay unchanged)."""
    if not isinstance(trace, Trace):
        trace = load(trace)
    choices = [o if isinstance(o, OptChoice) else parse_opt(o) for o in opts]
    for o in choices:
        optimization(o.name)  # fail on a missing model before any work
    graph = trace.graph()
    if progress:
        progress("graph")
    base = simulate(graph)
    if progress:
        progress("replay")
    ctx = Context.of(trace)
    if choices:
        predicted = simulate(apply_optimizations(graph, choices, ctx))
    else:
        predicted = base
    if progress:
        progress("predict")
    return WhatIf(trace, choices, base, predicted, notes=list(trace.warnings) + list(ctx.notes))
