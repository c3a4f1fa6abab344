"""`daydream profile -- SCRIPT` checked end to end: whole-step windows, replay, plain step time, the
profiler's overhead by setting and the step time without the profiler (docs/profiling.md).

    python benchmarks/profile_overhead.py [--models tiny,resnet50,...] [--out DIR] [--write-docs]

For the small transformer classifier of benchmarks/scripts/tiny_transformer.py ("tiny") and every
TBD suite model run as a plain script (benchmarks/scripts/suite_train.py NAME), on CPU, one thread:
  1. `daydream profile --steps 5 --warmup 3 --time-steps 10 -- python SCRIPT --steps 24`; from the run
     directory: measured (window / steps), replay, the mean of the kept ProfilerStep spans,
     plain_step_ms (run.json) and unprofiled_ms (analyze);
  2. an independent timing of the same script without daydream: its loop timed over N and 4N steps
     in two processes, (t(4N) - t(N)) / 3N, so start-up and warm-up cancel (N = 5), three such
     pairs interleaved, medians; wall clock and the loop thread's CPU time;
  3. the profiler's overhead by setting, in one process: blocks of BLOCK steps under no profiler,
     CPU activity alone, + record_shapes, + profile_memory, + with_stack and with_modules (daydream's
     settings), ROUNDS rounds alternating, median thread CPU time per step (time.thread_time: the
     other engineers' processes on this shared machine do not inflate it the way they do wall time).
Results go to OUT/profile_overhead.json (rewritten after every model) and, with --write-docs, the
table replaces the `## Measured` section of docs/profiling.md.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "benchmarks" / "scripts"
SUITE = ("resnet50", "inception_v3", "seq2seq", "transformer", "detection", "deepspeech2", "wgan", "a3c",
         "bert", "llama", "vit", "dit")
N = 5
PAIRS = 3
ROUNDS, BLOCK = 3, 3
SETTINGS = {
    "plain": None,
    "cpu": {},
    "+shapes": {"record_shapes": True},
    "+memory": {"record_shapes": True, "profile_memory": True},
    "+stack": {"record_shapes": True, "profile_memory": True, "with_stack": True, "with_modules": True},
}


def command(model: str, steps: int) -> list[str]:
    if model == "tiny":
        return [sys.executable, str(SCRIPTS / "tiny_transformer.py"), "--steps", str(steps)]
    return [sys.executable, str(SCRIPTS / "suite_train.py"), model, "--steps", str(steps)]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def loop_ms(model: str, steps: int) -> tuple[float, float, int]:
    """(wall ms, thread CPU ms, optimizer steps) of the script's training loop of `steps` loop steps."""
    out = subprocess.run(command(model, steps) + ["--report-time"], capture_output=True, text=True, env=env(),
                         check=True).stdout
    m = re.search(r"loop_ms ([\d.]+) cpu_ms ([\d.]+) steps (\d+)(?: optimizer_steps (\d+))?", out)
    return float(m.group(1)), float(m.group(2)), int(m.group(4) or m.group(3))


def independent_ms(model: str) -> tuple[float, float]:
    """Per-step (wall, CPU) ms from (t(4N) - t(N)) / (k(4N) - k(N)), k the optimizer steps the loop ran
    (daydream's step, the unit of plain_step_ms: wgan's loop step holds 6), PAIRS pairs of runs
    interleaved, medians: load from other processes that changes between two runs would otherwise
    land in the difference."""
    walls, cpus = [], []
    for _ in range(PAIRS):
        (w1, c1, k1), (w4, c4, k4) = loop_ms(model, N), loop_ms(model, 4 * N)
        walls.append((w4 - w1) / (k4 - k1))
        cpus.append((c4 - c1) / (k4 - k1))
    return statistics.median(walls), statistics.median(cpus)


