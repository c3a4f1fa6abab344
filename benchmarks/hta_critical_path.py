"""HTA's side of the benchmark: load one Kineto trace and find the critical path of one step.

Runs inside benchmarks/.venv-hta (made by setup_hta.sh), never in daydream's environment, so that
neither tool's imports inflate the other's memory. Prints one JSON line on stdout with the phase
timings; bench_vs_hta.py measures wall time and peak RSS of this whole process from outside.

HTA reads a directory of per-rank traces and takes each file's rank from its `distributedInfo`
metadata, so a single file is symlinked into a temporary directory first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", type=Path, help="a Kineto trace (.json or .json.gz)")
    parser.add_argument("--annotation", default="ProfilerStep",
                        help="annotation that marks a step (substring match, as HTA does)")
    parser.add_argument("--instance", type=int, default=1,
                        help="which step to analyse; HTA advises against the first (index 0)")
    return parser.parse_args(argv)


def _peak_rss_mb() -> float:
    """Peak resident set of this process and its reaped children, in MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    trace = args.trace.resolve()
    if not trace.is_file():
        print(f"hta_critical_path: no such trace file: {trace}", file=sys.stderr)
        return 2
    # HTA logs its progress at WARNING level on stderr; the benchmark only wants the result line.
    logging.disable(logging.WARNING)

    t_start = time.perf_counter()
    from hta.trace_analysis import TraceAnalysis  # imported here so the import is timed too

    t_imported = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hta-bench-") as tmp:
        suffix = ".json.gz" if trace.name.endswith(".gz") else ".json"
        os.symlink(trace, Path(tmp) / f"rank_trace{suffix}")
        analysis = TraceAnalysis(trace_dir=tmp)
        t_loaded = time.perf_counter()

        rank = next(iter(analysis.t.traces))
        events = int(len(analysis.t.traces[rank]))
        result = analysis.critical_path_analysis(
            rank=rank, annotation=args.annotation, instance_id=args.instance
        )
        t_done = time.perf_counter()

    # HTA returns None (after logging an error) when the annotation is missing.
    graph, success = result if result is not None else (None, False)
    critical_nodes = len(graph.critical_path_nodes) if graph is not None else 0
    print(json.dumps({
        "tool": "hta",
        "trace": str(trace),
        "rank": rank,
        "events": events,
        "annotation": args.annotation,
        "instance": args.instance,
        "success": bool(success),
        "graph_nodes": graph.number_of_nodes() if graph is not None else 0,
        "graph_edges": graph.number_of_edges() if graph is not None else 0,
        "critical_path_nodes": critical_nodes,
        "import_s": round(t_imported - t_start, 4),
        "load_s": round(t_loaded - t_imported, 4),
        "critical_path_s": round(t_done - t_loaded, 4),
        "total_s": round(t_done - t_start, 4),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }))
    return 0 if success else 1


if __name__ == "__main__":
    sys.exit(main())
