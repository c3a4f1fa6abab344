"""`daydream diff BASE OTHER`: what changed between two traces of one job, ranked by how much of
the step-time change each change explains.

Contribution to the step delta. The replay of each trace gives its critical path, and every
nanosecond of a step is given to the task holding the step back at that moment (as the phase
breakdown does), so the critical-path time of a phase, an operator or a kernel, per step, adds up
over all of them to the step time. The difference of those per-step figures between OTHER and
BASE therefore adds up to the step delta: that difference is each item's contribution, and the
lists are ranked by its size.

Matching. Phases match by name. A task on the path is charged to its operator: the innermost aten
op around it (for GPU work: around its launch), else the innermost event around it (a DataLoader
iterator, a Python function), else its own name. Operators match by name. Kernels match by name;
kernels whose name the other trace lacks are then paired by position: the k-th such kernel
launched by operator X in BASE with the k-th such one launched by X in OTHER (`matched:
"position"`, named `BASE → OTHER`: another GPU or library runs the same work under another name).
An item left on one side only is `added` or `removed`. GPU time per kernel (all of it, on the path or
not) is reported beside, with the mean duration, so "faster"/"slower" describes the kernel itself:
  faster/slower  the kernel's (or operator's) total time per step moved by more than CHANGE_PCT
                 and CHANGE_MIN_MS; else `same`.
A what-if export (`whatif --export-trace`) is a trace like any other: diffing it against a
measured trace shows where the prediction and the measurement part.
"""
from __future__ import annotations

import numpy as np

from daydream.analysis import path_increments, phase_breakdown
from daydream.graph import PHASES
from daydream.graph.schema import GPU_TASK_TYPES
from daydream.sim import Timeline, simulate
from daydream.trace import Trace
from daydream.graph import build_graph
from daydream.names import without_addresses

# Host speed: functions recorded at least this often in both windows, and at least this many of
# them before a median ratio is reported (docs/optimizations/host.md).
HOST_MIN_CALLS = 3
HOST_MIN_FUNCTIONS = 10
CHANGE_PCT = 2.0     # below this relative change an item is `same` (run-to-run noise of a kernel)
CHANGE_MIN_MS = 0.001  # ... and below 1 us per step as well


def _charge_names(timeline: Timeline) -> np.ndarray:
    """Per task, the operator it is charged to (see the module docstring)."""
    g = timeline.graph
    trace = g.trace
    op = g.column("op")
    ev_names = trace.column("name")
    names = np.asarray([without_addresses(n) for n in g.names], dtype=object)  # per distinct name
    out = names[g.column("name")].copy()
    has = op >= 0
    out[has] = names[ev_names[op[has]]]
    return out


def _path_by(timeline: Timeline, labels: np.ndarray) -> dict[str, float]:
    """Critical-path ms per step per label."""
    path, inc = path_increments(timeline)
    steps = max(timeline.graph.steps, 1)
    # object arrays, not astype(str): a fixed-width str array is N x the longest name x 4 bytes
    keys, inv = np.unique(labels[path].astype(object), return_inverse=True)
    per = np.bincount(inv, weights=inc, minlength=len(keys)) / steps / 1e6
    return dict(zip(keys.tolist(), per.tolist()))


def _gpu_tasks(timeline: Timeline, charge: np.ndarray):
    """The slowest rank's GPU tasks of the window in start order: kernel name, operator it is
    charged to, GPU ms per step and critical-path ms per step of each."""
    g = timeline.graph
    sel = np.flatnonzero(np.isin(g.column("kind"), GPU_TASK_TYPES) & g.column("in_window")
                         & (g.column("rank") == timeline.slowest_rank))
    start = g.column("obs_start")
    sel = sel[np.argsort(start[sel], kind="stable")]
    per_step = max(g.steps, 1) * 1e6
    path, inc = path_increments(timeline)
    on_path = np.zeros(g.n_tasks)
    np.add.at(on_path, path, inc)
    names = np.asarray(g.names, dtype=object)[g.column("name")[sel]]
    return (names, charge[sel].astype(object), (g.column("obs_end") - start)[sel] / per_step,
            on_path[sel] / per_step)


