"""Daydream: trace-driven profiler and what-if simulator for deep-learning training.

Data flows one way: trace file -> events table (`daydream.trace`) -> task graph (`daydream.graph`)
-> transforms (`daydream.opts`) -> simulator (`daydream.sim`) -> timeline -> reports.
"""
from daydream.errors import DaydreamError

__all__ = ["DaydreamError"]
