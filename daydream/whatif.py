"""The what-if pipeline: trace -> graph -> optimizations (in the order given) -> simulate.

`whatif(trace, ["amp", "fsdp:world_size=8"])` returns a `WhatIf` holding the measured, replayed
and predicted step times, both timelines and both breakdowns.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from daydream.analysis import phase_breakdown, without_profiler
from daydream.graph import TaskGraph, build_graph
from daydream.opts.context import Context
from daydream.opts.params import OptChoice, optimization, parse_opt
from daydream.sim import Timeline, simulate
from daydream.trace import Trace, load


# A prediction within this fraction of the replay is "changed nothing": it must say why in a note.
UNCHANGED = 0.005


@dataclass
class Applied:
    """What one optimization did to the graph: its notes, and the task time and count it changed."""
    opt: OptChoice
    noted: bool
    work_ns: float   # total task time after - before (all ranks, all steps)
    tasks: int       # tasks after - before
    changed: int     # tasks of the graph before whose duration changed (removed ones included)


def apply_optimizations(graph: TaskGraph, opts: list[OptChoice], ctx: Context) -> TaskGraph:
    """A transformed copy of `graph`; the opts apply in the order given. One given twice with the
    same parameters applies once: the second would model the same change again."""
    out = graph.copy()
    for opt in opts:
        if any(a.opt == opt for a in ctx.applied):
            ctx.notes.append(f"{opt.name}: already applied earlier in this list with the same parameters; "
                             "applied once")
            ctx.applied.append(Applied(opt, True, 0.0, 0, 0))
            continue
        notes, dur = len(ctx.notes), out.tasks["dur"].to_numpy()
        optimization(opt.name).apply(out, opt.params, ctx)
        after = out.tasks["dur"].to_numpy()
        kept = min(len(dur), len(after))
        changed = int((dur[:kept] != after[:kept]).sum()) + max(len(dur) - len(after), 0)
        ctx.applied.append(Applied(opt, len(ctx.notes) > notes, float(after.sum() - dur.sum()),
                                   len(after) - len(dur), changed))
    return out


def unchanged_notes(applied: list[Applied], replay_ms: float, predicted_ms: float, steps: int) -> list[str]:
    """Why a prediction within UNCHANGED of the replay moved so little, for each optimization that
    did not say so itself: nothing in the graph changed, or what changed is off the critical path."""
    if not replay_ms or abs(replay_ms / predicted_ms - 1) >= UNCHANGED:
        return []
    out = []
    for a in applied:
        if a.noted:
            continue
        if not a.changed and not a.tasks:
            out.append(f"{a.opt.name}: it found nothing to change in this trace")
        else:
            out.append(f"{a.opt.name}: it changed {a.changed} task(s) and added {max(a.tasks, 0)}, "
                       f"{a.work_ns / 1e6 / max(steps, 1):+.3f} ms/step of task time in all, but the step moves "
                       f"{100 * (predicted_ms / replay_ms - 1):+.2f}%: the work it changes is small or off the "
                       "critical path")
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

    @functools.cached_property
    def _unprofiled(self) -> tuple[float | None, float | None]:
        """(replay, predicted) step times without the profiler's own cost (analysis.without_profiler).
        The prediction applies the optimizations to the graph with that cost already taken out, so
        an optimization that removes many small recorded ops removes their unprofiled time, never
        more: their events' cost, carried over into the tasks after them, stays out."""
        clean = without_profiler(self.base.graph, self.trace)
        if clean is None:
            return None, None
        replay = simulate(clean).per_step_ms
        if self.predicted is self.base:
            return replay, replay
        return replay, simulate(apply_optimizations(clean, self.optimizations, Context.of(self.trace))).per_step_ms

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
        notes = list(ctx.notes) + unchanged_notes(ctx.applied, base.per_step_ms, predicted.per_step_ms, trace.steps)
        out.append(WhatIf(trace, list(opts), base, predicted, notes=list(trace.warnings) + notes))
        if progress:
            progress(labels[i] if labels else "predict")
    return out


def whatif(trace: Trace | str, opts: list[OptChoice | str] = (), progress=None) -> WhatIf:
    """Predict the step time of `trace` under `opts` (none: replay unchanged)."""
    choices = [o if isinstance(o, OptChoice) else parse_opt(o) for o in opts]
    return predict_each(trace, [choices], progress)[0]
