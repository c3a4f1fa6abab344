"""`daydream whatif TRACE [--opt ...]`: predicted effect of optimizations (none: replay)."""
from __future__ import annotations

import click
from rich.table import Table

from daydream.cli import main
from daydream.cli._common import (console, emit_json, json_option, output_path, progress, step_option,
                                  trace_argument)
from daydream.opts.params import parse_opt
from daydream.report.export import export_trace
from daydream.trace import load
from daydream.whatif import whatif as run_whatif

opt_option = click.option("--opt", "opts", multiple=True, metavar="NAME[:key=value,...]",
                          help="optimization to apply (repeatable; applied in order); see `daydream opts`")


@main.command()
@trace_argument
@opt_option
@json_option
@step_option
@click.option("--export-trace", "export", default=None, metavar="OUT.json",
              help="write the predicted timeline as a Chrome/Perfetto trace")
@click.option("--report", default=None, metavar="OUT.html", help="write an HTML report")
def whatif(trace, opts, as_json, step_annotation, export, report):
    """Predict the step time under optimizations; with no --opt, replay the trace unchanged."""
    choices = [parse_opt(o) for o in opts]
    export_path = output_path(export, (".json", ".json.gz"))
    report_path = output_path(report, (".html",))
    with progress(not as_json, 4, "whatif") as tick:
        tr = load(trace, step_annotation)
        tick("loaded")
        result = run_whatif(tr, choices, progress=tick)
    if export_path:
        export_trace(result.predicted, export_path, title=f"daydream: {trace} {' '.join(opts) or 'replay'}")
    if report_path:
        from daydream.report.html import whatif_report
        whatif_report([result], report_path)
    data = result.to_json()
    if as_json:
        emit_json(data)
        return
    out = console.__class__()
    out.print(f"[bold]{data['trace']}[/]  {data['device']}  steps={data['steps']}")
    out.print(f"measured {data['measured_ms']:.3f} ms   replay {data['replay_ms']:.3f} ms "
              f"({data['replay_error_pct']:.2f}% off)   predicted [bold]{data['predicted_ms']:.3f} ms[/]   "
              f"speedup [bold]{data['speedup']:.3f}x[/]")
    table = Table(title="critical path by phase (ms/step)")
    table.add_column("phase"); table.add_column("measured", justify="right"); table.add_column("predicted", justify="right")
    for k, v in data["breakdown"]["measured"].items():
        table.add_row(k, f"{v:.3f}", f"{data['breakdown']['predicted'][k]:.3f}")
    out.print(table)
    for note in data["notes"]:
        out.print(f"[yellow]note:[/] {note}")
