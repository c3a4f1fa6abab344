"""HTML sections for the views (operators, modules, kernels, idle, launches, communication) in the
`analyze --report` page, and the pages of `diff --report` and `suggest --report`.

Tables hold every name in full (escaped; long cells are cut with an ellipsis by the page's CSS);
figures are drawn by plotly from inline JSON, as in daydream/report/html.py.
"""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from daydream.report.html import _figure_html, _page, _summary, _table, grouped_figure, warnings_html, write_page

TOP = 25


def _frame(rows: list[dict], columns: dict[str, str], steps: int = 1, per_step: tuple = ()) -> pd.DataFrame:
    """A DataFrame of `rows` with `columns` renamed (key -> header); keys in `per_step` divided by steps."""
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=list(columns.values()))
    for k in per_step:
        if k in df:
            df[k] = df[k] / max(steps, 1)
    return df[[k for k in columns if k in df]].rename(columns=columns)


def views_sections(a: dict) -> list[str]:
    """The views of an `analyze` result (daydream/views.py) as report sections."""
    steps = max(a.get("steps", 0), 1)
    out = []
    ops = a.get("operators") or []
    if ops:
        cols = {"name": "operator", "input_dims": "input dims", "count": "count", "total_ms": "CPU ms/step",
                "self_ms": "self CPU ms/step", "gpu_ms": "GPU ms/step", "gpu_step_pct": "GPU % of step"}
        df = _frame(ops[:TOP], cols, steps, ("total_ms", "self_ms", "gpu_ms"))
        fig = df.set_index("operator")[["CPU ms/step", "self CPU ms/step", "GPU ms/step"]]
        out += ["<h2 id=view-operators>Operators</h2><p class=muted>Per aten operator: inclusive and self CPU time, and "
                "the GPU time of the kernels it launched itself (the innermost operator around each launch).</p>",
                _figure_html(grouped_figure("Operators (ms per step)", fig, "ms per step"), "operators"),
                _table(df)]
    mods = a.get("modules") or []
    if mods:
        df = _frame(mods[:TOP], {"name": "module", "count": "count", "total_ms": "CPU ms/step",
                                 "gpu_ms": "GPU ms/step (fwd+bwd)", "gpu_step_pct": "GPU % of step"},
                    steps, ("total_ms", "gpu_ms"))
        out += ["<h2 id=view-modules>Modules</h2>", _table(df)]
    ks = a.get("kernels") or []
    if ks:
        rows = []
        for k in ks[:TOP]:
            r = dict(k)
            r["tensor_core"] = {True: "yes", False: "no", None: ""}[k["tensor_core"]]
            rows.append(r)
        cols = {"name": "kernel", "class": "class", "count": "count", "total_ms": "ms/step", "mean_ms": "mean ms",
                "min_ms": "min ms", "max_ms": "max ms", "tensor_core": "tensor cores", "occupancy_pct": "occupancy %",
                "flops_utilization_pct": "FLOP util %", "bandwidth_utilization_pct": "bandwidth util %"}
        df = _frame(rows, cols, steps, ("total_ms",))
        out += ["<h2 id=view-kernels_view>Kernels</h2><p class=muted>Occupancy is Kineto's estimate where recorded; FLOP "
                "and bandwidth utilization where the launching operator's shapes price the kernel (an operator that "
                "launched one kernel).</p>", _table(df)]
    idle = a.get("idle") or {}
    if idle:
        cats = ["host_bound_ms", "kernel_bound_ms", "launch_gap_ms", "other_ms"]
        labels = {"host_bound_ms": "host-bound", "kernel_bound_ms": "kernel-bound (other streams)",
                  "launch_gap_ms": "launch gap", "other_ms": "other"}
        streams = pd.DataFrame(idle["streams"])
        streams.index = [f"GPU {d} stream {s}" for d, s in zip(streams["device"], streams["stream"])]
        per_step = pd.DataFrame(idle["per_step"]).set_index("step")[cats].rename(columns=labels)
        per_step.index = [f"step {i}" for i in per_step.index]
        fig = go.Figure([go.Bar(x=per_step.index, y=per_step[c], name=c) for c in per_step.columns])
        fig.update_layout(barmode="stack", template="plotly_white", yaxis_title="ms",
                          title=f"Idle time of GPU {idle['device']} stream {idle['stream']} per step, by cause")
        out += ["<h2 id=view-idle>GPU idle time</h2><p class=muted>Gaps on each stream by cause, as HTA defines them: "
                "<b>host-bound</b>, the next kernel was launched after the previous one ended (the GPU waited for "
                "the CPU); <b>kernel-bound</b>, the next kernel waited on another stream; <b>launch gap</b>, "
                "queued back-to-back, a gap under 30 µs; <b>other</b>. ms per step.</p>",
                _table(streams[["busy_ms", "idle_ms", *cats]].rename(columns=labels).reset_index(names="stream")),
                _figure_html(fig, "idle")]
    la = a.get("launches") or {}
    if la:
        items = [("kernels per step", f"{la['kernels_per_step']:.0f}"),
                 ("runtime calls per step", f"{la['runtime_calls_per_step']:.0f}"),
                 ("runtime ms per step", f"{la['runtime_ms_per_step']:.3f}"),
                 (f"kernels under {la['short_kernel_us']:g} us", f"{la['short_kernels']} "
                  f"({la['short_kernel_count_pct']:.1f}% of kernels, {la['short_kernel_time_pct']:.1f}% of time)")]
        items += [(f"launch→start {k} (us)", f"{v:.1f}") for k, v in (la.get("delay_us") or {}).items()]
        out += ["<h2 id=view-launches>Launches</h2>", _summary(items)]
    comm = a.get("communication") or {}
    if comm:
        items = [("collectives", str(comm["count"])), ("communication ms/step", f"{comm['comm_ms']:.3f}"),
                 ("overlapped with computation", "–" if comm["overlap_pct"] is None else f"{comm['overlap_pct']:.1f}%"),
                 ("exposed ms/step", f"{comm['exposed_ms']:.3f}"), ("exposed % of step", f"{comm['exposed_step_pct']:.1f}")]
        out += ["<h2 id=view-communication>Communication</h2>", _summary(items)]
    return out


