"""ddp:world_size=N,bucket_mb=M,interconnect=L -- data parallel over N ranks (PyTorch DDP).

Every rank runs the recorded step on its own batch; gradients are averaged by ring all-reduces
that overlap the rest of backward. Three cases, by what the trace already has:

1. NCCL/RCCL collective kernels (the trace is DDP already): each collective of B bytes recorded
   at n ranks is rescaled to N ranks by the cost model's ratio,
       d' = d x t(kind, B, N) / t(kind, B, n)
   (daydream.opts._collectives: t = base + steps x lat + share x B / bw), so the bandwidth the run
   achieved is kept. B and n come from the kernel's args ("In msg nelems", "dtype", "Group
   size") or the trace's distributedInfo.
2. c10d collective calls without kernels (DDP recorded at world size 1, e.g. hta's
   ns_resolution trace): each call (record_param_comms: its collective, size and dtype) gets a
   collective of t(kind, B, N) on a new communication stream, launched from the call and
   starting after the last compute kernel launched before it (the bucket's gradients). Its
   consumers wait for it: an all-reduce the step's first optimizer kernel (DDP's
   finalize_backward makes the compute stream wait on the communication stream), any other
   collective (buffer broadcast) the next compute kernel.
3. No communication in the trace: DDP's buckets are rebuilt from the gradients in the order they
   became ready (torch::autograd::AccumulateGrad events and their shapes): consecutive
   gradients fill a bucket until it holds at least bucket_mb MB (the first bucket 1 MB, DDP's
   _DEFAULT_FIRST_BUCKET_BYTES, capped at bucket_mb). When a bucket's last gradient is
   accumulated, the autograd thread launches its all-reduce (a launch call of the device's
   launch cost) on a new communication stream, after the kernel that produced that gradient:
       t = base + 2(N-1) x lat + 2(N-1)/N x B / bw.
   The step's first optimizer kernel waits for the step's last all-reduce. On a CPU trace
   (gloo) the collectives run on a new thread and the optimizer's first CPU task waits.
Not modelled: DDP's copies of gradients into and out of the bucket (gradient_as_bucket_view
avoids them), and stragglers (all ranks are the recorded rank).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from daydream.errors import DaydreamError
from daydream.graph.schema import T_COLLECTIVE
from daydream.opts import _collectives as N
from daydream.opts import _structure as C
from daydream.opts.params import Optimization, Param
from daydream.trace.events import CPU_OP
from daydream.transform import primitives as P

FIRST_BUCKET_BYTES = 1024 * 1024  # torch.distributed._DEFAULT_FIRST_BUCKET_BYTES
MB = 1024 * 1024  # DDP's bucket_cap_mb counts MiB (bucket_cap_mb * 1024 * 1024 bytes)


def _args_world(trace) -> int | None:
    info = trace.meta[trace.ranks[0]].get("distributedInfo") or {}
    ws = info.get("world_size") if isinstance(info, dict) else None
    return int(ws) if ws else None


def _collective_info(trace, row: int) -> tuple[str | None, float, int | None]:
    """(kind, bytes, group size) of a collective kernel or record_param_comms event."""
    a = trace.args_of(row) if row >= 0 else {}
    kind = N.collective_kind(str(a.get("Collective name", ""))) or N.collective_kind(
        trace.names[int(trace.column("name")[row])] if row >= 0 else "")
    n = a.get("In msg nelems")
    out_n = a.get("Out msg nelems")
    if kind == "all_gather" and out_n:
        n = out_n  # the full, gathered size
    nbytes = float(n) * N.C10D_DTYPE_BYTES.get(str(a.get("dtype")), 4) if n else 0.0
    group = a.get("Group size")
    return kind, nbytes, int(group) if group else None


def _rescale(graph, coll: np.ndarray, world: int, lnk, ctx) -> None:
    tr = graph.trace
    ev = graph.tasks["event"].to_numpy()[coll]
    fallback_n = _args_world(tr)
    factors = np.ones(len(coll))
    for i, row in enumerate(ev):
        kind, nbytes, n_old = _collective_info(tr, int(row))
        n_old = n_old or fallback_n
        if not n_old or n_old < 2:
            raise DaydreamError(f"{tr.path}: collective kernels without a recorded world size (no 'Group size' "
                                "or distributedInfo); cannot rescale them")
        kind = kind or "all_reduce"
        # the recorded collective ran on the device's own intra-node link (NVLink / xGMI), or the
        # inter-node fabric beyond a node: the requested interconnect changes the rate from there
        old = N.collective_s(kind, nbytes, n_old, N.link(ctx.device, "nvlink", n_old))
        factors[i] = N.collective_s(kind, nbytes, world, lnk) / old if old > 0 else 0.0
    P.scale(graph, coll, factors)
    ctx.notes.append(f"ddp: {len(coll)} recorded collectives rescaled to world_size={world} over {lnk.name} "
                     f"(mean factor {factors.mean():.3f})"
                     + ("; the trace already runs this world size on this link, so nothing changed"
                        if np.allclose(factors, 1.0) else ""))


def buckets(grads: pd.DataFrame, bucket_bytes: float) -> np.ndarray:
    """Bucket number per gradient (rows in ready order, one rank and step)."""
    out = np.zeros(len(grads), np.int64)
    b, filled = 0, 0.0
    cap = min(FIRST_BUCKET_BYTES, bucket_bytes)
    for i, nbytes in enumerate(grads["bytes"].to_numpy()):
        out[i] = b
        filled += nbytes
        if filled >= cap:
            b, filled, cap = b + 1, 0.0, bucket_bytes
    return out


def apply(graph, params: dict, ctx) -> None:
    world = int(params["world_size"])
    lnk = N.link(ctx.device, params["interconnect"], world)
    if world > 1 and (why := N.link_note("ddp", ctx.device, params["interconnect"], world)):
        ctx.notes.append(why)
    t = graph.tasks
    coll = np.flatnonzero(t["kind"].to_numpy() == T_COLLECTIVE)
    if len(coll):
        _rescale(graph, coll, world, lnk, ctx)
        return
    if world == 1:
        ctx.notes.append("ddp: world_size=1 has no gradient communication; nothing changed")
        return
    steps = C.task_steps(graph)
    calls = C.outermost(C.event_spans(graph, r"^record_param_comms$", kinds=(CPU_OP,)))
    if not calls.empty:
        _from_calls(graph, calls, steps, world, lnk, ctx)
        return
    grads = C.gradients(graph)
    if grads.empty:
        raise DaydreamError(f"{graph.trace.path}: no gradients found (no torch::autograd::AccumulateGrad events in "
                            "the steps); ddp needs a training step recorded with the autograd engine's events")
    if not (grads["bytes"] > 0).all():
        raise DaydreamError(f"{graph.trace.path}: gradient sizes are not recorded; re-record with "
                            "record_shapes=True for the ddp model")
    bucket_bytes = float(params["bucket_mb"]) * MB
    cpu = C.is_cpu_trace(graph)
    launchers, producers, nbytes, consumers = [], [], [], []
    for (rank, step), g in grads.groupby(["rank", "step"], sort=True):
        g = g.reset_index(drop=True)
        b = buckets(g, bucket_bytes)
        last = g.groupby(b).tail(1)
        launchers += last["task"].tolist()
        producers += last["task" if cpu else "kernel"].tolist()
        nbytes += g.groupby(b)["bytes"].sum().tolist()
        waiting = C.first_optimizer_task(graph, int(rank), int(step), int(last["time"].max()), steps)
        consumers += [-1] * (len(last) - 1) + [waiting]
    C.insert_collectives(graph, ctx, lnk, world, launchers, producers, nbytes, ["all_reduce"] * len(nbytes), consumers,
            "ncclAllReduce (ddp bucket)", launch_call=True)
    n_steps = grads.groupby(["rank", "step"]).ngroups
    ctx.notes.append(f"ddp: {len(nbytes) / n_steps:.0f} buckets/step, {sum(nbytes) / n_steps / 1e6:.1f} MB of "
                     f"gradients/step over {lnk.name} ({lnk.bw / 1e9:.0f} GB/s, world_size={world})")


def _from_calls(graph, calls: pd.DataFrame, steps: np.ndarray, world: int, lnk, ctx) -> None:
    """Case 2 of the module docstring."""
    tr = graph.trace
    t = graph.tasks
    owner = C.tasks_in_spans(graph, calls)
    has = np.flatnonzero(owner >= 0)
    last = pd.Series(has).groupby(owner[has]).max()
    calls = calls.loc[last.index].assign(task=last.to_numpy())
    calls = calls[t["in_window"].to_numpy()[calls["task"].to_numpy()]]
    info = [_collective_info(tr, int(r)) for r in calls["row"]]
    calls = calls.assign(kind=[i[0] or "all_reduce" for i in info], nbytes=[i[1] for i in info])
    calls["step"] = steps[calls["task"].to_numpy()]
    calls = calls[calls["step"] >= 0]
    if calls.empty:
        ctx.notes.append("ddp: no collective calls inside the steps; nothing changed")
        return
    ranks = calls["rank"].to_numpy()
    producers = C.last_launched_before(graph, ranks, calls["start"].to_numpy())
    consumers = np.full(len(calls), -1, np.int64)
    is_ar = (calls["kind"] == "all_reduce").to_numpy()
    for i, (r, s, end, k) in enumerate(zip(ranks, calls["step"], calls["end"], calls["kind"])):
        if k != "all_reduce":
            consumers[i] = C.first_launched_after(graph, int(r), int(end))
    for (r, s), grp in calls[is_ar].groupby(["rank", "step"]):
        i = np.flatnonzero(is_ar & (ranks == r) & (calls["step"].to_numpy() == s))
        last_i = i[np.argmax(calls["end"].to_numpy()[i])]
        consumers[last_i] = C.first_optimizer_task(graph, int(r), int(s), int(calls["end"].to_numpy()[last_i]), steps)
    C.insert_collectives(graph, ctx, lnk, world, calls["task"].to_numpy(), producers, calls["nbytes"].to_numpy(),
            calls["kind"].tolist(), consumers, "nccl (ddp)", launch_call=False)
    ctx.notes.append(f"ddp: {len(calls)} recorded c10d collectives given their cost at world_size={world} "
                     f"over {lnk.name}")


OPTIMIZATION = Optimization(
    name="ddp",
    summary="data parallel: ring all-reduce of gradients in buckets, overlapped with backward",
    params={
        "world_size": Param(8, "number of GPUs", int, 1, 65536),
        "bucket_mb": Param(25.0, "gradient bucket size in MB", float, 0.1, 10240),
        "interconnect": Param("nvlink", "link between GPUs", str, choices=("nvlink", "pcie", "infiniband")),
    },
    apply=apply,
    memory="daydream.memory.predict:ddp",
    doc="docs/optimizations/ddp.md",
)
