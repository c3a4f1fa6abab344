"""Replay validation: every trace under ../shared/traces replayed unchanged, error vs measured.

    python benchmarks/replay_validation.py [--write-docs] [TRACE ...]

Prints one row per trace (measured, replay, error, tasks, edges, load/graph/simulate seconds) and,
with --write-docs, replaces the `## Replay` section of docs/validation.md with the table.
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from daydream.graph import build_graph
from daydream.sim import simulate
from daydream.trace import load

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "traces"


def rows(paths):
    for p in paths:
        t0 = time.perf_counter()
        trace = load(p)
        t1 = time.perf_counter()
        graph = build_graph(trace)
        t2 = time.perf_counter()
        timeline = simulate(graph)
        t3 = time.perf_counter()
        m, r = trace.measured_ms, timeline.per_step_ms
        # The same graph with every edge at its nominal delay (no slack fitted from the trace):
        # how much of the step the structure alone explains.
        bare = graph.copy()
        bare.edges["delay"] = bare.edges["nominal"].to_numpy()
        n = simulate(bare).per_step_ms
        yield {"trace": str(Path(p).relative_to(SHARED)) if SHARED in Path(p).parents else str(p),
               "device": trace.device, "ranks": len(trace.ranks), "steps": trace.steps,
               "events": len(trace.events), "tasks": len(graph.tasks), "edges": len(graph.edges),
               "measured_ms": m, "replay_ms": r, "error_pct": 100 * abs(r - m) / m,
               "nominal_ms": n, "nominal_error_pct": 100 * (n - m) / m,
               "load_s": t1 - t0, "graph_s": t2 - t1, "sim_s": t3 - t2}


def table(results) -> str:
    head = ("| trace | device | ranks | steps | events | tasks | measured ms | replay ms | error % | "
            "nominal-delay replay ms | its error % | load s | graph s | simulate s |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['trace']} | {r['device']} | {r['ranks']} | {r['steps']} | {r['events']} | {r['tasks']} | "
        f"{r['measured_ms']:.3f} | {r['replay_ms']:.3f} | {r['error_pct']:.4f} | {r['nominal_ms']:.3f} | "
        f"{r['nominal_error_pct']:+.1f} | {r['load_s']:.2f} | "
        f"{r['graph_s']:.2f} | {r['sim_s']:.2f} |\n" for r in results)
    return head + body


def write_docs(text: str) -> None:
    doc = REPO / "docs" / "validation.md"
    old = doc.read_text() if doc.exists() else "# Validation\n"
    section = ("## Replay\n\nEvery shared trace replayed unchanged (`daydream whatif TRACE`), per-step time vs the "
               "measured window of CONTRACT.md. Produced by `python benchmarks/replay_validation.py "
               "--write-docs` (timings on the 2-core development machine).\n\n"
               "Replay is exact by construction: each task's binding edge keeps its observed delay "
               "(docs/model.md), so a 0% replay error says the graph is consistent with the trace, not that "
               "the model predicts. The *nominal-delay* column replays the same graph with every edge at its "
               "nominal delay (no slack read from the trace: 0 on CPU program order, the median launch "
               "latency, the median kernel gap) and synchronizing calls at their recomputed length: it shows "
               "how much of the step the structure alone explains; the rest is observed CPU/GPU slack that "
               "the predictions keep. The what-if sections below are the evidence of predictive accuracy.\n\n"
               + text + "\n")
    if "## Replay" in old:
        new = re.sub(r"## Replay\n.*?(?=\n## |\Z)", section.rstrip("\n") + "\n", old, flags=re.S)
    else:
        new = old.replace("# Validation\n", "# Validation\n\n" + section, 1)
    doc.write_text(new)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("traces", nargs="*")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    paths = args.traces or sorted(p for p in SHARED.glob("*/*") if p.name.endswith((".json.gz", ".tar.gz")))
    results = list(rows(paths))
    text = table(results)
    print(text)
    print(f"max error {max(r['error_pct'] for r in results):.4f}% over {len(results)} traces")
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
