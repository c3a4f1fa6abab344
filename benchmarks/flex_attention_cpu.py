"""Does FlexAttention without torch.compile exploit a block-sparse mask on a CPU?

Times the forward of torch.nn.attention.flex_attention (eager: no torch.compile; torch 2.13 refuses
its backward on CPU: "FlexAttention does not support backward on CPU") with a
BlockMask at densities 1, 1/2 and 1/4 (the band pattern of tbd_suite.variants.BlockSparse), on the
attention shape of `tbd:dit --size small-256` (B 4, H 4, L 256, d 16, 32-token blocks), next to
F.scaled_dot_product_attention (dense) and the block-gathered SDPA realization the capture corpus
records (tbd_suite.variants.block_sparse_attention), forward only and, where it runs, forward +
backward. Alternating repetitions, medians, one thread.

    python benchmarks/flex_attention_cpu.py [--reps 7] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: E402

from tbd_suite.variants import BlockSparse, block_sparse_attention  # noqa: E402

B, H, L, D, BLOCK = 4, 4, 256, 16, 32


def band_mask(density: float):
    n = L // BLOCK
    allowed = torch.zeros(n, n, dtype=torch.bool)
    allowed[torch.arange(n)[:, None], BlockSparse(density, BLOCK).kv_blocks(n, "cpu")] = True
    return create_block_mask(lambda b, h, q, kv: allowed[q // BLOCK, kv // BLOCK], None, None, L, L,
                             device="cpu", BLOCK_SIZE=BLOCK)


def cases() -> dict:
    out = {"sdpa dense": lambda q, k, v: F.scaled_dot_product_attention(q, k, v)}
    for density in (1.0, 0.5, 0.25):
        mask = band_mask(density)
        out[f"flex eager density {density:g}"] = lambda q, k, v, m=mask: flex_attention(q, k, v, block_mask=m)
        cfg = BlockSparse(density, BLOCK)
        out[f"block-gathered SDPA density {density:g}"] = lambda q, k, v, c=cfg: block_sparse_attention(q, k, v, c)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    q, k, v = (torch.randn(B, H, L, D, requires_grad=True) for _ in range(3))
    fns = cases()
    fwd = {name: [] for name in fns}
    both = {name: [] for name in fns if not name.startswith("flex")}
    for _ in range(args.reps + 1):  # the first round warms up
        for name, fn in fns.items():
            with torch.no_grad():
                t0 = time.perf_counter()
                fn(q.detach(), k.detach(), v.detach())
                fwd[name].append(1e3 * (time.perf_counter() - t0))
            if name in both:
                t0 = time.perf_counter()
                fn(q, k, v).sum().backward()
                both[name].append(1e3 * (time.perf_counter() - t0))
    med = {name: statistics.median(ts[1:]) for name, ts in fwd.items()}
    med2 = {name: statistics.median(ts[1:]) for name, ts in both.items()}
    if args.json:
        print(json.dumps({"forward_ms": med, "forward_backward_ms": med2}))
        return
    print(f"| realization (B {B}, H {H}, L {L}, d {D}, block {BLOCK}) | forward ms | vs its density 1 "
          "| fwd+bwd ms | vs its density 1 |")
    print("|---|---:|---:|---:|---:|")
    for name, ms in med.items():
        ref = name.rsplit(" ", 1)[0] + " 1" if "density" in name else name
        bw = (f"{med2[name]:.2f} | {med2[name] / med2[ref]:.2f}" if name in med2
              else "refused (no CPU backward) |")
        print(f"| {name} | {ms:.3f} | {ms / med[ref]:.2f} | {bw} |")


if __name__ == "__main__":
    main()
