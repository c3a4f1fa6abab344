"""Validate the compute-side what-ifs against measured pairs.

For each pair (a base trace, the trace of the same workload with one change, and the `--opt`
that models the change) it predicts the optimized step time from the base trace and prints:
pair, opt, base measured, optimized measured, predicted, error % (CONTRACT.md: 100 *
|predicted - optimized measured| / optimized measured, all `measured_ms` per step).

Pairs: the cross-hardware tracelens traces in ../shared/traces (bert-small and Qwen1.5-0.5B
forward passes, H100 <-> MI300X, `gpu:target=...`) and, where the CPU pair corpus exists,
the pairs of traces/pairs/index.json whose `whatif.opt` is one of this module's optimizations
(amp, batch-size, quantize, sparse-attention, cuda-graphs, gpu).

CPU pairs are also compared with the index's interleaved timing medians (`base_step_ms`,
`optimized_step_ms`: alternating plain steps of the two settings, far steadier on a loaded machine
than one profiled run): the predicted speedup replay_ms / predicted_ms applied to the median base,
    predicted_median_ms = base_step_ms / (replay_ms / predicted_ms),
error_median_pct = 100 * |predicted_median_ms - optimized_step_ms| / optimized_step_ms.

    python benchmarks/validate_compute.py [--json] [--no-docs]
    python benchmarks/validate_compute.py --calibrate-corpus   # write a bf16 calibration measured
        on this machine into every CPU run.json of traces/pairs (the machine that recorded them)
    python benchmarks/validate_compute.py --calibrate-shapes   # re-time each CPU run's own Linear,
        GEMM and attention shapes here (daydream.profile.shapes, read from its trace) and add them to
        its run.json (runs recorded before `daydream profile` measured them)
"""
from __future__ import annotations

import argparse
import json
import os
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


def pairs() -> list[dict]:
    out = [{"pair": n, "base": SHARED / b, "optimized": SHARED / o, "opt": opt}
           for n, b, o, opt in GPU_PAIRS if (SHARED / b).exists()]
    index = PAIRS / "index.json"
    if index.exists():
        doc = json.loads(index.read_text())
        for p in doc.get("pairs", []):
            opt = (p.get("whatif") or {}).get("opt", "")
            if opt.split(":")[0] in MINE:
                out.append({"pair": p["name"], "base": PAIRS / p["base"], "optimized": PAIRS / p["optimized"],
                            "opt": opt, "base_step_ms": p.get("base_step_ms"),
                            "optimized_step_ms": p.get("optimized_step_ms")})
    return out


def run(pair: dict) -> dict:
    w = whatif(load(pair["base"]), [pair["opt"]])
    target = load(pair["optimized"]).measured_ms
    row = {"pair": pair["pair"], "opt": pair["opt"], "base_measured_ms": w.measured_ms,
           "replay_ms": w.replay_ms, "optimized_measured_ms": target, "predicted_ms": w.predicted_ms,
           "error_pct": 100 * abs(w.predicted_ms - target) / target if target else float("nan"),
           "notes": list(w.notes)}
    base_med, opt_med = pair.get("base_step_ms"), pair.get("optimized_step_ms")
    if base_med and opt_med:
        pred = base_med * w.predicted_ms / w.replay_ms
        row.update(base_step_ms=base_med, optimized_step_ms=opt_med, predicted_median_ms=pred,
                   error_median_pct=100 * abs(pred - opt_med) / opt_med)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| pair | opt | base measured ms | optimized measured ms | predicted ms | error % "
             "| base median ms | optimized median ms | predicted from median ms | error vs median % |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        med = (f"{r['base_step_ms']:.2f} | {r['optimized_step_ms']:.2f} | {r['predicted_median_ms']:.2f} | "
               f"{r['error_median_pct']:.1f}" if "base_step_ms" in r else "| | |")
        lines.append(f"| {r['pair']} | `{r['opt']}` | {r['base_measured_ms']:.3f} | {r['optimized_measured_ms']:.3f} | "
                     f"{r['predicted_ms']:.3f} | {r['error_pct']:.1f} | {med} |")
    return "\n".join(lines)


def calibrate_corpus() -> None:
    """Measure the bf16 calibration once (the pairs' thread count) and add it to every CPU run.json."""
    import torch

    from daydream.profile import calibrate
    doc = json.loads((PAIRS / "index.json").read_text())
    torch.set_num_threads(int(doc.get("threads") or 1))
    cal = {**calibrate.measure(), "recorded": "added to this committed run by "
           "benchmarks/validate_compute.py --calibrate-corpus on the machine that recorded the run"}
    for run_json in sorted(PAIRS.glob("cpu/*/*/run.json")):
        info = json.loads(run_json.read_text())
        info["calibration"] = {**(info.get("calibration") or {}), **cal}  # keeps e.g. the dataloader key
        tmp = run_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, run_json)
    print(json.dumps(cal, indent=2))


def calibrate_shapes() -> None:
    """Add the shape calibrations (daydream.profile.shapes) a CPU run.json lacks, re-timed here."""
    import torch

    from daydream.profile import shapes
    doc = json.loads((PAIRS / "index.json").read_text())
    torch.set_num_threads(int(doc.get("threads") or 1))
    note = ("added to this committed run by benchmarks/validate_compute.py --calibrate-shapes on the machine "
            "that recorded the run")
    for run_json in sorted(PAIRS.glob("cpu/*/*/run.json")):
        info = json.loads(run_json.read_text())
        cal = info.get("calibration") or {}
        # keep what `daydream profile` measured when it recorded the run; add the parts it did not
        measured = {k: v for k, v in shapes.measure_run_shapes(load(run_json.parent)).items() if k not in cal}
        for part in measured.values():
            part["recorded"] = note
        info["calibration"] = {**cal, **measured}
        tmp = run_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, run_json)
        print(f"{run_json.parent.relative_to(PAIRS)}: " + ", ".join(f"{k} {len(next(iter(v.values())))}"
                                                                   for k, v in measured.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/validation.md")
    ap.add_argument("--calibrate-corpus", action="store_true",
                    help="measure the bf16 calibration here and write it into traces/pairs CPU run.json files")
    ap.add_argument("--calibrate-shapes", action="store_true",
                    help="re-time each CPU run's own Linear/GEMM/attention shapes here, into its run.json")
    args = ap.parse_args()
    if args.calibrate_shapes:
        calibrate_shapes()
        return
    if args.calibrate_corpus:
        calibrate_corpus()
        return
    rows = [run(p) for p in pairs()]
    if args.json:
        print(json.dumps({"rows": rows, "cpu_pairs": (PAIRS / "index.json").exists()}))
    else:
        print(table(rows))
        if not (PAIRS / "index.json").exists():
            print("\n(traces/pairs/index.json not recorded yet: CPU pairs skipped)")
    if not args.no_docs:
        write_docs(rows)


SECTION = "## What-if: compute (amp, batch size, cross-GPU)"


def write_docs(rows: list[dict]) -> None:
    """Replace (or append) only this benchmark's section of docs/validation.md."""
    path = REPO / "docs" / "validation.md"
    text = path.read_text() if path.exists() else "# Validation\n"
    body = (SECTION + "\n\n" + (REPO / "benchmarks" / "validate_compute.md").read_text().strip()
            .replace("{{TABLE}}", table(rows)) + "\n")
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + ("" if nxt < 0 else "\n" + text[nxt + 1:])
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
