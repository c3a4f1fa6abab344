"""Helpers shared by the commands: loading with progress, JSON output, checked output paths."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click
import orjson

from daydream.errors import DaydreamError
from daydream.files import check_destination
from daydream.names import escape_markup


def stdout_console():
    """A rich console on stdout for the human-readable output (rich is imported only then)."""
    from rich.console import Console
    return Console(emoji=False)  # ":name:" in a kernel name stays text


@contextlib.contextmanager
def progress(enabled: bool, total: int, label: str):
    """A rich progress bar on stderr; silent under --json or when stderr is not a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield lambda *_: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda what="": bar.update(task, advance=1, description=f"{label}: {escape_markup(what)}")


def emit_json(obj) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())


def output_path(path: str | None, suffixes: tuple[str, ...] = (), inputs=()) -> Path | None:
    """Check an output path before any work, so bad input fails fast and writes nothing: its
    directory exists and is writable, and the path is not a directory, not a non-regular file
    (FIFO, device...) and not one of `inputs` (daydream/files.py)."""
    if path is None:
        return None
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise DaydreamError(f"{p}: directory {parent} does not exist")
    if not parent.is_dir():
        raise DaydreamError(f"{p}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise DaydreamError(f"{p}: directory {parent} is not writable")
    if p.is_dir():
        raise DaydreamError(f"{p}: is a directory; give a file name")
    if suffixes and not p.name.endswith(suffixes):
        raise DaydreamError(f"{p}: expected a file name ending in {' or '.join(suffixes)}")
    check_destination(p, inputs)
    return p


trace_argument = click.argument("trace", type=click.Path(path_type=str))
json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON object on stdout")
step_option = click.option("--step-annotation", default=None, metavar="NAME",
                           help="annotation that marks a step (default: ProfilerStep#N)")


def _assume_device(ctx, param, value):
    """--device holds for this command only (the CLI runs in-process under tests and notebooks)."""
    from daydream import hardware
    hardware.assume_device(value)
    ctx.call_on_close(lambda: hardware.assume_device(None))
    return value


device_option = click.option("--device", "device", default=None, metavar="NAME", expose_value=False,
                             callback=_assume_device, is_eager=True,
                             help="the GPU the trace ran on, where the trace does not say (no deviceProperties); "
                                  "a name from `daydream opts`, e.g. A100, H100, V100, MI300X")
workers_option = click.option("--workers", type=click.IntRange(0, 4096), default=None, metavar="N",
                              help="multi-rank: spread per-rank work over a local Dask cluster of N processes "
                                   "(0: in this process)")
scheduler_option = click.option("--scheduler", default=None, metavar="ADDRESS",
                                help="multi-rank: use a running Dask cluster (its workers must see the same paths)")


def print_whole(console, renderable) -> None:
    """Print a rich table at least as wide as its unwrappable columns need, so numbers and names a
    user must type are never cut to `…` on a narrow console or in a pipe (COLUMNS=80): the line
    gets longer instead. Wrappable columns still wrap to the console's width."""
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text
    if isinstance(renderable, Table):  # a no_wrap column is as wide as its widest cell, never "…"
        for col in renderable.columns:
            if col.no_wrap:
                cells = [col.header, *col.cells]
                widest = max((c.cell_len if isinstance(c, Text) else Text.from_markup(str(c)).cell_len)
                             for c in cells)
                col.min_width = max(col.min_width or 0, widest)
    need = Measurement.get(console, console.options.update_width(10 ** 5), renderable).minimum
    if need <= console.width:
        console.print(renderable)
        return
    saved = console.width
    console.width = need
    try:
        console.print(renderable)
    finally:
        console.width = saved
