"""A user's own small job, not a suite model: an MLP classifier trained with gradient accumulation
(4 micro-batches per optimizer step), AdamW with weight decay and a cosine schedule, and a no-grad
evaluation every 10 optimizer steps.

    python mlp_accum.py [--steps N] [--width W] [--fused] [--threads T]

`make_step` is what benchmarks/fused_optimizer_unprofiled.py times in-process; --width 512 keeps
AdamW's working set (params, grads, two states: 6.4 MB) inside this host's L3, --width 2048
(75 MB) outside it.
"""
import argparse

import torch
import torch.nn.functional as F
from torch import nn


def make_step(fused=False, width=512, seed=0, micro=4, batch=32):
    """The model, AdamW (for-loop or fused) and data; returns step() that runs one optimizer step."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(256, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01, fused=fused or None)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 100)
    x, y = torch.randn(4096, 256), torch.randint(0, 10, (4096,))
    xv, yv = torch.randn(512, 256), torch.randint(0, 10, (512,))
    count = [0]

    def step():
        for m in range(micro):
            i = (count[0] * micro + m) * batch % len(x)
            (F.cross_entropy(model(x[i:i + batch]), y[i:i + batch]) / micro).backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        count[0] += 1
        if count[0] % 10 == 0:
            with torch.no_grad():
                (model(xv).argmax(1) == yv).float().mean()
    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--fused", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    step = make_step(args.fused, args.width)
    for _ in range(args.steps):
        step()


if __name__ == "__main__":
    main()
