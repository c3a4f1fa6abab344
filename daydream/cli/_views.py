"""Terminal tables for the views (operators, kernels, idle, launches, communication) and for
`diff` and `suggest`: they fit the console's width (80 columns in a pipe) by abbreviating long
names in the middle; numbers are never cut."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from daydream.names import printable

ELLIPSIS = "…"
MIN_NAME = 16


def abbreviate(name: str, width: int) -> str:
    """`name` shortened to `width` characters by cutting its middle (the start says what library,
    the end which template or shape, both tell kernels apart)."""
    name = " ".join(str(name).split())
    if len(name) <= width:
        return name
    if width <= 1:
        return name[:width]
    head = (width - 1) * 3 // 5
    return name[:head] + ELLIPSIS + name[len(name) - (width - 1 - head):]


def kernel_label(name: str) -> str:
    """A kernel's name without `void ` and its parameter list (the template arguments stay: they
    tell the variants apart); the full name is in --json and the report."""
    n = " ".join(str(name).split()).removeprefix("void ")
    if n.endswith(")") and "(" in n and not n.startswith(("Memcpy", "Memset")):
        depth = 0
        for i in range(len(n) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(n[i], 0)
            if depth == 0:
                return n[:i] if i > 0 else n
    return n


def _fit(text: str, width: int) -> str:
    """`text` in `width` characters; a pair `A → B` keeps its arrow (each side shortened alike)."""
    if len(text) <= width or " → " not in text:
        return abbreviate(text, width)
    a, b = text.split(" → ", 1)
    side = max(1, (width - 3) // 2)
    return f"{abbreviate(a, side)} → {abbreviate(b, width - 3 - side)}"


def fitted_table(console, title: str, headers: list[str], rows: list[list], name_col: int = 0):
    """A table whose text column `name_col` is abbreviated so the whole table fits `console.width`.

    Cells are plain text (never rich markup: names come from the trace); the other columns are
    right-aligned and never wrapped or cut."""
    cells = [[printable(c) for c in r] for r in rows]  # control characters escaped, 10,000 at most
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    # no box, no edge padding: columns are separated by two spaces (one padding each side)
    fixed = sum(w for i, w in enumerate(widths) if i != name_col) + 2 * (len(headers) - 1)
    name_w = max(MIN_NAME, min(widths[name_col], console.width - fixed))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for i, h in enumerate(headers):
        if i == name_col:
            table.add_column(h, no_wrap=True, overflow="crop", max_width=name_w)
        else:
            table.add_column(h, justify="right", no_wrap=True, min_width=widths[i])
    for r in cells:
        table.add_row(*(Text(_fit(c, name_w) if i == name_col else c) for i, c in enumerate(r)))
    # the title above the table, wrapped at the console's width rather than the table's
    return Group(Text(title, style="italic"), table)


def shape_text(dims) -> str:
    """`[[32, 3, 224, 224], [], [64]]` -> `32x3x224x224 64`: the tensors' shapes, scalars left out."""
    if not isinstance(dims, list):
        return str(dims)
    return " ".join("x".join(map(str, d)) if isinstance(d, list) else str(d) for d in dims
                    if d not in ([], None, ""))


