"""`daydream suggest TRACE`: every applicable optimization simulated and ranked, with why."""
from __future__ import annotations

import click
from rich.text import Text

from daydream.cli import main
from daydream.cli._common import (emit_json, json_option, output_path, progress, scheduler_option, step_option,
                                  stdout_console, trace_argument, workers_option)
from daydream.names import printable


@main.command()
@trace_argument
@click.option("--top", default=None, type=click.IntRange(1, 10000), metavar="N",
              help="keep the N best suggestions (default: all)")
@json_option
@step_option
@click.option("--rank", "ranking", default="checked", show_default=True, type=click.Choice(["checked", "predicted"]),
              help="checked: optimizations checked against a measured pair on this kind of device first, "
                   "each group by predicted step time; predicted: by predicted step time only")
@click.option("--report", default=None, metavar="OUT.html", help="write an HTML report of the suggestions")
@workers_option
@scheduler_option
def suggest(trace, top, ranking, as_json, step_annotation, report, workers, scheduler):
    """Simulate every applicable optimization (defaults, parameter variants and the best pairs),
    rank them (those checked against a measured pair on this kind of device first, then by
    predicted step time) and say why each helps or not. On a multi-rank TRACE: for the job's
    slowest rank (found by the coupled replay; its step is the job's)."""
    from daydream.suggest import simulations, suggest as suggest_trace
    from daydream.trace import load
    report_path = output_path(report, (".html",), inputs=(trace,))
    from daydream.cli import _job
    job = _job.is_job(trace)
    with progress(not as_json, 1 + (len(_job.rank_sources(trace)) if job else 0), "suggest: loading") as tick:
        if job:
            tr, _, rank = _job.slowest_timeline(trace, step_annotation, workers, scheduler, tick)
        else:
            tr = load(trace, step_annotation)
        tick("loaded")
    with progress(not as_json, simulations(tr) + bool(report_path), "suggest") as tick:
        result = suggest_trace(tr, top, progress=tick, rank=ranking)
        if job:
            _job.suggest_of_job(result, trace, rank)
        if report_path:
            from daydream.report.views_html import suggest_report
            suggest_report(result, report_path)
            tick("report")
    if as_json:
        emit_json(result)
        return
    print_suggestions(stdout_console(), result)


def _size(b) -> str:
    """Bytes in the unit that keeps 2-3 significant digits (GiB for GPU jobs, MiB for small CPU runs)."""
    if b is None:
        return "–"
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"


def print_suggestions(out, s: dict) -> None:
    from daydream.cli._views import fitted_table
    out.print(Text(f"{printable(s['trace'])}" + (f"  (rank {s['rank']}, the slowest of {s['ranks']}: its own "
                                                 "optimizations)" if "rank" in s else "")
                   + f"\n{printable(s['device'])}  steps={s['steps']}  measured {s['measured_ms']:.3f} ms/step  "
                   f"replay {s['replay_ms']:.3f} ms"))
    for warning in s.get("warnings", []):  # what every figure of the run carries (an incomplete run, ...)
        out.print(Text("warning: " + warning, style="yellow"))
    kind = s.get("device_class", "cpu").upper()
    plain = s.get("unprofiled_ms") is not None
    rows = [[str(i + 1), x["name"], f"{x['predicted_ms']:.3f}", f"{x['speedup']:.3f}x"]
            + ([f"{x['unprofiled_speedup']:.3f}x" if x.get("unprofiled_speedup") else "–"] if plain else [])
            + [_size(x["memory_peak_bytes"]), "yes" if x.get("checked_against") else "no"]
            for i, x in enumerate(s["suggestions"])]
    header = ["#", "optimizations", "ms/step", "speedup"] + (["w/o prof."] if plain else []) + ["peak", "checked"]
    order = ("checked first, then by predicted step time" if s.get("ranking", "checked") == "checked"
             else "by predicted step time")
    out.print(fitted_table(out, f"suggestions, {order} ({s['simulated']} simulated; memory peak "
                                f"measured {_size(s['measured_peak_bytes'])})",
                           header, rows, name_col=1))
    if plain and s["suggestions"]:
        out.print(Text(f"w/o prof.: the speedup once the profiler's own per-event cost is out of the step "
                       f"({s['unprofiled_ms']:.3f} ms estimated for the replay): what the run gains without the "
                       "profiler attached. ms/step and speedup are in the profiled trace's world."))
    if s["suggestions"]:
        out.print(Text(f"checked: every optimization of the line was checked against a measured pair on a {kind} "
                       "(docs/validation.md); 'no' lines are the model's figures alone."))
        out.print(Text("Why, per suggestion. A phase's ms are how long the step waits on it (the critical "
                       "path); its work is what its tasks take on all threads and streams, overlapped or not."))
    for i, x in enumerate(s["suggestions"]):
        out.print(Text(f"{i + 1}. {x['name']}: {x['why']}"
                       + (f" Checked against: {x['checked_against']}." if x.get("checked_against") else
                          f" Not yet checked against a measured pair on a {kind}.")))
    if s["skipped"]:
        out.print(Text("skipped:", style="bold"))
        for k in s["skipped"]:
            out.print(Text(f"- {k['name']}: {k['why']}"))
