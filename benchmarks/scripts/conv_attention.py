"""A user's own small job, not a suite model: a 1-d convolution, one softmax attention block and an
MLP regressing a scalar from synthetic sequences, AdamW, a shuffling DataLoader.

    python conv_attention.py [--epochs E] [--fused] [--threads T]

`make_step` is what benchmarks/fused_optimizer_unprofiled.py times in-process.
"""
import argparse

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, d=96, channels=8, heads=4):
        super().__init__()
        self.heads = heads
        self.conv = nn.Conv1d(channels, d, 5, padding=2)
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.head = nn.Linear(d, 1)

    def forward(self, x):
        h = self.conv(x).transpose(1, 2)
        b, t, d = h.shape
        q, k, v = self.qkv(self.norm(h)).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        h = h + self.proj(a)
        h = h + self.mlp(h)
        return self.head(h.mean(1)).squeeze(-1)


def make_step(fused=False, seed=0, batch_size=16):
    """The model, AdamW (for-loop or fused) and a DataLoader; returns step() that trains on the next batch."""
    torch.manual_seed(seed)
    data = torch.utils.data.TensorDataset(torch.randn(2048, 8, 64), torch.randn(2048))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused or None)
    batches = iter(loader)

    def step():
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fused", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    step = make_step(args.fused)
    for _ in range(args.epochs * 2048 // 16):
        step()


if __name__ == "__main__":
    main()