def _f(v, digits=3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def print_views(out, result: dict, top: int = 10) -> None:
    """The views of `analyze` (see daydream/views.py) as tables."""
    steps = max(result.get("steps", 0), 1)
    ops = result.get("operators") or []
    if ops:
        by_shape = "input_dims" in ops[0]
        gpu = 6 if result.get("has_gpu", True) else 4  # no GPU columns on a trace without a GPU
        rows = [[o["name"] + (f" {shape_text(o['input_dims'])}" if by_shape and o["input_dims"] else ""), o["count"],
                 _f(o["total_ms"] / steps), _f(o["self_ms"] / steps), _f(o["gpu_ms"] / steps),
                 _f(o["gpu_step_pct"], 1)][:gpu] for o in ops[:top]]
        out.print(fitted_table(out, f"operators{' by input shape' if by_shape else ''} (ms/step, count over {steps} "
                                    f"steps; top {len(rows)} of {len(ops)})", ["operator", "count", "cpu", "self", "gpu", "gpu%"][:gpu], rows))
    mods = result.get("modules") or []
    if mods:
        gpu = 5 if result.get("has_gpu", True) else 3
        rows = [[m["name"], m["count"], _f(m["total_ms"] / steps), _f(m["gpu_ms"] / steps),
                 _f(m["gpu_step_pct"], 1)][:gpu] for m in mods[:top]]
        out.print(fitted_table(out, f"modules (ms/step, count over {steps} steps; top {len(rows)} of {len(mods)})",
                               ["module", "count", "cpu", "gpu", "gpu%"][:gpu], rows))
    ks = result.get("kernels") or []
    if ks:
        rows = []
        for k in ks[:top]:
            tc = {True: "yes", False: "no", None: ""}[k["tensor_core"]]
            rows.append([kernel_label(k["name"]), k["count"], _f(k["total_ms"] / steps), _f(k["mean_ms"]),
                         _f(k.get("occupancy_pct"), 0), _f(k.get("flops_utilization_pct"), 1),
                         _f(k.get("bandwidth_utilization_pct"), 1), tc])
        out.print(fitted_table(out, f"kernels (ms/step; mean ms per call; count over {steps} steps; top {len(rows)} of {len(ks)})",
                               ["kernel", "count", "ms", "mean", "occ%", "flop%", "bw%", "TC"], rows))
    idle = result.get("idle") or {}
    if idle:
        rows = [[f"GPU {s['device']} stream {s['stream']}", _f(s["busy_ms"]), _f(s["idle_ms"]), _f(s["host_bound_ms"]),
                 _f(s["kernel_bound_ms"]), _f(s["launch_gap_ms"]), _f(s["other_ms"])] for s in idle["streams"]]
        out.print(fitted_table(out, "GPU idle by cause (ms/step; host: waiting for launches, kernel: waiting on "
                                    "other streams, gap: back-to-back under 30 us)",
                               ["stream", "busy", "idle", "host", "kernel", "gap", "other"], rows))
        if len(idle["per_step"]) > 1:
            rows = [[str(s["step"]), _f(s["host_bound_ms"]), _f(s["kernel_bound_ms"]), _f(s["launch_gap_ms"]),
                     _f(s["other_ms"])] for s in idle["per_step"][:top]]
            out.print(fitted_table(out, f"idle of GPU {idle['device']} stream {idle['stream']} per step (ms)",
                                   ["step", "host", "kernel", "gap", "other"], rows))
    la = result.get("launches") or {}
    if la.get("delay_us"):
        d = la["delay_us"]
        out.print(Text(f"launch→start delay (us): p50 {d['p50']:.1f}  p90 {d['p90']:.1f}  p99 {d['p99']:.1f}  "
                       f"max {d['max']:.1f}"))
        out.print(Text(f"short kernels (<{la['short_kernel_us']:g} us): {la['short_kernels']} "
                       f"({la['short_kernel_count_pct']:.1f}% of kernels, {la['short_kernel_time_pct']:.1f}% of "
                       f"kernel time); per step {la['kernels_per_step']:.0f} kernels, "
                       f"{la['runtime_calls_per_step']:.0f} runtime calls, {la['runtime_ms_per_step']:.3f} ms"))
    comm = result.get("communication") or {}
    if comm.get("count"):
        out.print(Text(f"communication: {comm['comm_ms']:.3f} ms/step in {comm['count']} collectives, "
                       f"{_f(comm['overlap_pct'], 1)}% overlapped with computation, exposed "
                       f"{comm['exposed_ms']:.3f} ms/step ({comm['exposed_step_pct']:.1f}% of the step)"))
