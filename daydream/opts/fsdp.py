"""fsdp:world_size=N,prefetch=B,interconnect=L,units=K -- fully sharded data parallel (ZeRO-3).

The schedule of veScale-FSDP / PyTorch FSDP, per step, on a new communication stream (a new
thread on a CPU trace), each collective costed by daydream.opts._collectives's ring model:
* Units: the forward's compute (kernels of the compute stream; CPU tasks of the main thread on
  a CPU trace) cut into K units of about equal forward time (K = units, default about
  sqrt(forward tasks); cuts snap to module changes where the trace names modules). Each unit
  holds P / K of the parameter bytes P (AccumulateGrad shapes, else run.json's parameter
  count in fp32). Backward units mirror the forward ones (daydream.opts._collectives.mirror_groups).
* Forward: unit u's first task waits for all-gather AG_f(u) of its P/K bytes,
      t_AG = base + (N-1) lat + (N-1)/N x (P/K) / bw.
  With prefetch, AG_f(u+1) is issued when unit u starts (so it overlaps unit u's compute);
  without, when unit u+1 is about to start (exposed).
* Backward: the parameters are gathered again, AG_b(u) before unit u's backward (prefetched at
  the start of the previous backward unit), and after it the gradients are reduce-scattered,
  RS(u) after unit u's last backward task, same cost formula as the all-gather.
* Optimizer: every rank updates 1/N of the parameters: the optimizer's per-tensor work
  (daydream.opts.fused_optimizer.per_tensor_work: its kernels, or its CPU math on a CPU trace)
  is scaled by 1/N, and the step's first optimizer task waits for the last reduce-scatter.
Not modelled: the copy-in/copy-out kernels around the collectives, the root unit staying
gathered between forward and backward, and the memory the sharding saves (see
`daydream memory`).
"""
from __future__ import annotations

import numpy as np

from daydream.errors import DaydreamError
from daydream.graph.schema import T_CPU, T_KERNEL, T_MEMSET
from daydream.opts import _collectives as N
from daydream.opts import _structure as C
from daydream.opts.fused_optimizer import per_tensor_work
from daydream.opts.params import Optimization, Param
from daydream.transform import primitives as P


