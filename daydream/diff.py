"""`daydream diff BASE OTHER`: what changed between two traces of one job, ranked by how much of
the step-time change each change explains.

Contribution to the step delta. The replay of each trace gives its critical path, and every
nanosecond of a step is given to the task holding the step back at that moment (as the phase
breakdown does), so the critical-path time of a phase, an operator or a kernel, per step, adds up
over all of them to the step time. The difference of those per-step figures between OTHER and
BASE therefore adds up to the step delta: that difference is each item's contribution, and the
lists are ranked by its size.

Matching. Phases match by name. A task on the path is charged to its operator: the innermost aten
op around it (for GPU work: around its launch), else the innermost event around it (a DataLoader
iterator, a Python function), else its own name. Operators and kernels match by name; an item
present on one side only is `added` or `removed`. GPU time per kernel (all of it, on the path or
not) is reported beside, with the mean duration, so "faster"/"slower" describes the kernel itself:
  faster/slower  the kernel's (or operator's) total time per step moved by more than CHANGE_PCT
                 and CHANGE_MIN_MS; else `same`.
A what-if export (`whatif --export-trace`) is a trace like any other: diffing it against a
measured trace shows where the prediction and the measurement part.
"""
from __future__ import annotations

import numpy as np

from daydream.analysis import _path_increments, phase_breakdown
from daydream.graph import PHASES
from daydream.graph.build import GPU_TASK_TYPES
from daydream.sim import Timeline, simulate
from daydream.trace import Trace

CHANGE_PCT = 2.0     # below this relative change an item is `same` (run-to-run noise of a kernel)
CHANGE_MIN_MS = 0.001  # ... and below 1 us per step as well


def _charge_names(timeline: Timeline) -> np.ndarray:
    """Per task, the operator it is charged to (see the module docstring)."""
    g = timeline.graph
    trace = g.trace
    op = g.column("op")
    ev_names = trace.column("name")
    names = np.asarray(g.names, dtype=object)
    out = names[g.column("name")].copy()
    has = op >= 0
    out[has] = names[ev_names[op[has]]]
    return out


def _path_by(timeline: Timeline, labels: np.ndarray) -> dict[str, float]:
    """Critical-path ms per step per label."""
    path, inc = _path_increments(timeline)
    steps = max(timeline.graph.steps, 1)
    keys, inv = np.unique(labels[path].astype(str), return_inverse=True)
    per = np.bincount(inv, weights=inc, minlength=len(keys)) / steps / 1e6
    return dict(zip(keys.tolist(), per.tolist()))


def _gpu_by_name(timeline: Timeline) -> dict[str, tuple[float, int]]:
    """GPU ms per step and count per kernel name, in the slowest rank's window."""
    g = timeline.graph
    sel = (np.isin(g.column("kind"), GPU_TASK_TYPES) & g.column("in_window")
           & (g.column("rank") == timeline.slowest_rank))
    steps = max(g.steps, 1)
    names = np.asarray(g.names, dtype=object)[g.column("name")[sel]].astype(str)
    dur = (g.column("obs_end") - g.column("obs_start"))[sel]
    keys, inv = np.unique(names, return_inverse=True)
    tot = np.bincount(inv, weights=dur, minlength=len(keys)) / steps / 1e6
    cnt = np.bincount(inv, minlength=len(keys))
    return {k: (t, int(c)) for k, t, c in zip(keys.tolist(), tot.tolist(), cnt.tolist())}


def _status(base: float | None, other: float | None) -> str:
    if base is None:
        return "added"
    if other is None:
        return "removed"
    d = other - base
    if abs(d) < CHANGE_MIN_MS or abs(d) < CHANGE_PCT / 100 * max(abs(base), 1e-12):
        return "same"
    return "slower" if d > 0 else "faster"


def _ranked(entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda e: (-abs(e["delta_ms"]), e["name"]))


def diff(base: Trace, other: Trace, base_timeline: Timeline | None = None,
         other_timeline: Timeline | None = None) -> dict:
    """The contract's `diff --json` object for two loaded traces."""
    tb = base_timeline or simulate(base.graph())
    to = other_timeline or simulate(other.graph())
    r = 6
    pb, po = phase_breakdown(tb), phase_breakdown(to)
    phases = _ranked([{"name": p, "base_ms": round(pb[p], r), "other_ms": round(po[p], r),
                       "delta_ms": round(po[p] - pb[p], r)} for p in PHASES])
    # operators: critical-path time per step, plus nothing else to match on
    ob, oo = _path_by(tb, _charge_names(tb)), _path_by(to, _charge_names(to))
    operators = []
    for name in sorted(set(ob) | set(oo)):
        b, o = ob.get(name), oo.get(name)
        operators.append({"name": name, "status": _status(b, o), "base_ms": round(b or 0.0, r),
                          "other_ms": round(o or 0.0, r), "delta_ms": round((o or 0.0) - (b or 0.0), r)})
    # kernels: critical-path time (the ranking) and GPU time per step (what the kernel itself did)
    gb, go = _gpu_by_name(tb), _gpu_by_name(to)
    kb = _path_by(tb, np.asarray(tb.graph.names, dtype=object)[tb.graph.column("name")])
    ko = _path_by(to, np.asarray(to.graph.names, dtype=object)[to.graph.column("name")])
    kernels = []
    for name in sorted(set(gb) | set(go)):
        b, o = gb.get(name), go.get(name)
        entry = {"name": name, "status": _status(b and b[0], o and o[0]),
                 "base_ms": round(kb.get(name, 0.0), r), "other_ms": round(ko.get(name, 0.0), r),
                 "delta_ms": round(ko.get(name, 0.0) - kb.get(name, 0.0), r),
                 "base_gpu_ms": round(b[0], r) if b else 0.0, "other_gpu_ms": round(o[0], r) if o else 0.0,
                 "base_count": b[1] if b else 0, "other_count": o[1] if o else 0}
        entry["gpu_delta_ms"] = round(entry["other_gpu_ms"] - entry["base_gpu_ms"], r)
        kernels.append(entry)
    kernels.sort(key=lambda e: (-abs(e["delta_ms"]), -abs(e["gpu_delta_ms"]), e["name"]))
    step_delta = other.measured_ms - base.measured_ms
    largest = phases[0] if phases and phases[0]["delta_ms"] else None
    return {"base": base.path, "other": other.path,
            "base_device": base.device, "other_device": other.device,
            "base_ms": round(base.measured_ms, r), "other_ms": round(other.measured_ms, r),
            "step_delta_ms": round(step_delta, r),
            "step_delta_pct": round(100 * step_delta / base.measured_ms, 3) if base.measured_ms else 0.0,
            "replay_delta_ms": round(to.per_step_ms - tb.per_step_ms, r),
            "largest": {"kind": "phase", **largest} if largest else None,
            "phases": phases, "operators": _ranked(operators), "kernels": kernels}
