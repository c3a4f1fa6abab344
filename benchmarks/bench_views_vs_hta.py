"""daydream's views against Holistic Trace Analysis (HTA)'s numbers for the same quantities.

For each trace, HTA (benchmarks/hta_views.py, in benchmarks/.venv-hta made by setup_hta.sh) computes
its idle-time breakdown, communication/computation overlap, GPU kernel breakdown and temporal
breakdown, twice: as it does by default (timestamps rounded to whole microseconds) and with
HTA_DISABLE_NS_ROUNDING=1 (the trace's own nanoseconds). daydream computes the same quantities
with HTA's definitions (whole trace, every stream of the rank, gaps between kernels only) from
its own tables (daydream/views.py: stream_gaps, comm_overlap), in nanoseconds.

Scope: HTA drops the last ProfilerStep and GPU work no recorded launch explains; so does this
comparison (daydream's own views cover the CONTRACT.md analysis window, all steps).

Where the definitions match, the figures must agree within TOLERANCE_PCT with HTA's unrounded
run. What differs by definition, and is reported rather than compared:
* HTA's default run rounds every ns timestamp (start up, end down), which shortens every kernel by
  up to 2 us and lengthens every gap accordingly;
* `analyze` reports idle time per step inside the analysis window and counts the stream's time
  before its first and after its last kernel of the window as host-bound; HTA only sums gaps
  between two kernels over the whole trace;
* HTA's `other` idle time is daydream's kernel_bound + other (daydream splits out gaps where the
  replay says the kernel waited on another stream).

Usage: python benchmarks/bench_views_vs_hta.py [TRACE ...]   (writes results/bench_views_vs_hta.json)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from daydream.graph import build_graph

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
SHARED = HERE.parent.parent / "shared" / "traces"
DEFAULT_TRACES = [SHARED / "hta" / "ns_resolution_a100.json.gz", SHARED / "hta" / "nccl_2rank_a100_rank0.json.gz"]
OUT = HERE / "results" / "bench_views_vs_hta.json"
HTA_PYTHON = HERE / ".venv-hta" / "bin" / "python"
TOLERANCE_PCT = 2.0


def hta(trace: Path, rounding: bool) -> dict:
    env = dict(os.environ, HTA_DISABLE_NS_ROUNDING="0" if rounding else "1")
    proc = subprocess.run([str(HTA_PYTHON), str(HERE / "hta_views.py"), str(trace)], capture_output=True,
                          text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"HTA failed on {trace}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def ours(trace: Path) -> dict:
    """The same quantities with HTA's definitions, from daydream's tables (microseconds)."""
    import daydream
    from daydream.graph.schema import T_COLLECTIVE, T_KERNEL
    from daydream.sim import simulate
    from daydream.table import column
    from daydream.views import IDLE_CATEGORIES, _Scope, comm_overlap, stream_gaps
    tr = daydream.load(trace)
    tl = simulate(build_graph(tr))
    s = _Scope(tr, tl)
    g = s.graph
    # HTA's scope: GPU work launched by CPU events that start before the last ProfilerStep starts
    # (HTA's Trace._filter_irrelevant_gpu_kernels drops the last step and unlaunched GPU work)
    launch = g.column("launch")
    w = tr.windows[s.rank]
    if w.steps > 1:
        cut = int(w.step_spans[:, 0].max())
        s.gpu = s.gpu & (launch >= 0) & (s.obs_start[np.maximum(launch, 0)] < cut)
    res = g.column("resource")
    idle = []
    for r in np.unique(res[s.gpu]).tolist():
        g0, g1, cat = stream_gaps(s, r, edges=False)
        by = np.bincount(cat, weights=(g1 - g0), minlength=len(IDLE_CATEGORIES)) / 1e3
        idle.append({"stream": int(column(g, "resources", "tid")[r]), **dict(zip(IDLE_CATEGORIES, by.tolist()))})
    names = np.asarray(g.names, dtype=object)[g.column("name")]
    sel = np.flatnonzero(s.gpu)
    dur = (s.obs_end - s.obs_start)[sel] / 1e3
    kernels = {}
    for n, d in zip(names[sel].tolist(), dur.tolist()):
        k = kernels.setdefault(n, [0.0, 0, np.inf, 0.0])
        k[0] += d; k[1] += 1; k[2] = min(k[2], d); k[3] = max(k[3], d)
    lo, hi = int(s.obs_start[sel].min()), int(s.obs_end[sel].max())
    is_comm = s.gpu & (s.kind == T_COLLECTIVE)
    is_comp = s.gpu & (s.kind == T_KERNEL)
    c, ov, comp = comm_overlap(s.obs_start, s.obs_end, is_comm, is_comp, lo, hi)
    from daydream.analysis import _union_length
    busy = _union_length(s.obs_start[sel], s.obs_end[sel])
    return {"idle": idle, "overlap_pct": 100 * ov / c if c else None,
            "kernels": {n: {"sum_us": v[0], "count": v[1], "mean_us": v[0] / v[1], "min_us": v[2], "max_us": v[3]}
                        for n, v in kernels.items()},
            "temporal": {"idle_time(us)": (hi - lo - busy) / 1e3, "compute_time(us)": comp / 1e3,
                         "kernel_time(us)": (hi - lo) / 1e3}}


def pct(a: float, b: float) -> float:
    return 0.0 if a == b else 100 * abs(a - b) / max(abs(b), 1e-9)


def compare(trace: Path) -> dict:
    h_round, h_exact, d = hta(trace, True), hta(trace, False), ours(trace)
    rows = []

    def row(what, mine, exact, rounded, compared=True):
        rows.append({"quantity": what, "daydream": mine, "hta_ns": exact, "hta_default": rounded,
                     "diff_pct": None if mine is None or exact is None else round(pct(mine, exact), 3),
                     "compared": compared})

    cat_of = {"host_wait": ("host_bound",), "kernel_wait": ("launch_gap",), "other": ("kernel_bound", "other")}
    for st in d["idle"]:
        for hcat, mine in cat_of.items():
            ex = sum(x["idle_us"] for x in h_exact["idle"] if x["stream"] == st["stream"] and x["category"] == hcat)
            rd = sum(x["idle_us"] for x in h_round["idle"] if x["stream"] == st["stream"] and x["category"] == hcat)
            row(f"idle stream {st['stream']} {hcat} (us)", sum(st[m] for m in mine), ex, rd)
    row("comm/comp overlap (%)", d["overlap_pct"], h_exact["overlap_pct"][0], h_round["overlap_pct"][0],
        d["overlap_pct"] is not None)
    for key in ("idle_time(us)", "compute_time(us)", "kernel_time(us)"):
        row(f"temporal {key}", d["temporal"][key], h_exact["temporal"][key], h_round["temporal"][key])
    # kernel breakdown: every kernel name HTA lists, summed; and the ten biggest one by one
    hk = {k["name"]: k for k in h_exact["kernels"]}
    hr = {k["name"]: k for k in h_round["kernels"]}
    common = sorted(set(hk) & set(d["kernels"]))
    row("kernels: names in both / HTA / daydream", len(common), len(hk), len(d["kernels"]), False)
    row("kernels: total time of all names (us)", sum(d["kernels"][n]["sum_us"] for n in common),
        sum(hk[n]["sum_us"] for n in common), sum(hr[n]["sum_us"] for n in common if n in hr))
    for n in sorted(common, key=lambda n: -hk[n]["sum_us"])[:10]:
        row(f"kernel {n[:60]} sum (us)", d["kernels"][n]["sum_us"], hk[n]["sum_us"], hr.get(n, {}).get("sum_us"))
        row(f"kernel {n[:60]} mean (us)", d["kernels"][n]["mean_us"], hk[n]["mean_us"], hr.get(n, {}).get("mean_us"))
    worst = max((r["diff_pct"] for r in rows if r["compared"] and r["diff_pct"] is not None), default=0.0)
    return {"trace": str(trace), "rows": rows, "max_diff_pct": worst, "within_tolerance": worst <= TOLERANCE_PCT}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("traces", nargs="*", type=Path, default=DEFAULT_TRACES)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if not HTA_PYTHON.exists():
        raise SystemExit("benchmarks/.venv-hta is missing: run benchmarks/setup_hta.sh first")
    results = [compare(t) for t in args.traces]
    from rich.console import Console
    from rich.table import Table
    con = Console()
    for res in results:
        tab = Table(title=f"{Path(res['trace']).name}: max difference {res['max_diff_pct']:.3f}% "
                          f"(tolerance {TOLERANCE_PCT}%)")
        for c in ("quantity", "daydream", "HTA (ns)", "HTA default (us rounding)", "diff %"):
            tab.add_column(c, justify="left" if c == "quantity" else "right", overflow="fold")
        fmt = lambda v: "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
        for r in res["rows"]:
            tab.add_row(r["quantity"], fmt(r["daydream"]), fmt(r["hta_ns"]), fmt(r["hta_default"]),
                        fmt(r["diff_pct"]) + ("" if r["compared"] else " (n/c)"))
        con.print(tab)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tolerance_pct": TOLERANCE_PCT, "results": results}, indent=1))
    tmp.replace(args.out)
    return 0 if all(r["within_tolerance"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