# ----------------------------------------------------------------------------- diff


def diff_page(d: dict) -> str:
    head = [f"<h1>daydream diff</h1><p>base <code>{html.escape(str(d['base']))}</code> "
            f"({html.escape(str(d['base_device']))})<br>other <code>{html.escape(str(d['other']))}</code> "
            f"({html.escape(str(d['other_device']))})</p>",
            _summary([("base", f"{d['base_ms']:.3f} ms/step"), ("other", f"{d['other_ms']:.3f} ms/step"),
                      ("delta", f"{d['step_delta_ms']:+.3f} ms ({d['step_delta_pct']:+.1f}%)")]
                     + ([("host speed", f"{d['host_speed']['speed']:.3f}x ({d['host_speed']['functions']} "
                                        f"{'Python functions' if d['host_speed']['from'] == 'python' else 'CPU operators'})")]
                        if d.get("host_speed") else []))]
    phases = pd.DataFrame(d["phases"]).set_index("name")
    out = head + ["<h2 id=view-phases>Phases on the critical path</h2>",
                  _figure_html(grouped_figure("Phases (ms per step)", phases[["base_ms", "other_ms"]], "ms per step"),
                               "phases"), _table(phases.reset_index(names="phase"))]
    ops = _frame(d["operators"][:TOP], {"name": "operator", "status": "status", "base_ms": "base ms",
                                        "other_ms": "other ms", "delta_ms": "delta ms"})
    out += ["<h2 id=view-operators>Operators by contribution to the step delta</h2><p class=muted>Critical-path ms per "
            "step charged to each operator; the deltas add up to the step delta.</p>", _table(ops)]
    ks = _frame(d["kernels"][:TOP], {"name": "kernel", "status": "status", "delta_ms": "critical-path delta ms",
                                     "base_gpu_ms": "GPU ms base", "other_gpu_ms": "GPU ms other",
                                     "base_count": "count base", "other_count": "count other"})
    out += ["<h2 id=view-kernels>Kernels by contribution to the step delta</h2>",
            _table(ks) if d["kernels"] else "<p class=muted>No GPU kernels in either trace.</p>"]
    return _page(f"daydream diff: {d['base']} vs {d['other']}", out)


def diff_report(d: dict, path: str | Path) -> None:
    write_page(diff_page(d), path)


# ----------------------------------------------------------------------------- suggest


def suggest_page(s: dict) -> str:
    head = [f"<h1>daydream suggest: {html.escape(str(s['trace']))}</h1>",
            _summary([("device", str(s["device"])), ("measured", f"{s['measured_ms']:.3f} ms/step"),
                      ("replay", f"{s['replay_ms']:.3f} ms"), ("simulated", str(s["simulated"]))]),
            warnings_html(s)]
    rows = [{"#": i + 1, "optimizations": x["name"], "predicted ms/step": x["predicted_ms"],
             "speedup": x["speedup"], "peak GiB": (x["memory_peak_bytes"] / 2**30) if x["memory_peak_bytes"]
             is not None else float("nan"), "checked against": x.get("checked_against") or "no measured pair yet",
             "why": x["why"]} for i, x in enumerate(s["suggestions"])]
    df = pd.DataFrame(rows)
    order = ("checked against a measured pair first, then by predicted step time"
             if s.get("ranking", "checked") == "checked" else "by predicted step time")
    out = head + [f"<h2 id=view-suggestions>Suggestions, {order}</h2>"]
    if not df.empty:
        checked = [x.get("checked_against") is not None for x in s["suggestions"]]
        fig = go.Figure(go.Bar(y=df["optimizations"].str.slice(0, 60), x=df["predicted ms/step"], orientation="h",
                               marker_color=["#1f77b4" if c else "#aec7e8" for c in checked]))
        fig.add_vline(x=s["replay_ms"], line_dash="dash", annotation_text="replay")
        fig.update_layout(template="plotly_white", yaxis=dict(autorange="reversed"), xaxis_title="ms per step",
                          height=max(300, 26 * len(df) + 120),
                          title="Predicted step time (pale: not yet checked against a measured pair)")
        out += [_figure_html(fig, "suggestions"),
                "<style>#why td{white-space:normal}</style><div id=why>" + _table(df) + "</div>"]
    if s["skipped"]:
        out += ["<h2 id=view-skipped>Skipped</h2><ul>" + "".join(
            f"<li><b>{html.escape(k['name'])}</b>: {html.escape(k['why'])}</li>" for k in s["skipped"]) + "</ul>"]
    return _page(f"daydream suggest: {s['trace']}", out)


def suggest_report(s: dict, path: str | Path) -> None:
    write_page(suggest_page(s), path)
