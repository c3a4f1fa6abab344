"""Validation of a what-if against a measurement: predict OPTIMIZED's step time from BASE.

`validate(base, optimized, ["dataloader:workers=4"])` replays BASE, applies the optimizations,
and compares the predicted step time with the one OPTIMIZED measured (CONTRACT.md, validate). The
measured speedup is BASE measured / OPTIMIZED measured; the predicted one, like every speedup the
tool predicts, BASE replay / predicted.
"""
from __future__ import annotations

from daydream.opts.params import OptChoice, parse_opt
from daydream.trace import Trace, load
from daydream.whatif import whatif


def validate(base: Trace | str, optimized: Trace | str, opts=(), progress=None) -> dict:
    """The CONTRACT.md `validate --json` object for predicting `optimized` from `base`."""
    choices = [o if isinstance(o, OptChoice) else parse_opt(o) for o in opts]
    opt_trace = optimized if isinstance(optimized, Trace) else load(optimized)
    result = whatif(base, choices, progress=progress)
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
        "notes": result.notes,
    }


__all__ = ["validate"]
