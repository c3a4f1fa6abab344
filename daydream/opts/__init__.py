"""Optimizations, one module each, written with the graph primitives only."""
from daydream.opts.params import SPECS, OptChoice, parse_opt

__all__ = ["SPECS", "OptChoice", "parse_opt"]
