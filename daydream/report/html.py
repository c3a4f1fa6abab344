"""Self-contained HTML reports for `analyze --report` and `whatif --report`.

One file, no network: plotly.js is embedded once in the page head and every figure is drawn from
inline JSON. Sections: summary, scenarios side by side, phase breakdown (measured vs predicted,
stacked), timelines per thread/stream (measured and every scenario's prediction on one shared,
zoomable time axis, with the critical path as its own row), critical path by category and its
longest tasks, top kernels, top layers (or operators where the trace has no module annotations).

Timelines of real traces hold 10^5 tasks, far more bars than a browser draws smoothly, so they
are downsampled (see `timeline_bars`): tasks shorter than one screen pixel that sit next to each
other on a resource are merged into one bar, coloured by the phase that took most of its time and
shaded by how busy it was. The full-resolution prediction is `whatif --export-trace` (Perfetto).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from daydream.analysis import critical_path_breakdown, phase_breakdown
from daydream.errors import DaydreamError
from daydream.graph import PHASES, TASK_KINDS
from daydream.graph.schema import GPU_TASK_TYPES, T_IDLE
from daydream.files import write_atomic
from daydream.names import NOTE_CHARS, html_label, printable
from daydream.report.frames import critical_tasks, kernel_table, layer_table, memo, resource_labels
from daydream.report.shorten import distinct_labels
from daydream.sim import Timeline

PHASE_COLORS = {"forward": "#4c78a8", "backward": "#f58518", "optimizer": "#54a24b",
                "communication": "#b279a2", "data": "#e45756", "other": "#9d9d9d"}
# Bars per timeline figure (all panels together). SVG bars beyond ~10^4 make zooming sluggish;
# 12,000 keeps the ResNet-50 report smooth and its file a few MB.
MAX_BARS = 12_000
# Width of a timeline panel in "pixels": tasks shorter than window / PIXELS are merged with
# their short neighbours before the bar cap is applied.
PIXELS = 4_000
NAME_CHARS = 120
TOP_N = 15


@dataclass
class Scenario:
    """One column of a report: a name and the timeline it predicts (the replay for `measured`)."""
    name: str
    timeline: Timeline
    opts: str = ""
    notes: tuple = ()


# ----------------------------------------------------------------------------- data


def _window(timeline: Timeline, measured: bool) -> tuple[int, int]:
    if not measured:
        return timeline.window()
    t = timeline.graph.tasks
    sel = t["in_window"].to_numpy()
    if not sel.any():
        sel = np.ones(len(t), bool)
    return int(t["obs_start"].to_numpy()[sel].min()), int(t["obs_end"].to_numpy()[sel].max())


def timeline_bars(graph, start: np.ndarray, end: np.ndarray, window: tuple[int, int], max_bars: int,
                  rows: np.ndarray | None = None) -> pd.DataFrame:
    """The tasks of `graph` inside `window` as at most `max_bars` bars (times in ms from the window start).

    Tasks shorter than the resolution (window / PIXELS) that follow each other on the same row with
    less than one resolution of gap form one bar; the resolution doubles until the bars fit.
    Columns: row, start, end (ms), phase (code), busy (fraction of the bar that was task time),
    count (tasks merged), text (hover).
    """
    t = graph.tasks
    w0, w1 = window
    row = t["resource"].to_numpy() if rows is None else rows
    s = np.clip(start, w0, w1)
    e = np.clip(end, w0, w1)
    keep = (t["kind"].to_numpy() != T_IDLE) & (e > s) & (row >= 0)
    idx = np.flatnonzero(keep)
    idx = idx[np.lexsort((s[idx], row[idx]))]
    r, s, e = row[idx], s[idx], e[idx]
    dur = e - s
    phase = t["phase"].to_numpy()[idx]
    res = max((w1 - w0) / PIXELS, 1.0)
    while True:
        tiny = dur < res
        reach = np.maximum.accumulate(e) if len(e) else e
        new = np.ones(len(idx), bool)
        if len(idx) > 1:
            new[1:] = (~tiny[1:] | ~tiny[:-1] | (r[1:] != r[:-1]) | (s[1:] - reach[:-1] > res))
        group = np.cumsum(new) - 1
        n_groups = int(group[-1]) + 1 if len(group) else 0
        if n_groups <= max_bars or res > (w1 - w0):
            break
        res *= 2
    if not len(idx):
        return pd.DataFrame(columns=["row", "start", "end", "phase", "busy", "count", "text"])
    first = np.flatnonzero(new)
    g_start = s[first]
    g_end = np.maximum.reduceat(e, first)
    g_busy = np.add.reduceat(dur, first)
    count = np.diff(np.append(first, len(idx)))
    # Dominant phase: the phase with the most task time in the group.
    by_phase = np.zeros((n_groups, len(PHASES)))
    np.add.at(by_phase, (group, phase), dur)
    g_phase = by_phase.argmax(axis=1)
    # The longest task of each group names it.
    order = np.lexsort((-dur, group))
    longest = idx[order[np.searchsorted(group[order], np.arange(n_groups))]]
    names = graph.task_names()[longest]
    kinds = np.asarray(TASK_KINDS, dtype=object)[t["kind"].to_numpy()[longest]]
    layers = graph.layer_names()[longest]
    span = (g_end - g_start) / 1e6
    text = []
    for i in range(n_groups):
        name = html_label(names[i], NAME_CHARS)
        where = f"<br>layer {html_label(layers[i], NAME_CHARS)}" if layers[i] else ""
        if count[i] == 1:
            text.append(f"{name}<br>{kinds[i]}, {PHASES[g_phase[i]]}{where}<br>{span[i]:.3f} ms")
        else:
            text.append(f"{count[i]} tasks merged, busy {g_busy[i] / 1e6:.3f} of {span[i]:.3f} ms"
                        f"<br>mostly {PHASES[g_phase[i]]}; longest: {name} ({kinds[i]})")
    return pd.DataFrame({"row": r[first], "start": (g_start - w0) / 1e6, "end": (g_end - w0) / 1e6,
                         "phase": g_phase, "busy": np.clip(g_busy / np.maximum(g_end - g_start, 1), 0, 1),
                         "count": count, "text": text})


# ----------------------------------------------------------------------------- figures


def timeline_figure(measured: Timeline, scenarios: list[Scenario], max_bars: int = MAX_BARS) -> go.Figure:
    """Measured timeline and each scenario's prediction, one panel each, on a shared time axis (ms)."""
    t = measured.graph.tasks
    panels = [("measured", measured, t["obs_start"].to_numpy(), t["obs_end"].to_numpy(), _window(measured, True))]
    panels += [(f"predicted: {html_label(s.name)}", s.timeline, s.timeline.start, s.timeline.end, _window(s.timeline, False))
               for s in scenarios]
    per_panel = max(max_bars // len(panels), 200)
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.25 / len(panels),
                        subplot_titles=[p[0] for p in panels])
    shown = set()
    lanes_max = 0
    for i, (title, tl, start, end, window) in enumerate(panels, start=1):
        graph = tl.graph
        # A transform may add resources (a communication stream): each panel labels its own.
        labels = [html_label(r) for r in resource_labels(tl)] + ["critical path"]
        n_res = len(labels) - 1
        lanes_max = max(lanes_max, len(labels))
        # The measured panel's critical path is the replay's: replaying reproduces the trace.
        crit = np.full(len(graph.tasks), -1, np.int64)
        crit[tl.critical_path()] = n_res
        bars = pd.concat([timeline_bars(graph, start, end, window, per_panel * n_res // (n_res + 1)),
                          timeline_bars(graph, start, end, window, per_panel // (n_res + 1) + 1, rows=crit)],
                         ignore_index=True)
        lab = np.asarray(labels, dtype=object)
        for p, phase in enumerate(PHASES):
            b = bars[bars["phase"] == p]
            if b.empty:
                continue
            fig.add_trace(go.Bar(
                orientation="h", base=b["start"].round(4), x=(b["end"] - b["start"]).round(4),
                y=lab[b["row"].to_numpy().astype(np.int64)], name=phase, legendgroup=phase,
                showlegend=phase not in shown,
                marker=dict(color=PHASE_COLORS[phase], opacity=(0.35 + 0.65 * b["busy"]).round(2), line_width=0),
                hovertext=b["text"], hoverinfo="text"), row=i, col=1)
            shown.add(phase)
        fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(labels)), row=i, col=1)
    fig.update_xaxes(title_text="ms since the window start", row=len(panels), col=1)
    fig.update_layout(barmode="overlay", template="plotly_white", bargap=0.15,
                      height=max(260, (40 * lanes_max + 90) * len(panels)),
                      legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0),
                      title="Timelines per thread and stream (drag to zoom, double-click to reset)")
    return fig


