"""world-size:ranks=M -- a traced N-rank job scaled to M ranks.

A job-level optimization: it acts on the job's reduced ranks, not on one rank's graph, so on a
multi-rank TRACE daydream.job applies it after every per-rank optimization of the list
(daydream/job/synthesize.py: ranks copied from the traced ones at random, collective transfer times
rescaled by the ring model of daydream.opts.network for M ranks, the efficiency the job achieved
kept). On a single-rank trace there is no job to scale: use `ddp:world_size=M` or
`fsdp:world_size=M`, which model the collectives a data-parallel job adds.
"""
from __future__ import annotations

from daydream.errors import DaydreamError
from daydream.opts.params import Optimization, Param, unchanged_memory

JOB_LEVEL = True  # daydream.job applies it to the whole job (see the module docstring)


def apply(graph, params: dict, ctx) -> None:
    raise DaydreamError("--opt world-size scales a multi-rank job (a directory or .tar.gz of rank traces); "
                        "for a single rank use ddp:world_size=M or fsdp:world_size=M")


OPTIMIZATION = Optimization(
    name="world-size",
    summary="multi-rank: the traced N-rank job scaled to M ranks (ranks drawn from the traced ones, "
            "collectives by the ring model)",
    params={
        "ranks": Param(16, "ranks of the scaled job", int, 1, 1_000_000),
        "seed": Param(0, "seed of the draw of traced ranks the added ranks copy", int, 0, 2**31 - 1),
    },
    apply=apply,
    memory=unchanged_memory("world-size: each rank holds what a traced rank held; device memory unchanged"),
    doc="docs/optimizations/world-size.md",
)
