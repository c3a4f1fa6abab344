"""Optimizations, one module each, written with the graph primitives only; each module ends with
its `OPTIMIZATION` record (daydream.opts.params.Optimization), which is all it takes to add one."""
from daydream.opts.params import SPECS, OptChoice, Optimization, Param, optimizations, parse_opt, register

__all__ = ["SPECS", "OptChoice", "Optimization", "Param", "optimizations", "parse_opt", "register"]
