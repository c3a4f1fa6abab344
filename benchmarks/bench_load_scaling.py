"""How daydream (and HTA) cope with a million-event trace.

No public trace that large exists in ../shared/traces, so one is synthesized from the real A100
trace ns_resolution_a100.json.gz: everything from the first ProfilerStep on is copied K times, each
copy shifted later by one block length plus a 1 ms gap, with every identifier that links events
(flow ids and `correlation`, which ac2g flows share, `External id`, `Ev Idx`, `Sequence number`,
Python ids) offset past the previous copy's, and ProfilerStep numbers continued. The result is a
valid Kineto trace of K × 5 steps whose launch/kernel/flow structure is the real one.

Then, each as its own measured process: `daydream whatif TRACE --json` (load + graph + replay),
daydream's loader alone (`daydream.trace.load`), and HTA (load + critical path of one step) under
--hta-timeout. Writes benchmarks/results/bench_load_scaling.json.

Usage: python benchmarks/bench_load_scaling.py [--events 1000000] [--keep OUT.json.gz]
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from measure import (Measurement, daydream_command, hta_python, machine_info, median,
                     run_measured, write_json_atomic)

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "shared" / "traces" / "hta" / "ns_resolution_a100.json.gz"
DEFAULT_OUT = HERE / "results" / "bench_load_scaling.json"
STEP_RE = re.compile(r"^ProfilerStep#(\d+)$")
GAP_US = 1000  # idle time between copies, microseconds (Kineto's `ts` unit)

# Identifiers that tie events together, each offset per copy so copies never link to each other.
# Flow `id`s of ac2g arrows equal the launch's `correlation`, so the two share one offset.
ID_GROUPS = {"correlation": ("correlation",), "External id": ("External id",),
             "Ev Idx": ("Ev Idx",), "Sequence number": ("Sequence number",),
             "Python id": ("Python id", "Python parent id")}

# Runs daydream's loader alone in a fresh process and reports what it loaded.
LOAD_ONLY = """
import json, sys, time
t0 = time.perf_counter()
from daydream.trace import load
t1 = time.perf_counter()
trace = load(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": round(t1 - t0, 4), "load_s": round(t2 - t1, 4),
                  "events": int(len(trace.events))}))
"""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="trace to replicate")
    parser.add_argument("--events", type=int, default=1_000_000, help="events to reach, at least")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each daydream command")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per daydream run")
    parser.add_argument("--hta-timeout", type=float, default=300.0,
                        help="seconds HTA may take before it is stopped and noted as such")
    parser.add_argument("--skip-hta", action="store_true")
    parser.add_argument("--keep", type=Path, help="also save the synthetic trace here")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.events < 1:
        parser.error("--repeat and --events must be positive")
    return args


def _max_id(events: list[dict], keys: tuple[str, ...], flows: bool) -> int:
    best = 0
    for e in events:
        a = e.get("args") or {}
        for k in keys:
            v = a.get(k)
            if isinstance(v, int) and v > best:
                best = v
        if flows and e.get("ph") in ("s", "f", "t") and isinstance(e.get("id"), int):
            best = max(best, e["id"])
    return best


def synthesize(source: dict, target_events: int) -> tuple[dict, dict]:
    """Returns (synthetic trace, facts about it): `source`'s steps repeated to `target_events`."""
    events = source["traceEvents"]
    steps = [e for e in events if STEP_RE.match(str(e.get("name", "")))]
    if not steps:
        raise SystemExit("the source trace has no ProfilerStep#N spans to replicate")
    first_step = min(e["ts"] for e in steps)
    block = [e for e in events if e.get("ph") != "M"
             and isinstance(e.get("ts"), (int, float)) and e["ts"] >= first_step]
    block_end = max(e["ts"] + (e.get("dur") or 0) for e in block)
    # A whole number of microseconds keeps every shifted float timestamp exactly representable.
    period = math.ceil(block_end - first_step) + GAP_US
    strides = {group: _max_id(events, keys, flows=(group == "correlation")) + 1
               for group, keys in ID_GROUPS.items()}
    step_numbers = [int(STEP_RE.match(e["name"]).group(1)) for e in steps]
    step_stride = max(step_numbers) - min(step_numbers) + 1

    copies = max(1, math.ceil((target_events - (len(events) - len(block))) / len(block)))
    out_events = list(events)
    for k in range(1, copies):
        for e in block:
            new = dict(e)
            new["ts"] = e["ts"] + k * period
            if "id" in e and e.get("ph") in ("s", "f", "t") and isinstance(e["id"], int):
                new["id"] = e["id"] + k * strides["correlation"]
            args = e.get("args")
            if args:
                args = dict(args)
                for group, keys in ID_GROUPS.items():
                    for key in keys:
                        if isinstance(args.get(key), int) and args[key] >= 0:
                            args[key] += k * strides[group]
                new["args"] = args
            m = STEP_RE.match(str(e.get("name", "")))
            if m:
                new["name"] = f"ProfilerStep#{int(m.group(1)) + k * step_stride}"
            out_events.append(new)
    # The profiler's own span covers the recording; stretch it over the copies.
    for e in out_events[:len(events)]:
        if e.get("cat") == "Trace" and "dur" in e:
            e["dur"] = e["dur"] + (copies - 1) * period

    synthetic = dict(source)
    synthetic["traceEvents"] = out_events
    facts = {"copies": copies,
             "events": len(out_events), "steps": len(steps) * copies,
             "period_us": period}
    return synthetic, facts