def profiled(model: str, out_dir: Path) -> dict:
    run_dir = out_dir / model
    proc = subprocess.run([sys.executable, "-c", "from daydream.cli import main; main()", "profile", "--steps", "5",
                           "--warmup", "3", "--time-steps", "10", "--out", str(run_dir), "--json", "--",
                           *command(model, 24)], capture_output=True, text=True, env=env())
    if proc.returncode != 0:
        raise RuntimeError(f"{model}: daydream profile exited {proc.returncode}: {proc.stderr[-2000:]}")
    return analyzed(run_dir)


def analyzed(run_dir: Path) -> dict:
    """The columns read off a profiled run directory by the current daydream."""
    from daydream.analysis import analyze
    from daydream.graph import build_graph
    from daydream.sim import simulate
    from daydream.trace import load
    run = json.loads((run_dir / "run.json").read_text())
    trace = load(run_dir)
    with gzip.open(run_dir / "trace.json.gz", "rb") as f:
        events = json.loads(f.read())["traceEvents"]
    steps = [e["dur"] / 1e3 for e in events if e.get("ph") == "X" and e.get("cat") != "gpu_user_annotation"
             and str(e.get("name", "")).startswith("ProfilerStep#")]
    from daydream.transform import profiler_cost
    timeline = simulate(build_graph(trace))
    result = analyze(trace, timeline)
    graph = timeline.graph
    cost = profiler_cost.event_cost_of(trace, graph)
    charged_us = profiler_cost.profiler_cost_ns(graph, cost.us_per_event, cost.outside_model_us)[
        graph.column("in_window")].sum() / 1e3 / max(trace.steps, 1)
    return {"measured_ms": trace.measured_ms, "replay_ms": timeline.per_step_ms,
            # what the model charges per recorded event of a window step, all kinds and phases
            "charged_us_per_event_run": charged_us / max(sum(profiler_cost.events_per_step(trace).values()), 1),
            "mean_profiler_step_ms": statistics.mean(steps), "steps": trace.steps,
            "plain_step_ms": run["plain_step_ms"], "profiled_step_ms": run["profiled_step_ms"],
            "unprofiled_ms": result["unprofiled_ms"], "us_per_event": result["profiler_cost"]["us_per_event"],
            "cost_source": result["profiler_cost"]["source"],
            "calibrated_us_per_event": run["profiler_event_cost"]["us_per_event_wall"],
            "complete": run["complete"]}


SETTINGS_RUNNER = r'''
import json, statistics, sys, time, torch
sys.path.insert(0, sys.argv[3])
from torch.profiler import ProfilerActivity, profile
torch.set_num_threads(1)
model, settings = sys.argv[1], json.loads(sys.argv[2])
rounds, block = int(sys.argv[4]), int(sys.argv[5])
if model == "tiny":
    from tiny_transformer import make_step
    s = make_step(); step = lambda: s(0)
else:
    import tbd_suite
    w = tbd_suite.get(model).build("small", device="cpu"); step = w.step
for _ in range(3):
    step()
times = {k: [] for k in settings}
for r in range(rounds):
    for name, kw in settings.items():
        prof = None if kw is None else profile(activities=[ProfilerActivity.CPU], **kw)
        if prof: prof.start()
        for i in range(block + 1):
            t0 = time.thread_time(); step(); dt = time.thread_time() - t0
            if i:  # the first step of a block pays the profiler's start
                times[name].append(1e3 * dt)
        if prof: prof.stop()
        if prof and r == rounds - 1 and name == list(settings)[-1]:  # events per step, daydream's settings
            import os, tempfile
            from daydream.profile.overhead import _count
            with tempfile.TemporaryDirectory() as tmp:
                prof.export_chrome_trace(os.path.join(tmp, "t.json"))
                with open(os.path.join(tmp, "t.json")) as f:
                    counts = _count(json.load(f)["traceEvents"])
print(json.dumps({"cpu_ms": {k: statistics.median(v) for k, v in times.items()},
                  "events_per_step": {k: v / (block + 1) for k, v in counts.items()}}))
'''


