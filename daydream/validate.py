"""Validation of a what-if against a measurement: predict OPTIMIZED's step time from BASE.

`validate(base, optimized, ["dataloader:workers=4"])` replays BASE, applies the optimizations,
and compares the predicted step time with the one OPTIMIZED measured (CONTRACT.md, validate). The
measured speedup is BASE measured / OPTIMIZED measured; the predicted one, like every speedup the
tool predicts, BASE replay / predicted.
"""
from __future__ import annotations

import numpy as np

from daydream.opts.params import OptChoice, parse_opt
from daydream.trace import Trace, load
from daydream.trace.events import CPU_OP
from daydream.whatif import whatif

# Below this similarity of the two traces' operator mixes (weighted Jaccard index of the CPU ops per
# step, sum_k min(a_k, b_k) / sum_k max(a_k, b_k) over op names k) two traces are not one job before
# and after a change. On the shipped pairs (traces/pairs/cpu) every base/optimized pair scores 0.61
# (vit, fused optimizer) to 0.99; different models score 0.20 (resnet50/transformer) to 0.67 (bert/vit),
# so similar encoders are told apart only by run.json's model.
RELATED_OPS = 0.5


def _ops_per_step(trace: Trace) -> dict:
    cpu = trace.column("kind") == CPU_OP
    codes, counts = np.unique(trace.column("name")[cpu], return_counts=True)
    return dict(zip(trace.name_of(codes).tolist(), (counts / max(trace.steps, 1)).tolist()))


def unrelated(base: Trace, optimized: Trace) -> list[str]:
    """Why BASE and OPTIMIZED do not look like one job before and after a change (empty: they do):
    different models or devices in run.json, different devices or rank counts in the traces, or
    operator mixes that share too little."""
    why = []
    runs = base.run, optimized.run
    for key in ("model", "device"):
        if runs[0].get(key) and runs[1].get(key) and runs[0][key] != runs[1][key]:
            why.append(f"run.json {key} differs: {runs[0][key]} vs {runs[1][key]}")
    if base.device != optimized.device:
        why.append(f"recorded on different devices: {base.device} vs {optimized.device}")
    if len(base.ranks) != len(optimized.ranks):
        why.append(f"different rank counts: {len(base.ranks)} vs {len(optimized.ranks)}")
    a, b = _ops_per_step(base), _ops_per_step(optimized)
    if a and b:
        names = set(a) | set(b)
        similar = sum(min(a.get(k, 0), b.get(k, 0)) for k in names) / sum(max(a.get(k, 0), b.get(k, 0)) for k in names)
        if similar < RELATED_OPS:
            why.append(f"their operator mixes per step are {100 * similar:.0f}% alike (below {100 * RELATED_OPS:.0f}%; "
                       f"{len(a)} vs {len(b)} distinct ops): different models or step structure")
    return why


def validate(base: Trace | str, optimized: Trace | str, opts=(), progress=None) -> dict:
    """The CONTRACT.md `validate --json` object for predicting `optimized` from `base`."""
    choices = [o if isinstance(o, OptChoice) else parse_opt(o) for o in opts]
    opt_trace = optimized if isinstance(optimized, Trace) else load(optimized)
    base_trace = base if isinstance(base, Trace) else load(base)
    result = whatif(base_trace, choices, progress=progress)
    mismatch = unrelated(base_trace, opt_trace)
    base_ms, opt_ms, pred_ms = result.measured_ms, opt_trace.measured_ms, result.predicted_ms
    return {
        "base": result.trace.path,
        "optimized": opt_trace.path,
        "optimizations": [c.as_json() for c in choices],
        "base_measured_ms": round(base_ms, 6),
        "base_replay_ms": round(result.replay_ms, 6),
        "optimized_measured_ms": round(opt_ms, 6),
        "predicted_ms": round(pred_ms, 6),
        "measured_speedup": round(base_ms / opt_ms, 6) if opt_ms > 0 else None,
        # CONTRACT.md: a predicted speedup is always replay / predicted (measured / measured above)
        "predicted_speedup": round(result.replay_ms / pred_ms, 6) if pred_ms > 0 else None,
        "error_pct": round(100 * abs(pred_ms - opt_ms) / opt_ms, 4) if opt_ms > 0 else None,
        "without_profiler": _without_profiler(base_trace, opt_trace, result),
        "notes": result.notes,
        "warnings": [f"BASE and OPTIMIZED look unrelated: {w}" for w in mismatch],
    }


def _without_profiler(base: Trace, optimized: Trace, result) -> dict | None:
    """Where both runs timed steps without the profiler (run.json `plain_step_ms`, `daydream
    profile`) and the what-if predicted without the profiler's cost: the predicted unprofiled
    speedup applied to BASE's plain median, against OPTIMIZED's. A profiled window is a handful of
    steps under the profiler, the plain median ten without it: on a shared host the two pairs can
    disagree by more than the effect's error (a user's amp pair: 1.48x profiled, 1.24x plain)."""
    plain = base.run.get("plain_step_ms"), optimized.run.get("plain_step_ms")
    unprofiled, predicted = result.unprofiled_ms, result.predicted_unprofiled_ms
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in plain)
    if not numbers or not unprofiled or not predicted:
        return None
    predicted_ms = plain[0] * predicted / unprofiled
    return {"base_plain_ms": round(plain[0], 6), "optimized_plain_ms": round(plain[1], 6),
            "predicted_ms": round(predicted_ms, 6), "measured_speedup": round(plain[0] / plain[1], 6),
            "predicted_speedup": round(unprofiled / predicted, 6),
            "error_pct": round(100 * abs(predicted_ms - plain[1]) / plain[1], 4)}


__all__ = ["validate"]
