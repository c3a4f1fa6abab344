"""The dependency graph: tasks on resources (threads, streams) and the edges between them."""
from daydream.graph.build import EDGE_KINDS, PHASES, TASK_KINDS, TaskGraph, assign_delays, build_graph
from daydream.graph.classes import kernel_classes

__all__ = ["TaskGraph", "build_graph", "assign_delays", "kernel_classes", "TASK_KINDS", "EDGE_KINDS", "PHASES"]
