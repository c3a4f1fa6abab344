"""`daydream validate BASE OPTIMIZED --opt ...`: predicted vs measured effect of optimizations."""
from __future__ import annotations

import click
from rich.table import Table

from daydream.cli import main
from daydream.cli._common import (stdout_console, device_option, emit_json, json_option, progress, scheduler_option,
                                  step_option, workers_option)
from daydream.opts.params import parse_opt
from daydream.names import NOTE_CHARS, escape_markup
from daydream.trace import load
from daydream.validate import validate as run_validate
from daydream.cli._common import print_whole


@main.command()
@click.argument("base", type=click.Path(path_type=str))
@click.argument("optimized", type=click.Path(path_type=str))
@click.option("--opt", "opts", multiple=True, metavar="NAME[:key=value,...]",
              help="optimization that turns BASE into OPTIMIZED (repeatable; applied in order)")
@json_option
@step_option
@device_option
@workers_option
@scheduler_option
def validate(base, optimized, opts, as_json, step_annotation, workers, scheduler):
    """Predict OPTIMIZED's step time from BASE under --opt and compare with what OPTIMIZED measured."""
    choices = [parse_opt(o) for o in opts]
    from daydream.cli import _job
    if _job.is_job(base):  # BASE's job re-simulated coupled, per-rank work where --workers says
        n = len(_job.rank_sources(base)) * 2 + 2 + (len(_job.rank_sources(optimized)) if _job.is_job(optimized) else 0)
        with progress(not as_json, n, "validate") as tick:
            data = _job.validate_job(base, optimized, choices, step_annotation, workers, scheduler, tick)
    else:
        with progress(not as_json, 5, "validate") as tick:
            base_tr = load(base, step_annotation)
            tick("base loaded")
            opt_tr = load(optimized, step_annotation)
            tick("optimized loaded")
            data = run_validate(base_tr, opt_tr, choices, progress=tick)
    if as_json:
        emit_json(data)
        return
    out = stdout_console()
    table = Table(title=f"validate {escape_markup(' '.join(opts)) or '(replay)'}")
    for col in ("", "ms/step", "speedup", "vs"):
        table.add_column(col, justify="right" if col in ("ms/step", "speedup") else "left", no_wrap=True)
    table.add_row("base measured", f"{data['base_measured_ms']:.3f}", "", "")
    table.add_row("base replay", f"{data['base_replay_ms']:.3f}", "", "")
    table.add_row("optimized measured", f"{data['optimized_measured_ms']:.3f}", f"{data['measured_speedup']:.3f}",
                  "base measured")
    table.add_row("predicted", f"{data['predicted_ms']:.3f}", f"{data['predicted_speedup']:.3f}", "base replay")
    plain = data.get("without_profiler")
    if plain:
        table.add_section()
        table.add_row("base, no profiler", f"{plain['base_plain_ms']:.3f}", "", "")
        table.add_row("optimized, no profiler", f"{plain['optimized_plain_ms']:.3f}",
                      f"{plain['measured_speedup']:.3f}", "base, no profiler")
        table.add_row("predicted, no profiler", f"{plain['predicted_ms']:.3f}", f"{plain['predicted_speedup']:.3f}",
                      "base, no profiler")
    print_whole(out, table)
    out.print(f"error: [bold]{data['error_pct']:.2f}%[/] of the measured optimized step time"
              + (f"; without the profiler (median plain steps of both runs) [bold]{plain['error_pct']:.2f}%[/]"
                 if plain else ""))
    for note in data["notes"]:
        out.print(f"[yellow]note:[/] {escape_markup(note, NOTE_CHARS)}")
    for warning in data["warnings"]:
        out.print(f"[bold yellow]warning:[/] {escape_markup(warning, NOTE_CHARS)}")
