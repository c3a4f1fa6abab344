"""Daydream against Meta's Holistic Trace Analysis (HTA): wall time and peak RSS, side by side.

For each trace it runs, as separate processes and in alternating order:
  daydream: `daydream whatif TRACE --json` (load, dependency graph, replay of every step), and
  HTA:      `hta_critical_path.py TRACE` in benchmarks/.venv-hta (TraceAnalysis load plus
            critical_path_analysis of one ProfilerStep),
and reports the median over --repeat runs after --warmup untimed runs (which fill the page cache,
so neither tool is charged for the first read of the file from disk). A third process, the floor,
only starts Python and imports what daydream cannot start without (numpy, click, msgspec): HTA's
time over the floor's is the largest ratio any tool built on those could reach on this machine. Ratios are HTA / daydream:
above 1 means daydream is faster or smaller. The project's target is a time ratio of at least 10
and an RSS ratio above 1. CPU time (user + system) is reported beside wall time because it barely
moves when other jobs load the machine, while wall time can double.

Usage: python benchmarks/bench_vs_hta.py [TRACE ...] [--repeat 3] [--warmup 1]
Needs benchmarks/setup_hta.sh to have been run once. Writes benchmarks/results/bench_vs_hta.json.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from measure import (Measurement, daydream_command, hta_python, machine_info, median,
                     run_measured, write_json_atomic)

HERE = Path(__file__).resolve().parent
SHARED_TRACES = HERE.parent.parent / "shared" / "traces"
DEFAULT_TRACES = [SHARED_TRACES / "hta" / "ns_resolution_a100.json.gz",
                  SHARED_TRACES / "hta" / "nccl_2rank_a100_rank0.json.gz"]
DEFAULT_OUT = HERE / "results" / "bench_vs_hta.json"
TARGET_TIME_RATIO = 10.0
FLOOR = "import numpy, click, msgspec; print('{}')"  # start-up and imports daydream cannot do without
TARGET_RSS_RATIO = 1.0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", type=Path, default=DEFAULT_TRACES)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tool and trace")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run")
    parser.add_argument("--annotation", default="ProfilerStep", help="HTA's step annotation")
    parser.add_argument("--instance", type=int, default=1, help="which step HTA analyses")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be at least 1 and --warmup at least 0")
    return args


def _failure(m: Measurement) -> str | None:
    """Why a run failed, in one line, or None when it succeeded and printed one JSON object."""
    if m.timed_out:
        return "timed out"
    if m.returncode != 0:
        last = next((ln for ln in reversed(m.stderr.splitlines()) if ln.strip()), "")
        return f"exit {m.returncode}: {last.strip()[:200]}"
    try:
        json.loads(m.stdout)
    except ValueError:
        return "stdout is not one JSON object"
    return None


def _summarise(cmd: list[str], runs: list[Measurement]) -> dict:
    """Median and spread over the successful runs; the first failure's reason if any failed."""
    failures = [f for f in map(_failure, runs) if f]
    good = [m for m in runs if _failure(m) is None]
    walls = [round(m.wall_s, 4) for m in good]
    cpus = [round(m.cpu_s, 4) for m in good]
    rsss = [round(m.peak_rss_mb, 1) for m in good]
    return {
        "command": cmd,
        "ok": not failures,
        "error": failures[0] if failures else None,
        "wall_s": {"median": median(walls), "min": min(walls, default=None),
                   "max": max(walls, default=None), "runs": walls},
        "cpu_s": {"median": median(cpus), "runs": cpus},
        "peak_rss_mb": {"median": median(rsss), "max": max(rsss, default=None), "runs": rsss},
        "output": json.loads(good[-1].stdout) if good else None,
    }


def _ratio(hta: dict, daydream: dict, key: str) -> float | None:
    if not (hta["ok"] and daydream["ok"]):
        return None
    return round(hta[key]["median"] / daydream[key]["median"], 2)


def _versions() -> dict:
    hta = subprocess.run(
        [str(hta_python()), "-c",
         "import importlib.metadata as m; print(m.version('HolisticTraceAnalysis'))"],
        capture_output=True, text=True)
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True)
    return {"daydream": importlib.metadata.version("daydream"),
            "daydream_commit": commit.stdout.strip() or None,
            "hta": hta.stdout.strip() or None}


