"""Self-contained HTML page (plotly.js embedded, no CDN): memory over time stacked by category,
bars at the peak, measured beside predicted."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from daydream.memory.timeline import CATEGORIES, Timeline
from daydream.files import write_atomic
from daydream.names import NOTE_CHARS, html_label

COLORS = {"parameter": "darkgreen", "gradient": "mediumblue", "optimizer_state": "goldenrod",
          "activation": "red", "temporary": "mediumpurple", "input": "black",
          "autograd_detail": "royalblue", "unknown": "grey"}
MAX_POINTS = 4000


def _downsample(tl: Timeline) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS samples; each bucket keeps the sample with the largest total, so the
    plotted peak is the measured peak."""
    n = len(tl.times)
    if n <= MAX_POINTS:
        return tl.times, tl.bytes
    edges = np.linspace(0, n, MAX_POINTS + 1).astype(np.int64)
    total = tl.total
    pick = np.array([s + int(np.argmax(total[s:e])) for s, e in zip(edges[:-1], edges[1:]) if e > s])
    return tl.times[pick], tl.bytes[pick]


# The capacity line is drawn when the curve reaches this share of it; below, a line at the top
# would flatten the curve to the axis (38 MiB under 256 GiB) and the capacity is only written.
CAPACITY_LINE_SHARE = 0.05


def _draw_capacity(report, tl) -> bool:
    """Whether the device's capacity belongs on the chart: a GPU's (a CPU's is the hardware table's
    generic host, not the recording machine's), and near enough to the curve to be read with it."""
    return (not str(report.device).lower().startswith("cpu")
            and tl.total.max(initial=0) >= CAPACITY_LINE_SHARE * report.capacity_bytes)


def figure(report) -> go.Figure:
    panels = [("measured", report.measured)] + ([("predicted", report.predicted)] if report.predicted is not None else [])
    fig = make_subplots(rows=len(panels) + 1, cols=1, vertical_spacing=0.08,
                        subplot_titles=[f"{label} memory over time (MiB)" for label, _ in panels]
                        + ["by category at the peak (MiB)"])
    for row, (label, tl) in enumerate(panels, start=1):
        times, bytes_ = _downsample(tl)
        t = (times - tl.times[0]) / 1e6
        for i, c in enumerate(CATEGORIES):
            fig.add_trace(go.Scatter(x=t, y=bytes_[:, i] / 2**20, name=c, stackgroup=label, mode="lines",
                                     line=dict(width=0.5, color=COLORS[c]), legendgroup=c,
                                     showlegend=row == 1), row=row, col=1)
        fig.update_xaxes(title_text="ms", row=row, col=1)
        if report.capacity_bytes and _draw_capacity(report, tl):
            fig.add_hline(y=report.capacity_bytes / 2**20, line_dash="dash", line_color="black",
                          annotation_text=f"{html_label(report.device)} capacity", row=row, col=1)
    for label, tl in panels:
        at = tl.at_peak()
        fig.add_trace(go.Bar(x=list(CATEGORIES), y=[at[c] / 2**20 for c in CATEGORIES], name=f"{label} at peak",
                             marker_color="steelblue" if label == "measured" else "darkorange"),
                      row=len(panels) + 1, col=1)
    fig.update_layout(barmode="group", height=360 * (len(panels) + 1), template="plotly_white",
                      title=f"daydream memory: {html_label(report.trace)}")
    return fig


def write_html(report, out: str | Path) -> None:
    """Write the page to `out` atomically (temporary name, then rename)."""
    out = Path(out)
    j = report.as_json()
    rows = "".join(f"<tr><td>{html_label(k)}</td><td>{v / 2**20:,.1f}</td>"
                   + (f"<td>{j['predicted'][k] / 2**20:,.1f}</td>" if "predicted" in j else "") + "</tr>"
                   for k, v in j["at_peak"].items())
    notes = "".join(f"<li>{html_label(n, NOTE_CHARS)}</li>" for n in j.get("model", []) + j["notes"]
                    + ([j["oom_warning"]] if j["oom_warning"] else []))
    head = (f"<h1>Memory: {html_label(j['trace'])}</h1><p>device {html_label(j['device'])}; "
            f"measured peak {j['peak_bytes'] / 2**20:,.1f} MiB"
            + (f"; predicted peak {j['predicted_peak_bytes'] / 2**20:,.1f} MiB" if "predicted" in j else "")
            + (f"; capacity {report.capacity_bytes / 2**30:,.1f} GiB"
               + ("" if _draw_capacity(report, report.measured) else
                  " (the hardware table's generic host, not drawn)" if str(report.device).lower().startswith("cpu")
                  else " (not drawn: far above the curve)") if report.capacity_bytes else "")
            + "</p><table border=1 cellpadding=4><tr><th>category</th><th>measured at peak (MiB)</th>"
            + ("<th>predicted at peak (MiB)</th>" if "predicted" in j else "") + f"</tr>{rows}</table>"
            + (f"<ul>{notes}</ul>" if notes else ""))
    body = pio.to_html(figure(report), include_plotlyjs=True, full_html=False)
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>daydream memory</title></head><body>{head}{body}</body></html>"
    write_atomic(out, page.encode("utf-8"), "the report")