def _occurrence(keys: np.ndarray) -> np.ndarray:
    """For each element, how many equal elements came before it (0, 1, 2, ... per key)."""
    seen: dict = {}
    out = np.empty(len(keys), np.int64)
    for i, k in enumerate(keys.tolist()):
        out[i] = seen.get(k, 0)
        seen[k] = out[i] + 1
    return out


def _kernel_entries(base: tuple, other: tuple, r: int = 6) -> list[dict]:
    """Kernels matched by name; the rest paired by position: the k-th unmatched kernel launched
    by operator X in BASE with the k-th unmatched one launched by X in OTHER (two GPUs, two
    libraries: another name for the same work). What stays unpaired is added or removed."""
    nb, ob, gb, pb = base
    no, oo, go, po = other
    common = np.intersect1d(nb, no)
    groups: dict = {}

    def add(key, side, gpu, path, count):
        e = groups.setdefault(key, [0.0, 0.0, 0, 0.0, 0.0, 0])  # gpu, path, count per side
        k = 0 if side == "base" else 3
        e[k] += gpu; e[k + 1] += path; e[k + 2] += count

    for names, gpu, path, side in ((nb, gb, pb, "base"), (no, go, po, "other")):
        m = np.isin(names, common)
        for n, g_, p_ in zip(names[m].tolist(), gpu[m].tolist(), path[m].tolist()):
            add((n, n), side, g_, p_, 1)
    ub, uo = np.flatnonzero(~np.isin(nb, common)), np.flatnonzero(~np.isin(no, common))
    kb = list(zip(ob[ub].tolist(), _occurrence(ob[ub]).tolist()))
    ko = dict(zip(zip(oo[uo].tolist(), _occurrence(oo[uo]).tolist()), uo.tolist()))
    paired_o = set()
    for i, key in zip(ub.tolist(), kb):
        j = ko.get(key)
        if j is None:
            add((nb[i], None), "base", gb[i], pb[i], 1)
            continue
        paired_o.add(j)
        add((nb[i], no[j]), "base", gb[i], pb[i], 1)
        add((nb[i], no[j]), "other", go[j], po[j], 1)
    for j in uo.tolist():
        if j not in paired_o:
            add((None, no[j]), "other", go[j], po[j], 1)
    out = []
    for (bn, on), (bg, bp, bc, og, op, oc) in groups.items():
        if bn is None:
            name, status = on, "added"
        elif on is None:
            name, status = bn, "removed"
        else:
            name, status = (bn if bn == on else f"{bn} → {on}"), _status(bg, og)
        e = {"name": name, "status": status, "base_ms": round(bp, r), "other_ms": round(op, r),
             "delta_ms": round(op - bp, r), "base_gpu_ms": round(bg, r), "other_gpu_ms": round(og, r),
             "gpu_delta_ms": round(og - bg, r), "base_count": bc, "other_count": oc}
        if bn is not None and on is not None and bn != on:
            e.update(base_name=bn, other_name=on, matched="position")
        out.append(e)
    out.sort(key=lambda e: (-abs(e["delta_ms"]), -abs(e["gpu_delta_ms"]), e["name"]))
    return out


def _status(base: float | None, other: float | None) -> str:
    if base is None:
        return "added"
    if other is None:
        return "removed"
    d = other - base
    if abs(d) < CHANGE_MIN_MS or abs(d) < CHANGE_PCT / 100 * max(abs(base), 1e-12):
        return "same"
    return "slower" if d > 0 else "faster"


def _ranked(entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda e: (-abs(e["delta_ms"]), e["name"]))


