"""Which tensors of an fp32 recording autocast would keep in fp32: the memory `amp` model halves
the rest.

Autocast runs each op by a policy (aten/src/ATen/autocast_mode.cpp, torch 2.x): the
lower-precision list (convolutions, matmuls, linear, attention) runs in 16 bits, the `fp32` list
casts its inputs up and runs in fp32. What an fp32-policy op makes stays 4 bytes an element under
amp: its outputs, the upcast copies of its inputs, what its backward makes for its inputs'
gradients. A loss is the common case (`cross_entropy_loss` casts the logits up, runs log_softmax
and nll_loss in fp32, and their backward nodes make fp32 gradients of the logits' size); on CUDA
also layer norm, softmax and pow. The tensors an fp32 op makes are the memory rows created while
it runs; its backward nodes are the autograd events whose sequence number is that of a forward op
run inside it. Ops a torch.compile'd graph fuses do not appear as events: their tensors are halved.
"""
from __future__ import annotations

import numpy as np

# KERNEL_CPU(..., fp32) entries of autocast_mode.cpp (torch 2.x), as aten op names.
FP32_CPU = frozenset(f"aten::{n}" for n in (
    "avg_pool3d", "binary_cross_entropy", "grid_sampler", "polar", "prod", "quantile", "nanquantile", "stft",
    "cdist", "grid_sampler_2d", "grid_sampler_3d", "trace", "view_as_complex", "cholesky", "cholesky_inverse",
    "cholesky_solve", "inverse", "lu_solve", "orgqr", "ormqr", "pinverse", "max_pool3d", "max_unpool2d",
    "max_unpool3d", "adaptive_avg_pool3d", "reflection_pad1d", "reflection_pad2d", "replication_pad1d",
    "replication_pad2d", "replication_pad3d", "mse_loss", "cosine_embedding_loss", "nll_loss", "nll_loss2d",
    "hinge_embedding_loss", "poisson_nll_loss", "smooth_l1_loss", "cross_entropy_loss", "l1_loss", "huber_loss",
    "margin_ranking_loss", "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss", "ctc_loss", "kl_div",
    "multilabel_margin_loss", "binary_cross_entropy_with_logits"))
# KERNEL_CUDA(..., fp32) and fp32_set_opt_dtype entries (the same file), as aten op names.
FP32_CUDA = frozenset(f"aten::{n}" for n in (
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
    "sinh", "tan", "pow", "softplus", "layer_norm", "native_layer_norm", "group_norm", "frobenius_norm",
    "nuclear_norm", "cosine_similarity", "poisson_nll_loss", "cosine_embedding_loss", "nll_loss", "nll_loss2d",
    "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss",
    "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss", "triplet_margin_loss",
    "multi_margin_loss", "binary_cross_entropy_with_logits", "dist", "pdist", "cdist", "renorm", "logsumexp",
    "prod", "softmax", "log_softmax", "cumprod", "cumsum", "linalg_vector_norm", "linalg_matrix_norm", "sum",
    "cross_entropy_loss"))


def fp32_spans(trace, device: str) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) in trace nanoseconds, sorted and merged, of the CPU ops that run in fp32 under
    autocast on `device` ("cpu" or a GPU) and of the backward nodes of the ops run inside them."""
    from daydream.trace.events import CPU_OP
    names = FP32_CPU if str(device).lower().startswith("cpu") else FP32_CUDA
    ev = trace.events
    kind, code = ev["kind"].to_numpy(), ev["name"].to_numpy()
    ts, dur, seq = ev["ts"].to_numpy(), ev["dur"].to_numpy(), ev["seq"].to_numpy()
    ops = np.flatnonzero(kind == CPU_OP)
    wanted = np.array([trace.names[c] in names for c in range(len(trace.names))], bool)
    top = ops[wanted[code[ops]]]
    if not len(top):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts, ends = _merge(ts[top], ts[top] + dur[top])
    # forward ops run inside them (their sequence numbers), then the backward nodes of those
    at = np.searchsorted(starts, ts[ops], side="right") - 1
    inside = (at >= 0) & (ts[ops] + dur[ops] <= ends[np.maximum(at, 0)]) & (seq[ops] >= 0)
    fwd_seq = np.unique(seq[ops[inside]])
    is_node = np.array(["Backward" in n for n in trace.names], bool)
    backward = ops[np.isin(seq[ops], fwd_seq) & ~inside & is_node[code[ops]]]
    return _merge(np.r_[starts, ts[backward]], np.r_[ends, ts[backward] + dur[backward]])


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping or nested [start, end] spans as disjoint ones, sorted."""
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order].astype(np.int64), ends[order].astype(np.int64)
    reach = np.maximum.accumulate(ends)
    first = np.flatnonzero(np.r_[True, starts[1:] > reach[:-1]])
    return starts[first], np.maximum.reduceat(ends, first)
