"""`daydream diff BASE OTHER`: what changed between two traces of one job."""
from __future__ import annotations

import click
from rich.text import Text

from daydream.cli import main
from daydream.cli._common import emit_json, json_option, output_path, progress, step_option, stdout_console
from daydream.graph import build_graph
from daydream.names import printable


@main.command()
@click.argument("base", type=click.Path(path_type=str))
@click.argument("other", type=click.Path(path_type=str))
@json_option
@step_option
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 10000),
              help="rows per table in the terminal (--json lists all)")
@click.option("--report", default=None, metavar="OUT.html", help="write an HTML report of the differences")
def diff(base, other, as_json, step_annotation, top, report):
    """Step time, phases, operators and kernels of OTHER against BASE, ranked by their
    contribution to the step-time change (critical-path time per step)."""
    from daydream.diff import diff as diff_traces
    from daydream.sim import simulate
    from daydream.trace import load
    report_path = output_path(report, (".html",), inputs=(base, other))
    with progress(not as_json, 3 + bool(report_path), "diff") as tick:
        tb = load(base, step_annotation)
        tick("base loaded")
        to = load(other, step_annotation)
        tick("other loaded")
        lb, lo = simulate(build_graph(tb)), simulate(build_graph(to))
        result = diff_traces(tb, to, lb, lo)
        tick("compared")
        if report_path:
            from daydream.report.views_html import diff_report
            diff_report(result, report_path)
            tick("report")
    if as_json:
        emit_json(result)
        return
    print_diff(stdout_console(), result, top)


def print_diff(out, d: dict, top: int = 10) -> None:
    from daydream.cli._views import abbreviate, fitted_table, kernel_label
    out.print(Text(f"base  {printable(d['base'])}\n      {printable(d['base_device'])}"))
    out.print(Text(f"other {printable(d['other'])}\n      {printable(d['other_device'])}"))
    out.print(Text(f"step time {d['base_ms']:.3f} → {d['other_ms']:.3f} ms  "
                   f"({d['step_delta_ms']:+.3f} ms, {d['step_delta_pct']:+.1f}%)"))
    if d["largest"]:
        lg = d["largest"]
        out.print(Text(f"largest change: the {lg['name']} phase, {lg['base_ms']:.3f} → {lg['other_ms']:.3f} ms/step "
                       f"({lg['delta_ms']:+.3f} ms)"))
    rows = [[p["name"], f"{p['base_ms']:.3f}", f"{p['other_ms']:.3f}", f"{p['delta_ms']:+.3f}"] for p in d["phases"]]
    out.print(fitted_table(out, "phases on the critical path (ms/step)", ["phase", "base", "other", "delta"], rows))
    rows = [[o["name"], o["status"], f"{o['base_ms']:.3f}", f"{o['other_ms']:.3f}", f"{o['delta_ms']:+.3f}"]
            for o in d["operators"][:top]]
    out.print(fitted_table(out, f"operators by contribution to the step delta (critical-path ms/step; top {len(rows)} "
                                f"of {len(d['operators'])})", ["operator", "status", "base", "other", "delta"], rows))
    half = max(12, (out.width - 40) // 2)
    label = lambda k: (f"{abbreviate(kernel_label(k['base_name']), half)} → {abbreviate(kernel_label(k['other_name']), half)}"
                       if "base_name" in k else kernel_label(k["name"]))
    rows = [[label(k), k["status"], f"{k['delta_ms']:+.3f}", f"{k['base_gpu_ms']:.3f}",
             f"{k['other_gpu_ms']:.3f}"] for k in d["kernels"][:top]]
    out.print(fitted_table(out, f"kernels by contribution to the step delta (top {len(rows)} of {len(d['kernels'])}; "
                                "gpu = GPU ms/step)", ["kernel", "status", "delta", "gpu base", "gpu other"], rows))
