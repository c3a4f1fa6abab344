"""Trace loading: file(s) -> `Trace` (columnar events table, steps, analysis window).

`load(path)` accepts everything CONTRACT.md calls TRACE. The analysis window follows the contract:
it starts at the first ProfilerStep's start and ends at the latest end among the CPU events that
start inside the steps and the GPU events launched from inside them.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daydream.errors import DaydreamError
from daydream.trace.events import (ANNOTATION, CPU_OP, GPU_ANNOTATION, GPU_SYNC, GPU_TASK_KINDS, KERNEL,
                                   KIND_NAMES, MEMCPY, MEMSET, PYTHON, RUNTIME, parse_device_properties)
from daydream.trace import fast
from daydream.trace.formats import EventColumns, columns_of, format_for
from daydream.trace.reader import RawTrace
from daydream.table import Frame, column, take

CPU_KINDS = (CPU_OP, ANNOTATION, PYTHON, RUNTIME)


@dataclass
class Window:
    """One rank's analysis window in nanoseconds, and its steps."""
    start: int
    end: int
    steps: int
    step_spans: np.ndarray  # (n, 2) start/end of each step

    @property
    def per_step_ms(self) -> float:
        return (self.end - self.start) / max(self.steps, 1) / 1e6

    def step_of(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each time: the index of the step it falls in, and whether it falls in one at all."""
        return _step_of(self.step_spans, ts)


def _step_of(spans: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.searchsorted(spans[:, 0], ts, side="right") - 1
    inside = (idx >= 0) & (ts <= spans[np.clip(idx, 0, None), 1]) if len(spans) else np.zeros(len(ts), bool)
    return idx, inside


@dataclass
class Trace:
    """A loaded trace: events of every rank as columns, plus what the metadata says.

    `events`, `memory_events` and `flows` are pandas DataFrames when read; inside daydream they stay
    numpy columns (`trace.column("ts")`, see daydream/table.py)."""
    path: str
    events: Frame = Frame()
    memory_events: Frame = Frame()
    flows: Frame = Frame()
    names: list
    args: fast.ArgsStore
    meta: dict  # rank -> scrubbed top-level metadata
    thread_names: dict
    process_names: dict
    step_annotation: str | None = None
    run_dir: Path | None = None
    run: dict = field(default_factory=dict)  # run.json of a `daydream profile` run directory, else {}
    windows: dict = field(default_factory=dict)  # rank -> Window
    warnings: list = field(default_factory=list)  # what the loader had to leave out, and why

    # -- what the trace says about itself ----------------------------------------------------
    @property
    def ranks(self) -> list[int]:
        return sorted(self.meta)

    @property
    def device_properties(self) -> list[dict]:
        return parse_device_properties(self.meta[self.ranks[0]].get("deviceProperties"))

    @property
    def has_gpu(self) -> bool:
        return bool(np.isin(self.column("kind"), GPU_TASK_KINDS).any())

    @property
    def device(self) -> str:
        """Name of the GPU the trace was recorded on, or 'cpu'."""
        if not self.has_gpu:
            return "cpu"
        used = set(np.unique(self.column("device")[self.column("kind") == KERNEL]).tolist())
        props = self.device_properties
        for p in props:
            if p.get("id") in used and p.get("name"):
                return str(p["name"])
        return str(props[0].get("name", "unknown GPU")) if props else "unknown GPU"

    @property
    def window(self) -> Window:
        """The slowest rank's window (ranks of one job run in lock-step)."""
        return max(self.windows.values(), key=lambda w: w.per_step_ms)

    @property
    def steps(self) -> int:
        return self.window.steps

    @property
    def measured_ms(self) -> float:
        return self.window.per_step_ms

    def column(self, key: str) -> np.ndarray:
        """One column of the events table as a numpy array."""
        return column(self, "events", key)

    def name_of(self, codes) -> np.ndarray:
        return np.asarray(self.names, dtype=object)[np.asarray(codes)]

    def args_of(self, row: int) -> dict:
        """The `args` dict of events row `row` (shapes, dtypes, grid...), under Kineto's key names.

        On the fast path the args stay undecoded bytes until asked for (see trace/fast.py)."""
        return self.args[int(self._args_rows[row])]

    @functools.cached_property
    def _args_rows(self) -> np.ndarray:
        """Per events row, its index into `args` (asked once per row by cost models: no pandas here)."""
        return self.column("args_idx")

    def kinds(self):
        """Kind name per event, as a pandas Series over the events table's index."""
        import pandas as pd
        return pd.Series(np.asarray(KIND_NAMES)[self.column("kind")], index=self.events.index)


def _step_pattern(step_annotation: str | None) -> re.Pattern:
    if step_annotation:
        return re.compile(rf"^{re.escape(step_annotation)}(#\d+)?$")
    return re.compile(r"^ProfilerStep#\d+$")


def compute_windows(trace: Trace) -> dict:
    """Per rank: the CONTRACT.md analysis window."""
    ev = trace.column
    names = np.asarray(trace.names, dtype=object)
    pattern = _step_pattern(trace.step_annotation)
    is_step_name = np.fromiter((bool(pattern.match(n)) for n in names), bool, len(names))
    kind = ev("kind")
    rank = ev("rank")
    ts = ev("ts")
    end = ts + ev("dur")
    is_cpu = np.isin(kind, CPU_KINDS)
    is_gpu = np.isin(kind, GPU_TASK_KINDS)
    corr = ev("corr")
    windows = {}
    for r in trace.ranks:
        in_rank = rank == r
        if not in_rank.any():
            continue
        steps = np.flatnonzero(in_rank & is_cpu & is_step_name[ev("name")])
        if steps.size:
            # A step is named once per thread at most; keep one span per step start (the shortest).
            by_start = steps[np.lexsort((end[steps], ts[steps]))]
            first = np.ones(len(by_start), bool)
            first[1:] = ts[by_start[1:]] != ts[by_start[:-1]]
            spans = np.stack([ts[by_start[first]], end[by_start[first]]], axis=1)
            start = int(spans[0, 0])
            _, inside = _step_of(spans, ts)
            inside &= in_rank
            cpu_inside = inside & is_cpu
            stop = int(end[cpu_inside].max())
            launched = np.isin(corr, corr[cpu_inside & (kind == RUNTIME) & (corr >= 0)])
            gpu_inside = in_rank & is_gpu & launched
            if gpu_inside.any():
                stop = max(stop, int(end[gpu_inside].max()))
            windows[r] = Window(start, stop, len(spans), spans)
        else:
            sel = in_rank & (is_cpu | is_gpu)
            if not sel.any():
                sel = in_rank
            windows[r] = Window(int(ts[sel].min()), int(end[sel].max()), 0, np.zeros((0, 2), np.int64))
    return windows


def _drop_untimed(events: dict) -> tuple[dict, list[str]]:
    """Leave out CUDA records the profiler failed to time.

    Some CUPTI setups write every runtime call and GPU activity with ts = 0 and dur = 0 while CPU
    ops carry real (epoch-based) times; placing them at time zero would stretch every thread over
    decades. Such records are dropped, and the trace says so.
    """
    kind = events["kind"]
    cuda = np.isin(kind, (RUNTIME, KERNEL, MEMCPY, MEMSET, GPU_ANNOTATION, GPU_SYNC))
    zero = cuda & (events["ts"] == 0) & (events["dur"] == 0)
    timed = events["ts"][~zero]
    if not zero.any() or not len(timed) or timed.min() < 10**15:  # only when the rest is epoch-based (ns)
        return events, []
    kept = take(events, ~zero)
    return kept, [f"{int(zero.sum())} CUDA runtime/GPU records have zero timestamps (the profiler failed to "
                  "time CUDA activity) and were left out; GPU work is missing from this trace"]


def from_raw(raws: list[RawTrace], path: str, step_annotation: str | None = None) -> Trace:
    """A Trace from parsed Kineto documents (one per rank)."""
    return from_columns(columns_of(raws), path, step_annotation)


def from_columns(cols: EventColumns, path: str, step_annotation: str | None = None) -> Trace:
    """A Trace from any format's columns (daydream/trace/formats.py): steps and window found here."""
    events, warnings = _drop_untimed(cols.events)
    warnings += cols.warnings
    if cols.skipped:
        warnings.append(f"{cols.skipped} events lacked a usable time or name and were skipped")
    if not len(events["ts"]):
        raise DaydreamError(f"{path}: no complete events ('ph': 'X') with a timestamp; nothing to analyze")
    trace = Trace(path=path, events=events, memory_events=cols.memory, flows=cols.flows,
                  names=cols.names, args=cols.args, meta=cols.meta,
                  thread_names=cols.thread_names, process_names=cols.process_names,
                  step_annotation=step_annotation, warnings=warnings)
    if step_annotation and not any(_step_pattern(step_annotation).match(n) for n in trace.names):
        raise DaydreamError(f"{path}: no event named {step_annotation!r} (from --step-annotation)")
    trace.windows = compute_windows(trace)
    return trace


def load(path: str | Path, step_annotation: str | None = None) -> Trace:
    """Load a trace file, run directory, multi-rank directory or .tar.gz."""
    trace = from_columns(format_for(Path(path)).read(Path(path)), str(path), step_annotation)
    p = Path(path)
    if p.is_dir() and (p / "trace.json.gz").exists():
        attach_run_dir(trace, p)
    return trace


def attach_run_dir(trace: Trace, run_dir: Path) -> Trace:
    """Give `trace` what its `daydream profile` run directory says of it: run.json (calibrations,
    plain steps) and the warnings every figure of the run carries."""
    trace.run_dir = run_dir
    trace.run = _read_run_json(run_dir)
    trace.warnings.extend(_run_warnings(trace))
    return trace


def _read_run_json(run_dir: Path) -> dict:
    """run.json of a run directory ({} where there is none); an unreadable one is bad input."""
    import json
    f = run_dir / "run.json"
    if not f.exists():
        return {}
    try:
        run = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise DaydreamError(f"{f}: unreadable ({exc})") from None
    if not isinstance(run, dict):
        raise DaydreamError(f"{f}: unreadable (not a JSON object)")
    for key, value in run.items():
        if key in _RUN_NUMBERS and value is not None and (
                not isinstance(value, (int, float)) or isinstance(value, bool) or value != value):
            raise DaydreamError(f"{f}: {key} must be a number, not {value!r:.40}")
        if key in _RUN_OBJECTS and value is not None and not isinstance(value, dict):
            raise DaydreamError(f"{f}: {key} must be an object, not {value!r:.40}")
    return run


# run.json keys the figures read as numbers or objects (docs/profiling.md): a hand-edited or
# foreign file that breaks them is bad input, said in one line
_RUN_NUMBERS = frozenset(("plain_step_ms", "profiled_step_ms", "plain_step_ms_median", "profiled_step_ms_median",
                          "profiler_overhead_pct", "batch_size", "steps", "warmup", "time_steps", "profiled_steps",
                          "optimizer_steps", "cpu_count", "parameters", "cuda_max_allocated_bytes"))
_RUN_OBJECTS = frozenset(("settings", "calibration", "profiler_event_cost", "optimizer_step_ms",
                          "optimizer_parameters", "step_ms"))


def _run_warnings(trace: Trace) -> list[str]:
    """What run.json says about the recording that every figure should carry: an incomplete run, a
    script whose own steps ran in another allocator state than the profiled and plain ones."""
    run = trace.run
    out = []
    if run.get("complete", True) is False:
        out.append(f"incomplete run: run.json says the recording stopped early ({run.get('profiled_steps')} of "
                   f"{run.get('steps')} profiled steps were recorded whole); figures are from those {trace.steps} "
                   "steps only")
    shift = _allocator_shift(run)
    if shift:
        out.append(shift)
    return out


# A script's own steps (its warm-up, before any profiler ran) taking this many more minor page faults
# than its plain steps after profiling, and at least this many, ran in another allocator state.
FAULT_SHIFT_RATIO, FAULT_SHIFT_MIN = 10, 1000


def _ms(x) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "?"


def _allocator_shift(run: dict) -> str | None:
    """The warning for a script whose allocator state the profiler changed (docs/profiling.md, "Page
    faults"): glibc's malloc hands large freed blocks back to the kernel every step, and each step
    then faults fresh pages in again, until a large enough block is freed to raise its mmap and trim
    thresholds -- which the profiler's own buffers do. The plain steps, timed after profiling, then
    describe the raised state, not the script's own."""
    faults = run.get("page_faults")
    if not isinstance(faults, dict):
        return None
    own, after = faults.get("warmup_median"), faults.get("plain_median")
    warm = [x for x in run.get("warmup_step_ms") or [] if isinstance(x, (int, float))]
    if not isinstance(own, (int, float)) or not isinstance(after, (int, float)) or not warm:
        return None
    if own < FAULT_SHIFT_MIN or own < FAULT_SHIFT_RATIO * max(after, 1):
        return None
    import statistics
    cost = (run.get("calibration") or {}).get("page_fault_ns")
    priced = (f" (~{(own - after) * cost / 1e6:.1f} ms a step at the {cost / 1e3:.2f} us a fault measured on this "
              "host)") if isinstance(cost, (int, float)) and cost > 0 else ""
    return (f"allocator state: the script's own steps (warm-up, before any profiler) took {own:.0f} minor page "
            f"faults each and {statistics.median(warm):.2f} ms, its plain steps after profiling {after:.0f} and "
            f"{_ms(run.get('plain_step_ms'))} ms{priced}: glibc's malloc gave freed memory back to the kernel every "
            "step until the profiler's buffers raised its thresholds, so the plain and unprofiled figures are of "
            "that raised state; MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=134217728 (or jemalloc, "
            "tcmalloc) gives your own runs the same")


__all__ = ["Trace", "Window", "load", "attach_run_dir", "from_raw", "from_columns", "KIND_NAMES"]
