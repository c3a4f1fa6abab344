"""The CPU pair corpus error table: every pair of traces/pairs/index.json, its measured effect with
a 95% confidence interval, the predicted effect, and the error.

Measured effect (daydream.profile.capture.speedup_interval): each pair was timed in R alternating
blocks A B A B ... of S plain (unprofiled) steps; block i gives the ratio r_i of the base's to
the optimized configuration's block medians, the speedup is the geometric mean of the r_i and
its 95% interval the Student t interval of mean(ln r_i). A pair is *outside the noise band* when
that interval excludes 1 (no change); the <=10% goal applies to those pairs only.

Predicted effect: `daydream.whatif` on the base run's profiled trace with the pair's `--opt`
(dataloader pairs get `cores=os.cpu_count()` when the corpus was recorded on this host), as the
ratio of the step times *without the profiler's own cost* (`unprofiled_ms` /
`predicted_unprofiled_ms`, analysis.unprofiled_ms: the plain steps the interval measures carry no
profiler cost), or of the replayed/predicted profiled step times where a run has no profiler
cost figure.

    error % = 100 x |measured speedup / predicted speedup - 1|
            = 100 x |predicted ms - measured ms| / measured ms   with both applied to the base median
    (CONTRACT.md's error of the optimized step time, the base held at its interleaved median).

    python benchmarks/validate_pairs.py [--json] [--write-docs] [--index traces/pairs/index.json]
    python benchmarks/validate_pairs.py --calibrate-dataloader   # measure the DataLoader calibration
        here (daydream.profile.calibrate.measure_dataloader, the corpus's thread count) and add it to
        every CPU run.json of the corpus (runs recorded before `daydream profile` measured it)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daydream.trace import load  # noqa: E402
from daydream.whatif import whatif  # noqa: E402

PAIRS = REPO / "traces" / "pairs"
GOAL_PCT = 10.0
SECTION = "## CPU pair corpus: measured effects with confidence intervals"


def rows(index_path: Path) -> list[dict]:
    doc = json.loads(index_path.read_text())
    root = index_path.parent
    here = (doc.get("versions") or {}).get("platform") == platform.platform()
    out = []
    for p in doc["pairs"]:
        if "speedup_ci" not in p:
            raise SystemExit(f"{index_path}: pair {p['name']} has no interval (recorded before "
                             "`daydream capture --repetitions`); re-record the corpus")
        opt = p["whatif"]["opt"]
        if here and opt.startswith("dataloader") and "cores=" not in opt:
            opt += f",cores={os.cpu_count()}"
        w = whatif(load(root / p["base"]), [opt])
        if w.unprofiled_ms and w.predicted_unprofiled_ms:
            predicted, basis = w.unprofiled_ms / w.predicted_unprofiled_ms, "unprofiled"
        else:
            predicted, basis = w.replay_ms / w.predicted_ms, "profiled"
        measured = p["measured_speedup"]
        lo, hi = p["speedup_ci"]
        out.append({"pair": p["name"], "opt": opt, "base_ms": p["base_step_ms"],
                    "base_range_pct": p["base_spread"]["range_pct"], "optimized_ms": p["optimized_step_ms"],
                    "optimized_range_pct": p["optimized_spread"]["range_pct"], "measured_speedup": measured,
                    "ci": [lo, hi], "outside_noise": p["outside_noise"], "predicted_speedup": predicted,
                    "predicted_in_ci": lo <= predicted <= hi, "basis": basis,
                    "profiled_speedup": w.replay_ms / w.predicted_ms,
                    "error_pct": 100 * abs(measured / predicted - 1),
                    "profiled_error_pct": 100 * abs(measured * w.predicted_ms / w.replay_ms - 1),
                    "notes": list(w.notes)})
    return out


def table(rs: list[dict]) -> str:
    lines = ["| pair | --opt | base ms (range %) | optimized ms (range %) | measured speedup [95% CI] "
             "| outside noise | predicted speedup | predicted in CI | error % | profiled-ratio speedup | its error % |",
             "|---|---|---:|---:|---:|:---:|---:|:---:|---:|---:|---:|"]
    for r in rs:
        err = f"{r['error_pct']:.1f}"
        if r["outside_noise"] and r["error_pct"] > GOAL_PCT:
            err = f"**{err}**"
        lines.append(f"| {r['pair']} | `{r['opt']}` | {r['base_ms']:.2f} ({r['base_range_pct']:.0f}) "
                     f"| {r['optimized_ms']:.2f} ({r['optimized_range_pct']:.0f}) "
                     f"| {r['measured_speedup']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] "
                     f"| {'yes' if r['outside_noise'] else 'no'} | {r['predicted_speedup']:.3f} "
                     f"| {'yes' if r['predicted_in_ci'] else 'no'} | {err} | {r['profiled_speedup']:.3f} "
                     f"| {r['profiled_error_pct']:.1f} |")
    return "\n".join(lines)


def summary(rs: list[dict]) -> str:
    out = [r for r in rs if r["outside_noise"]]
    inside = [r for r in rs if not r["outside_noise"]]
    ok = [r for r in out if r["error_pct"] <= GOAL_PCT]
    med = statistics.median(r["error_pct"] for r in out) if out else float("nan")
    ok_p = [r for r in out if r["profiled_error_pct"] <= GOAL_PCT]
    med_p = statistics.median(r["profiled_error_pct"] for r in out) if out else float("nan")
    return (f"{len(rs)} pairs; {len(out)} with an effect outside the noise band (95% interval excludes 1), "
            f"{len(ok)} of them within {GOAL_PCT:g}% (median error {med:.1f}%); with the profiled-ratio "
            f"prediction instead, {len(ok_p)} within {GOAL_PCT:g}% (median {med_p:.1f}%); "
            f"{sum(r['predicted_in_ci'] for r in rs)} of {len(rs)} predictions inside the measured interval. "
            f"Inside the noise band (no goal applies): {', '.join(r['pair'] for r in inside) or 'none'}.")


def write_docs(rs: list[dict], index_path: Path) -> None:
    """Replace (or append) only this section of docs/validation.md."""
    doc = json.loads(index_path.read_text())
    path = REPO / "docs" / "validation.md"
    text = path.read_text()
    template = (REPO / "benchmarks" / "validate_pairs.md").read_text().strip()
    body = (SECTION + "\n\n" + template.replace("{{TABLE}}", table(rs)).replace("{{SUMMARY}}", summary(rs))
            .replace("{{CREATED}}", doc["created"] + "".join(f", {a}" for a in doc.get("appended", [])))
            .replace("{{REPS}}", f"{doc['repetitions']} x {doc['rep_steps']}") + "\n")
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + ("" if nxt < 0 else "\n" + text[nxt + 1:])
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def calibrate_dataloader(index_path: Path) -> None:
    """Measure the DataLoader calibration once and merge it into every CPU run.json's calibration."""
    import torch

    from daydream.profile import calibrate
    doc = json.loads(index_path.read_text())
    torch.set_num_threads(int(doc.get("threads") or 1))
    cal = calibrate.measure_dataloader()
    cal["dataloader"]["recorded"] = ("added to this committed run by benchmarks/validate_pairs.py "
                                     "--calibrate-dataloader on the machine that recorded the run")
    for run_json in sorted(index_path.parent.glob("cpu/*/*/run.json")):
        info = json.loads(run_json.read_text())
        info["calibration"] = {**(info.get("calibration") or {}), **cal}
        tmp = run_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, run_json)
    print(json.dumps(cal, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, default=PAIRS / "index.json")
    ap.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    ap.add_argument("--write-docs", action="store_true", help="rewrite this section of docs/validation.md")
    ap.add_argument("--calibrate-dataloader", action="store_true",
                    help="measure the DataLoader calibration here and add it to the corpus's CPU run.json files")
    args = ap.parse_args()
    if args.calibrate_dataloader:
        calibrate_dataloader(args.index)
        return
    rs = rows(args.index)
    if args.json:
        print(json.dumps({"rows": rs}))
    else:
        print(table(rs))
        print()
        print(summary(rs))
    if args.write_docs:
        write_docs(rs, args.index)


if __name__ == "__main__":
    main()
