"""Graph-transformation primitives: select, scale, insert, remove, reschedule.

Every optimization in `daydream.opts` is written with these alone, so users can write their own
the same way (docs/primitives.md). Primitives edit a TaskGraph in place and keep it a DAG; the
simulator then predicts the new timeline.
"""
from daydream.transform.primitives import (add_edges, add_resource, insert_after, insert_before,
                                           insert_tasks, move_to_resource, remove, reschedule,
                                           scale, select, select_edges, set_delay, set_duration,
                                           topological_positions)

__all__ = ["select", "select_edges", "set_delay", "scale", "set_duration", "insert_tasks", "insert_after", "insert_before",
           "add_edges", "remove", "reschedule", "add_resource", "move_to_resource",
           "topological_positions"]
