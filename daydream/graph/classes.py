"""Kernel classes of a graph's tasks, for everything that groups GPU work by what it computes:
selections (`daydream.transform.select(kernel_class=...)`), the optimizations, the critical-path
categories of analysis and the reports."""
from __future__ import annotations

import numpy as np

from daydream.graph.schema import GPU_TASK_TYPES, TaskGraph


def kernel_classes(graph: TaskGraph) -> np.ndarray:
    """Kernel class per task ('' for CPU tasks); see daydream.kernels (imported here, on first use,
    so that loading and replaying never pay for its tables)."""
    from daydream.kernels import classify
    t = graph.tasks
    out = np.full(len(t), "", dtype=object)
    gpu = np.isin(t["kind"].to_numpy(), GPU_TASK_TYPES)
    if gpu.any():
        out[gpu] = classify(graph.task_names()[gpu])
    return out
