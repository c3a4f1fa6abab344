"""`daydream opts`: the optimizations, their parameters and defaults."""
from __future__ import annotations

from rich.table import Table

from daydream.cli import main
from daydream.cli._common import stdout_console, emit_json, json_option
from daydream.opts.params import SPECS


@main.command("opts")
@json_option
def list_opts(as_json):
    """List the optimizations, their parameters and defaults."""
    if as_json:
        emit_json([{"name": s.name, "help": s.summary,
                    "params": [{"name": k, "default": p.default, "help": p.help, "type": p.kind.__name__,
                                "low": p.low, "high": p.high, "choices": list(p.choices)}
                               for k, p in s.params.items()]} for s in SPECS.values()])
        return
    out = stdout_console()
    table = Table(title="optimizations (--opt NAME[:key=value,...])", show_lines=True)
    table.add_column("name", style="bold"); table.add_column("what it models"); table.add_column("parameters")
    for s in SPECS.values():
        params = "\n".join(f"{k}={p.default}  {p.help}" + (f" ({'|'.join(map(str, p.choices))})" if p.choices else "")
                           for k, p in s.params.items()) or "-"
        table.add_row(s.name, s.summary, params)
    out.print(table)
