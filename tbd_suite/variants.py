"""Workload variants for the quantize and sparse-attention pairs of the capture corpus.

* int8 dynamic quantization of every nn.Linear (fbgemm, `torch.ao.quantization.quantize_dynamic`):
  weights int8 per tensor, activations quantized per call, int32 accumulation, fp32 output. For
  inference the modules are swapped by quantize_dynamic itself. A dynamic-quantized Linear has no
  backward, so the training-like variant keeps fp32 master weights and runs each Linear's forward
  through the same fbgemm op (`quantized::linear_dynamic`) on a weight quantized and packed
  afresh every step (the weights change every step), with an fp32 backward (straight-through:
  dX = dY W, dW = dY^T X, db = sum dY) -- int8 forward, fp32 backward and optimizer.
* block-sparse self-attention realized by gathering, for every query block, the key/value blocks
  it attends to and running F.scaled_dot_product_attention on the gathered blocks, so the
  attention work scales with the block density (FlexAttention's eager CPU path does not: see
  benchmarks/flex_attention_cpu.py). The block pattern is a band: query block i attends the
  round(density * n) key blocks centred on i (cyclically). With `reorder`, the tokens of Q, K and V
  are permuted first (PAROAttention's token reordering; here from row-major patch order to 4x4
  patch tiles) and the output is permuted back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


# --- int8 dynamic quantization ------------------------------------------------------------------
def _quantize_weight(w: torch.Tensor) -> torch.Tensor:
    """Symmetric per-tensor int8, the scale quantize_dynamic's default MinMax observer gives."""
    scale = max(float(w.detach().abs().max()) / 127.5, 1e-8)
    return torch.quantize_per_tensor(w.detach(), scale, 0, torch.qint8)


class _Int8ForwardLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        packed = torch.ops.quantized.linear_prepack(_quantize_weight(weight), None if bias is None else bias.detach())
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_x = grad @ weight
        grad_w = g2.t() @ x.reshape(-1, x.shape[-1])
        return grad_x, grad_w, g2.sum(0) if ctx.has_bias else None


def int8_forward_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear with fbgemm's dynamic int8 GEMM forward (weights quantized and packed per call) and an
    fp32 backward: what a step that trains on int8 forwards runs (also timed by
    daydream.profile.calibrate.measure_linear_shapes)."""
    return _Int8ForwardLinear.apply(x, weight, bias)


class Int8ForwardLinear(nn.Linear):
    """nn.Linear whose forward runs fbgemm's dynamic int8 GEMM on this step's weights."""

    def forward(self, x):
        return int8_forward_linear(x, self.weight, self.bias)


def quantize_linears(model: nn.Module, training: bool) -> nn.Module:
    """int8 dynamic quantization of every nn.Linear of `model` (see the module docstring)."""
    torch.backends.quantized.engine = "fbgemm"
    if not training:
        from torch.ao.quantization import quantize_dynamic
        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                child.__class__ = Int8ForwardLinear
    return model


# --- block-sparse attention ---------------------------------------------------------------------
@dataclass(frozen=True)
class BlockSparse:
    density: float     # fraction of key blocks each query block attends
    block: int = 32    # tokens per block
    reorder: bool = False

    def kv_blocks(self, n: int, device) -> torch.Tensor:
        """[n, k] key-block indices per query block: a cyclic band of k = round(density * n) blocks."""
        k = max(1, min(n, round(self.density * n)))
        start = torch.arange(n, device=device)[:, None] - k // 2
        return (start + torch.arange(k, device=device)[None]) % n


def tile_permute(x: torch.Tensor, tile: int = 4, inverse: bool = False) -> torch.Tensor:
    """x [B, H, L, d] with its L tokens in row-major order of a square patch grid, permuted to
    `tile` x `tile` tiles (one strided copy, as PAROAttention's permute kernels do), or back to
    row-major with `inverse`."""
    b, h, length, d = x.shape
    side = math.isqrt(length)
    if side * side != length or side % tile:
        raise ValueError(f"token reorder needs a square grid divisible by {tile} tiles, got {length} tokens")
    g = side // tile
    grid = (g, g, tile, tile) if inverse else (g, tile, g, tile)
    return x.reshape(b, h, *grid, d).transpose(3, 4).reshape(b, h, length, d)


def block_sparse_attention(q, k, v, cfg: BlockSparse):
    """Attention of q, k, v ([B, H, L, d]) restricted to cfg's block pattern (see module docstring)."""
    b, h, length, d = q.shape
    if length % cfg.block:
        raise ValueError(f"sequence length {length} is not a multiple of the block size {cfg.block}")
    if cfg.reorder:
        q, k, v = tile_permute(q), tile_permute(k), tile_permute(v)
    n = length // cfg.block
    index = cfg.kv_blocks(n, q.device)
    # [B, H * n, k * block, d]: 4-d, so that SDPA takes its fused CPU kernel (5-d inputs fall back
    # to the unfused math path)
    kb = k.reshape(b, h, n, cfg.block, d)[:, :, index].reshape(b, h * n, -1, d)
    vb = v.reshape(b, h, n, cfg.block, d)[:, :, index].reshape(b, h * n, -1, d)
    y = F.scaled_dot_product_attention(q.reshape(b, h * n, cfg.block, d), kb, vb).reshape(b, h, length, d)
    if cfg.reorder:
        y = tile_permute(y, inverse=True)
    return y
