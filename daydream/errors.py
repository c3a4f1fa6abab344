"""The one exception type users see: bad input, reported as one line with exit status 2."""
import sys

import click


class DaydreamError(Exception):
    """Input that daydream cannot work with; the message says what is wrong and what to do."""


class OneLineErrors:
    """Mixin for click commands and groups: a DaydreamError becomes one line on stderr, exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DaydreamError as exc:
            from daydream.report.names import one_line
            click.echo(f"daydream: error: {one_line(str(exc))}", err=True)
            sys.exit(2)
        except MemoryError:
            click.echo("daydream: error: out of memory; the trace is too large for this machine (see "
                       "DAYDREAM_MAX_BYTES and DAYDREAM_MAX_EVENTS in docs/input.md)", err=True)
            sys.exit(2)
