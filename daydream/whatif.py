"""The what-if pipeline: trace -> graph -> optimizations (in the order given) -> simulate.

`whatif(trace, ["amp", "fsdp:world_size=8"])` returns a `WhatIf` holding the measured, replayed
and predicted step times, both timelines and both breakdowns.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from daydream.analysis import phase_breakdown
from daydream.graph import TaskGraph, build_graph
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


def predict_each(trace: Trace | str, opt_sets: list[list[OptChoice]], progress=None,
                 labels: list[str] | None = None) -> list[WhatIf]:
    """The what-if pipeline, shared by `whatif` (one set) and `scenarios.compare` (several): one
    graph and one replay, then each set of optimizations applied to a copy and simulated.
    `progress(label)` after the graph, the replay and each set (`labels`, default "predict")."""
    if not isinstance(trace, Trace):
        trace = load(trace)
    for opts in opt_sets:
        for o in opts:
            optimization(o.name)  # fail on a missing model before any work
    graph = build_graph(trace)
    if progress:
        progress("graph")
    base = simulate(graph)
    if progress:
        progress("replay")
    out = []
    for i, opts in enumerate(opt_sets):
        ctx = Context.of(trace)
        predicted = simulate(apply_optimizations(graph, opts, ctx)) if opts else base
        out.append(WhatIf(trace, list(opts), base, predicted, notes=list(trace.warnings) + list(ctx.notes)))
        if progress:
            progress(labels[i] if labels else "predict")
    return out


def whatif(trace: Trace | str, opts: list[OptChoice | str] = (), progress=None) -> WhatIf:
    """Predict the step time of `trace` under `opts` (none: replay unchanged)."""
    choices = [o if isinstance(o, OptChoice) else parse_opt(o) for o in opts]
    return predict_each(trace, [choices], progress)[0]
