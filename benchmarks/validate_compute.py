"""Validate the compute-side what-ifs against measured pairs.

For each pair (a base trace, the trace of the same workload with one change, and the `--opt`
that models the change) it predicts the optimized step time from the base trace and prints:
pair, opt, base measured, optimized measured, predicted, error % (CONTRACT.md: 100 *
|predicted - optimized measured| / optimized measured, all `measured_ms` per step).

Pairs: the cross-hardware tracelens traces in ../shared/traces (bert-small and Qwen1.5-0.5B
forward passes, H100 <-> MI300X, `gpu:target=...`) and, where the CPU pair corpus exists,
the pairs of traces/pairs/index.json whose `whatif.opt` is one of this module's optimizations
(amp, batch-size, quantize, sparse-attention, cuda-graphs, gpu).

    python benchmarks/validate_compute.py [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daydream.trace import load  # noqa: E402
from daydream.whatif import whatif  # noqa: E402

SHARED = REPO.parent / "shared" / "traces"
PAIRS = REPO / "traces" / "pairs"
MINE = ("amp", "batch-size", "quantize", "sparse-attention", "cuda-graphs", "gpu")
GPU_PAIRS = [
    ("bert-small H100->MI300X", "tracelens/gaunernst_bert-small-uncased_h100.json.gz",
     "tracelens/gaunernst_bert-small-uncased_mi300.json.gz", "gpu:target=MI300X"),
    ("bert-small MI300X->H100", "tracelens/gaunernst_bert-small-uncased_mi300.json.gz",
     "tracelens/gaunernst_bert-small-uncased_h100.json.gz", "gpu:target=H100"),
    ("Qwen1.5-0.5B H100->MI300X", "tracelens/Qwen_Qwen1.5-0.5B-Chat_h100.json.gz",
     "tracelens/Qwen_Qwen1.5-0.5B-Chat_mi300.json.gz", "gpu:target=MI300X"),
    ("Qwen1.5-0.5B MI300X->H100", "tracelens/Qwen_Qwen1.5-0.5B-Chat_mi300.json.gz",
     "tracelens/Qwen_Qwen1.5-0.5B-Chat_h100.json.gz", "gpu:target=H100"),
]


def pairs() -> list[tuple[str, Path, Path, str]]:
    out = [(n, SHARED / b, SHARED / o, opt) for n, b, o, opt in GPU_PAIRS if (SHARED / b).exists()]
    index = PAIRS / "index.json"
    if index.exists():
        doc = json.loads(index.read_text())
        for p in doc.get("pairs", []):
            opt = (p.get("whatif") or {}).get("opt", "")
            if opt.split(":")[0] in MINE:
                out.append((p["name"], PAIRS / p["base"], PAIRS / p["optimized"], opt))
    return out


def run(pair) -> dict:
    name, base, optimized, opt = pair
    w = whatif(load(base), [opt])
    target = load(optimized).measured_ms
    return {"pair": name, "opt": opt, "base_measured_ms": w.measured_ms, "optimized_measured_ms": target,
            "predicted_ms": w.predicted_ms,
            "error_pct": 100 * abs(w.predicted_ms - target) / target if target else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    args = ap.parse_args()
    todo = pairs()
    rows = [run(p) for p in todo]
    if args.json:
        print(json.dumps({"rows": rows, "cpu_pairs": (PAIRS / "index.json").exists()}))
        return
    print("| pair | opt | base measured ms | optimized measured ms | predicted ms | error % |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pair']} | `{r['opt']}` | {r['base_measured_ms']:.3f} | {r['optimized_measured_ms']:.3f} | "
              f"{r['predicted_ms']:.3f} | {r['error_pct']:.1f} |")
    if not (PAIRS / "index.json").exists():
        print("\n(traces/pairs/index.json not recorded yet: CPU pairs skipped)")


if __name__ == "__main__":
    main()