def overhead_by_setting(model: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SETTINGS_RUNNER, model, json.dumps(SETTINGS), str(SCRIPTS),
                          str(ROUNDS), str(BLOCK)], capture_output=True, text=True, env=env(), check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    med = got["cpu_ms"]
    return {"cpu_ms": med, "overhead_pct": {k: 100 * (v / med["plain"] - 1) for k, v in med.items() if k != "plain"},
            "events_per_step": got["events_per_step"]}


def paid_vs_calibrated(row: dict) -> dict:
    """The profiler's cost per recorded event in this model, measured in one process (daydream's settings
    vs none, thread CPU time, the same steps), against what the run's calibration charges for the same
    events: where the two differ, unprofiled_ms misses plain_step_ms by the difference."""
    n = row["events_per_step"]
    paid_ms = row["cpu_ms"]["+stack"] - row["cpu_ms"]["plain"]
    total = sum(n.values()) or 1
    if "charged_us_per_event_run" in row:  # the run's own charge, split between phases where it is
        return {"paid_us_per_event": 1e3 * paid_ms / total, "charged_us_per_event": row["charged_us_per_event_run"]}
    charged_ms = sum(row["us_per_event"].get(k, 0.0) * v for k, v in n.items()) / 1e3
    return {"paid_us_per_event": 1e3 * paid_ms / total, "charged_us_per_event": 1e3 * charged_ms / total}


def measure(model: str, out_dir: Path) -> dict:
    t0 = time.perf_counter()
    row = {"model": model, **profiled(model, out_dir)}
    row["independent_ms"], row["independent_cpu_ms"] = independent_ms(model)
    row.update(overhead_by_setting(model))
    row.update(paid_vs_calibrated(row))
    m, r, p = row["measured_ms"], row["replay_ms"], row["mean_profiler_step_ms"]
    row["replay_error_pct"] = 100 * abs(r - m) / m
    row["window_vs_steps_pct"] = 100 * abs(m - p) / p
    row["plain_vs_independent_pct"] = 100 * (row["plain_step_ms"] - row["independent_ms"]) / row["independent_ms"]
    row["unprofiled_vs_plain_pct"] = 100 * (row["unprofiled_ms"] - row["plain_step_ms"]) / row["plain_step_ms"]
    row["unprofiled_vs_independent_pct"] = 100 * (row["unprofiled_ms"] - row["independent_ms"]) / row["independent_ms"]
    row["seconds"] = time.perf_counter() - t0
    return row


