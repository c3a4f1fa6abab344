"""`daydream whatif TRACE [--opt ...] [--scenario ...]`: predicted effect of optimizations (none: replay)."""
from __future__ import annotations

import click

from daydream.cli import main
from daydream.cli._common import (stdout_console, device_option, emit_json, json_option, output_path, progress,
                                  scheduler_option, step_option, trace_argument, workers_option)
from daydream.errors import DaydreamError
from daydream.graph import PHASES
from daydream.opts.params import parse_opt
from daydream.names import printable
from daydream.scenarios import Scenario, compare, load_scenarios, parse_scenario, scenario_json, unique_names
from daydream.trace import load

SHORT = {"forward": "fwd", "backward": "bwd", "optimizer": "optim", "communication": "comm"}
opt_option = click.option("--opt", "opts", multiple=True, metavar="NAME[:key=value,...]",
                          help="optimization to apply (repeatable; applied in order); see `daydream opts`")


@main.command()
@trace_argument
@opt_option
@click.option("--scenario", "scenario_texts", multiple=True, metavar="[NAME=]OPT;OPT...",
              help="a scenario to compare (repeatable): optimizations separated by ';', e.g. "
                   "\"amp;fsdp:world_size=8\"; NAME= names it")
@click.option("--scenarios", "scenarios_file", default=None, metavar="FILE.toml",
              help="named scenarios from a TOML (or YAML) file: name = [\"opt\", ...]")
@json_option
@step_option
@device_option
@click.option("--export-trace", "export", default=None, metavar="OUT.json",
              help="write the predicted timeline as a Chrome/Perfetto trace (one scenario only)")
@click.option("--report", default=None, metavar="OUT.html", help="write an HTML report")
@workers_option
@scheduler_option
def whatif(trace, opts, scenario_texts, scenarios_file, as_json, step_annotation, export, report, workers, scheduler):
    """Predict the step time under optimizations; with no --opt, replay the trace unchanged.

    With --scenario/--scenarios, every scenario is predicted from the same trace and they are
    compared side by side (the --opt list, if any, is the first scenario). The JSON keeps the
    single-scenario keys for the first scenario and lists all of them under `scenarios`.
    """
    scenarios = []
    if opts or not (scenario_texts or scenarios_file):
        choices = [parse_opt(o) for o in opts]
        scenarios.append(Scenario(" ".join(opts) or "replay", choices))
    scenarios += [parse_scenario(s) for s in scenario_texts]
    if scenarios_file:
        scenarios += load_scenarios(scenarios_file)
    unique_names(scenarios)
    if export and len(scenarios) > 1:
        raise DaydreamError("--export-trace writes one predicted timeline; give one scenario "
                            f"(got {len(scenarios)})")
    export_path = output_path(export, (".json", ".json.gz"), inputs=(trace, scenarios_file))
    report_path = output_path(report, (".html",), inputs=(trace, scenarios_file))
    from daydream.cli import _job
    if _job.is_job(trace):
        data = _whatif_job(trace, scenarios, as_json, step_annotation, export_path, report_path, workers, scheduler)
        if as_json:
            emit_json(data)
            return
        _print(data, scenarios)
        return
    with progress(not as_json, 3 + len(scenarios) + bool(report_path), "whatif") as tick:
        tr = load(trace, step_annotation)
        tick("loaded")
        results = compare(tr, scenarios, progress=tick)
        if export_path:
            from daydream.report.export import export_trace
            export_trace(results[0].predicted, export_path,
                         title=f"daydream: {trace} {' '.join(opts) or scenarios[0].name}")
        if report_path:
            from daydream.report.html import whatif_report
            whatif_report(results, report_path, names=[s.name for s in scenarios])
            tick("report")
    for path, what in ((report_path, "report"), (export_path, "predicted trace")):
        if path:  # on stderr: stdout holds only the JSON under --json
            click.echo(f"{what} written to {printable(path)}", err=True)
    data = results[0].to_json()
    data["scenarios"] = [scenario_json(s, r) for s, r in zip(scenarios, results)]
    if as_json:
        emit_json(data)
        return
    _print(data, scenarios)


