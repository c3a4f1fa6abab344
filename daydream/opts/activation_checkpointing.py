"""activation-checkpointing:fraction=F,segments=K -- recompute forward segments during backward.

torch.utils.checkpoint keeps only a segment's input in forward and runs the segment's forward
again when backward reaches it. Per step:
* Segments: the forward's compute (kernels of the compute stream; CPU tasks of the main thread
  on a CPU trace) cut into K segments of about equal forward time (K = segments, default about
  sqrt(forward tasks), Chen et al. 2016; cuts snap to module changes where the trace names
  modules, i.e. segments are layers).
* Chosen segments: the first m, in forward order, with m the count whose cumulative forward
  time comes closest to F x the forward compute time (blocks are what models checkpoint; F=1
  recomputes the whole forward).
* Recompute of segment k, inserted right before the first backward task of the backward part
  that corresponds to k (daydream.opts._collectives.mirror_groups):
    - on the thread that runs that backward task (its launch call's thread on a GPU), a CPU
      task as long as RECOMPUTE_CPU_FACTOR x the CPU time the segment's forward took: the
      main thread's forward CPU tasks (op dispatch, launch calls) from the segment's first launch to the next
      segment's first launch; on a CPU trace the segment's own tasks' time plus the checkpoint's
      hook time of its top-level aten ops by what each saves (CHECKPOINT_NS), and the
      checkpointed forward itself gets its forward hook time (a task before the segment);
    - on a GPU, on the compute stream right before that backward kernel, one task as long as
      the segment's forward kernels together, launched from the start of that CPU task. The
      pair takes max(CPU, GPU) when nothing else waits, as a launch-bound or GPU-bound forward
      does.
* The recomputation's CPU side costs RECOMPUTE_CPU_FACTOR x the segment's forward CPU time:
  non-reentrant torch.utils.checkpoint runs a Python saved-tensor hook per saved tensor when
  the recompute saves it and again when backward unpacks it, on top of the forward itself.
  The GPU side (the forward's kernels) is unchanged.
Not modelled: on GPU traces the checkpointed forward's own hooks (0.94-1.16 x the plain forward
on blocks of large ops, noise-level), and the RNG state save/restore of checkpointed dropout.
"""
from __future__ import annotations

import re

import numpy as np

from daydream.graph.schema import T_CPU, T_RUNTIME
from daydream.graph.phases import BACKWARD, FORWARD
from daydream.opts import _structure as C
from daydream.opts.params import Optimization, Param
from daydream.transform import primitives as P

# Backward time added by checkpointing every block, in plain forwards of those blocks, on a CPU
# (torch 2.13, 1 thread, this repository's 2-core development host): 1.48 and 1.21 for 4
# TransformerEncoderLayer(64, 4, 128) blocks, 1.31 for 6 Conv-BN-ReLU(16 ch) blocks, median of 30
# alternating steps each (`python benchmarks/validate_structure.py --measure-recompute`).
RECOMPUTE_CPU_FACTOR = 1.3
# On a CPU trace the recompute and the checkpointed forward are priced per op instead (the
# factor above is what the per-op costs add up to on blocks of large ops). Non-reentrant
# torch.utils.checkpoint runs Python for every tensor an op saves for its backward, in the
# forward (pack hooks) and again in the recompute (pack, unpack, metadata checks), which dominates
# blocks of small ops. Per top-level op, by what the op saves, (checkpointed forward, backward
# beyond one recomputed forward) in ns, measured on 5 checkpointed blocks of 10 modules each
# (torch 2.13, 1 thread, this repository's AVX512 EPYC host, medians of 40 alternating steps;
# `python benchmarks/validate_structure.py --measure-recompute`): BatchNorm2d 19.3 / 29.2 us,
# LayerNorm 16.1 / 27.3, Conv2d 8.2 / 16.2, Linear 9.0 / 15.6, ReLU 4.8 / 8.5, GELU 5.4 / 9.1,
# Softmax 5.0 / 9.4; ops that save no tensor (views, adds, a multiply by a scalar) next to
# nothing (a chain of mul-by-scalar, add and ReLU: 1.86 / 2.90 us an op, the ReLU's share).
CHECKPOINT_NS = {
    "normalization": (17700, 28200),  # batch/layer/group/instance/RMS norm: input, weight, statistics
    "weighted": (8600, 15900),        # convolution, linear, matmul: input and weight
    "saves one": (5000, 9000),        # activations, softmax, dropout, a product of two tensors
    "saves none": (0, 0),             # views, casts, additions, sums and means, products with a scalar
}
_NORM = re.compile(r"^aten::(batch_norm|layer_norm|group_norm|instance_norm|rms_norm|native_batch_norm|native_layer_norm)")
_WEIGHTED = re.compile(r"^aten::(convolution|_convolution|conv[123]d|conv_transpose[123]d|linear|matmul|mm|bmm|addmm|"
                       r"baddbmm|einsum|bilinear|embedding|scaled_dot_product_attention)$")
