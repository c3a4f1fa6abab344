"""`daydream analyze TRACE`: what the trace shows."""
from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from daydream.analysis import analyze as analyze_trace
from daydream.cli import main
from daydream.cli._common import (stdout_console, device_option, emit_json, json_option, output_path, progress,
                                  scheduler_option, step_option, trace_argument, workers_option)
from daydream.names import NOTE_CHARS, escape_markup, printable
from daydream.report.shorten import NAME_WIDTH, distinct_labels
from daydream.graph import build_graph
from daydream.sim import simulate
from daydream.trace import load
from daydream.cli._common import print_whole


@main.command()
@trace_argument
@json_option
@step_option
@device_option
@click.option("--report", default=None, metavar="OUT.html",
              help="write an HTML report: timelines, phases, critical path, top kernels and layers")
@click.option("--by-shape", is_flag=True, help="operators per aten op and input shapes")
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 10000),
              help="rows per view in the terminal (--json lists all)")
@workers_option
@scheduler_option
def analyze(trace, as_json, step_annotation, report, by_shape, top, workers, scheduler):
    """Step time, phases, GPU busy and idle, top kernels, critical path."""
    report_path = output_path(report, (".html",), inputs=(trace,))
    from daydream.cli import _job
    if _job.is_job(trace):
        return _analyze_job(trace, as_json, step_annotation, report_path, workers, scheduler)
    with progress(not as_json, 3 + bool(report_path), "analyze") as tick:
        tr = load(trace, step_annotation)
        tick("loaded")
        timeline = simulate(build_graph(tr))
        tick("replayed")
        result = analyze_trace(tr, timeline)
        from daydream.opts.context import Context
        from daydream.views import views
        result.update(views(tr, timeline, Context.of(tr).known_device, by_shape=by_shape))
        tick("analyzed")
        if report_path:
            from daydream.report.html import analyze_report
            analyze_report(result, timeline, report_path)
            tick("report")
    if report_path:  # on stderr: stdout holds only the JSON under --json
        click.echo(f"report written to {printable(report_path)}", err=True)
    if as_json:
        emit_json(result)
        return
    _print(result, top)


def _analyze_job(trace, as_json, step_annotation, report_path, workers, scheduler):
    """`analyze` on a multi-rank TRACE (daydream/cli/_job.py)."""
    from daydream.cli import _job
    n = len(_job.rank_sources(trace))
    with progress(not as_json, n + 2 + bool(report_path), "analyze") as tick:
        with _job.open_job(trace, step_annotation, workers, scheduler, tick) as job:
            result, timeline = _job.analyze_json(job, trace)
            tick("analyzed")
            if report_path:  # every rank's lanes, at their coupled-replay times
                from daydream.report.html import analyze_report
                analyze_report(result, job.merged_timeline(), report_path, bars=job.collective_bars())
                tick("report")
    if as_json:
        emit_json(result)
        return
    _print(result)  # its warnings included
    _job.print_job_tables(stdout_console(), result)


def _print(result: dict, top: int = 10) -> None:
    out = stdout_console()
    out.print(f"[bold]{escape_markup(result['trace'])}[/]  {escape_markup(result['device'])}  steps={result['steps']}"
              f"  ranks={result['ranks']}")
    gpu = ("no GPU in the trace" if result.get("gpu_busy_pct") is None
           else f"GPU busy {result['gpu_busy_pct']:.1f}%")
    out.print(f"step time [bold]{result['measured_ms']:.3f} ms[/]   {gpu}"
              f"   CPU busy {result['cpu_busy_pct']:.1f}%"
              + (f"   FLOP utilization {result['flops_utilization_pct']:.1f}%" if "flops_utilization_pct" in result else "")
              + (f"   throughput {result['throughput_per_s']:.1f}/s" if "throughput_per_s" in result else ""))
    if result.get("unprofiled_ms") is not None:
        cost = result.get("profiler_cost") or {}
        split = cost.get("us_per_event_outside_model")
        if cost.get("source") == "run" and split is not None:
            basis = (f"its cost per event from this run's profiled minus plain steps and optimizer steps "
                     f"removed: {(cost.get('us_per_event') or {}).get('op', 0):.2f} us in forward and "
                     f"backward, {split:.2f} us elsewhere")
        elif cost.get("source") == "run":
            basis = "its per-event cost, scaled to this run's profiled minus plain steps, removed"
        else:
            basis = "its calibrated per-event cost removed"
        out.print(f"without the profiler: [bold]{result['unprofiled_ms']:.3f} ms[/] estimated ({basis})"
                  + (f", {result['plain_step_ms']:.3f} ms timed" if result.get("plain_step_ms") else ""))
        if cost.get("note"):
            out.print(f"[yellow]note:[/] {escape(cost['note'])}")
    for warning in result["warnings"]:
        out.print(f"[yellow]warning:[/] {escape(warning)}")
    phases = Table(title="critical path by phase (ms/step)")
    phases.add_column("phase"); phases.add_column("ms", justify="right", no_wrap=True); phases.add_column("%", justify="right", no_wrap=True)
    total = sum(result["breakdown"]["measured"].values()) or 1
    for k, v in result["breakdown"]["measured"].items():
        phases.add_row(escape_markup(k), f"{v:.3f}", f"{100 * v / total:.1f}")
    print_whole(out, phases)
    cp = Table(title="critical path by category (ms/step)")
    cp.add_column("category"); cp.add_column("ms", justify="right", no_wrap=True)
    for k, v in result["critical_path"].items():
        cp.add_row(escape_markup(k), f"{v:.3f}")
    print_whole(out, cp)
    if result["top_kernels"]:
        tk = Table(title="top kernels (whole window)")
        # names shortened in the middle (full names in --json); numbers never cut: the name column
        # is the one that wraps when the terminal is narrower still
        ms_w = max(len(f"{k['total_ms']:.3f}") for k in result["top_kernels"])
        count_w = max(5, *(len(str(k["count"])) for k in result["top_kernels"]))
        name_w = min(NAME_WIDTH, max(24, out.width - 10 - ms_w - count_w))  # 10: borders and padding
        tk.add_column("kernel", overflow="fold", ratio=1)
        tk.add_column("ms", justify="right", no_wrap=True)
        tk.add_column("count", justify="right", no_wrap=True)
        labels = distinct_labels([printable(k["name"]) for k in result["top_kernels"]], name_w)
        for k, label in zip(result["top_kernels"], labels):
            tk.add_row(escape_markup(label), f"{k['total_ms']:.3f}", str(k["count"]))
        print_whole(out, tk)
    from daydream.cli._views import print_views
    print_views(out, result, top)
    for warning in result.get("warnings", []):
        out.print(f"[yellow]warning:[/] {escape_markup(warning, NOTE_CHARS)}")
