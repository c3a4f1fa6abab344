"""Attention models: the Transformer (Vaswani et al. 2017), BERT (Devlin et al. 2019), a Llama-style
decoder (Touvron et al. 2023: RMSNorm, RoPE, SwiGLU, grouped-query attention), ViT (Dosovitskiy et
al. 2021) and DiT (Peebles & Xie 2023). All attention goes through F.scaled_dot_product_attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tbd_suite.common import Workload, make_optimizer, run_blocks
from tbd_suite.samplers import ImageClass, Latents, MaskedTokens, TokenPair, Tokens
from tbd_suite.variants import block_sparse_attention


class Attention(nn.Module):
    """Multi-head attention with `kv_heads` key/value heads (grouped-query when fewer than `heads`)."""

    def __init__(self, dim, heads, kv_heads=None, bias=True):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads or heads, dim // heads
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(dim, 2 * self.kv_heads * self.head_dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.block_sparse = None  # a tbd_suite.variants.BlockSparse pattern for self-attention

    def forward(self, x, context=None, causal=False, rope=None):
        b, n, _ = x.shape
        context = x if context is None else context
        q = self.q(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if self.block_sparse is not None and context is x and not causal and self.kv_heads == self.heads:
            y = block_sparse_attention(q, k, v, self.block_sparse)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                               enable_gqa=self.kv_heads != self.heads)
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


def rope_table(length, head_dim, base=10000.0, device=None):
    """cos/sin of rotary position embeddings (Su et al. 2021), shape [length, head_dim / 2] each."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angles = torch.outer(torch.arange(length, device=device).float(), inv)
    return angles.cos(), angles.sin()


def apply_rope(x, table):
    cos, sin = table
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


def sinusoid_positions(length, dim):
    pos = torch.arange(length).float()[:, None]
    div = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return table


class PostNormLayer(nn.Module):
    """Self-attention, optional cross-attention, feed-forward; each residual then LayerNorm
    (the original Transformer and BERT)."""

    def __init__(self, dim, heads, ff, dropout=0.1, cross=False, act=F.relu, causal=False):
        super().__init__()
        self.self_attn, self.norm1 = Attention(dim, heads), nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads) if cross else None
        self.norm2 = nn.LayerNorm(dim) if cross else None
        self.ff1, self.ff2, self.norm3 = nn.Linear(dim, ff), nn.Linear(ff, dim), nn.LayerNorm(dim)
        self.dropout, self.act, self.causal = dropout, act, causal

    def forward(self, x, memory=None):
        drop = lambda t: F.dropout(t, self.dropout, self.training)  # noqa: E731
        x = self.norm1(x + drop(self.self_attn(x, causal=self.causal)))
        if self.cross_attn is not None:
            x = self.norm2(x + drop(self.cross_attn(x, memory)))
        return self.norm3(x + drop(self.ff2(drop(self.act(self.ff1(x))))))


# --- Transformer NMT ---------------------------------------------------------------------------------
class TransformerNMT(nn.Module):
    """Encoder-decoder with shared source/target embeddings tied to the output projection."""

    def __init__(self, vocab, dim, heads, ff, layers, max_len):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.register_buffer("pos", sinusoid_positions(max_len, dim), persistent=False)
        self.encoder = nn.ModuleList(PostNormLayer(dim, heads, ff) for _ in range(layers))
        self.decoder = nn.ModuleList(PostNormLayer(dim, heads, ff, cross=True, causal=True) for _ in range(layers))
        self.scale = math.sqrt(dim)

    def embed_tokens(self, tokens):
        return F.dropout(self.embed(tokens) * self.scale + self.pos[: tokens.shape[1]], 0.1, self.training)

    def forward(self, src, tgt_in):
        memory = run_blocks(self.encoder, self.embed_tokens(src), self.checkpointing)
        out = run_blocks(self.decoder, self.embed_tokens(tgt_in), self.checkpointing, memory)
        return out @ self.embed.weight.t()


