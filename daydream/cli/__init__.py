"""`daydream` command line: a thin shell over the Python API.

Each command lives in its own module and registers itself on `main`. Bad input raises
`DaydreamError`, which becomes one line on stderr and exit status 2.
"""
from __future__ import annotations

import click

from daydream.errors import OneLineErrors


class _Group(OneLineErrors, click.Group):
    pass


@click.group(cls=_Group)
@click.version_option(package_name="daydream")
def main():
    """Trace-driven profiler and what-if simulator for deep-learning training."""


def _register():
    import importlib
    import pkgutil
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


_register()