def apply(graph, params: dict, ctx) -> None:
    world = int(params["world_size"])
    if world == 1:
        ctx.notes.append("fsdp: world_size=1 shards nothing; nothing changed")
        return
    lnk = N.link(ctx.device, params["interconnect"], world)
    if why := N.link_note("fsdp", ctx.device, params["interconnect"], world):
        ctx.notes.append(why)
    prefetch = bool(params["prefetch"])
    param_bytes, source = C.parameter_bytes(graph, ctx.run)
    if param_bytes <= 0:
        raise DaydreamError(f"{graph.trace.path}: parameter sizes are not recorded (no AccumulateGrad shapes, no "
                            "run.json); re-record with record_shapes=True for the fsdp model")
    cpu = C.is_cpu_trace(graph)
    steps = C.task_steps(graph)
    t = graph.tasks
    dur = t["dur"].to_numpy()
    layer = t["layer"].to_numpy()
    launch = t["launch"].to_numpy()
    launchers, producers, nbytes, kinds, consumers = [], [], [], [], []

    def issue(src: int, consumer: int) -> int:
        """The task from whose start a collective issued at `src` leaves: the call that launched
        src (GPU), src itself (CPU), or the task before src where src is the consumer itself
        (-1 where there is none: a hook is inserted there below)."""
        if not cpu and launch[src] >= 0:
            return int(launch[src])
        if src != consumer:
            return int(src)
        return int(C.program_pred(graph, [src])[0])

    n_units = []
    for rank, step, fwd, bwd in C.forward_backward_steps(graph, steps):
        unit = C.units(dur[fwd], layer[fwd], int(params["units"]))
        k = int(unit.max()) + 1
        n_units.append(k)
        per_unit = param_bytes / k
        first_fwd = fwd[np.r_[True, unit[1:] != unit[:-1]]]
        bunit = C.mirror_groups(dur[fwd], unit, dur[bwd], k)
        # forward all-gathers
        for u in range(k):
            src = first_fwd[u - 1] if prefetch and u > 0 else first_fwd[u]
            launchers.append(issue(int(src), int(first_fwd[u])))
            producers.append(-1)
            consumers.append(int(first_fwd[u]))
            nbytes.append(per_unit)
            kinds.append("all_gather")
        # backward: all-gather before, reduce-scatter after each unit (units in reverse order)
        order = [u for u in range(k - 1, -1, -1) if (bunit == u).any()]
        for i, u in enumerate(order):
            mine = bwd[bunit == u]
            prev = bwd[bunit == order[i - 1]] if prefetch and i > 0 else mine
            launchers.append(issue(int(prev[0]), int(mine[0])))
            producers.append(-1)
            consumers.append(int(mine[0]))
            nbytes.append(per_unit)
            kinds.append("all_gather")
            launchers.append(issue(int(mine[-1]), -1))
            producers.append(int(mine[-1]))
            consumers.append(-1)
            nbytes.append(per_unit)
            kinds.append("reduce_scatter")
        consumers[-1] = C.first_optimizer_task(graph, rank, step, int(t["obs_end"].to_numpy()[bwd[-1]]), steps)
    if not launchers:
        raise DaydreamError(f"{graph.trace.path}: no step with both forward and backward compute; fsdp needs a "
                            "recorded training step")
    # A consumer that opens its thread (the trace's first forward task) has no task before it to
    # issue from (issuing from itself would be a cycle): FSDP's pre-forward hook, a zero-length
    # task inserted before it, issues the all-gather and inherits the consumer's release time.
    launchers = np.asarray(launchers, np.int64)
    orphan = np.flatnonzero(launchers < 0)
    if len(orphan):
        need = np.unique(np.asarray(consumers, np.int64)[orphan])
        hooks = P.insert_before(graph, need, dur=0, name="FSDP pre-forward hook", kind="cpu")
        launchers[orphan] = hooks[np.searchsorted(need, np.asarray(consumers, np.int64)[orphan])]
    # collectives go on the stream in the order they are issued; equal issue times keep list order
    found = per_tensor_work(graph)
    C.insert_collectives(graph, ctx, lnk, world, launchers, producers, nbytes, kinds, consumers,
                         "nccl (fsdp)", launch_call=False)
    if not isinstance(found, str):
        _, _, _, opt_cpu, opt_gpu = found
        k = graph.tasks["kind"].to_numpy()[: len(opt_cpu)]
        shard = opt_gpu & np.isin(k, (T_KERNEL, T_MEMSET)) if not cpu else opt_cpu & (k == T_CPU)
        P.scale(graph, np.flatnonzero(shard), 1.0 / world)
    ctx.notes.append(f"fsdp: {np.mean(n_units):.0f} units of {param_bytes / np.mean(n_units) / 1e6:.2f} MB "
                     f"(parameters from {source}); all-gather/reduce-scatter over {lnk.name} "
                     f"({lnk.bw / 1e9:.0f} GB/s, world_size={world}); optimizer sharded 1/{world}")


OPTIMIZATION = Optimization(
    name="fsdp",
    summary="fully sharded data parallel (ZeRO-3): all-gather before use, reduce-scatter of gradients, sharded optimizer step",
    params={
        "world_size": Param(8, "number of GPUs", int, 1, 65536),
        "prefetch": Param(True, "prefetch the next unit's all-gather", bool),
        "interconnect": Param("nvlink", "link between GPUs", str, choices=("nvlink", "pcie", "infiniband")),
        "units": Param(0, "FSDP units (0: about sqrt(forward ops), cut at module changes)", int, 0, 100000),
    },
    apply=apply,
    memory="daydream.memory.predict:fsdp",
    doc="docs/optimizations/fsdp.md",
)