class Transformer(Workload):
    name = "transformer"
    paper = "Vaswani et al., Attention Is All You Need, NeurIPS 2017 (base model)"
    optimizer_name = "Adam, betas (0.9, 0.98), eps 1e-9, lr d^-0.5 * min(step^-0.5, step * 4000^-1.5)"
    loss_name = "cross-entropy with label smoothing 0.1"
    sizes = {
        "small": dict(vocab=512, dim=64, heads=4, ff=128, layers=2, src_len=16, tgt_len=16, batch=8),
        "paper": dict(vocab=37000, dim=512, heads=8, ff=2048, layers=6, src_len=64, tgt_len=64, batch=64),
    }

    def make_model(self, cfg):
        return TransformerNMT(cfg["vocab"], cfg["dim"], cfg["heads"], cfg["ff"], cfg["layers"],
                              max(cfg["src_len"], cfg["tgt_len"]))

    def make_sampler(self, cfg):
        return TokenPair(cfg["vocab"], cfg["src_len"], cfg["tgt_len"] + 1)

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.Adam, params, fused, lr=1.0, betas=(0.9, 0.98), eps=1e-9)

    def make_scheduler(self, optimizer):
        dim, warmup = self.cfg["dim"], 4000  # section 5.3
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: dim ** -0.5 * min((s + 1) ** -0.5, (s + 1) * warmup ** -1.5))

    def compute_loss(self, batch):
        src, tgt = batch
        logits = self.model(src, tgt[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), label_smoothing=0.1, ignore_index=0)


# --- BERT ------------------------------------------------------------------------------------------
class BertMLM(nn.Module):
    """Token + position + segment embeddings, post-norm GELU encoder, masked-LM head tied to the
    token embedding."""

    def __init__(self, vocab, dim, heads, ff, layers, max_len):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, dim), nn.Embedding(max_len, dim)
        self.segments, self.norm = nn.Embedding(2, dim), nn.LayerNorm(dim, eps=1e-12)
        self.layers = nn.ModuleList(PostNormLayer(dim, heads, ff, act=F.gelu) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim, eps=1e-12))
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, tokens, segments):
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.norm(self.tokens(tokens) + self.positions(pos) + self.segments(segments))
        x = run_blocks(self.layers, F.dropout(x, 0.1, self.training), self.checkpointing)
        return self.head(x) @ self.tokens.weight.t() + self.bias


class Bert(Workload):
    name = "bert"
    paper = "Devlin et al., BERT: Pre-training of Deep Bidirectional Transformers, NAACL 2019 (BERT-base)"
    optimizer_name = "AdamW, lr 1e-4, betas (0.9, 0.999), weight decay 0.01, linear warmup 10k steps"
    loss_name = "masked-LM cross-entropy over the 15% target positions"
    sizes = {
        "small": dict(vocab=512, dim=64, heads=4, ff=256, layers=2, seq=32, batch=8),
        "paper": dict(vocab=30522, dim=768, heads=12, ff=3072, layers=12, seq=128, batch=32),
    }

    def make_model(self, cfg):
        return BertMLM(cfg["vocab"], cfg["dim"], cfg["heads"], cfg["ff"], cfg["layers"], cfg["seq"])

    def make_sampler(self, cfg):
        return MaskedTokens(cfg["vocab"], cfg["seq"])

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.AdamW, params, fused, lr=1e-4, betas=(0.9, 0.999), eps=1e-6,
                              weight_decay=0.01)

    def make_scheduler(self, optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10000))

    def compute_loss(self, batch):
        tokens, segments, labels = batch
        logits = self.model(tokens, segments)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)