def _result(m: Measurement) -> dict:
    entry = {"wall_s": round(m.wall_s, 3), "cpu_s": round(m.cpu_s, 3),
             "peak_rss_mb": round(m.peak_rss_mb, 1),
             "ok": m.ok, "timed_out": m.timed_out, "output": None, "error": None}
    if m.ok:
        try:
            entry["output"] = json.loads(m.stdout)
        except ValueError:
            entry["ok"], entry["error"] = False, "stdout is not one JSON object"
    elif m.timed_out:
        entry["error"] = "timed out"
    else:
        last = next((ln for ln in reversed(m.stderr.splitlines()) if ln.strip()), "")
        entry["error"] = f"exit {m.returncode}: {last.strip()[:200]}"
    return entry


def _not_run(reason: str) -> dict:
    return {"command": None, "ok": False, "error": reason, "wall_s": None, "cpu_s": None,
            "peak_rss_mb": None, "runs": [], "output": None}


def _run(name: str, cmd: list[str], repeat: int, timeout: float, console: Console) -> dict:
    runs = []
    for i in range(repeat):
        with console.status(f"{name}: run {i + 1} of {repeat}"):
            runs.append(_result(run_measured(cmd, timeout_s=timeout)))
        if not runs[-1]["ok"]:
            break
    good = [r for r in runs if r["ok"]]
    return {"command": cmd, "ok": len(good) == len(runs), "error": next(
                (r["error"] for r in runs if r["error"]), None),
            "wall_s": median([r["wall_s"] for r in good]) if good else runs[-1]["wall_s"],
            "cpu_s": median([r["cpu_s"] for r in good]) if good else runs[-1]["cpu_s"],
            "peak_rss_mb": median([r["peak_rss_mb"] for r in good]) if good else None,
            "runs": runs, "output": good[-1]["output"] if good else None}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 110)
    if not args.source.is_file():
        console.print(f"[red]no such trace: {args.source}[/]")
        return 2

    with tempfile.TemporaryDirectory(prefix="daydream-scale-") as tmp:
        trace_path = Path(tmp) / "synthetic_trace.json.gz"
        with console.status(f"synthesizing ≥{args.events:,} events from {args.source.name}"):
            with gzip.open(args.source, "rb") as f:
                source = orjson.loads(f.read())
            synthetic, facts = synthesize(source, args.events)
            facts["source"] = args.source.name
            del source
            payload = orjson.dumps(synthetic)
            del synthetic
            with gzip.open(trace_path, "wb", compresslevel=1) as f:
                f.write(payload)
            facts["json_mb"] = round(len(payload) / 2**20, 1)
            facts["gz_mb"] = round(trace_path.stat().st_size / 2**20, 1)
            del payload
        console.print(f"synthetic trace: {facts['events']:,} events, {facts['steps']} steps, "
                      f"{facts['json_mb']} MiB JSON, {facts['gz_mb']} MiB gzipped")
        if args.keep:
            shutil.copyfile(trace_path, args.keep)

        results = {
            "daydream whatif": _run("daydream whatif",
                                    daydream_command() + ["whatif", str(trace_path), "--json"],
                                    args.repeat, args.timeout, console),
            "daydream load only": _run("daydream load only",
                                       [sys.executable, "-c", LOAD_ONLY, str(trace_path)],
                                       args.repeat, args.timeout, console),
        }
        if args.skip_hta:
            results["hta"] = _not_run("skipped (--skip-hta)")
        elif not hta_python().exists():
            results["hta"] = _not_run("no HTA environment: run benchmarks/setup_hta.sh")
        else:
            results["hta"] = _run("HTA load + critical path",
                                  [str(hta_python()), str(HERE / "hta_critical_path.py"),
                                   str(trace_path)], 1, args.hta_timeout, console)

    table = Table(title=f"{facts['events']:,}-event synthetic trace ({facts['steps']} steps)")
    for col in ("what", "wall s", "CPU s", "peak RSS MiB", "status"):
        table.add_column(col, justify="left" if col in ("what", "status") else "right",
                         no_wrap=True)
    for name, r in results.items():
        wall = "—" if r["wall_s"] is None else f"{r['wall_s']:.2f}"
        if r["runs"] and r["runs"][-1]["timed_out"]:
            wall = f">{wall}"
        cpu = "—" if r["cpu_s"] is None else f"{r['cpu_s']:.2f}"
        rss = "—" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        table.add_row(name, wall, cpu, rss, "[green]ok[/]" if r["ok"] else f"[red]{r['error']}[/]")
    console.print(table)

    report = {
        "benchmark": "bench_load_scaling",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "daydream_commit": subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                                          capture_output=True, text=True).stdout.strip() or None,
        "synthetic_trace": facts,
        "results": results,
    }
    write_json_atomic(args.out, json.dumps(report, indent=2) + "\n")
    console.print(f"results written to {args.out}")
    return 0 if results["daydream whatif"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