_SAVES_NONE = re.compile(r"^aten::(add|add_|sub|sub_|neg|view|reshape|_reshape_alias|transpose|permute|t|expand|"
                         r"flatten|unflatten|contiguous|cat|stack|split|chunk|slice|select|unsqueeze|squeeze|"
                         r"to|_to_copy|copy_|clone|detach|zeros|zeros_like|empty|empty_like|ones|ones_like|"
                         r"full|arange|alias|as_strided|narrow|unbind|size|item|lift_fresh|dropout|type_as|"
                         r"view_as|reshape_as|expand_as|sum|mean)$")


def checkpoint_class(name: str, dims) -> str:
    """What a top-level op saves for its backward, for CHECKPOINT_NS (from its name and whether its
    second input is a tensor: x * 2 saves nothing, x * y saves both)."""
    if _NORM.match(name):
        return "normalization"
    if _WEIGHTED.match(name):
        return "weighted"
    if _SAVES_NONE.match(name):
        return "saves none"
    if name in ("aten::mul", "aten::mul_", "aten::div", "aten::div_"):
        tensors = [d for d in (dims or []) if isinstance(d, list) and d]
        return "saves one" if len(tensors) >= 2 else "saves none"
    return "saves one"


def _top_level_ops(trace, rows: np.ndarray) -> np.ndarray:
    """The aten op events among `rows` that are not inside another of them (aten::linear, not its
    aten::t and aten::addmm): the ops whose saved tensors a checkpointed block's hooks handle."""
    rows = np.unique(rows)
    if not len(rows):
        return rows
    ts = trace.events["ts"].to_numpy()[rows]
    end = ts + trace.events["dur"].to_numpy()[rows]
    order = np.argsort(ts, kind="stable")
    rows, ts, end = rows[order], ts[order], end[order]
    reach = np.maximum.accumulate(end)
    top = np.r_[True, ts[1:] >= reach[:-1]]
    return rows[top]


def checkpoint_ns(trace, rows: np.ndarray) -> tuple[float, float]:
    """(checkpointed forward, recompute beyond the forward) hook time of the top-level ops `rows`."""
    names = trace.names
    kinds = trace.events["name"].to_numpy()[rows]
    fwd = bwd = 0.0
    for r, k in zip(rows.tolist(), kinds.tolist()):
        f, b = CHECKPOINT_NS[checkpoint_class(names[k], trace.args_of(r).get("Input Dims"))]
        fwd += f
        bwd += b
    return fwd, bwd


def chosen_segments(seg_time: np.ndarray, fraction: float) -> int:
    """How many leading segments to recompute for `fraction` of the forward time."""
    cum = np.r_[0.0, np.cumsum(seg_time)] / max(float(np.sum(seg_time)), 1.0)
    return int(np.argmin(np.abs(cum - fraction)))