def table(rows: list[dict]) -> str:
    head = ("| model | steps | measured ms | mean ProfilerStep ms | \\|m−s\\| % | replay ms | \\|r−m\\| % | plain ms "
            "| independent ms (CPU ms) | plain vs indep. % | unprofiled ms | unprof. vs plain % | unprof. vs indep. % "
            "| overhead cpu / +shapes / +memory / +stack % | µs/event paid / charged (source) | load |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        o = r["overhead_pct"]
        lines.append(
            f"| {r['model']} | {r['steps']} | {r['measured_ms']:.2f} | {r['mean_profiler_step_ms']:.2f} | "
            f"{r['window_vs_steps_pct']:.2f} | {r['replay_ms']:.2f} | {r['replay_error_pct']:.2f} | "
            f"{r['plain_step_ms']:.2f} | {r['independent_ms']:.2f} ({r['independent_cpu_ms']:.2f}) | {r['plain_vs_independent_pct']:+.1f} | "
            f"{r['unprofiled_ms']:.2f} | {r['unprofiled_vs_plain_pct']:+.1f} | "
            f"{_fmt(r.get('unprofiled_vs_independent_pct'))} | "
            f"{o['cpu']:.0f} / {o['+shapes']:.0f} / {o['+memory']:.0f} / {o['+stack']:.0f} | "
            f"{r['paid_us_per_event']:.2f} / {r['charged_us_per_event']:.2f} ({r.get('cost_source', 'calibration')}) "
            f"| {r['load_average']:.1f} |")
    within = [r for r in rows if abs(r["unprofiled_vs_plain_pct"]) <= 15]
    indep = [r for r in rows if r.get("unprofiled_vs_independent_pct") is not None]
    within_indep = [r for r in indep if abs(r["unprofiled_vs_independent_pct"]) <= 15]
    lines.append(f"\nunprofiled_ms within 15% of plain_step_ms on {len(within)} of {len(rows)} (in-sample where the "
                 f"source is `run`); within 15% of the independent timing on {len(within_indep)} of {len(indep)}.")
    return "\n".join(lines)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:+.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny," + ",".join(SUITE))
    parser.add_argument("--out", default=str(REPO / "runs" / "profile_overhead"))
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "profile_overhead.json"))
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--from-results", action="store_true", help="only print (and --write-docs) the saved table")
    parser.add_argument("--reanalyze", action="store_true",
                        help="with --from-results: recompute the columns read off the run directories (OUT/MODEL, "
                             "kept from the measuring run) with this daydream; the timings stay as measured")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.from_results:
        rows, models = json.loads(Path(args.results).read_text())["rows"], []
        if args.reanalyze:
            for r in rows:
                r.update(analyzed(out / r["model"]))
                r.update(paid_vs_calibrated(r))
                r["unprofiled_vs_plain_pct"] = 100 * (r["unprofiled_ms"] - r["plain_step_ms"]) / r["plain_step_ms"]
                r["unprofiled_vs_independent_pct"] = (100 * (r["unprofiled_ms"] - r["independent_ms"])
                                                      / r["independent_ms"])
                r["reanalyzed"] = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
            Path(args.results).write_text(json.dumps({"rows": rows}, indent=1))
    for model in models:
        try:
            rows.append(measure(model, out))
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"{model}: failed: {exc}", file=sys.stderr)
            continue
        r = rows[-1]
        print(f"{model:13s} measured {r['measured_ms']:8.2f} steps-mean {r['mean_profiler_step_ms']:8.2f} "
              f"replay {r['replay_ms']:8.2f} plain {r['plain_step_ms']:8.2f} indep {r['independent_ms']:8.2f} "
              f"unprof {r['unprofiled_ms']:8.2f} ({r['unprofiled_vs_plain_pct']:+.1f}%) "
              f"overhead {json.dumps({k: round(v) for k, v in r['overhead_pct'].items()})} "
              f"us/event paid {r['paid_us_per_event']:.2f} charged {r['charged_us_per_event']:.2f} [{r['seconds']:.0f}s]",
              flush=True)
        r["load_average"] = os.getloadavg()[0]
        r["measured_at"] = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
        Path(args.results).write_text(json.dumps({"rows": rows}, indent=1))
    print(table(rows))
    if args.write_docs:
        doc = REPO / "docs" / "profiling.md"
        text = doc.read_text()
        loads = [r["load_average"] for r in rows]
        when = (f"{rows[0].get('measured_at', 'earlier')} to {rows[-1].get('measured_at', '')[11:]}, re-analysed {rows[0]['reanalyzed']} (`--reanalyze`: the "
                "run directories' columns read again by the current daydream, timings as measured)"
                if args.from_results and rows and rows[0].get("reanalyzed")
                else time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
        body = (f"Measured {when} by `python benchmarks/profile_overhead.py` "
                f"(CPU, 1 thread; 1-minute load average {min(loads):.1f} to {max(loads):.1f} on the 2 cores this "
                "machine shares among other engineers' jobs, the `load` column).\n\n" + table(rows) + "\n")
        text = re.sub(r"(## Measured\n\n)(.*?)(?=\n### |\n## |\Z)", lambda m: m.group(1) + body, text, flags=re.S)
        doc.write_text(text)


if __name__ == "__main__":
    main()
