"""`daydream memory TRACE [--opt ...]... [--json] [--report OUT.html]`."""
from __future__ import annotations

import sys

import click
from daydream.names import NOTE_CHARS, escape_markup as escape, printable
import orjson

from daydream.cli import main
from daydream.cli._common import device_option, progress, scheduler_option, workers_option
from daydream.cli._common import print_whole


@main.command("memory")
@click.argument("trace", type=click.Path())
@click.option("--opt", "opts", multiple=True, metavar="NAME[:key=value,...]",
              help="optimization to predict, applied in the given order (see `daydream opts`)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object on stdout")
@click.option("--report", "report_path", type=click.Path(), help="write a self-contained HTML page")
@click.option("--step-annotation", default=None, help="annotation that marks a step (default ProfilerStep#N)")
@device_option
@workers_option
@scheduler_option
def memory_cmd(trace, opts, as_json, report_path, step_annotation, workers, scheduler):
    """Memory breakdown at the peak and over time, measured and predicted."""
    from daydream.memory import memory
    from daydream.opts import parse_opt
    from daydream.cli._common import output_path
    choices = [parse_opt(o) for o in opts]  # reject bad --opt before reading the trace
    report_path = output_path(report_path, (".html",), inputs=(trace,))
    from daydream.cli import _job
    if _job.is_job(trace):  # every rank's peak found per rank, possibly on a Dask cluster
        with progress(not as_json, len(_job.rank_sources(trace)) + 1, "memory") as tick:
            report = _job.memory_job(trace, choices, step_annotation, workers, scheduler, tick)
            tick("report")
    else:
        report = memory(trace, choices, step_annotation=step_annotation)
    if report_path:
        from daydream.memory.report import write_html
        write_html(report, report_path)
    if as_json:
        sys.stdout.write(orjson.dumps(report.as_json()).decode() + "\n")
        if report_path:  # on stderr: stdout holds only the JSON
            click.echo(f"report written to {printable(report_path)}", err=True)
        return
    _print(report, report_path)


def _mib(b) -> str:
    return f"{b / 2**20:,.1f}"


def _print(report, report_path):
    from rich.console import Console
    from rich.table import Table
    j = report.as_json()
    console = Console(emoji=False)
    title = f"memory of {escape(j['trace'])} on {escape(j['device'])}: peak {_mib(j['peak_bytes'])} MiB at {j['peak_ms']:.1f} ms"
    table = Table(title=title)
    table.add_column("category", no_wrap=True)
    table.add_column("at peak (MiB)", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("max (MiB)", justify="right", no_wrap=True)
    table.add_column("mean (MiB)", justify="right", no_wrap=True)
    if "predicted" in j:
        table.add_column("predicted (MiB)", justify="right", no_wrap=True)
    for c, v in j["at_peak"].items():
        row = [escape(c), _mib(v), f"{100 * v / max(j['peak_bytes'], 1):.1f}%", _mib(j["max"][c]), _mib(j["mean"][c])]
        if "predicted" in j:
            row.append(_mib(j["predicted"][c]))
        table.add_row(*row)
    total = ["total", _mib(j["peak_bytes"]), "100%", "", ""]
    if "predicted" in j:
        total.append(_mib(j["predicted_peak_bytes"]))
    table.add_row(*total, style="bold")
    print_whole(console, table)
    tbd = Table(title="TBD view at the peak")
    tbd.add_column("part")
    tbd.add_column("measured (MiB)", justify="right", no_wrap=True)
    if "predicted" in j:
        tbd.add_column("predicted (MiB)", justify="right", no_wrap=True)
    for k, v in j["tbd_view"].items():
        tbd.add_row(k, _mib(v), *([_mib(j["predicted_tbd_view"][k])] if "predicted" in j else []))
    print_whole(console, tbd)
    if j.get("layers"):
        layers = Table(title="activations by layer (top 10)")
        layers.add_column("module")
        layers.add_column("MiB", justify="right", no_wrap=True)
        for k, v in list(j["layers"].items())[:10]:
            layers.add_row(escape(k), _mib(v))
        print_whole(console, layers)
    for line in j.get("model", []) + j["notes"]:
        console.print(f"  {escape(line, NOTE_CHARS)}")
    if j["oom_warning"]:
        console.print(f"[bold red]warning: {escape(j['oom_warning'], NOTE_CHARS)}[/]")
    if report_path:
        console.print(f"report written to {escape(report_path)}")