def phase_figure(columns: list[tuple[str, dict]]) -> go.Figure:
    """Stacked bars of ms/step per phase, one bar per column (measured, then each scenario)."""
    fig = go.Figure()
    x = [html_label(c) for c, _ in columns]
    for phase in PHASES:
        y = [b.get(phase, 0.0) for _, b in columns]
        fig.add_trace(go.Bar(x=x, y=y, name=phase, marker_color=PHASE_COLORS[phase],
                             hovertemplate=f"{phase}: %{{y:.3f}} ms<extra>%{{x}}</extra>"))
    totals = [sum(b.values()) for _, b in columns]
    fig.add_trace(go.Scatter(x=x, y=totals, mode="text", text=[f"{v:.2f} ms" for v in totals],
                             textposition="top center", showlegend=False, hoverinfo="skip"))
    fig.update_layout(barmode="stack", template="plotly_white", height=420, yaxis_title="ms per step",
                      title="Step time by phase on the critical path")
    return fig


def grouped_figure(title: str, table: pd.DataFrame, xlabel: str, height: int | None = None) -> go.Figure:
    """Horizontal grouped bars: one row per index entry, one bar per column."""
    fig = go.Figure()
    # one bar group per distinct entry: labels shortened in the middle but kept distinct (a label
    # shared by two kernels would merge their bars on the category axis); hover has the full name.
    # Control characters are escaped before shortening, HTML after (an entity is never cut).
    labels = [html_label(lab) for lab in distinct_labels([printable(i) for i in table.index])]
    for col in table.columns:
        fig.add_trace(go.Bar(y=labels, x=table[col].round(4), name=html_label(col), orientation="h",
                             hovertext=[f"{html_label(i, NAME_CHARS)}<br>{html_label(col)}: {v:.3f} ms"
                                        for i, v in zip(table.index, table[col])], hoverinfo="text"))
    fig.update_layout(barmode="group", template="plotly_white", title=title, xaxis_title=xlabel,
                      height=height or max(300, 28 * len(table) * max(1, len(table.columns)) ** 0.5 + 140),
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.15))
    return fig


