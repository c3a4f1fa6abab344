"""Memory over time, split by category: one int64 column per category, one row per instant.

Two sources feed it:
- torch.profiler's memory profile (`export_memory_timeline_raw` rows `[ts_ns, action, bytes,
  category]`, as `daydream profile` stores them in `memory.json.gz`), which labels every tensor;
- Kineto `[memory]` instant events, which only carry sizes and addresses (see `kineto.py`).

Raw-row encoding, read from torch 2.13 `torch/profiler/_memory_profiler.py`:
- action = `Action.value`: 1 PREEXISTING, 2 CREATE, 3 INCREMENT_VERSION, 4 DESTROY. Bytes are
  already signed: DESTROY rows are negative and INCREMENT_VERSION is written as a pair (−bytes under
  the old version's category, +bytes under the new one's).
- category = index into `_CATEGORY_TO_COLORS`: PARAMETER, OPTIMIZER_STATE, INPUT, TEMPORARY,
  ACTIVATION, GRADIENT, AUTOGRAD_DETAIL, then None (unknown).
- ts is in nanoseconds; PREEXISTING rows carry ts = −1 (alive before profiling started).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daydream.errors import DaydreamError

CATEGORIES = ("parameter", "gradient", "optimizer_state", "activation", "temporary", "input",
              "autograd_detail", "unknown")
# torch's raw category index -> our category name (torch order: _CATEGORY_TO_COLORS).
TORCH_CATEGORIES = ("parameter", "optimizer_state", "input", "temporary", "activation", "gradient",
                    "autograd_detail", "unknown")
_TORCH_TO_OURS = np.array([CATEGORIES.index(c) for c in TORCH_CATEGORIES], dtype=np.int64)
COL = {c: i for i, c in enumerate(CATEGORIES)}

PREEXISTING, CREATE, INCREMENT_VERSION, DESTROY = 1, 2, 3, 4


@dataclass
class Timeline:
    """Bytes live per category at each instant, plus what the source says about phases and tensors.

    `times` are nanoseconds, `bytes` has shape (len(times), len(CATEGORIES)), each row the state
    after every change at that instant. `optimizer` lists (start, end) time spans of optimizer
    steps where known; `param_tensors` the sizes of the parameter tensors where known.
    """
    times: np.ndarray
    bytes: np.ndarray
    source: str
    optimizer: list = field(default_factory=list)
    param_tensors: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    activation_tensors: int = 0
    notes: list = field(default_factory=list)
    fp32: np.ndarray | None = None  # like `bytes`: the part made inside autocast's fp32 ops (autocast.py)

    @property
    def total(self) -> np.ndarray:
        return self.bytes.sum(axis=1)

    @property
    def peak_index(self) -> int:
        return int(np.argmax(self.total)) if len(self.times) else 0

    @property
    def peak_bytes(self) -> int:
        return int(self.total[self.peak_index]) if len(self.times) else 0

    def at_peak(self) -> dict:
        row = self.bytes[self.peak_index] if len(self.times) else np.zeros(len(CATEGORIES), np.int64)
        return {c: int(v) for c, v in zip(CATEGORIES, row)}

    def maximum(self) -> dict:
        """Each category's own maximum over the recording (not simultaneous)."""
        m = self.bytes.max(axis=0) if len(self.times) else np.zeros(len(CATEGORIES), np.int64)
        return {c: int(v) for c, v in zip(CATEGORIES, m)}

    def mean(self) -> dict:
        """Time-weighted mean bytes per category over the recording."""
        if len(self.times) < 2:
            return self.at_peak()
        dt = np.diff(self.times).astype(np.float64)
        w = (self.bytes[:-1] * dt[:, None]).sum(axis=0) / max(dt.sum(), 1.0)
        return {c: int(v) for c, v in zip(CATEGORIES, w)}

    def optimizer_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.times), bool)
        for start, end in self.optimizer:
            mask |= (self.times >= start) & (self.times <= end)
        return mask


