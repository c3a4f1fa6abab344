"""A small GPT-style LM trained with torch.compile, AdamW, grad clipping and a cosine schedule."""
import argparse, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.h = h
    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.ln2(x))

class LM(nn.Module):
    def __init__(self, vocab=2048, d=128, h=4, n=2, t=64):
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Parameter(torch.zeros(t, d))
        self.blocks = nn.ModuleList(Block(d, h) for _ in range(n))
        self.ln, self.out = nn.LayerNorm(d), nn.Linear(d, vocab)
    def forward(self, idx):
        x = self.emb(idx) + self.pos[: idx.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.out(self.ln(x))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--amp", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = LM()
    step_fn = torch.compile(model) if a.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps)
    data = torch.randint(0, 2048, (64, 65))
    times = []
    for s in range(a.steps):
        t0 = time.perf_counter()
        batch = data[torch.randint(0, 64, (16,))]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.amp):
            logits = step_fn(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        times.append(time.perf_counter() - t0)
    print(f"median step {1e3 * np.median(times[10:]):.2f} ms")

if __name__ == "__main__":
    main()
