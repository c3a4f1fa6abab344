"""network:bandwidth=GBPS / network:interconnect=LINK -- the same job on another network.

Each collective's transfer time T (on a multi-rank job: the time after its last participant
arrived, see daydream.job.couple; on one rank: its kernel's duration) is rescaled by the ring cost
model of daydream.opts._collectives (NCCL ring/Simple, constants from daydream.hardware):

    T' = T * t_model(new link) / t_model(recorded link)
    t_model = base + steps * latency + share * B / bw

so the efficiency the job already achieved against the model (T / t_model) is kept. steps and share
per collective: all_reduce 2(n-1), 2(n-1)/n; all_gather, reduce_scatter, all_to_all (n-1),
(n-1)/n; broadcast, reduce, send/recv (n-1) or 1, 1. n is the collective's group size, B its message
size in bytes (all_gather/reduce_scatter: the full size). Where the trace does not record B, the
factor is the bandwidth ratio bw_recorded / bw_new (a bandwidth-bound transfer). The recorded link
is the device's own (daydream.opts._collectives.link: NVLink/xGMI inside a node, the node-to-node fabric
above GPUS_PER_NODE ranks); `bandwidth` replaces its per-rank per-direction bandwidth, `interconnect`
picks another link of the device. Compute is untouched.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from daydream.errors import DaydreamError
from daydream.graph.schema import T_COLLECTIVE
from daydream.opts import _collectives
from daydream.opts.params import Optimization, Param, unchanged_memory

_SHAPE = {  # name -> (ring steps, share of B on the wire) for n ranks
    "all_reduce": lambda n: (2 * (n - 1), 2 * (n - 1) / n),
    "all_gather": lambda n: (n - 1, (n - 1) / n),
    "reduce_scatter": lambda n: (n - 1, (n - 1) / n),
    "all_to_all": lambda n: (n - 1, (n - 1) / n),
    "send_recv": lambda n: (1, 1.0),
    "send": lambda n: (1, 1.0),
    "recv": lambda n: (1, 1.0),
}


def model_s(name: str, nbytes: float, n: int, lnk: _collectives.Link) -> float:
    """Seconds of one collective by the ring model (see the module docstring)."""
    steps, share = _SHAPE.get(name, lambda n: (n - 1, 1.0))(max(n, 2))
    return lnk.base_s + steps * lnk.latency_s + share * nbytes / lnk.bw


def recorded_link(device, n: int) -> _collectives.Link:
    """The link a recorded collective of n ranks crossed (the device's own; see the module docstring)."""
    return _collectives.link(device, "nvlink", n)


def busbw_factor(name: str, n: int) -> float:
    """nccl-tests' bus-bandwidth factor (doc/PERFORMANCE.md): busbw = algbw * factor."""
    if n <= 1:
        return 0.0
    if name == "all_reduce":
        return 2 * (n - 1) / n
    if name in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0


def apply(graph, params: dict, ctx) -> None:
    if params["bandwidth"] <= 0 and not params["interconnect"]:
        raise DaydreamError("--opt network: give bandwidth=GBPS or interconnect=nvlink|pcie|infiniband")
    coll = np.flatnonzero(graph.column("kind") == T_COLLECTIVE)
    if not len(coll):
        ctx.notes.append("network: the trace has no collectives; nothing changes")
        return
    job = getattr(ctx, "job", None)
    info = {}
    world = 1
    if job is not None:
        world = len(job.ranks)
        for rc in job.collectives.values():
            for ev, name, size, b in zip(rc.event.tolist(), rc.name, rc.group_size.tolist(), rc.nbytes.tolist()):
                info[int(ev)] = (name, size or world, b)
    event = graph.column("event")
    dur = graph.column("dur").copy()
    unknown = 0
    for t in coll.tolist():
        name, n, b = info.get(int(event[t]), ("all_reduce", max(world, 2), -1))
        old = recorded_link(ctx.device, n)
        new = _collectives.link(ctx.device, params["interconnect"], n) if params["interconnect"] else old
        if params["bandwidth"] > 0:
            new = replace(new, bw=params["bandwidth"] * 1e9)
        if b < 0:
            unknown += 1
            f = old.bw / new.bw
        else:
            f = model_s(name, b, n, new) / model_s(name, b, n, old)
        dur[t] = int(round(dur[t] * f))
    from daydream.transform import primitives as P
    P.set_duration(graph, coll, dur[coll])
    link_name = params["interconnect"] or "recorded link"
    ctx.notes.append(f"network: {len(coll)} collectives rescaled to {link_name}"
                     + (f" at {params['bandwidth']:g} GB/s per rank per direction" if params["bandwidth"] > 0 else "")
                     + (f"; {unknown} without a recorded message size scaled by the bandwidth ratio"
                        if unknown else ""))


OPTIMIZATION = Optimization(
    name="network",
    summary="collectives over another network: transfer times rescaled by the ring model, achieved efficiency kept",
    params={
        "bandwidth": Param(0.0, "per-rank per-direction bandwidth in GB/s (0: the link's own)", float, 0.0, 100000.0),
        "interconnect": Param("", "link to use instead of the recorded one", str,
                              choices=("", "nvlink", "pcie", "infiniband")),
    },
    apply=apply,
    memory=unchanged_memory("network: collectives over another link move the same bytes; device memory unchanged"),
    doc="docs/optimizations/network.md",
)