def _median_durations(trace: Trace, kind: int) -> dict[str, tuple[float, int]]:
    """{name: (median duration ns, calls)} of the events of `kind` inside the trace's window."""
    ev, w = trace.events, trace.window
    ts = ev["ts"].to_numpy()
    m = (ev["kind"].to_numpy() == kind) & (ts >= w.start) & (ts < w.end)
    codes, dur = ev["name"].to_numpy()[m], ev["dur"].to_numpy()[m].astype(float)
    order = np.argsort(codes, kind="stable")
    codes, dur = codes[order], dur[order]
    keys, first, counts = np.unique(codes, return_index=True, return_counts=True)
    out: dict[str, tuple[float, int]] = {}
    for k, i, n in zip(keys.tolist(), first, counts):  # one name per function, whatever its address
        name = without_addresses(trace.names[k])
        if name not in out or n > out[name][1]:
            out[name] = (float(np.median(dur[i:i + n])), int(n))
    return out


def host_speed(base: Trace, other: Trace) -> dict | None:
    """How many times as fast OTHER's host runs the same host work as BASE's: the median, over the
    functions both windows record at least HOST_MIN_CALLS times, of BASE's median duration over
    OTHER's. Python functions where both traces recorded them (with_stack), else CPU operators
    (dispatch plus, on a CPU trace, their kernels). None with fewer than HOST_MIN_FUNCTIONS shared.
    Two traces of one job on two machines give the `host:speed=S` of moving between them
    (docs/optimizations/host.md); on one machine it is ~1 unless the change slowed the host work
    itself (DataLoader workers sharing the main process's caches, another process)."""
    from daydream.trace.events import CPU_OP, PYTHON
    for kind, label in ((PYTHON, "python"), (CPU_OP, "operators")):
        a, b = _median_durations(base, kind), _median_durations(other, kind)
        ratios = [a[n][0] / b[n][0] for n in set(a) & set(b)
                  if min(a[n][1], b[n][1]) >= HOST_MIN_CALLS and a[n][0] > 0 and b[n][0] > 0]
        if len(ratios) >= HOST_MIN_FUNCTIONS:
            return {"speed": round(float(np.median(ratios)), 4), "functions": len(ratios), "from": label,
                    "quartiles": [round(float(q), 4) for q in np.percentile(ratios, [25, 75])]}
    return None


def diff(base: Trace, other: Trace, base_timeline: Timeline | None = None,
         other_timeline: Timeline | None = None) -> dict:
    """The contract's `diff --json` object for two loaded traces."""
    tb = base_timeline or simulate(build_graph(base))
    to = other_timeline or simulate(build_graph(other))
    r = 6
    pb, po = phase_breakdown(tb), phase_breakdown(to)
    phases = _ranked([{"name": p, "base_ms": round(pb[p], r), "other_ms": round(po[p], r),
                       "delta_ms": round(po[p] - pb[p], r)} for p in PHASES])
    # operators: critical-path time per step, plus nothing else to match on
    cb, co = _charge_names(tb), _charge_names(to)
    ob, oo = _path_by(tb, cb), _path_by(to, co)
    operators = []
    for name in sorted(set(ob) | set(oo)):
        b, o = ob.get(name), oo.get(name)
        operators.append({"name": name, "status": _status(b, o), "base_ms": round(b or 0.0, r),
                          "other_ms": round(o or 0.0, r), "delta_ms": round((o or 0.0) - (b or 0.0), r)})
    # kernels: critical-path time (the ranking) and GPU time per step (what the kernel itself did)
    kernels = _kernel_entries(_gpu_tasks(tb, cb), _gpu_tasks(to, co), r)
    step_delta = other.measured_ms - base.measured_ms
    largest = phases[0] if phases and phases[0]["delta_ms"] else None
    return {"base": base.path, "other": other.path,
            "base_device": base.device, "other_device": other.device,
            "base_ms": round(base.measured_ms, r), "other_ms": round(other.measured_ms, r),
            "step_delta_ms": round(step_delta, r),
            "step_delta_pct": round(100 * step_delta / base.measured_ms, 3) if base.measured_ms else 0.0,
            "replay_delta_ms": round(to.per_step_ms - tb.per_step_ms, r),
            "largest": {"kind": "phase", **largest} if largest else None,
            "host_speed": host_speed(base, other),
            "phases": phases, "operators": _ranked(operators), "kernels": kernels}