def apply(graph, params: dict, ctx) -> None:
    fraction = float(params["fraction"])
    if fraction <= 0:
        ctx.notes.append("activation-checkpointing: fraction=0 recomputes nothing; nothing changed")
        return
    cpu = C.is_cpu_trace(graph)
    steps = C.task_steps(graph)
    t = graph.tasks
    dur = t["dur"].to_numpy()
    layer = t["layer"].to_numpy()
    launch = t["launch"].to_numpy()
    start = t["obs_start"].to_numpy()
    kind = t["kind"].to_numpy()
    cpu_anchor, cpu_ns, gpu_anchor, gpu_ns = [], [], [], []
    hook_anchor, hook_ns = [], []  # CPU traces: the checkpointed forward's per-op hooks
    op_rows = t["op"].to_numpy()
    is_aten = np.char.startswith(np.asarray(graph.names, dtype=str), "aten::")[t["name"].to_numpy()] if cpu else None
    recomputed, total = 0.0, 0.0
    host = {}  # rank -> forward CPU work of its main thread (the launches of recomputed kernels)
    for rank, step, fwd, bwd in C.forward_backward_steps(graph, steps):
        if rank not in host:
            host[rank] = ((t["resource"].to_numpy() == C.main_thread(graph, rank))
                          & np.isin(kind, (T_CPU, T_RUNTIME)) & (t["phase"].to_numpy() == FORWARD))
        seg = C.units(dur[fwd], layer[fwd], int(params["segments"]))
        k = int(seg.max()) + 1
        seg_time = np.bincount(seg, weights=dur[fwd], minlength=k)
        m = chosen_segments(seg_time, fraction)
        total += seg_time.sum()
        recomputed += seg_time[:m].sum()
        bseg = C.mirror_groups(dur[fwd], seg, dur[bwd], k)
        if not cpu:
            first_launch = np.asarray([start[launch[fwd[seg == s][0]]] if launch[fwd[seg == s][0]] >= 0
                                       else start[fwd[seg == s][0]] for s in range(k)] + [np.inf])
            in_step = host[rank] & (steps == step)
        for s in range(m):
            back = bwd[bseg == s]
            if len(back) == 0:
                continue
            if cpu:
                mine = fwd[seg == s]
                top = _top_level_ops(graph.trace, op_rows[mine[is_aten[mine] & (op_rows[mine] >= 0)]])
                hook_fwd, hook_bwd = checkpoint_ns(graph.trace, top)
                cpu_anchor.append(int(back[0]))
                cpu_ns.append(float(seg_time[s]) + hook_bwd)
                hook_anchor.append(int(mine[0]))
                hook_ns.append(hook_fwd)
                continue
            lo, hi = first_launch[s], first_launch[s + 1]
            host_ns = float(dur[in_step & (start >= lo) & (start < hi)].sum())
            gpu_anchor.append(int(back[0]))
            gpu_ns.append(float(seg_time[s]))
            cpu_anchor.append(int(launch[back[0]]) if launch[back[0]] >= 0 else -1)
            cpu_ns.append(RECOMPUTE_CPU_FACTOR * host_ns)
    if not cpu_anchor:
        ctx.notes.append("activation-checkpointing: no step with both forward and backward compute; nothing changed")
        return
    cpu_anchor, gpu_anchor = np.asarray(cpu_anchor, np.int64), np.asarray(gpu_anchor, np.int64)
    cpu_ns = np.asarray(cpu_ns)
    has_cpu = cpu_anchor >= 0
    new_cpu = P.insert_before(graph, cpu_anchor[has_cpu], dur=cpu_ns[has_cpu], name="recompute forward (checkpoint)",
                              kind="cpu", phase=BACKWARD)
    if hook_anchor:
        P.insert_before(graph, np.asarray(hook_anchor, np.int64), dur=np.asarray(hook_ns),
                        name="checkpoint hooks (checkpointed forward)", kind="cpu", phase=FORWARD)
    if len(gpu_anchor):
        new_gpu = P.insert_before(graph, gpu_anchor, dur=np.asarray(gpu_ns),
                                  name="recomputed forward kernels (checkpoint)", kind="kernel", phase=BACKWARD)
        P.add_edges(graph, new_cpu, new_gpu[has_cpu], delay=C.launch_delay_ns(graph), kind="launch",
                    from_start=True)
    ctx.notes.append(f"activation-checkpointing: {100 * recomputed / max(total, 1):.0f}% of the forward compute "
                     f"recomputed in backward")


OPTIMIZATION = Optimization(
    name="activation-checkpointing",
    summary="drop activations in forward, recompute the forward of chosen layers during backward",
    params={
        "fraction": Param(1.0, "fraction of forward compute that is recomputed", float, 0.0, 1.0),
        "segments": Param(0, "checkpointed segments (0: about sqrt(forward ops), cut at module changes)", int, 0, 100000),
    },
    apply=apply,
    memory="daydream.memory.predict:activation_checkpointing",
    doc="docs/optimizations/activation-checkpointing.md",
    checked_against={
        "cpu": "5 CPU pairs: resnet50, bert, llama, vit, transformer (traces/pairs)",
    },
)
