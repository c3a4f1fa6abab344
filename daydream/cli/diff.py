"""`daydream diff BASE OTHER`: what changed between two traces of one job."""
from __future__ import annotations

import click
from rich.text import Text

from daydream.cli import main
from daydream.cli._common import (emit_json, json_option, output_path, progress, scheduler_option, step_option,
                                  stdout_console, workers_option)
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
@workers_option
@scheduler_option
def diff(base, other, as_json, step_annotation, top, report, workers, scheduler):
    """Step time, phases, operators and kernels of OTHER against BASE, ranked by their
    contribution to the step-time change (critical-path time per step). A multi-rank BASE or OTHER
    is its job's slowest rank, at its times in the coupled replay."""
    from daydream.diff import diff as diff_traces
    from daydream.sim import simulate
    from daydream.trace import load
    report_path = output_path(report, (".html",), inputs=(base, other))
    from daydream.cli import _job
    jobs = [p for p in (base, other) if _job.is_job(p)]
    with progress(not as_json, 3 + bool(report_path) + sum(len(_job.rank_sources(p)) for p in jobs), "diff") as tick:
        side = {}
        for path, what in ((base, "base"), (other, "other")):
            if path in jobs:  # the job's slowest rank, its coupled-replay timeline
                tr, tl, rank = _job.slowest_timeline(path, step_annotation, workers, scheduler, tick)
                side[what] = (tr, tl, rank)
            else:
                tr = load(path, step_annotation)
                side[what] = (tr, simulate(build_graph(tr)), None)
            tick(f"{what} loaded")
        (tb, lb, nb), (to, lo, no) = side["base"], side["other"]
        result = diff_traces(tb, to, lb, lo)
        for key, path, rank in (("base", base, nb), ("other", other, no)):
            if rank is not None:  # a job: its path, and which rank stands for it
                result[key], result[f"{key}_rank"] = path, rank
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
    rank = lambda k: f" (rank {d[k + '_rank']}, the job's slowest)" if k + "_rank" in d else ""
    out.print(Text(f"base  {printable(d['base'])}{rank('base')}\n      {printable(d['base_device'])}"))
    out.print(Text(f"other {printable(d['other'])}{rank('other')}\n      {printable(d['other_device'])}"))
    out.print(Text(f"step time {d['base_ms']:.3f} → {d['other_ms']:.3f} ms  "
                   f"({d['step_delta_ms']:+.3f} ms, {d['step_delta_pct']:+.1f}%)"))
    if d["largest"]:
        lg = d["largest"]
        out.print(Text(f"largest change: the {lg['name']} phase, {lg['base_ms']:.3f} → {lg['other_ms']:.3f} ms/step "
                       f"({lg['delta_ms']:+.3f} ms)"))
    if d.get("host_speed"):
        h = d["host_speed"]
        what = "Python functions" if h["from"] == "python" else "CPU operators"
        out.print(Text(f"host: the same {what} run {h['speed']:.3f}x as fast in other (median of {h['functions']}, "
                       f"quartiles {h['quartiles'][0]:.3f}-{h['quartiles'][1]:.3f}); across two machines that is "
                       f"--opt host:speed={h['speed']:.3f}"))
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
    if not d["kernels"]:
        out.print("kernels: no GPU kernels in either trace")
        return
    out.print(fitted_table(out, f"kernels by contribution to the step delta (top {len(rows)} of {len(d['kernels'])}; "
                                "gpu = GPU ms/step)", ["kernel", "status", "delta", "gpu base", "gpu other"], rows))
