"""Straggler what-if against measurement, on 2-rank gloo DDP jobs recorded here, noise-robust.

    python benchmarks/straggler_validation.py [--reps 12] [--slow-ms 80] [--active 8] [--batch 256] [--pin] [--keep DIR]
    python benchmarks/straggler_validation.py --analyze DIR     (runs recorded before)

Records `reps` interleaved pairs of traces/gloo_ddp_mlp/train.py under torchrun (base, slow, base,
slow, ...): `base` without any slowdown, `slow` with rank 1 burning SLOW_MS extra per step. One
compute thread per rank (torch, OMP, MKL); with --pin each rank is also pinned to its own core
(PIN_CORES=1), which here made runs noisier (a rank's gloo threads then share its one core;
docs/validation.md). Other processes on the machine compete too, which the repetitions and the
medians absorb. Then, per slow run, `whatif RUN --opt straggler:ranks=1` (the
coupled job prediction, daydream.job) gives the predicted step of the job without the slowdown;
per base run, the measured job step (slowest rank). Reported: both medians, their spread
(min-max, and the interquartile range), the error of the median prediction against the median
measurement, and each pair's error against the base run recorded next to it. Writes
benchmarks/results/straggler_validation.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "traces" / "gloo_ddp_mlp" / "train.py"
OUT = REPO / "benchmarks" / "results" / "straggler_validation.json"


def record(out: Path, slow_ms: float, active: int, pin: bool, batch: int) -> float:
    """One 2-rank run into `out` (rank0.json, rank1.json); returns its wall seconds."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OUT=str(out), SLOW_RANK="1", SLOW_RANK_MS=str(slow_ms), ACTIVE=str(active), BATCH=str(batch),
               PIN_CORES="1" if pin else "0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(TRAIN)], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"recording {out} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def figures(run: Path) -> dict:
    """Measured per rank (ms/step, compute, waiting) and, for a slow run, the straggler prediction."""
    from daydream.job.engine import Job
    from daydream.job.figures import per_rank
    from daydream.opts.params import parse_opt
    with Job(str(run), workers=0) as job:
        rows = per_rank(job)
        out = {"run": run.name, "measured_ms": float(job.measured_ms.max()),
               "replay_ms": float(job.replay.per_step_ms.max()),
               "per_rank": [{k: r[k] for k in ("rank", "measured_ms", "replay_ms", "compute_ms", "wait_ms")}
                            for r in rows]}
        if run.name.startswith("slow"):
            pred = job.predict([parse_opt("straggler:ranks=1")])
            out["predicted_ms"] = float(pred.coupled.per_step_ms.max())
    return out


def spread(values) -> dict:
    v = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": round(float(med), 3), "min": round(float(v.min()), 3), "max": round(float(v.max()), 3),
            "q1": round(float(q1), 3), "q3": round(float(q3), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--slow-ms", type=float, default=80.0)
    ap.add_argument("--active", type=int, default=8, help="profiled steps per run")
    ap.add_argument("--batch", type=int, default=256, help="rows per step (the MLP is 6 x 512 wide)")
    ap.add_argument("--pin", action="store_true", help="pin rank r to core r (default: the OS places them; "
                                                       "pinned, a rank's gloo threads share its one core)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the JSON result goes")
    ap.add_argument("--keep", type=Path, default=None, help="record into this directory and keep it")
    ap.add_argument("--analyze", type=Path, default=None, help="analyze runs recorded before in this directory")
    args = ap.parse_args()
    base = args.analyze or args.keep or Path(tempfile.mkdtemp(prefix="daydream-straggler-"))
    if not args.analyze:
        for i in range(args.reps):
            for kind, ms in (("base", 0.0), ("slow", args.slow_ms)):
                wall = record(base / f"{kind}{i:02d}", ms, args.active, args.pin, args.batch)
                print(f"recorded {kind}{i:02d} in {wall:.1f} s (load average {os.getloadavg()[0]:.2f})", flush=True)
    runs = sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith(("base", "slow")))
    rows = [figures(r) for r in runs]
    bases = [r for r in rows if r["run"].startswith("base")]
    slows = [r for r in rows if r["run"].startswith("slow")]
    for r in rows:
        ranks = "  ".join(f"r{p['rank']}: {p['measured_ms']:.2f} (compute {p['compute_ms']:.2f}, wait {p['wait_ms']:.2f})"
                          for p in r["per_rank"])
        pred = f"  predicted unslowed {r['predicted_ms']:.2f}" if "predicted_ms" in r else ""
        print(f"{r['run']}: job {r['measured_ms']:.2f} ms  {ranks}{pred}")
    measured = spread([r["measured_ms"] for r in bases])
    predicted = spread([r["predicted_ms"] for r in slows])
    error = 100 * abs(predicted["median"] - measured["median"]) / measured["median"]
    pairs = [{"slow": s["run"], "base": b["run"], "predicted_ms": round(s["predicted_ms"], 3),
              "measured_ms": round(b["measured_ms"], 3),
              "error_pct": round(100 * abs(s["predicted_ms"] - b["measured_ms"]) / b["measured_ms"], 2)}
             for b, s in zip(bases, slows)]
    unslowed_compute = spread([p["compute_ms"] for r in bases for p in r["per_rank"]])
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "reps": len(bases), "slow_ms": args.slow_ms, "batch": args.batch, "pinned": None if args.analyze else args.pin, "active_steps": args.active,
              "measured_unslowed_ms": measured, "predicted_unslowed_ms": predicted,
              "slowed_measured_ms": spread([r["measured_ms"] for r in slows]),
              "unslowed_rank_compute_ms": unslowed_compute,
              "error_of_medians_pct": round(error, 2), "pairs": pairs, "runs": rows}
    print(f"unslowed job measured: median {measured['median']:.2f} ms (IQR {measured['q1']:.2f}-{measured['q3']:.2f}, "
          f"range {measured['min']:.2f}-{measured['max']:.2f})")
    print(f"predicted from slowed runs: median {predicted['median']:.2f} ms (IQR {predicted['q1']:.2f}-"
          f"{predicted['q3']:.2f}, range {predicted['min']:.2f}-{predicted['max']:.2f})")
    print(f"error of the medians: {error:.2f}%;  per pair: " + ", ".join(f"{p['error_pct']:.1f}%" for p in pairs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
