"""The dependency graph: tasks on resources (threads, streams) and the edges between them.

`schema` says what a graph holds, `build` makes one from a trace, `half_nodes` is the graph the
simulator runs and its one topological order, `classes` the kernel class of every task."""
from daydream.graph.build import assign_delays, build_graph
from daydream.graph.classes import kernel_classes
from daydream.graph.phases import PHASES
from daydream.graph.schema import EDGE_KINDS, TASK_KINDS, TaskGraph

__all__ = ["TaskGraph", "build_graph", "assign_delays", "kernel_classes", "TASK_KINDS", "EDGE_KINDS", "PHASES"]
