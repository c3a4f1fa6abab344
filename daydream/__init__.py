"""Daydream: trace-driven profiler and what-if simulator for deep-learning training.

Data flows one way: trace file -> events table (`daydream.trace`) -> task graph (`daydream.graph`)
-> transforms (`daydream.transform`, `daydream.opts`) -> simulator (`daydream.sim`) -> timeline ->
reports (`daydream.analysis`, `daydream.report`).

    import daydream
    trace = daydream.load("trace.json.gz")       # events table: trace.events
    graph = daydream.build_graph(trace)               # TaskGraph
    timeline = daydream.simulate(graph)          # replay: timeline.per_step_ms
    result = daydream.predict(trace, ["amp"])    # what-if: result.predicted_ms
    mem = daydream.memory_report(trace)          # memory breakdown
    daydream.register(daydream.Optimization(...))  # a user's own optimization (docs/extending.md)

(`predict`, `memory_report` and `check` are `daydream.whatif.whatif`, `daydream.memory.memory` and
`daydream.validate.validate` under names that do not clash with those modules.)
"""
from daydream.errors import DaydreamError

_API = {
    "load": ("daydream.trace", "load"),
    "build_graph": ("daydream.graph", "build_graph"),
    "simulate": ("daydream.sim", "simulate"),
    "analyze": ("daydream.analysis", "analyze"),
    "predict": ("daydream.whatif", "whatif"),
    "memory_report": ("daydream.memory", "memory"),
    "check": ("daydream.validate", "validate"),
    "register": ("daydream.opts.params", "register"),
    "Optimization": ("daydream.opts.params", "Optimization"),
    "Param": ("daydream.opts.params", "Param"),
}


def __getattr__(name):
    """The API functions, imported on first use so `import daydream` stays cheap."""
    if name in _API:
        import importlib
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'daydream' has no attribute {name!r}")


__all__ = ["DaydreamError", *_API]