# --- Llama-style decoder -------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class LlamaBlock(nn.Module):
    """Pre-norm block: RMSNorm, causal GQA attention with RoPE, RMSNorm, SwiGLU feed-forward."""

    def __init__(self, dim, heads, kv_heads, ff):
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(dim), Attention(dim, heads, kv_heads, bias=False)
        self.ff_norm = RMSNorm(dim)
        self.gate_up = nn.Linear(dim, 2 * ff, bias=False)
        self.down = nn.Linear(ff, dim, bias=False)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), causal=True, rope=(cos, sin))
        gate, up = self.gate_up(self.ff_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class LlamaModel(nn.Module):
    def __init__(self, vocab, dim, heads, kv_heads, ff, layers, seq):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(LlamaBlock(dim, heads, kv_heads, ff) for _ in range(layers))
        self.norm, self.lm_head = RMSNorm(dim), nn.Linear(dim, vocab, bias=False)
        cos, sin = rope_table(seq, dim // heads)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, tokens):
        n = tokens.shape[1]
        x = run_blocks(self.layers, self.embed(tokens), self.checkpointing, self.cos[:n], self.sin[:n])
        return self.lm_head(self.norm(x))


class Llama(Workload):
    name = "llama"
    paper = ("Touvron et al., Llama 2, 2023; paper size is the TinyLlama-1.1B shape (Llama-2 architecture, "
             "grouped-query attention with 4 KV heads)")
    optimizer_name = "AdamW, lr 3e-4, betas (0.9, 0.95), eps 1e-5, weight decay 0.1, gradient clipping 1.0"
    loss_name = "next-token cross-entropy"
    clip_norm = 1.0
    sizes = {
        "small": dict(vocab=512, dim=64, heads=4, kv_heads=2, ff=172, layers=2, seq=64, batch=4),
        "paper": dict(vocab=32000, dim=2048, heads=32, kv_heads=4, ff=5632, layers=22, seq=2048, batch=1),
    }

    def make_model(self, cfg):
        return LlamaModel(cfg["vocab"], cfg["dim"], cfg["heads"], cfg["kv_heads"], cfg["ff"], cfg["layers"],
                          cfg["seq"])

    def make_sampler(self, cfg):
        return Tokens(cfg["vocab"], cfg["seq"] + 1)

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.AdamW, params, fused, lr=3e-4, betas=(0.9, 0.95), eps=1e-5,
                              weight_decay=0.1)

    def compute_loss(self, batch):
        logits = self.model(batch[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


# --- ViT -------------------------------------------------------------------------------------------
class PreNormBlock(nn.Module):
    """LayerNorm, attention, residual; LayerNorm, GELU MLP, residual (ViT)."""

    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, image, patch, dim, depth, heads, mlp, classes):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(PreNormBlock(dim, heads, mlp) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, classes)

    def forward(self, images):
        x = self.patch(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = run_blocks(self.blocks, x, self.checkpointing)
        return self.head(self.norm(x[:, 0]))


class ViT(Workload):
    name = "vit"
    paper = "Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021 (ViT-B/16)"
    optimizer_name = "Adam (decoupled weight decay, AdamW), lr 1e-3, betas (0.9, 0.999), weight decay 0.1"
    loss_name = "cross-entropy"
    sizes = {
        "small": dict(image=32, patch=4, dim=64, depth=2, heads=4, mlp=128, classes=10, batch=8),
        "paper": dict(image=224, patch=16, dim=768, depth=12, heads=12, mlp=3072, classes=1000, batch=64),
    }

    def make_model(self, cfg):
        return VisionTransformer(cfg["image"], cfg["patch"], cfg["dim"], cfg["depth"], cfg["heads"], cfg["mlp"],
                                 cfg["classes"])

    def make_sampler(self, cfg):
        return ImageClass(3, cfg["image"], cfg["image"], cfg["classes"])

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.AdamW, params, fused, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.1)

    def compute_loss(self, batch):
        images, labels = batch
        return F.cross_entropy(self.model(images), labels)


# --- DiT -------------------------------------------------------------------------------------------
def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device).float() / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class DiTBlock(nn.Module):
    """adaLN-Zero block: the conditioning regresses shift, scale and gate for both sub-layers."""

    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(approximate="tanh"), nn.Linear(mlp, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x, c):
        s1, g1, a1, s2, g2, a2 = self.ada(F.silu(c)).unsqueeze(1).chunk(6, dim=-1)
        x = x + a1 * self.attn(self.norm1(x) * (1 + g1) + s1)
        return x + a2 * self.mlp(self.norm2(x) * (1 + g2) + s2)


class DiTModel(nn.Module):
    """Patchify the latent, add fixed sin-cos positions, condition on timestep + class (with a null
    class for classifier-free guidance), N adaLN-Zero blocks, predict noise and variance."""

    def __init__(self, channels, size, patch, dim, depth, heads, classes):
        super().__init__()
        self.channels, self.patch, self.size = channels, patch, size
        self.embed = nn.Conv2d(channels, dim, patch, patch)
        self.register_buffer("pos", sinusoid_positions((size // patch) ** 2, dim)[None], persistent=False)
        self.t_mlp = nn.Sequential(nn.Linear(256, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.y_embed = nn.Embedding(classes + 1, dim)
        self.blocks = nn.ModuleList(DiTBlock(dim, heads, 4 * dim) for _ in range(depth))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(dim, 2 * dim)
        self.final = nn.Linear(dim, patch * patch * 2 * channels)

    def forward(self, x, t, y):
        b = x.shape[0]
        h = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        c = self.t_mlp(timestep_embedding(t, 256)) + self.y_embed(y)
        h = run_blocks(self.blocks, h, self.checkpointing, c)
        shift, scale = self.final_ada(F.silu(c)).unsqueeze(1).chunk(2, dim=-1)
        h = self.final(self.final_norm(h) * (1 + scale) + shift)
        g, p, ch = self.size // self.patch, self.patch, 2 * self.channels
        return h.view(b, g, g, p, p, ch).permute(0, 5, 1, 3, 2, 4).reshape(b, ch, self.size, self.size)


class DiT(Workload):
    name = "dit"
    paper = "Peebles & Xie, Scalable Diffusion Models with Transformers, ICCV 2023 (DiT-XL/2 on 32x32x4 latents)"
    optimizer_name = "AdamW, lr 1e-4, no weight decay"
    loss_name = ("noise-prediction MSE at a uniformly drawn timestep of a 1000-step linear beta schedule "
                 "(the learned-variance channels are predicted but, as the VLB term is left out, not trained)")
    sizes = {
        "small": dict(channels=4, size=8, patch=2, dim=64, depth=2, heads=4, classes=10, batch=8),
        # the small model on the paper's 32x32 latents: 256 tokens, room for 32-token attention blocks
        "small-256": dict(channels=4, size=32, patch=2, dim=64, depth=2, heads=4, classes=10, batch=4),
        "paper": dict(channels=4, size=32, patch=2, dim=1152, depth=28, heads=16, classes=1000, batch=32),
    }

    def make_model(self, cfg):
        model = DiTModel(cfg["channels"], cfg["size"], cfg["patch"], cfg["dim"], cfg["depth"], cfg["heads"],
                         cfg["classes"])
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)  # DDPM linear schedule
        model.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float(), persistent=False)
        return model

    def make_sampler(self, cfg):
        return Latents(cfg["channels"], cfg["size"], cfg["classes"])

    def make_optimizer(self, params, fused):
        return make_optimizer(torch.optim.AdamW, params, fused, lr=1e-4, weight_decay=0.0)

    def compute_loss(self, batch):
        x0, y = batch
        b = x0.shape[0]
        t = torch.randint(0, 1000, (b,), device=x0.device)
        y = torch.where(torch.rand(b, device=x0.device) < 0.1, torch.full_like(y, self.cfg["classes"]), y)
        noise = torch.randn_like(x0)
        ab = self.model.alpha_bar[t].view(b, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        eps, _ = self.model(xt, t, y).chunk(2, dim=1)
        return F.mse_loss(eps.float(), noise)
