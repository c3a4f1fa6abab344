"""`daydream suggest TRACE`: every applicable optimization simulated, ranked by predicted step time.

Ranking (`rank="checked"`, the default): suggestions whose every optimization was checked against
a measured pair on this kind of device (the record's `checked_against`, docs/validation.md) come
first, by predicted step time; then the rest, by predicted step time, marked as the model's figures
alone. A user tries first what has been shown to hold, and sees the unchecked figure beside it
(the V100 trace: dataloader, checked on that pair, first; CUDA graphs, predicted faster but never
measured against a real capture, after it). `rank="predicted"` ranks by predicted step time only.

Candidates are each optimization at its defaults plus the parameter variants in VARIANTS, built
from one graph and one replay (daydream.scenarios). An optimization is skipped, with the reason,
where it refuses the trace (its DaydreamError), where it says it changed nothing (its note), or
where it does not speed up this job's step by construction (SKIPPED_BY_DESIGN). Then the best
variant of each of the TOP_SINGLES best optimizations that helped is paired with each other one
(applied in `daydream opts` order) and the pairs are simulated too.

For each suggestion, `why` says in words how long the step waits on each phase before and after
(the critical-path phase breakdown) and, next to it, whether that phase's work changed (the time
its tasks take on all threads and streams) or only how much of it the step waits for: the same
work overlapped with other work shrinks on the critical path without shrinking at all (data
loading behind CUDA-graph replay), and the same work the step used to overlap can become what it
waits for (GPU kernels once the host stops being the bottleneck). Then what the step waits on
most afterwards (the largest phase and critical-path category). Where a suggestion costs time,
its own notes say what it did. `memory_peak_bytes` is daydream.memory's predicted peak where the
trace recorded memory (None where it did not).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daydream.analysis import critical_path_breakdown, phase_breakdown, without_profiler
from daydream.errors import DaydreamError
from daydream.opts.context import Context
from daydream.opts.params import SPECS, OptChoice, parse_opt
from daydream.names import CLASSIFY_CHARS
from daydream.sim import simulate
from daydream.trace import Trace
from daydream.whatif import apply_optimizations
from daydream.graph import PHASES, build_graph

# Variants tried besides each optimization's defaults: the settings a user would try next.
VARIANTS = {
    "amp": ["amp:dtype=fp16"],
    "dataloader": ["dataloader:workers=2", "dataloader:workers=8"],
    "quantize": ["quantize:dtype=fp8"],
    "sparse-attention": ["sparse-attention:density=0.25"],
    "activation-checkpointing": ["activation-checkpointing:fraction=0.5"],
}
# Optimizations that change what a step is rather than how fast it runs; ranking them by step
# time would mislead.
SKIPPED_BY_DESIGN = {
    "batch-size": "changes the work per step (more samples per step take longer); compare throughput with "
                  "`daydream whatif --opt batch-size`",
    "gpu": "a change of hardware, not of the job; see `daydream whatif --opt gpu:target=NAME`",
    "ddp": "scales out to more GPUs: per-GPU step time only gains communication; see `daydream whatif --opt ddp`",
    "fsdp": "shards the model over more GPUs: per-GPU step time only gains communication; see "
            "`daydream whatif --opt fsdp`",
    "network": "a change of the interconnect, not of the job, and it needs the link to try; see "
               "`daydream whatif --opt network:interconnect=nvlink|pcie|infiniband`",
    "host": "a change of the host CPU, not of the job, and it needs the new host's speed; see "
            "`daydream whatif --opt host:speed=S`",
}
TOP_SINGLES = 4
# Critical-path categories (daydream.analysis.task_categories) in a user's words.
CATEGORY_WORDS = {"cpu": "CPU work (Python, operator dispatch, data loading)", "runtime": "CUDA/HIP runtime calls",
                  "sync": "waits for the GPU (synchronizations)", "idle": "host time the trace does not explain"}
# On a trace without a GPU the operators' compute runs on the CPU too: that is most of its CPU work.
CPU_ONLY_WORDS = "CPU work (the operators' own compute, with Python, dispatch and data loading)"
# Phases in a user's words where the phase name alone says too little.
PHASE_WORDS = {"data": "data loading", "other": "other work"}

# A prediction within this fraction of the replay is "no change" (the simulator's own noise is 0:
# replay is exact, so this only absorbs rounding).
NO_CHANGE = 1e-4


RANKINGS = ("checked", "predicted")


def device_class(trace: Trace) -> str:
    """The kind of device whose measured pairs apply to this trace: "gpu" or "cpu"."""
    return "gpu" if trace.has_gpu else "cpu"


def checked_against(opts: list[OptChoice], kind: str) -> str | None:
    """The measured pairs every optimization of `opts` was checked against on `kind`, or None where one
    of them has none or is set outside the parameter values its pairs used (`checked_params`)."""
    found = [SPECS[o.name].checked_against.get(kind) for o in opts]
    same_path = all(o.params.get(k) in values for o in opts for k, values in SPECS[o.name].checked_params.items())
    return None if not all(found) or not same_path else "; ".join(f"{o.name}: {f}" for o, f in zip(opts, found))


@dataclass
class Candidate:
    opts: list[OptChoice]
    predicted_ms: float = 0.0
    breakdown: dict = field(default_factory=dict)
    work: dict = field(default_factory=dict)
    critical: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    predicted_unprofiled_ms: float | None = None

    @property
    def label(self) -> str:
        return " + ".join(_opt_text(o) for o in self.opts)


def _opt_text(o: OptChoice) -> str:
    default = SPECS[o.name].defaults()
    changed = ",".join(f"{k}={v}" for k, v in o.params.items() if default.get(k) != v)
    return f"{o.name}:{changed}" if changed else o.name


def _has_collectives(trace: Trace) -> bool:
    """Whether the trace ran collectives (NCCL/RCCL kernels): a job that is already data-parallel."""
    from daydream.graph.phases import COMM_KERNEL
    from daydream.trace.events import KERNEL
    codes = np.unique(trace.column("name")[trace.column("kind") == KERNEL])
    return any(COMM_KERNEL.search(trace.names[c][:CLASSIFY_CHARS]) for c in codes.tolist())


def candidates(trace: Trace) -> tuple[list[list[OptChoice]], list[dict]]:
    """The single-optimization candidates and the optimizations skipped by design."""
    out, skipped = [], []
    distributed = len(trace.ranks) > 1 or _has_collectives(trace)
    for name in SPECS:
        if name in SKIPPED_BY_DESIGN:
            why = SKIPPED_BY_DESIGN[name]
            if distributed and name in ("ddp", "fsdp"):
                why = (f"the trace is already distributed; {name} here re-models its communication at the "
                       f"world size and buckets you give: compare with `daydream whatif --opt {name}:world_size=N`")
            skipped.append({"name": name, "why": why})
            continue
        out.append([parse_opt(name)])
        out += [[parse_opt(v)] for v in VARIANTS.get(name, [])]
    return out, skipped


def phase_work(graph) -> dict[str, float]:
    """Milliseconds per step of work in each phase: its window tasks' durations summed over every
    thread and stream (unlike the critical-path breakdown, overlap does not hide any of it)."""
    inw = graph.column("in_window")
    per = np.bincount(graph.column("phase")[inw], weights=graph.column("dur")[inw],
                      minlength=len(PHASES)) / max(graph.steps, 1) / 1e6
    return {p: float(v) for p, v in zip(PHASES, per)}


def _why(base: dict, base_work: dict, c: Candidate, replay_ms: float, cpu_only: bool = False) -> str:
    """Plain words: how long the step waits on each phase before and after, whether that phase's
    work changed or only its overlap with other work, and what the step waits on afterwards
    (`cpu_only`: the trace has no GPU, so its CPU work is the operators' compute too)."""
    digits = 1 if replay_ms >= 50 else 3

    def ms(v: float) -> str:
        return f"{v:.{digits}f}"

    def phase_change(p: str) -> str:
        was, now = base_work.get(p, 0.0), c.work.get(p, 0.0)
        span = f"{PHASE_WORDS.get(p, p)} {ms(base[p])} → {ms(c.breakdown[p])} ms"
        if ms(now) != ms(was):  # the work changed at the printed precision
            if now < was and c.breakdown[p] > base[p]:  # less work, but less of it overlapped
                return f"{span} (its work {ms(was)} → {ms(now)} ms, but less of it overlapped with other work)"
            return f"{span} (its work {ms(was)} → {ms(now)} ms)"
        if c.breakdown[p] < base[p]:
            return f"{span} (same {ms(was)} ms of work, now overlapped with other work)"
        return f"{span} (same work; the step now waits for more of it)"

    def moved(p: str) -> bool:  # changed by more than rounding at the printed precision
        return abs(c.breakdown[p] - base[p]) > 0.0005 * replay_ms and ms(c.breakdown[p]) != ms(base[p])

    deltas = {p: c.breakdown[p] - base[p] for p in base if moved(p)}
    shrink = [p for _, p in sorted((d, p) for p, d in deltas.items() if d < 0)]
    grow = [p for _, p in sorted(((d, p) for p, d in deltas.items() if d > 0), reverse=True)]
    gain = replay_ms - c.predicted_ms
    if ms(abs(gain)) == ms(0):
        head = f"about the same step time (within {ms(10 ** -digits)} ms)"
    elif gain > 0:
        head = f"saves {ms(gain)} ms/step ({100 * gain / replay_ms:.1f}%)"
    else:
        head = f"costs {ms(-gain)} ms/step more"
    parts = [head + "."]
    if shrink:
        parts.append("The step waits less on " + ", ".join(phase_change(p) for p in shrink[:3]) + ".")
    if grow:
        parts.append("It waits more on " + ", ".join(phase_change(p) for p in grow[:2]) + ".")
    lead = max(c.breakdown, key=c.breakdown.get)
    after = (f"Then it waits mostly on {PHASE_WORDS.get(lead, lead)} ({ms(c.breakdown[lead])} of "
             f"{ms(c.predicted_ms)} ms)")
    top_cat = next(iter(c.critical), None)
    if top_cat:
        words = CPU_ONLY_WORDS if cpu_only and top_cat == "cpu" else \
            CATEGORY_WORDS.get(top_cat, top_cat.replace("gpu_", "GPU ").replace("_", " ") + " kernels")
        after += f"; along the critical path mostly {words}, {ms(c.critical[top_cat])} ms"
    parts.append(after + ".")
    if gain <= 0:
        if shrink:
            parts.append("What it shrinks is not what the step waits on, or its added work outweighs it.")
        if c.notes:
            parts.append("What it does: " + "; ".join(_unprefixed(n, c.opts) for n in c.notes) + ".")
    return " ".join(parts)


def _touched(before, after) -> bool:
    """Whether a transform changed any task's duration or added tasks."""
    if after.n_tasks != before.n_tasks:
        return True
    return bool((after.column("dur") != before.column("dur")).any())


def _unprefixed(text: str, opts: list[OptChoice]) -> str:
    """An optimization's message without its own `name:` / `--opt name:` prefix (the list names it)."""
    for o in opts:
        for prefix in (f"--opt {o.name}: ", f"{o.name}: "):
            if text.startswith(prefix):
                return text[len(prefix):]
    return text


def _memory_peaks(trace: Trace, opt_lists: list[list[OptChoice]]) -> tuple[int | None, list, list]:
    """Measured peak, and per candidate its predicted peak bytes and the memory models' notes
    (None and [] where the trace recorded no memory)."""
    from daydream import memory as mem
    try:
        # a run directory's memory.json.gz (daydream profile) is the fuller record: prefer it
        report = mem.memory(trace.run_dir if trace.run_dir is not None else trace)
    except DaydreamError:
        return None, [None] * len(opt_lists), [[] for _ in opt_lists]
    peaks, notes = [], []
    for opts in opt_lists:
        predicted, why = mem.predict(report.measured, opts, report.layers)
        peaks.append(int(predicted.peak_bytes))
        notes.append(list(why))
    return int(report.peak_bytes), peaks, notes


def suggest(trace: Trace, top: int | None = None, progress=None, rank: str = "checked") -> dict:
    """The contract's `suggest --json` object. `progress(label)` is called once per simulation;
    `rank` is one of RANKINGS (module docstring)."""
    if rank not in RANKINGS:
        raise DaydreamError(f"suggest: rank {rank!r} is not one of {', '.join(RANKINGS)}")
    kind = device_class(trace)
    graph = build_graph(trace)
    base_tl = simulate(graph)
    replay_ms = base_tl.per_step_ms
    base_phases = phase_breakdown(base_tl)
    base_work = phase_work(graph)
    singles, skipped = candidates(trace)
    done: list[Candidate] = []
    # the same predictions without the profiler's own cost, where the run has it (analysis.unprofiled_ms):
    # the optimizations applied to the graph with that cost out, as whatif does
    clean = without_profiler(graph, trace)
    unprofiled = simulate(clean).per_step_ms if clean is not None else None

    def run(opts: list[OptChoice]) -> Candidate | None:
        ctx = Context.of(trace)
        label = " + ".join(_opt_text(o) for o in opts)
        try:
            changed_graph = apply_optimizations(graph, opts, ctx)
            tl = simulate(changed_graph)
        except DaydreamError as exc:
            skipped.append({"name": label, "why": _unprefixed(str(exc), opts)})
            return None
        finally:
            if progress:
                progress(label)
        unchanged = [n for n in ctx.notes if "nothing changed" in n or "nothing to change" in n]
        phases = phase_breakdown(tl)
        if abs(tl.per_step_ms - replay_ms) <= NO_CHANGE * replay_ms and (
                unchanged or all(abs(phases[p] - base_phases[p]) <= NO_CHANGE * replay_ms for p in phases)):
            if unchanged:
                why = _unprefixed(unchanged[0], opts)
            elif _touched(graph, changed_graph):
                why = ("no effect on the step: what it changes is not on the critical path (predicted step and "
                       "phases = the replay)")
            else:
                why = "found nothing to change in this trace (predicted step and phases = the replay)"
            # an optimization that says it changed nothing: that is the reason (its other notes are
            # about how it would have modelled the change); otherwise its notes say what it found
            extra = [] if unchanged else [_unprefixed(n, opts) for n in ctx.notes]
            skipped.append({"name": label, "why": why + "".join(f"; {n}" for n in extra)})
            return None
        c = Candidate(opts, tl.per_step_ms, phases, phase_work(changed_graph), critical_path_breakdown(tl),
                      list(ctx.notes))
        if clean is not None:
            c.predicted_unprofiled_ms = simulate(apply_optimizations(clean, opts, Context.of(trace))).per_step_ms
        return c

    for opts in singles:
        c = run(opts)
        if c is None:
            continue
        # a variant that predicts what an earlier setting of the same optimization did adds nothing
        twin = next((d for d in done if d.opts[0].name == c.opts[0].name
                     and abs(d.predicted_ms - c.predicted_ms) <= NO_CHANGE * replay_ms), None)
        if twin is not None:
            skipped.append({"name": c.label, "why": f"predicts the same step time as {twin.label} "
                                                    f"({c.predicted_ms:.3f} ms)"})
            continue
        done.append(c)
    # pairs of the best variant of the best optimizations that helped
    best: dict[str, Candidate] = {}
    for c in sorted(done, key=lambda c: c.predicted_ms):
        if c.predicted_ms < replay_ms * (1 - NO_CHANGE):
            best.setdefault(c.opts[0].name, c)
    lead = list(best.values())[:TOP_SINGLES]
    order = list(SPECS)
    for i in range(len(lead)):
        for j in range(i + 1, len(lead)):
            pair = sorted([lead[i].opts[0], lead[j].opts[0]], key=lambda o: order.index(o.name))
            c = run(pair)
            if c:
                done.append(c)
    checked = {id(c): checked_against(c.opts, kind) for c in done}
    done.sort(key=lambda c: (rank == "checked" and checked[id(c)] is None, c.predicted_ms, len(c.opts), c.label))
    measured_peak, peaks, memory_notes = _memory_peaks(trace, [c.opts for c in done])
    suggestions = []
    for c, peak, mnotes in zip(done, peaks, memory_notes):
        suggestions.append({
            "name": c.label,
            "optimizations": [o.as_json() for o in c.opts],
            "predicted_ms": round(c.predicted_ms, 6),
            "speedup": round(replay_ms / c.predicted_ms, 6) if c.predicted_ms > 0 else None,
            "gain_ms": round(replay_ms - c.predicted_ms, 6),
            "predicted_unprofiled_ms": None if c.predicted_unprofiled_ms is None else round(c.predicted_unprofiled_ms, 6),
            "unprofiled_speedup": (round(unprofiled / c.predicted_unprofiled_ms, 6)
                                   if c.predicted_unprofiled_ms else None),
            "memory_peak_bytes": peak,
            "breakdown": {k: round(v, 6) for k, v in c.breakdown.items()},
            "why": _why(base_phases, base_work, c, replay_ms, cpu_only=not trace.has_gpu),
            "checked_against": checked[id(c)],
            "notes": c.notes,
            "memory_notes": mnotes,
        })
    return {"trace": trace.path, "device": trace.device, "steps": trace.steps,
            "measured_ms": round(trace.measured_ms, 6), "replay_ms": round(replay_ms, 6),
            "unprofiled_ms": None if unprofiled is None else round(unprofiled, 6),
            "measured_peak_bytes": measured_peak, "breakdown": base_phases,
            "ranking": rank, "device_class": kind,
            "suggestions": suggestions[:top] if top else suggestions, "simulated": len(done),
            "skipped": skipped, "warnings": list(trace.warnings)}


def simulations(trace: Trace) -> int:
    """How many simulations `suggest` runs at most (for a progress bar): singles plus pairs."""
    singles, _ = candidates(trace)
    return len(singles) + TOP_SINGLES * (TOP_SINGLES - 1) // 2
