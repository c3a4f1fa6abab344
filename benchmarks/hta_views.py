"""HTA's side of bench_views_vs_hta.py: HTA's own numbers for the views daydream also computes.

Runs inside benchmarks/.venv-hta (made by setup_hta.sh). Prints one JSON object on stdout:
  idle      get_idle_time_breakdown(consecutive_kernel_delay=30): idle time per stream and category
  overlap   get_comm_comp_overlap: communication overlapped with computation, per rank
  kernels   get_gpu_kernel_breakdown(include_memory_kernels=True): per kernel name sum/count/mean/min/max
  temporal  get_temporal_breakdown: idle, compute and non-compute time of the rank
Times are HTA's unit, microseconds. HTA rounds nanosecond timestamps to whole microseconds (start up,
end down) unless HTA_DISABLE_NS_ROUNDING=1 is set; bench_views_vs_hta.py runs it both ways.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    trace = Path(argv[1]).resolve()
    logging.disable(logging.WARNING)
    from hta.trace_analysis import TraceAnalysis
    with tempfile.TemporaryDirectory(prefix="hta-views-") as tmp:
        suffix = ".json.gz" if trace.name.endswith(".gz") else ".json"
        os.symlink(trace, Path(tmp) / f"rank_trace{suffix}")
        a = TraceAnalysis(trace_dir=tmp)
        rank = next(iter(a.t.traces))
        idle, _ = a.get_idle_time_breakdown(ranks=[rank], visualize=False, consecutive_kernel_delay=30)
        overlap = a.get_comm_comp_overlap(visualize=False)
        _, kernels = a.get_gpu_kernel_breakdown(visualize=False, duration_ratio=1.0, num_kernels=100000,
                                                include_memory_kernels=True)
        temporal = a.get_temporal_breakdown(visualize=False)
    print(json.dumps({
        "rank": int(rank),
        "idle": [{"stream": int(r.stream), "category": str(r.idle_category), "idle_us": float(r.idle_time)}
                 for r in idle.itertuples()],
        "overlap_pct": [None if v != v else float(v) for v in overlap["comp_comm_overlap_pctg"]],
        "kernels": [{"name": str(r["name"]), "type": str(r["kernel_type"]), "sum_us": float(r["sum (us)"]),
                     "mean_us": float(r["mean (us)"]), "min_us": float(r["min (us)"]), "max_us": float(r["max (us)"])}
                    for _, r in kernels.iterrows()],
        "temporal": {k: float(temporal[k].iloc[0]) for k in ("idle_time(us)", "compute_time(us)",
                                                             "non_compute_time(us)", "kernel_time(us)")},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