def _bench_trace(trace: Path, args: argparse.Namespace, progress: Progress, task) -> dict:
    commands = {
        "daydream": daydream_command() + ["whatif", str(trace), "--json"],
        "hta": [str(hta_python()), str(HERE / "hta_critical_path.py"), str(trace),
                "--annotation", args.annotation, "--instance", str(args.instance)],
        "floor": [sys.executable, "-c", FLOOR],
    }
    runs: dict[str, list[Measurement]] = {tool: [] for tool in commands}
    for i in range(args.warmup + args.repeat):
        order = list(commands)[i % 3:] + list(commands)[:i % 3]  # each tool goes first in turn
        for tool in order:
            progress.update(task, description=f"{trace.name}: {tool}")
            m = run_measured(commands[tool], timeout_s=args.timeout)
            if i >= args.warmup:
                runs[tool].append(m)
            progress.advance(task)
    daydream = _summarise(commands["daydream"], runs["daydream"])
    hta = _summarise(commands["hta"], runs["hta"])
    floor = _summarise(commands["floor"], runs["floor"])
    time_ratio = _ratio(hta, daydream, "wall_s")
    cpu_ratio = _ratio(hta, daydream, "cpu_s")
    rss_ratio = _ratio(hta, daydream, "peak_rss_mb")
    return {
        "trace": trace.name,
        "path": str(trace),
        "daydream": daydream,
        "hta": hta,
        "floor": floor,
        "floor_time_ratio": _ratio(hta, floor, "wall_s"),
        "time_ratio": time_ratio,
        "cpu_ratio": cpu_ratio,
        "rss_ratio": rss_ratio,
        "meets_target": (time_ratio is not None and rss_ratio is not None
                         and time_ratio >= TARGET_TIME_RATIO and rss_ratio > TARGET_RSS_RATIO),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _print(results: list[dict], console: Console) -> None:
    table = Table(title="daydream whatif vs HTA load + critical path (median of runs)")
    for col, just in [("trace", "left"), ("tool", "left"), ("wall s", "right"),
                      ("min–max s", "right"), ("CPU s", "right"), ("peak RSS MiB", "right"),
                      ("status", "left")]:
        table.add_column(col, justify=just, no_wrap=True)
    for r in results:
        for tool in ("daydream", "hta", "floor"):
            s = r[tool]
            spread = (f"{s['wall_s']['min']:.2f}–{s['wall_s']['max']:.2f}"
                      if s["wall_s"]["runs"] else "—")
            status = "[green]ok[/]" if s["ok"] else "[red]failed[/]"
            table.add_row(r["trace"] if tool == "daydream" else "", tool,
                          _fmt(s["wall_s"]["median"], ".3f"), spread,
                          _fmt(s["cpu_s"]["median"], ".3f"),
                          _fmt(s["peak_rss_mb"]["median"], ".0f"), status)
        verdict = ("[green]meets target[/]" if r["meets_target"]
                   else "[yellow]below target[/]" if r["time_ratio"] is not None
                   else "[red]no ratio[/]")
        table.add_row("", "ratio HTA/dd", _fmt(r["time_ratio"], ".1f") + "×", "",
                      _fmt(r["cpu_ratio"], ".1f") + "×",
                      _fmt(r["rss_ratio"], ".2f") + "×", verdict)
        table.add_row("", "HTA/floor", _fmt(r["floor_time_ratio"], ".1f") + "×", "", "", "",
                      "ceiling", end_section=True)
    console.print(table)
    for r in results:
        for tool in ("daydream", "hta"):
            if not r[tool]["ok"]:
                console.print(f"[red]{tool} failed on {r['trace']}:[/] {r[tool]['error']}")
    console.print(f"target: time ratio ≥ {TARGET_TIME_RATIO:g}× and RSS ratio > "
                  f"{TARGET_RSS_RATIO:g}×; floor: python -c \"{FLOOR}\", so HTA/floor is the "
                  "ceiling for any tool that starts Python and imports numpy")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # Piped into a file or a log, rich would fall back to 80 columns and clip the table.
    console = Console(width=None if sys.stdout.isatty() else 110)
    if not hta_python().exists():
        console.print(f"[red]no HTA environment at {hta_python()}: run benchmarks/setup_hta.sh[/]")
        return 2
    missing = [str(t) for t in args.traces if not t.is_file()]
    if missing:
        console.print(f"[red]no such trace: {', '.join(missing)}[/]")
        return 2

    results = []
    total = len(args.traces) * (args.warmup + args.repeat) * 3
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmark", total=total)
        for trace in args.traces:
            results.append(_bench_trace(trace.resolve(), args, progress, task))
    _print(results, console)

    report = {
        "benchmark": "bench_vs_hta",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": _versions(),
        "repeat": args.repeat,
        "warmup": args.warmup,
        "target": {"time_ratio_min": TARGET_TIME_RATIO, "rss_ratio_above": TARGET_RSS_RATIO},
        "traces": results,
    }
    write_json_atomic(args.out, json.dumps(report, indent=2) + "\n")
    console.print(f"results written to {args.out}")
    return 0 if all(r["daydream"]["ok"] and r["hta"]["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
