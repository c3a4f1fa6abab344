"""sparse-attention:density=D,block=N,reorder=BOOL -- block-sparse attention after PAROAttention's
token reordering (Zhao et al., "PAROAttention: Pattern-Aware ReOrdering for Efficient Sparse and
Quantized Attention in Visual Generation Models", 2025).

Which work is attention:
* fused attention kernels (class attention: flash/fmha/efficient attention, forward and
  backward), and on CPU traces the CPU segments of the fused attention ops;
* unfused attention, where the op shapes show it: the bmm/matmul producing a square score
  matrix (Q[.., S, d] @ K^T[.., d, S]), the softmax over it ([.., S, S]) and the bmm consuming it
  (P[.., S, S] @ V[.., S, d]) -- their kernels (GPU) or CPU segments (CPU traces).
Cost (kernel time d = f + work, f the trace's shortest kernel, see _cost):
  d' = f + (d - f) * density + mask_bytes / mem_bw
where mask_bytes = B * H * ceil(Lq/block) * ceil(Lkv/block), one byte per block of the block
mask the sparse kernel reads (0 where shapes are unknown).
reorder=true: PAROAttention permutes the tokens of Q, K and V into the pattern-friendly order
once per attention layer: one permutation kernel before each forward attention op, reading and
writing Q, K and V: 2 * (|Q| + |K| + |V|) bytes / mem_bw + launch_gpu_s, launched by a new call
of launch_cpu_s (on CPU traces: CPU time bytes / CPU mem_bw). For unfused attention V is taken
as large as K. Ops without recorded shapes get no permutation (a note says how many).
CPU runs that re-timed block-sparse attention at their own shapes (run.json calibration
cpu_sparse_attention, daydream.profile.shapes): each flash-attention op of a measured shape changes
by the measured difference instead, interpolated in density (measured_delta); no mask or reorder
cost is added to those calls.
"""
from __future__ import annotations

import math

import numpy as np

from daydream import costs
from daydream.graph.schema import T_CPU, T_KERNEL
from daydream.graph.phases import BACKWARD, FORWARD
from daydream.opts import _cost as C
from daydream.opts.amp import first_per_op
from daydream.opts.params import Optimization, Param, unchanged_memory
from daydream.transform import primitives as P

FUSED_OPS = ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product_flash_attention",
             "aten::_scaled_dot_product_efficient_attention", "aten::_flash_attention_forward",
             "aten::_efficient_attention_forward", "aten::_scaled_dot_product_cudnn_attention",
             "aten::_scaled_dot_product_flash_attention_for_cpu",
             "aten::_scaled_dot_product_flash_attention_backward",
             "aten::_scaled_dot_product_efficient_attention_backward",
             "aten::_flash_attention_backward", "aten::_efficient_attention_backward",
             "aten::_scaled_dot_product_flash_attention_for_cpu_backward")
BMM_OPS = ("aten::bmm", "aten::matmul", "aten::baddbmm")
SOFTMAX_OPS = ("aten::softmax", "aten::_softmax", "aten::_softmax_backward_data")


def _square(shape) -> bool:
    return len(shape) >= 2 and shape[-1] == shape[-2] and shape[-1] > 1


def unfused_role(name: str, tens) -> str:
    """'qk', 'pv', 'softmax' or '' for one op from its recorded tensors."""
    if not tens:
        return ""
    if name in SOFTMAX_OPS:
        return "softmax" if _square(tens[0][0]) and len(tens[0][0]) >= 3 else ""
    if name in BMM_OPS and len(tens) >= 2:
        a, b = tens[-2][0], tens[-1][0]
        if len(a) >= 3 and len(b) >= 3:
            if a[-2] == b[-1] and a[-1] == b[-2] and a[-2] > a[-1]:
                return "qk"   # [.., S, d] @ [.., d, S] -> [.., S, S]
            if _square(a) and b[-2] == a[-1]:
                return "pv"   # [.., S, S] @ [.., S, d]
    return ""