def _whatif_job(trace, scenarios, as_json, step_annotation, export_path, report_path, workers, scheduler) -> dict:
    """`whatif` on a multi-rank TRACE: every scenario re-simulated coupled (daydream/cli/_job.py)."""
    from daydream.cli import _job
    from daydream.whatif import WhatIf
    n = len(_job.rank_sources(trace))
    with progress(not as_json, n * (1 + len(scenarios)) + 2 * len(scenarios) + bool(report_path), "whatif") as tick:
        with _job.open_job(trace, step_annotation, workers, scheduler, tick) as job:
            runs = []
            for s in scenarios:
                runs.append(_job.whatif_json(job, trace, s.opts, s.name))
                tick(s.name)
        first, base_tl, pred_tl = runs[0]
        if export_path:
            from daydream.report.export import export_trace
            export_trace(pred_tl, export_path, title=f"daydream: {trace} {scenarios[0].name} (slowest rank)")
        if report_path:
            from daydream.report.html import whatif_report
            whatif_report([WhatIf(b.graph.trace, list(s.opts), b, p, notes=d["notes"])
                           for s, (d, b, p) in zip(scenarios, runs)], report_path, names=[s.name for s in scenarios])
            tick("report")
    data = dict(first)
    data["scenarios"] = [{"name": s.name, "optimizations": d["optimizations"], "predicted_ms": d["predicted_ms"],
                          "speedup": d["speedup"], "breakdown": d["breakdown"]["predicted"], "notes": d["notes"],
                          "per_rank": d["per_rank"]} for s, (d, _, _) in zip(scenarios, runs)]
    return data


def _print(data: dict, scenarios) -> None:
    from rich import box
    from daydream.names import NOTE_CHARS, escape_markup as escape
    from rich.table import Table

    from daydream.cli._common import print_whole
    out = stdout_console()
    out.print(f"[bold]{escape(data['trace'])}[/]  {escape(data['device'])}  steps={data['steps']}")
    if len(scenarios) == 1:
        out.print(f"measured {data['measured_ms']:.3f} ms   replay {data['replay_ms']:.3f} ms "
                  f"({data['replay_error_pct']:.2f}% off)   predicted [bold]{data['predicted_ms']:.3f} ms[/]   "
                  f"speedup vs replay [bold]{data['speedup']:.3f}x[/]")
        if data.get("unprofiled_ms") is not None:
            out.print(f"without the profiler (estimated): replay {data['unprofiled_ms']:.3f} ms   predicted "
                      f"{data['predicted_unprofiled_ms']:.3f} ms")
        table = Table(title="critical path by phase (ms/step)")
        table.add_column("phase"); table.add_column("replay", justify="right", no_wrap=True); table.add_column("predicted", justify="right", no_wrap=True)
        for k, v in data["breakdown"]["measured"].items():
            table.add_row(k, f"{v:.3f}", f"{data['breakdown']['predicted'][k]:.3f}")
        print_whole(out, table)
        if "per_rank" in data:
            _print_ranks(out, data)
        for note in data["notes"]:
            out.print(f"[yellow]note:[/] {escape(note, NOTE_CHARS)}")
        return
    out.print(f"measured {data['measured_ms']:.3f} ms   replay {data['replay_ms']:.3f} ms "
              f"({data['replay_error_pct']:.2f}% off)")
    table = Table(title="scenarios (ms/step; speedup vs replay; phases on the critical path)", box=box.SIMPLE_HEAD)
    table.add_column("scenario", min_width=min(24, max(len(s["name"]) for s in data["scenarios"])), max_width=40,
                     overflow="fold"); table.add_column("predicted", justify="right", no_wrap=True)
    table.add_column("speedup", justify="right", no_wrap=True)
    phases = [p for p in PHASES if data["breakdown"]["measured"][p] or any(s["breakdown"][p] for s in data["scenarios"])]
    for p in phases:
        table.add_column(SHORT.get(p, p), justify="right", no_wrap=True)
    table.add_row("replay", f"{data['replay_ms']:.3f}", "1.000x",
                  *(f"{data['breakdown']['measured'][p]:.3f}" for p in phases), style="dim")
    for s in data["scenarios"]:
        table.add_row(escape(s["name"]), f"{s['predicted_ms']:.3f}", f"{s['speedup']:.3f}x",
                      *(f"{s['breakdown'][p]:.3f}" for p in phases))
    print_whole(out, table)
    for s in data["scenarios"]:
        for note in s["notes"]:
            out.print(f"[yellow]note ({escape(s['name'])}):[/] {escape(note)}")


def _print_ranks(out, data: dict) -> None:
    """Per-rank measured, coupled replay and predicted step times of a multi-rank job."""
    from rich.table import Table
    t = Table(title=f"ranks (ms/step; {data['ranks']} ranks replayed coupled)")
    for c in ("rank", "measured", "replay", "err %", "predicted", "speedup"):
        t.add_column(c, justify="right")
    for r in data["per_rank"]:
        err = 100 * (r["replay_ms"] - r["measured_ms"]) / r["measured_ms"] if r["measured_ms"] else 0.0
        sp = r["replay_ms"] / r["predicted_ms"] if r["predicted_ms"] else float("inf")
        t.add_row(str(r["rank"]), f"{r['measured_ms']:.3f}", f"{r['replay_ms']:.3f}", f"{err:+.2f}",
                  f"{r['predicted_ms']:.3f}", f"{sp:.3f}x")
    out.print(t)
