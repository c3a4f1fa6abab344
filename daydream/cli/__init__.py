"""`daydream` command line: a thin shell over the Python API.

Each command lives in its own module, named after it, and registers itself on `main`. A module is
imported when its command runs (or when --help lists them all), so `daydream whatif` never pays for
what `analyze` or `profile` import. Bad input raises `DaydreamError`, which becomes one line on
stderr and exit status 2.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from daydream.errors import DaydreamError


class OneLineErrors:
    """Mixin for click commands and groups: a DaydreamError becomes one line on stderr, exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DaydreamError as exc:
            from daydream.names import one_line
            click.echo(f"daydream: error: {one_line(str(exc))}", err=True)  # a name in it stays one line
            sys.exit(2)
        except MemoryError:
            click.echo("daydream: error: out of memory; the trace is too large for this machine (see "
                       "DAYDREAM_MAX_BYTES and DAYDREAM_MAX_EVENTS in docs/input.md)", err=True)
            sys.exit(2)


class _Group(OneLineErrors, click.Group):
    def list_commands(self, ctx) -> list[str]:
        return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))

    def get_command(self, ctx, name: str):
        if name not in self.commands and name in self.list_commands(ctx):
            importlib.import_module(f"{__name__}.{name}")
        return super().get_command(ctx, name)


@click.group(cls=_Group)
@click.version_option(package_name="daydream")
def main():
    """Trace-driven profiler and what-if simulator for deep-learning training."""