def attention_ops(info: C.OpInfo, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per task: is its op attention work, and the (mask bytes, Q+K+V bytes) of that op."""
    valid = np.flatnonzero(info.op >= 0)
    _, first, inv = np.unique(info.op[valid], return_index=True, return_inverse=True)
    reps = valid[first]  # one task per distinct op
    is_att = np.isin(info.name[reps], FUSED_OPS)
    mask_b = np.zeros(len(reps))
    qkv_b = np.full(len(reps), np.nan)
    for j, i in enumerate(reps.tolist()):
        name, tens = info.name[i], info.tensors[i]
        role = "" if is_att[j] else unfused_role(name, tens)
        if role:
            is_att[j] = True
        if not tens:
            continue
        try:
            if name in FUSED_OPS and len(tens) >= 3:
                base = tens[1:4] if "backward" in name and len(tens) >= 4 else tens[:3]
                b, h, lq, lkv, _, _ = costs.attention_dims(name.replace("_backward", "_forward"), base)
                qkv_b[j] = sum(costs.numel(s) * eb for s, eb in base)
            elif role == "qk":
                (a, ab), (k, kb) = tens[-2], tens[-1]
                b, h, lq, lkv = 1, costs.numel(a[:-2]), a[-2], k[-1]
                qkv_b[j] = costs.numel(a) * ab + 2 * costs.numel(k) * kb
            elif role in ("pv", "softmax"):
                s = tens[0][0] if role == "softmax" else tens[-2][0]
                b, h, lq, lkv = 1, costs.numel(s[:-2]), s[-2], s[-1]
            else:
                continue
        except (IndexError, TypeError, ValueError):
            continue
        mask_b[j] = b * h * math.ceil(lq / block) * math.ceil(lkv / block)
    n = len(info.name)
    out_att, out_mask, out_qkv = np.zeros(n, bool), np.zeros(n), np.full(n, np.nan)
    out_att[valid], out_mask[valid], out_qkv[valid] = is_att[inv], mask_b[inv], qkv_b[inv]
    return out_att, np.stack([out_mask, out_qkv])


CPU_FWD = "aten::_scaled_dot_product_flash_attention_for_cpu"
CPU_BWD = "aten::_scaled_dot_product_flash_attention_for_cpu_backward"


def measured_delta(entry: dict, density: float, block: int, reorder: bool, training: bool
                   ) -> tuple[float, float] | None:
    """(forward, backward) change of one attention call, us, by the run's re-timed block-sparse
    attention at this shape (daydream.profile.shapes): linear in density between the measured
    densities and dense (density 1: no change), extrapolated below the lowest; None where the block
    size or reorder setting was not measured."""
    pts = sorted((v["density"], v["fwd_us"], v["train_us"]) for v in entry["sparse"]
                 if v["block"] == block and v["reorder"] == reorder)
    if not pts:
        return None
    d = np.array([p[0] for p in pts] + [1.0])
    fwd = np.array([p[1] - entry["dense_fwd_us"] for p in pts] + [0.0])
    train = np.array([p[2] - entry["dense_train_us"] for p in pts] + [0.0])

    def at(y):
        if density >= d[0] or len(d) < 2:
            return float(np.interp(density, d, y))
        return float(y[0] + (density - d[0]) * (y[1] - y[0]) / (d[1] - d[0]))
    f = at(fwd)
    return (f, at(train) - f) if training else (f, 0.0)


def _apply_measured(graph, info, params: dict, ctx) -> np.ndarray:
    """CPU traces whose run re-timed block-sparse attention at its shapes: each flash-attention op
    of a measured shape changes by the measured difference (forward op: the forward's; backward op:
    the rest of the training step's). Returns the tasks so priced."""
    entries = {repr((e["q"], e["k"], e["v"])): e
               for e in ((((ctx.run or {}).get("calibration") or {}).get("cpu_sparse_attention") or {})
                         .get("shapes") or [])}
    priced = np.zeros(len(info.name), bool)
    if not entries:
        return priced
    training = bool((graph.tasks["phase"].to_numpy() == BACKWARD).any())
    rows, dur = graph.tasks["op"].to_numpy(), graph.tasks["dur"].to_numpy()
    seg = np.flatnonzero(C.cpu_op_segments(graph, info, (CPU_FWD, CPU_BWD)))
    new = dur.copy()
    calls = 0
    for r in np.unique(rows[seg]).tolist():
        mine = seg[rows[seg] == r]
        name = info.name[mine[0]]
        args = graph.trace.args_of(r)
        dims, conc = args.get("Input Dims") or [], args.get("Concrete Inputs") or []
        # (query, key, value), is_causal, attn_mask: forward (q, k, v, dropout_p, is_causal, attn_mask,
        # scale); backward (grad_out, q, k, v, out, logsumexp, dropout_p, is_causal, attn_mask, scale)
        qkv, causal, mask = (dims[:3], 4, 5) if name == CPU_FWD else (dims[1:4], 7, 8)
        plain = (len(conc) <= causal or conc[causal] != "True") and not (len(dims) > mask and dims[mask])
        entry = entries.get(repr(tuple(qkv))) if len(qkv) == 3 and plain else None
        delta = entry and measured_delta(entry, params["density"], params["block"], params["reorder"], training)
        if not delta:
            continue
        d = 1e3 * (delta[0] if name == CPU_FWD else delta[1])
        total = dur[mine].sum()
        if total > 0:
            new[mine] = dur[mine] * max(total + d, 0.0) / total
            priced[mine] = True
            calls += name == CPU_FWD
    if priced.any():
        idx = np.flatnonzero(priced)
        P.set_duration(graph, idx, new[idx])
        ctx.notes.append(f"sparse-attention: {calls} attention calls priced by this run's re-timed block-sparse "
                         f"attention at their shapes (tbd_suite.variants, block {params['block']}, "
                         f"reorder={str(params['reorder']).lower()}; run.json calibration)")
    return priced


def apply(graph, params: dict, ctx) -> None:
    density, block, reorder = params["density"], params["block"], params["reorder"]
    dev = ctx.device
    info = C.OpInfo(graph)
    is_att, (mask_b, qkv_b) = attention_ops(info, block)
    kind = graph.tasks["kind"].to_numpy()
    phase = graph.tasks["phase"].to_numpy()
    cpu_trace = C.is_cpu_trace(graph)
    before = graph.tasks["dur"].to_numpy().copy()
    measured = np.zeros(len(kind), bool)
    if cpu_trace:
        measured = _apply_measured(graph, info, params, ctx)
        if measured.any():  # the dispatch of an SDPA wrapper around a measured call is inside its time
            wrapped, call, _ = C.op_calls(graph, "aten::scaled_dot_product_attention")
            around = np.unique(call[measured[wrapped]])
            measured[wrapped[np.isin(call, around)]] = True
        work = np.flatnonzero((kind == T_CPU) & is_att & ~measured)
        P.set_duration(graph, work, graph.tasks["dur"].to_numpy()[work] * density
                       + mask_b[work] / dev.mem_bw * 1e9)
        if measured.any():
            work = np.union1d(work, np.flatnonzero(measured))
    else:
        cls = P.kernel_classes(graph)
        work = np.flatnonzero((kind == T_KERNEL) & ((cls == "attention") | (is_att & np.isin(
            cls, ("gemm", "reduction", "elementwise")))))
        floor = C.kernel_floor_ns(graph)
        C.scale_work(graph, work, density, floor)
        extra = mask_b[work] / dev.mem_bw * 1e9
        P.set_duration(graph, work, graph.tasks["dur"].to_numpy()[work] + extra)
    if not len(work):
        ctx.notes.append("sparse-attention: no attention work found (no attention kernels, fused "
                         "attention ops or unfused QK/softmax/PV shapes)")
        return
    # how much attention there is: the gain is bounded by it (a small share moves the step little)
    steps = max(graph.steps, 1)
    ctx.notes.append(f"sparse-attention: {len(work)} attention {'CPU segments' if cpu_trace else 'kernels'}, "
                     f"{before[work].sum() / steps / 1e6:.3f} -> {graph.tasks['dur'].to_numpy()[work].sum() / steps / 1e6:.3f}"
                     f" ms/step of their work at density={density:g} (block mask included)")
    if not reorder:
        return
    # one permutation per forward attention layer: the fused op, or the QK bmm of unfused attention
    first = work[(phase[work] == FORWARD) & ~measured[work]]  # the measured times include their reorder
    first = first_per_op(graph, first) if len(first) else first
    role = np.array([unfused_role(info.name[i], info.tensors[i]) for i in first], dtype=object)
    layer = first[np.isin(info.name[first], FUSED_OPS) | (role == "qk")]
    if cpu_trace and len(layer):  # one reorder per attention call: the SDPA wrapper, not also its inner op
        wrapped, _, _ = C.op_calls(graph, "aten::scaled_dot_product_attention")
        inner = np.setdiff1d(wrapped, np.flatnonzero(info.name == "aten::scaled_dot_product_attention"))
        layer = layer[~np.isin(layer, inner)]
    layer = layer[np.isfinite(qkv_b[layer])]
    missing = len(first) - len(layer)
    if len(layer):
        nbytes = 2 * qkv_b[layer]
        if cpu_trace:
            P.insert_before(graph, layer, dur=nbytes / dev.mem_bw * 1e9, name="PARO token reorder", kind="cpu")
        else:
            C.insert_kernel_before(graph, layer, nbytes / dev.mem_bw * 1e9 + dev.launch_gpu_s * 1e9,
                                   "PARO token reorder (permute Q,K,V)", dev)
    if missing > 0 and not len(layer):
        ctx.notes.append("sparse-attention: attention shapes not recorded; the token reorder cost is not modelled")


OPTIMIZATION = Optimization(
    name="sparse-attention",
    summary="block-sparse attention after token reordering (PAROAttention)",
    params={
        "density": Param(0.5, "fraction of attention blocks computed", float, 0.01, 1.0),
        "block": Param(64, "block size in tokens", int, 8, 1024),
        "reorder": Param(True, "include the token-reorder permutation cost", bool),
    },
    apply=apply,
    memory=unchanged_memory("sparse-attention: attention scores are not told apart from other "
                            "activations in the recording; unchanged"),
    doc="docs/optimizations/sparse-attention.md",
    checked_against={
        "cpu": ("DiT on CPU, block-gathered sparse attention at 50% and 25% block density, with and "
                "without reordering (traces/pairs)"),
    },
)