# ----------------------------------------------------------------------------- page


def _table(df: pd.DataFrame, floats: str = "{:.3f}") -> str:
    head = "".join(f"<th>{html_label(c)}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, (float, np.floating)):
                cells.append(f"<td class=num>{floats.format(v) if np.isfinite(v) else '–'}</td>")
            elif isinstance(v, (int, np.integer)):
                cells.append(f"<td class=num>{v}</td>")
            else:
                cells.append(f"<td>{html_label(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1400px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:.9em} th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.summary span{display:inline-block;margin-right:2em} .note{color:#8a6d00} .muted{color:#666;font-size:.9em}
td{max-width:640px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
"""


def _figure_html(fig: go.Figure, div_id: str) -> str:
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       config={"responsive": True, "displaylogo": False})


def _page(title: str, sections: list[str]) -> str:
    # plotly.js goes in once, inline: the page must work offline.
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html_label(title)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "".join(sections) + "</body></html>")


def write_page(page: str, path: str | Path) -> None:
    """Write `page` to `path` atomically: never half-written."""
    write_atomic(path, page.encode("utf-8"), "the report")


def _sections(measured: Timeline, scenarios: list[Scenario]) -> list[str]:
    """The sections both reports share: phases, timelines, critical path, kernels, layers."""
    # the first column is the replay of the unchanged graph (what every speedup divides), so it is
    # labelled replay; only the timeline panel drawn from the trace's own times says measured
    cols = [("replay", phase_breakdown(measured))] + [(s.name, phase_breakdown(s.timeline)) for s in scenarios]
    out = ["<h2>Phases</h2><p class=muted>Every nanosecond of the step is given to the phase of the task "
           "holding the step back at that moment (the critical path), so each bar adds up to the step time.</p>",
           _figure_html(phase_figure(cols), "phases")]
    out += ["<h2>Timelines</h2><p class=muted>Bars are tasks, coloured by phase. Tasks shorter than a pixel "
            "that follow each other are merged into one bar (hover says how many; paler = less busy). "
            "The <b>critical path</b> row shows the tasks the step waited on. Full resolution: "
            "<code>daydream whatif TRACE --export-trace OUT.json</code>, opened in Perfetto.</p>",
            _figure_html(timeline_figure(measured, scenarios), "timelines")]

    crit = pd.DataFrame({c: pd.Series(critical_path_breakdown(tl)) for c, tl in
                         [("replay", measured)] + [(s.name, s.timeline) for s in scenarios]}).fillna(0.0)
    crit = crit.loc[crit.max(axis=1).sort_values(ascending=False).index]
    out += ["<h2>Critical path</h2>",
            _figure_html(grouped_figure("Critical path by category", crit, "ms per step"), "critical_path")]
    for name, tl in [("replay", measured)] + [(s.name, s.timeline) for s in scenarios]:
        ct = critical_tasks(tl).rename(columns={"ms": "ms/step on path", "count": "tasks"})
        out.append(f"<details{' open' if name == 'replay' else ''}><summary>Longest contributors to the "
                   f"critical path: {html_label(name)}</summary>{_table(ct)}</details>")

    k = pd.DataFrame({c: kernel_table(tl) for c, tl in
                      [("replay", measured)] + [(s.name, s.timeline) for s in scenarios]})
    k = k.fillna(0.0)
    k = k.loc[k.max(axis=1).sort_values(ascending=False).index[:TOP_N]]
    gpu = np.isin(measured.graph.tasks["kind"].to_numpy(), GPU_TASK_TYPES).any()
    what = "kernels" if gpu else "CPU tasks"
    out += [f"<h2>Top {what}</h2>",
            _figure_html(grouped_figure(f"Top {what} (ms per step)", k, "ms per step"), "kernels"),
            _table(k.reset_index(names=what[:-1]))]
    kind, _ = layer_table(measured)
    lt = pd.DataFrame({c: layer_table(tl)[1] for c, tl in
                       [("replay", measured)] + [(s.name, s.timeline) for s in scenarios]}).fillna(0.0)
    lt = lt.loc[lt.max(axis=1).sort_values(ascending=False).index[:TOP_N]]
    note = "" if kind == "layer" else (" <span class=muted>(the trace has no nn.Module annotations, so time "
                                       "is grouped by the aten operator that launched it)</span>")
    out += [f"<h2>Top {kind}s</h2>{note}",
            _figure_html(grouped_figure(f"{'GPU' if gpu else 'CPU'} time per {kind} (ms per step)", lt,
                                        "ms per step"), "layers")]
    return out


def warnings_html(result: dict) -> str:
    """A result's `warnings` (what every figure of the run carries) as a list; empty without any."""
    warnings = result.get("warnings") or []
    return ("<ul class=note>" + "".join(f"<li><b>warning</b>: {html_label(w, NOTE_CHARS)}</li>" for w in warnings)
            + "</ul>") if warnings else ""


def _summary(items: list[tuple[str, str]]) -> str:
    return "<p class=summary>" + "".join(f"<span>{html_label(k)} <b>{html_label(v)}</b></span>"
                                         for k, v in items) + "</p>"


def whatif_page(results: list, names: list[str] | None = None) -> str:
    """The page for one or more what-if results of the same trace (see `whatif_report`)."""
    if not results:
        raise DaydreamError("no what-if results to report")
    first = results[0]
    names = names or [" + ".join(o.name for o in r.optimizations) or "replay" for r in results]
    base = memo(first.base)
    scen = [Scenario(n, base if r.predicted is r.base else memo(r.predicted), "; ".join(_opt_text(o) for o in r.optimizations) or "(none)", tuple(r.notes))
            for n, r in zip(names, results)]
    tr = first.trace
    err = 100 * abs(first.replay_ms - first.measured_ms) / first.measured_ms if first.measured_ms else 0.0
    head = [f"<h1>daydream what-if: {html_label(tr.path)}</h1>",
            _summary([("device", str(tr.device)), ("steps", str(tr.steps)),
                      ("measured", f"{first.measured_ms:.3f} ms/step"), ("replay", f"{first.replay_ms:.3f} ms"),
                      ("replay error", f"{err:.2f}%")])]
    rows = pd.DataFrame({"scenario": [s.name for s in scen], "optimizations": [s.opts for s in scen],
                         "predicted ms/step": [r.predicted_ms for r in results],
                         "speedup vs replay": [r.speedup for r in results],
                         "change vs replay %": [100 * (r.predicted_ms / r.replay_ms - 1) if r.replay_ms else
                                                float("nan") for r in results]})
    head += ["<h2>Scenarios</h2>", _table(rows)]
    notes = [f"<li><b>{html_label(s.name)}</b>: {html_label(n, NOTE_CHARS)}</li>" for s in scen for n in s.notes]
    if notes:
        head.append(f"<ul class=note>{''.join(notes)}</ul>")
    return _page(f"daydream what-if: {tr.path}", head + _sections(base, scen))


def _opt_text(o) -> str:
    params = ",".join(f"{k}={v}" for k, v in o.params.items())
    return f"{o.name}:{params}" if params else o.name


def whatif_report(results: list, path: str | Path, names: list[str] | None = None) -> None:
    """Write the HTML report comparing `results` (WhatIf objects of one trace) to `path`, atomically."""
    write_page(whatif_page(results, names), path)


def job_sections(analysis: dict, bars: list[dict]) -> list[str]:
    """Sections of a multi-rank job (daydream.job): ranks, stragglers, collectives, a rank x step
    heat map of recorded step times, and every rank's collectives in the coupled replay (waiting
    for the last peer in grey, the transfer in the communication colour)."""
    ranks = pd.DataFrame([{k: v for k, v in r.items() if k != "step_ms"} for r in analysis["per_rank"]])
    out = ["<h2>Ranks</h2><p class=muted>ms per step. Replay: all ranks simulated together, each "
           "collective starting when its last participant arrives; waiting is recomputed, not copied.</p>",
           _table(ranks)]
    if analysis["straggler_detail"]:
        out.append("<ul class=note>" + "".join(
            f"<li>straggler rank {s['rank']}: held its peers up {s['held_up_ms']:.3f} ms/step; "
            f"{html_label(s['why'], NOTE_CHARS)}</li>"
            for s in analysis["straggler_detail"]) + "</ul>")
    if analysis["collectives"]:
        out += ["<h2>Collectives</h2><p class=muted>time: transfer after the last participant arrived; "
                "busbw by the nccl-tests formula, against the link's peak.</p>",
                _table(pd.DataFrame(analysis["collectives"]))]
    steps = [r["step_ms"] for r in analysis["per_rank"]]
    width = max(len(x) for x in steps)
    z = [x + [None] * (width - len(x)) for x in steps]
    heat = go.Figure(go.Heatmap(z=z, x=[f"step {i}" for i in range(width)],
                                y=[f"rank {r['rank']}" for r in analysis["per_rank"]],
                                colorscale="Viridis", colorbar=dict(title="ms")))
    heat.update_layout(template="plotly_white", title="Recorded step time, rank x step",
                       height=max(260, 22 * len(steps) + 120), yaxis=dict(autorange="reversed"))
    out += ["<h2>Steps by rank</h2>", _figure_html(heat, "rank_steps")]
    if bars:
        fig = go.Figure()
        for label, lo, hi, color in (("waiting for the last peer", "arrive_ms", "start_ms", "#c8c8c8"),
                                     ("transfer", "start_ms", "end_ms", PHASE_COLORS["communication"])):
            fig.add_trace(go.Bar(y=[f"rank {b['rank']}" for b in bars], x=[b[hi] - b[lo] for b in bars],
                                 base=[b[lo] for b in bars], orientation="h", name=label, marker_color=color,
                                 hovertext=[f"{html_label(b['name'])}: {b[hi] - b[lo]:.3f} ms" for b in bars],
                                 hoverinfo="text"))
        fig.update_layout(barmode="overlay", template="plotly_white", xaxis_title="ms (coupled replay)",
                          title="Collectives per rank", height=max(260, 22 * len(steps) + 120),
                          yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.2))
        out += ["<h2>Collectives per rank</h2>", _figure_html(fig, "rank_collectives")]
    return out


def analyze_page(analysis: dict, timeline: Timeline, bars: list[dict] | None = None) -> str:
    """The page for `analyze --report`: the analysis dict (daydream.analysis.analyze) and the replay;
    a multi-rank job's (with `per_rank`) adds its own sections (`job_sections`)."""
    a = analysis
    items = [("device", str(a["device"])), ("steps", str(a["steps"])), ("step time", f"{a['measured_ms']:.3f} ms"),
             ("GPU busy", "no GPU in the trace" if a["gpu_busy_pct"] is None else f"{a['gpu_busy_pct']:.1f}%"),
             ("CPU busy", f"{a['cpu_busy_pct']:.1f}%")]
    if "flops_utilization_pct" in a:
        items.append(("FLOP utilization", f"{a['flops_utilization_pct']:.1f}%"))
    if "throughput_per_s" in a:
        items.append(("throughput", f"{a['throughput_per_s']:.1f} samples/s"))
    head = [f"<h1>daydream analyze: {html_label(a['trace'])}</h1>", _summary(items), warnings_html(a)]
    if "per_rank" in a:
        head += job_sections(a, bars or [])
    from daydream.report.views_html import views_sections
    return _page(f"daydream analyze: {a['trace']}", head + _sections(memo(timeline), []) + views_sections(a))


def analyze_report(analysis: dict, timeline: Timeline, path: str | Path, bars: list[dict] | None = None) -> None:
    """Write the analyze report to `path`, atomically."""
    write_page(analyze_page(analysis, timeline, bars), path)
