"""A small transformer classifier trained on synthetic tokens: the "user's own script" that
`daydream profile -- python benchmarks/scripts/tiny_transformer.py` is checked on
(benchmarks/profile_overhead.py, docs/profiling.md).

    python tiny_transformer.py [--steps N] [--batch-size B] [--stop-at K] [--crash-at K] [--threads T] [--fused]

--stop-at K ends the loop after K optimizer steps (a run that ends early); --crash-at K raises
inside step K (a crashing run).
"""
import argparse
import time

import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self, vocab=1000, dim=64, heads=4, layers=2, classes=10, seq=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(seq, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, batch_first=True, dropout=0.1)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        return self.head(self.encoder(x).mean(dim=1))


def make_step(batch_size=16, seq=32, seed=0, fused=False):
    """The model, its optimizer (for-loop AdamW, or fused) and data; returns step(i) that trains on batch i."""
    torch.manual_seed(seed)
    model = Classifier(seq=seq)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused or None)
    loss_fn = nn.CrossEntropyLoss()
    data = [(torch.randint(0, 1000, (batch_size, seq)), torch.randint(0, 10, (batch_size,))) for _ in range(8)]

    def step(i, crash=False):
        tokens, labels = data[i % len(data)]
        loss = loss_fn(model(tokens), labels)
        if crash:
            raise RuntimeError(f"deliberate crash in step {i}")
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--stop-at", type=int, default=None)
    parser.add_argument("--crash-at", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fused", action="store_true", help="AdamW(fused=True) instead of the for-loop")
    parser.add_argument("--report-time", action="store_true", help="print the loop's wall-clock ms at the end")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    step = make_step(args.batch_size, args.seq, fused=args.fused)
    t0, c0 = time.perf_counter(), time.thread_time()
    for i in range(args.steps):
        if args.stop_at is not None and i == args.stop_at:
            break
        step(i, crash=i == args.crash_at)
    if args.report_time:
        print(f"loop_ms {1e3 * (time.perf_counter() - t0):.3f} cpu_ms {1e3 * (time.thread_time() - c0):.3f} "
              f"steps {args.steps}")


if __name__ == "__main__":
    main()
