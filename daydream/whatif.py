"""The what-if pipeline: trace -> graph -> optimizations (in the order given) -> simulate.

`whatif(trace, ["amp", "fsdp:world_size=8"])` returns a `WhatIf` holding the measured, replayed
and predicted step times, both timelines and both breakdowns.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from daydream.analysis import phase_breakdown
from daydream.graph import TaskGraph
from daydream.opts.context import Context
from daydream.opts.params import OptChoice, optimization, parse_opt
from daydream.sim import Timeline, simulate
from daydream.trace import Trace, load


def apply_optimizations(graph: TaskGraph, opts: list[OptChoice], ctx: Context) -> TaskGraph:
    """A transformed copy of `graph`; the opts apply in the order given."""
    out = graph.copy()
    for opt in opts:
        optimization(opt.name).apply(out, opt.params, ctx)
    return out


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

    def to_json(self) -> dict:
        return {
            "trace": self.trace.path,
            "device": self.trace.device,
            "steps": self.trace.steps,
            "measured_ms": round(self.measured_ms, 6),
            "replay_ms": round(self.replay_ms, 6),
            "predicted_ms": round(self.predicted_ms, 6),
            "speedup": round(self.speedup, 6),
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
