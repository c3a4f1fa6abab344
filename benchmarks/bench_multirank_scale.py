"""`daydream analyze` on 256- and 1,024-rank jobs: in process against a Dask LocalCluster.

No public trace of that many ranks exists in ../shared/traces, so jobs are built from the real
8-rank DLRM archive (param/dlrm_ddp_8rank_v100.tar.gz): rank r of an N-rank job is a copy of DLRM
rank r mod 8 with `distributedInfo` saying rank r of N, and every non-NCCL kernel's duration
multiplied by a jitter drawn per rank from U(0.90, 1.00) (shrunk, never stretched, so kernels of a
stream never overlap). Collectives are untouched: every rank holds the same sequence, so they stay
matched. One `.json.gz` per rank in a temporary directory, or with `--archive` one `.tar.gz` of
`rank<r>.json` members (the layout of the DLRM archive itself: every member is inflated from one
gzip stream, so reading rank r must not start over from the archive's first byte).

Each configuration runs in its own process (so peak RSS is its own): the `analyze --json` work
(Job + the job's analysis: per-rank table, stragglers, collectives, the slowest rank's timeline)
with `--workers 0` (in process) and `--workers 2` (a LocalCluster of two worker processes). It
reports wall time, peak RSS of the coordinating process and of each worker (ru_maxrss, read in
every worker before the cluster closes) and the serial/parallel ratio, and checks that both give
the same per-rank figures. Writes benchmarks/results/bench_multirank_scale.json (with --archive:
bench_multirank_scale_archive.json).

Usage: python benchmarks/bench_multirank_scale.py [--ranks 256 1024] [--archive] [--workers 0 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
DLRM = REPO.parent / "shared" / "traces" / "param" / "dlrm_ddp_8rank_v100.tar.gz"
OUT = REPO / "benchmarks" / "results" / "bench_multirank_scale.json"


def build_job(n: int, out: Path, seed: int = 0, archive: bool = False) -> Path:
    """Write an n-rank job into `out`, or into `out`.tar.gz (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(DLRM) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".json")]
        docs = [orjson.loads(tar.extractfile(m).read()) for m in members]
    docs.sort(key=lambda d: d["distributedInfo"]["rank"])
    rng = np.random.default_rng(seed)
    for r in range(n):
        doc = dict(docs[r % len(docs)])
        doc["distributedInfo"] = dict(doc["distributedInfo"], rank=r, world_size=n)
        jitter = rng.uniform(0.90, 1.00)
        events = []
        for ev in doc["traceEvents"]:
            if ev.get("cat") == "kernel" and "nccl" not in ev.get("name", "").lower() and "dur" in ev:
                ev = dict(ev, dur=round(ev["dur"] * jitter, 3))
            events.append(ev)
        doc["traceEvents"] = events
        if archive:
            (out / f"rank{r:05d}.json").write_bytes(orjson.dumps(doc))
        else:
            with gzip.open(out / f"rank{r:05d}.json.gz", "wb", compresslevel=1) as f:
                f.write(orjson.dumps(doc))
    if not archive:
        return out
    packed = out.with_name(out.name + ".tar.gz")
    with tarfile.open(packed, "w:gz", compresslevel=1) as tar:
        for f in sorted(out.iterdir()):
            tar.add(f, arcname=f"{out.name}/{f.name}")
            f.unlink()
    out.rmdir()
    return packed


def run_one(path: str, workers: int) -> dict:
    """One configuration, in this process: what `daydream analyze --json` does on a job."""
    from daydream.cli._job import analyze_json
    from daydream.job.engine import Job
    t0 = time.perf_counter()
    job = Job(path, workers=workers)
    result, _ = analyze_json(job, path)
    wall = time.perf_counter() - t0
    worker_rss = []
    if workers:
        rss = job._exec.client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        worker_rss = sorted(v / 1024 for v in rss.values())
    job.close()
    return {"workers": workers, "wall_s": round(wall, 3),
            "coordinator_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "worker_peak_rss_mb": [round(v, 1) for v in worker_rss],
            "ranks": result["ranks"], "measured_ms": result["measured_ms"], "replay_ms": result["replay_ms"],
            "stragglers": len(result["stragglers"]),
            "per_rank_digest": hashlib.sha256(json.dumps(result["per_rank"], sort_keys=True).encode()).hexdigest()[:16]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--archive", action="store_true", help="one .tar.gz per job instead of a directory")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="configurations to time")
    ap.add_argument("--keep", type=Path, default=None, help="build the jobs here and keep them")
    ap.add_argument("--one", nargs=2, metavar=("PATH", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]))))
        return
    base = args.keep or Path(tempfile.mkdtemp(prefix="daydream-scale-"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rows = []
    for n in args.ranks:
        t0 = time.perf_counter()
        job = build_job(n, base / f"job{n}", archive=args.archive)
        built = time.perf_counter() - t0
        size = job.stat().st_size if args.archive else sum(f.stat().st_size for f in job.iterdir())
        for workers in args.workers:
            proc = subprocess.run([sys.executable, __file__, "--one", str(job), str(workers)], env=env,
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{n} ranks, workers={workers} failed:\n{proc.stderr[-3000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update(n_ranks=n, layout="archive" if args.archive else "directory", build_s=round(built, 1),
                       job_gz_mb=round(size / 1e6, 1))
            rows.append(row)
            print(json.dumps(row), flush=True)
        if len(args.workers) < 2:
            continue
        a, b = rows[-2], rows[-1]
        if a["per_rank_digest"] != b["per_rank_digest"] or a["replay_ms"] != b["replay_ms"]:
            raise SystemExit(f"{n} ranks: results differ between workers=0 and workers=2")
        b["serial_over_parallel"] = round(a["wall_s"] / b["wall_s"], 3)
    out = OUT.with_name(OUT.stem + "_archive.json") if args.archive else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                               "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
