"""Validate the structural what-ifs (dataloader, fused-optimizer, activation-checkpointing) against
measured pairs.

For each pair (a base trace, the same workload with one change, and the `--opt` that models the
change) it runs daydream.validate and prints: pair, opt, base measured, optimized measured,
predicted, error % (CONTRACT.md: 100 * |predicted - optimized measured| / optimized measured,
all `measured_ms` per step).

Pairs: ResNet-50 on a V100 with DataLoader num_workers 0 -> 4 (../shared/traces/kineto), and
every pair of the CPU corpus traces/pairs/index.json whose `whatif.opt` is one of dataloader,
fused-optimizer, activation-checkpointing.

    python benchmarks/validate_structure.py [--json OUT.json]
    python benchmarks/validate_structure.py --measure-handoff   # the HANDOFF_NS constant
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "traces"
PAIRS = REPO / "traces" / "pairs"
MINE = ("dataloader", "fused-optimizer", "activation-checkpointing")
GPU_PAIRS = [("resnet50 V100 num_workers 0->4", "kineto/resnet50_v100_num_workers_0.json.gz",
              "kineto/resnet50_v100_num_workers_4.json.gz", "dataloader:workers=4")]


def pairs() -> list[tuple[str, Path, Path, str]]:
    out = [(n, SHARED / b, SHARED / o, opt) for n, b, o, opt in GPU_PAIRS if (SHARED / b).exists()]
    index = PAIRS / "index.json"
    if index.exists():
        for p in json.loads(index.read_text()).get("pairs", []):
            opt = (p.get("whatif") or {}).get("opt", "")
            if opt.split(":")[0] in MINE:
                out.append((p["name"], PAIRS / p["base"], PAIRS / p["optimized"], opt))
    return out


def measure_handoff(batches: int = 20) -> float:
    """Median main-thread time of next() on a multi-process DataLoader whose batch is already
    queued (32 x 3 x 224 x 224 fp32, 2 workers): the hand-off the dataloader model charges."""
    import statistics
    import time

    import torch
    from torch.utils.data import DataLoader, Dataset

    class Images(Dataset):
        def __len__(self):
            return 10**6

        def __getitem__(self, i):
            return torch.zeros(3, 224, 224), i % 1000

    it = iter(DataLoader(Images(), batch_size=32, num_workers=2, prefetch_factor=2))
    next(it)
    times = []
    for _ in range(batches):
        time.sleep(0.5)  # the workers refill the queue: next() only takes a ready batch
        t0 = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, metavar="OUT.json", help="also write the rows as JSON")
    ap.add_argument("--measure-handoff", action="store_true", help="measure the DataLoader hand-off and exit")
    args = ap.parse_args()
    if args.measure_handoff:
        print(f"DataLoader hand-off: {measure_handoff() / 1e3:.1f} us (median)")
        return 0
    from daydream.validate import validate
    rows = []
    print(f"{'pair':40s} {'opt':28s} {'base':>9s} {'optimized':>10s} {'predicted':>10s} {'error %':>8s}")
    for name, base, optimized, opt in pairs():
        r = validate(str(base), str(optimized), [opt])
        rows.append({"pair": name, "opt": opt, **{k: r[k] for k in (
            "base_measured_ms", "optimized_measured_ms", "predicted_ms", "error_pct", "notes")}})
        print(f"{name:40s} {opt:28s} {r['base_measured_ms']:9.2f} {r['optimized_measured_ms']:10.2f} "
              f"{r['predicted_ms']:10.2f} {r['error_pct']:8.1f}", flush=True)
    if args.json:
        out = Path(args.json)
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(rows, f, indent=2)
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
