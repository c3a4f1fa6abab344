"""The collective cost model the communication optimizations share (ddp, fsdp, network).

Collective cost model (NCCL's ring algorithm, the "Simple" protocol of src/graph/tuning.cc):
  all-reduce          t = base + 2(n-1) * lat + 2(n-1)/n * B / bw
  all-gather,
  reduce-scatter      t = base + (n-1) * lat  + (n-1)/n * B / bw     (B: the full, unsharded size)
  broadcast           t = base + (n-1) * lat  + B / bw               (pipelined ring)
n ranks, B bytes, bw the per-GPU per-direction bandwidth of the slowest link the ring crosses,
lat NCCL's per-step hardware latency of that link (hwLat), base NCCL's per-collective latency
(baseLat Ring/Simple, 8.4 us). All constants come from daydream.hardware, which names their
sources (datasheets for bandwidths, NCCL tuning.cc for latencies).

Links: `nvlink` is the device's GPU-GPU link inside a node (NVLink/xGMI; a device without one,
such as a PCIe V100, uses what it has: PCIe), `pcie` the host PCIe link (PCI-SIG rates),
`infiniband` the node-to-node fabric of the vendor's reference system. A ring over more than
GPUS_PER_NODE ranks leaves the node, so whatever the interconnect its slowest hop is the
node-to-node fabric. On a CPU trace (gloo) `nvlink`/`pcie` mean processes of one host talking
through shared memory and `infiniband` the host's network.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from daydream import hardware

# DGX/HGX reference systems (V100, A100, H100, H200, B200, MI300X platforms) hold 8 GPUs a node.
GPUS_PER_NODE = 8


@dataclass(frozen=True)
class Link:
    name: str
    bw: float          # bytes/s per rank per direction
    latency_s: float   # per ring step
    base_s: float = hardware.COLLECTIVE_BASE_LATENCY_S


def link(device: hardware.Device, interconnect: str, world_size: int) -> Link:
    """The slowest link a ring of `world_size` ranks crosses (see module docstring)."""
    if device.vendor == "cpu":
        if interconnect == "infiniband":
            return Link(device.inter_link, device.inter_bw, device.inter_latency_s)
        return Link(device.intra_link, device.intra_bw, device.intra_latency_s)
    if interconnect == "infiniband" or world_size > GPUS_PER_NODE:
        return Link(device.inter_link, device.inter_bw, device.inter_latency_s)
    if interconnect == "pcie":
        return Link(f"PCIe {device.pcie_gen}.0", device.pcie_bw, hardware.PCIE_STEP_LATENCY_S)
    return Link(device.intra_link, device.intra_bw, device.intra_latency_s)


def link_note(name: str, device: hardware.Device, interconnect: str, world_size: int) -> str | None:
    """A note where the `interconnect` asked for is not the one `link` uses (so it has no effect)."""
    if device.vendor == "cpu" and interconnect == "pcie":  # the default (nvlink) reads as "the local link"
        return (f"{name}: interconnect={interconnect} has no effect on a CPU trace: ranks talk over "
                f"{device.intra_link} (interconnect=infiniband for the network)")
    if device.vendor != "cpu" and world_size > GPUS_PER_NODE and interconnect != "infiniband":
        return (f"{name}: interconnect={interconnect} has no effect at world_size={world_size}: a ring over more "
                f"than {GPUS_PER_NODE} GPUs crosses nodes over {device.inter_link}")
    return None


def collective_s(kind: str, nbytes, n: int, lnk: Link):
    """Seconds of one ring collective of `nbytes` over `n` ranks (0 for a single rank)."""
    nbytes = np.asarray(nbytes, float)
    if n <= 1:
        return np.zeros_like(nbytes)
    if kind == "all_reduce":
        steps, share = 2 * (n - 1), 2 * (n - 1) / n
    elif kind in ("all_gather", "reduce_scatter"):
        steps, share = n - 1, (n - 1) / n
    elif kind == "broadcast":
        steps, share = n - 1, 1.0
    else:
        raise ValueError(kind)
    return lnk.base_s + steps * lnk.latency_s + share * nbytes / lnk.bw


_COLLECTIVE_NAMES = (("all_reduce", re.compile(r"all_?reduce", re.I)),
                     ("reduce_scatter", re.compile(r"reduce_?scatter", re.I)),
                     ("all_gather", re.compile(r"all_?gather", re.I)),
                     ("broadcast", re.compile(r"broadcast", re.I)))


def collective_kind(name: str) -> str | None:
    for kind, rx in _COLLECTIVE_NAMES:
        if rx.search(name or ""):
            return kind
    return None


# c10d's dtype names (record_param_comms "dtype") -> bytes per element
C10D_DTYPE_BYTES = {"Float": 4, "Double": 8, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
                    "Char": 1, "Byte": 1, "Bool": 1, "Float8_e4m3fn": 1, "Float8_e5m2": 1}


