"""host:speed=S -- the same job on a host CPU S times as fast (S < 1: slower).

Every CPU task of every thread (Python, operator dispatch and its CPU kernels, runtime calls such
as kernel launches, data loading) takes d / S; GPU work and collectives keep their time. Waiting
is not work: synchronizing calls and idle gaps are recomputed by the replay from what they wait
for, so they are left to it (a synchronize that waited for the GPU still waits as long as the GPU
needs). The simulator then says how much of the faster host reaches the step: all of it on a
host-bound step (a small model launching one kernel after another), little on a GPU-bound one.

What S to give: the ratio of the two hosts' single-thread speed on this kind of work. Published
single-thread scores (SPEC CPU integer speed, Geekbench single-core) are the usual source; for
two recorded traces of the same job on two hosts, `benchmarks/gpu_validation.py` measures it as
the median ratio of the durations of the Python functions both traces record (host work that no
GPU changes). Combine with `gpu:target=...` to move a job to a machine with another GPU *and*
another host: `gpu` alone assumes the host stays.
"""
from __future__ import annotations

import numpy as np

from daydream.graph.schema import GPU_TASK_TYPES, T_COLLECTIVE, T_IDLE
from daydream.opts.params import Optimization, Param, unchanged_memory
from daydream.transform import primitives as P


def apply(graph, params: dict, ctx) -> None:
    speed = params["speed"]
    kind = graph.column("kind")
    cpu = ~np.isin(kind, GPU_TASK_TYPES) & (kind != T_IDLE) & (kind != T_COLLECTIVE)
    if speed == 1.0 or not cpu.any():
        ctx.notes.append("host: speed=1, nothing changes" if speed == 1.0 else "host: the trace has no CPU work")
        return
    P.scale(graph, cpu, 1.0 / speed)
    ctx.notes.append(f"host: every CPU task x{1 / speed:.3f} (a host {speed:g}x as fast); GPU work and "
                     "collectives unchanged, waiting recomputed by the replay")


OPTIMIZATION = Optimization(
    name="host",
    summary="the same job on a faster or slower host CPU (single-thread speed ratio)",
    params={"speed": Param(1.0, "the new host's single-thread speed over the recorded one's", float, 0.05, 20.0)},
    apply=apply,
    memory=unchanged_memory("host: the same tensors on another host CPU; device memory unchanged"),
    doc="docs/optimizations/host.md",
    checked_against={
        "gpu": "with gpu:target on the H100 <-> MI300X pairs, S read off the other model's traces of the same two "
               "machines (benchmarks/gpu_validation.py)",
    },
)