def coalesce(ts: np.ndarray, cols: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-event (time, category column, signed bytes) -> (unique times, live bytes per category).

    Events are taken in the given order; each output row is the state after the last event at that
    instant.
    """
    n = len(ts)
    change = np.zeros((n, len(CATEGORIES)), np.int64)
    change[np.arange(n), cols] = delta
    live = np.cumsum(change, axis=0)
    last = np.flatnonzero(np.r_[ts[1:] != ts[:-1], True]) if n else np.zeros(0, np.int64)
    return ts[last], live[last]


def from_raw_rows(rows, source: str, fp32_spans: tuple | None = None,
                  phases: dict | None = None) -> Timeline:
    """torch.profiler `export_memory_timeline_raw` rows -> Timeline. With `fp32_spans` ((starts,
    ends) on the rows' clock, daydream.memory.autocast), also the bytes made inside them. With
    `phases` (each step's forward span on the rows' clock), unknown tensors are labelled by their
    lifetime (relabel_unknown_by_lifetime)."""
    try:
        arr = np.asarray(rows, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DaydreamError(f"{source}: memory timeline rows are not [ts, action, bytes, category] integers") from None
    if arr.ndim != 2 or arr.shape[1] != 4 or not len(arr):
        raise DaydreamError(f"{source}: expected a non-empty list of [ts, action, bytes, category] rows")
    ts, action, delta, cat = arr.T
    if ((action < PREEXISTING) | (action > DESTROY)).any() or ((cat < 0) | (cat >= len(TORCH_CATEGORIES))).any():
        raise DaydreamError(f"{source}: memory timeline has unknown action or category codes "
                            "(expected torch.profiler export_memory_timeline_raw output)")
    known = ts[ts >= 0]
    if not known.size:
        raise DaydreamError(f"{source}: memory timeline has no timestamped rows")
    ts = np.where(ts < 0, known.min(), ts)
    order = np.argsort(ts, kind="stable")
    ts, action, delta, cat = ts[order], action[order], delta[order], cat[order]
    cols = _TORCH_TO_OURS[cat]
    spans = _optimizer_spans(ts, action, cols)
    cols = relabel_step_parameters(ts, action, delta, cols, spans)
    notes = []
    if phases is not None:
        cols, moved = relabel_unknown_by_lifetime(ts, action, delta, cols, phases)
        if moved:
            notes.append(f"{moved} tensors torch's memory profiler left unlabelled are labelled by their lifetime "
                         "(made in a forward and alive into the backward: activation)")
    times, live = coalesce(ts, cols, delta)
    params = live_parameter_tensors(action, delta, cols)
    tl = Timeline(times, live, source, optimizer=spans,
                  param_tensors=params,
                  activation_tensors=int(((cols == COL["activation"]) & (action == CREATE)).sum()),
                  notes=notes)
    if fp32_spans is not None:
        tl.fp32 = coalesce(ts, cols, made_inside(ts, action, delta, cols, *fp32_spans))[1]
    return tl


def made_inside(ts, action, delta, cols, starts, ends) -> np.ndarray:
    """Per row, the signed bytes of tensors created inside one of the spans (sorted, disjoint):
    their creation and, matched by category and size to the oldest such tensor alive (rows carry
    no tensor id), their destruction; 0 for every other row."""
    k = np.searchsorted(starts, ts, side="right") - 1
    inside = (k >= 0) & (ts <= ends[np.maximum(k, 0)]) if len(starts) else np.zeros(len(ts), bool)
    out = np.zeros(len(ts), np.int64)
    alive: dict[tuple, list] = {}
    for i in np.flatnonzero((action == CREATE) | (action == DESTROY)).tolist():
        key = (int(cols[i]), abs(int(delta[i])))
        if action[i] == CREATE:
            alive.setdefault(key, []).append(bool(inside[i]))
            out[i] = delta[i] if inside[i] else 0
        elif alive.get(key) and alive[key].pop(0):
            out[i] = delta[i]
    return out


def live_parameter_tensors(action: np.ndarray, delta: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sizes of the parameter tensors still alive at the end of the recording: a model's parameters
    outlive every step.

    Counting every parameter-category allocation counts a tensor once per time it is allocated (a
    script that rebuilds or moves its model allocates the same 27 parameters several times: 135),
    and torch also files some short-lived tensors of the step under `parameter` (8 in the ResNet-50
    CPU pair, created and destroyed within the step). Rows carry no tensor id, so a destroy removes
    one live tensor of its size."""
    sel = (cols == COL["parameter"]) & ((action == PREEXISTING) | (action == CREATE) | (action == DESTROY))
    live: dict[int, int] = {}
    for born, n in zip((action[sel] != DESTROY).tolist(), np.abs(delta[sel]).tolist()):
        if born:
            live[n] = live.get(n, 0) + 1
        elif live.get(n):
            live[n] -= 1
    return np.array([n for n, k in live.items() for _ in range(k)], np.int64)


def relabel_step_parameters(ts, action, delta, cols, spans) -> np.ndarray:
    """Categories with the tensors torch files under `parameter` but that live inside the recording
    moved out of it: created during an optimizer step -> temporary (a for-loop Adam's
    `exp_avg_sq.sqrt()` denominators: 10.7 MiB over a 7-step eager run of a 0.9 M-parameter LM),
    else -> activation (a torch.compile'd forward's outputs saved for its backward, which the
    profiler cannot see being saved: 72 MiB over the same run compiled, the "parameter" column
    19.6 MiB at the peak for 3.55 MiB of parameters). A parameter outlives the step it is used in;
    rows carry no tensor id, so a destroy ends the oldest live tensor of its size that was created
    during the recording (one step's logits die when the next step's exist), and a tensor alive
    before it (a parameter) only where none was. One created and still alive at the end is an
    activation where it was made between optimizer steps after the first began (the last step's
    logits); made before training (a model built while recording) it keeps torch's label. Returns
    the new column per row."""
    cols = cols.copy()
    param = COL["parameter"]
    rows = np.flatnonzero((cols == param) & (action != INCREMENT_VERSION))
    starts = np.array([s for s, _ in spans], np.int64)
    ends = np.array([e for _, e in spans], np.int64)
    created: dict[int, list] = {}  # live tensors created during the recording, by size, oldest first
    for i in rows.tolist():
        size = abs(int(delta[i]))
        if action[i] == CREATE:
            created.setdefault(size, []).append(i)
        elif action[i] == DESTROY and created.get(size):
            born = created[size].pop(0)
            k = np.searchsorted(starts, ts[born], side="right") - 1
            in_step = k >= 0 and ts[born] <= ends[k]
            cols[born] = cols[i] = COL["temporary"] if in_step else COL["activation"]
    # still alive at the end, made outside an optimizer step after training began: a step's output
    # (the last step's logits), not a parameter built late
    for i in (i for left in created.values() for i in left):
        k = np.searchsorted(starts, ts[i], side="right") - 1
        if k >= 0 and ts[i] > ends[k]:
            cols[i] = COL["activation"]
    return cols


def relabel_unknown_by_lifetime(ts, action, delta, cols, phases: dict) -> tuple[np.ndarray, int]:
    """Categories with the unknown tensors that live as activations do moved to `activation`.
    `phases`: {"forward": (starts, ends)}, each step's span (sorted, disjoint, on the rows'
    clock). Made inside a forward and destroyed after it ended -> activation (the Kineto lifetime
    rule, kineto.py). torch's memory profiler finds activations by flooding forward from the
    step's inputs; where the batch comes from DataLoader worker processes (shared-memory storage
    it never saw allocated) it files the batch under `parameter` and finds no input, so the
    activations stay unlabelled: a U-Net with one worker showed 99.5 MiB unknown and 0.6 MiB
    activation at its peak; the same model with the batch made in-process 94.5 MiB activation
    (+0.6 input), 4.0 autograd_detail, 5.0 unknown (12.1 at most); relabelled, 95.1, 4.2, 5.0
    (12.1 at most). oneDNN's scratch, made and freed inside an op, what a forward frees before its
    end and what a backward makes stay as torch labelled them. Rows carry no tensor id: a destroy
    ends the live unknown tensor of its size made last (a step's tensors die in the reverse order
    of their making: its temporaries at once, its activations as the backward walks back; ending
    the oldest instead paired a backward's temporaries with the forward's activations and left
    40 MiB of the U-Net's activations unknown mid-backward). Returns (the new column per row, the
    tensors moved)."""
    cols = cols.copy()
    unknown = COL["unknown"]
    fs, fe = phases["forward"]
    created: dict[int, list] = {}
    moved = 0
    for i in np.flatnonzero((cols == unknown) & ((action == CREATE) | (action == DESTROY))).tolist():
        size = abs(int(delta[i]))
        if action[i] == CREATE:
            created.setdefault(size, []).append(i)
        elif created.get(size):
            born = created[size].pop()
            k = np.searchsorted(fs, ts[born], side="right") - 1
            if k >= 0 and ts[born] < fe[k] < ts[i]:
                cols[born] = cols[i] = COL["activation"]
                moved += 1
    return cols, moved


def _optimizer_spans(ts, action, cols) -> list:
    """Optimizer steps seen in the raw rows: from an optimizer state's first creation or in-place update to the
    last in-place parameter update before the next activation is created (the next forward). torch
    labels some of a for-loop optimizer's temporaries as activations, which cut one step into a span
    per parameter; spans with no gradient written between them (the backward that separates two
    steps) are one step."""
    state_update = ((action == INCREMENT_VERSION) | (action == CREATE)) & (cols == COL["optimizer_state"])
    param_update = (action == INCREMENT_VERSION) & (cols == COL["parameter"])
    forward = (action == CREATE) & (cols == COL["activation"])
    spans = []
    i = 0
    starts = np.flatnonzero(state_update)
    fwd_idx = np.flatnonzero(forward)
    upd_idx = np.flatnonzero(param_update | state_update)
    while i < len(starts):
        s = starts[i]
        nxt = fwd_idx[np.searchsorted(fwd_idx, s)] if np.searchsorted(fwd_idx, s) < len(fwd_idx) else len(ts)
        in_step = upd_idx[(upd_idx >= s) & (upd_idx < nxt)]
        spans.append((int(ts[s]), int(ts[in_step[-1]])))
        i = np.searchsorted(starts, nxt)
    grad_ts = ts[((action == CREATE) | (action == INCREMENT_VERSION)) & (cols == COL["gradient"])]
    merged: list = []
    for start, end in spans:
        if merged and not ((grad_ts > merged[-1][1]) & (grad_ts < start)).any():
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
