"""The events table: every trace event as one row of numpy columns.

One pass over each rank's events fills the columns (rank, kind, thread or stream, start and
duration in integer nanoseconds, name code, correlation, external id, sequence number): the
compiled scanner of `fast.py` on the raw bytes, or, for input it does not take as ordinary, the
generic pass below over plain dicts, which accepts the same traces and decides the odd cases.
Everything downstream works on these columns; only the rare consumer of per-op details (shapes,
dtypes) looks back at an event's `args` dict through `args_of(row)`.
"""
from __future__ import annotations

import ast
import re

import numpy as np

from daydream.trace.fast import ArgsStore

# Event kinds. CPU-side kinds come first, GPU-side kinds from KERNEL on.
CPU_OP, ANNOTATION, PYTHON, RUNTIME, KERNEL, MEMCPY, MEMSET, GPU_ANNOTATION, GPU_SYNC, OTHER = range(10)
KIND_NAMES = ("cpu_op", "annotation", "python", "runtime", "kernel", "memcpy", "memset",
              "gpu_annotation", "gpu_sync", "other")
GPU_TASK_KINDS = (KERNEL, MEMCPY, MEMSET)

# Kineto categories of every vintage (2021 capitalised names, current lower-case ones).
_KIND_OF_CAT = {
    "cpu_op": CPU_OP, "operator": CPU_OP,
    "user_annotation": ANNOTATION,
    "python_function": PYTHON,
    "cuda_runtime": RUNTIME, "runtime": RUNTIME, "cuda_driver": RUNTIME,
    "kernel": KERNEL,
    "gpu_memcpy": MEMCPY, "memcpy": MEMCPY,
    "gpu_memset": MEMSET, "memset": MEMSET,
    "gpu_user_annotation": GPU_ANNOTATION,
    "cuda_sync": GPU_SYNC,
}
_SKIPPED_CATS = {"trace", "cpu_instant_event", "overhead"}
_SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL|PASSWD|AUTH", re.I)
_NUM_IN = re.compile(r"-?\d+")


def scrub(meta):
    """Drop metadata keys that look like credentials, at any depth."""
    if isinstance(meta, dict):
        return {k: scrub(v) for k, v in meta.items() if not _SECRET.search(str(k))}
    if isinstance(meta, list):
        return [scrub(v) for v in meta]
    return meta


def parse_device_properties(value) -> list[dict]:
    """Kineto writes deviceProperties as a list, or as the repr() of one."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return []
    if isinstance(value, dict):
        value = [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


class _Interner:
    """Maps strings (names, odd thread ids) to dense integer codes."""

    def __init__(self):
        self.codes: dict = {}
        self.values: list = []

    def __call__(self, value) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.values)
            self.values.append(value)
        return code


_INT64 = 2**62  # ids and times beyond this are not real; keep int64 arithmetic safe


def _int_id(value, odd: _Interner) -> int:
    """Thread/process/stream ids: ints, digit strings, 'stream 7'; anything else gets a negative code."""
    out = None
    if isinstance(value, bool):
        out = None
    elif isinstance(value, int):
        out = value
    elif isinstance(value, float) and value == value and abs(value) < _INT64:
        out = int(value)
    elif isinstance(value, str):
        try:
            out = int(value)
        except ValueError:
            m = _NUM_IN.search(value)
            if m and value.lower().startswith("stream"):
                out = int(m.group())
    if out is not None and -_INT64 < out < _INT64:
        return out
    return -1 - odd(str(value))


def _as_int(value, default=-1) -> int:
    if value is None or isinstance(value, bool):
        return default
    try:
        out = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return out if -_INT64 < out < _INT64 else default


def _ns(value) -> int:
    """Microseconds (Chrome trace unit) to integer nanoseconds; rejects what is not a time."""
    if isinstance(value, bool):
        raise ValueError("not a time")
    out = round(float(value) * 1000.0)
    if not -_INT64 < out < _INT64:
        raise ValueError("time out of range")
    return int(out)


def _extend(table: dict, rank: int, rows: np.ndarray) -> None:
    """Append the scanner's rows to a side table whose columns are rank, then the rows' columns."""
    for col, values in zip(table, (np.full(len(rows), rank), *rows.T)):
        table[col].extend(values.tolist())


class EventTable:
    """Columnar events of all ranks plus the side tables (memory, flows, thread names)."""

    COLUMNS = ("rank", "kind", "name", "pid", "tid", "device", "stream", "ts", "dur",
               "corr", "ext", "seq", "fwd_tid")

    def __init__(self):
        self.names = _Interner()
        self._odd = _Interner()
        self._cols = {c: [] for c in self.COLUMNS}  # per column: one array per added chunk
        self.args = ArgsStore()
        self._mem = {c: [] for c in ("rank", "ts", "bytes", "total_allocated", "total_reserved",
                                      "device_type", "device_id", "addr")}
        self._flows = {c: [] for c in ("rank", "id", "start", "pid", "tid", "ts")}
        self.thread_names: dict = {}   # (rank, pid, tid) -> name
        self.process_names: dict = {}  # (rank, pid) -> name
        self.skipped = 0
        self.negative: list[str] = []  # what finish() left out for a negative time, in a sentence

    # -- building -----------------------------------------------------------------------------
    def add_rank(self, rank: int, events) -> None:
        """Add one rank's events: raw `traceEvents` bytes on the fast path, plain dicts otherwise."""
        from daydream.trace import fast
        if isinstance(events, fast.RawEvents):
            scanned = fast.scan(events, self.names, lambda v: _int_id(v, self._odd), self._kind_of,
                                lambda v: _as_int(v, None))
            if scanned is None:
                events = events.dicts()
            else:
                cols, others, flows, memory = scanned
                n = len(cols["ts"])
                gpu = (cols["kind"] >= KERNEL) & (cols["kind"] <= GPU_SYNC)  # GPU-side rows: device and stream
                for col, fallback in (("device", cols["pid"]), ("stream", cols["tid"])):
                    cols[col] = np.where(gpu, np.where(cols[col] == fast._ABSENT, fallback, cols[col]), -1)
                for k in self.COLUMNS:
                    self._cols[k].append(np.full(n, rank, np.int32) if k == "rank" else cols[k])
                self.args.add_spans(events.raw, cols["args_start"].copy(), cols["args_end"].copy())
                _extend(self._flows, rank, flows)
                _extend(self._mem, rank, memory)
                # Of the rest, only metadata is read (launch flows repeat the correlation ids the
                # events already carry).
                self._add_rank_dicts(rank, others, complete=False)
                return
        self._add_rank_dicts(rank, events)

    @staticmethod
    def _kind_of(cat) -> int:
        """Event kind of a category (None: no category); -1 for categories that are skipped."""
        if cat is None:
            return OTHER
        low = cat.lower()
        return -1 if low in _SKIPPED_CATS else _KIND_OF_CAT.get(low, OTHER)

    def _add_rank_dicts(self, rank: int, events: list, complete: bool = True) -> None:
        """The generic path: one pass over plain event dicts, tolerant of every oddity.

        complete=False: the complete ('X') events are already in the table (fast path)."""
        c = {k: [] for k in self.COLUMNS}
        rank_c, kind_c, name_c, pid_c, tid_c, dev_c, stream_c, ts_c, dur_c, corr_c, ext_c, seq_c, fwd_c = (
            c[k] for k in self.COLUMNS)
        args_c = []
        names, odd = self.names, self._odd
        for e in events:
            if not isinstance(e, dict):
                self.skipped += 1
                continue
            ph = e.get("ph")
            if ph == "X" and complete:
                cat = e.get("cat")
                kind = _KIND_OF_CAT.get(cat.lower(), OTHER) if isinstance(cat, str) else OTHER
                if kind == OTHER and isinstance(cat, str) and cat.lower() in _SKIPPED_CATS:
                    continue
                try:
                    ts = _ns(e["ts"])
                    dur = _ns(e.get("dur", 0))
                    args = e.get("args")
                    if not isinstance(args, dict):
                        args = {}
                    name = e.get("name")
                    pid = _int_id(e.get("pid"), odd)
                    tid = _int_id(e.get("tid"), odd)
                    if KERNEL <= kind <= GPU_SYNC:  # GPU-side rows: device and stream
                        device = _as_int(args.get("device"), pid)
                        stream = _as_int(args.get("stream"), tid)
                    else:
                        device, stream = -1, -1
                    corr = _as_int(args.get("correlation"))
                    ext = _as_int(args.get("External id", args.get("external id")))
                    seq = _as_int(args.get("Sequence number"))
                    fwd = _as_int(args.get("Fwd thread id"))
                    name_code = names(name if isinstance(name, str) else str(name))
                except (KeyError, TypeError, ValueError, OverflowError):
                    self.skipped += 1
                    continue
                rank_c.append(rank); kind_c.append(kind); name_c.append(name_code)
                pid_c.append(pid); tid_c.append(tid); dev_c.append(device); stream_c.append(stream)
                ts_c.append(ts); dur_c.append(dur); corr_c.append(corr); ext_c.append(ext)
                seq_c.append(seq); fwd_c.append(fwd); args_c.append(args)
            elif ph in ("i", "I") and e.get("name") == "[memory]":
                a = e.get("args") if isinstance(e.get("args"), dict) else {}
                try:
                    row = (rank, _ns(e["ts"]), _as_int(a.get("Bytes"), 0),
                           _as_int(a.get("Total Allocated")), _as_int(a.get("Total Reserved")),
                           _as_int(a.get("Device Type")), _as_int(a.get("Device Id")), _as_int(a.get("Addr")))
                except (KeyError, TypeError, ValueError, OverflowError):
                    self.skipped += 1
                    continue
                for col, v in zip(self._mem.values(), row):
                    col.append(v)
            elif ph in ("s", "f") and e.get("cat") == "fwdbwd":
                try:
                    row = (rank, _as_int(e.get("id")), ph == "s", _int_id(e.get("pid"), odd),
                           _int_id(e.get("tid"), odd), _ns(e["ts"]))
                except (KeyError, TypeError, ValueError, OverflowError):
                    self.skipped += 1
                    continue
                for col, v in zip(self._flows.values(), row):
                    col.append(v)
            elif ph == "M":
                a = e.get("args") if isinstance(e.get("args"), dict) else {}
                pid = _int_id(e.get("pid"), odd)
                if e.get("name") == "thread_name":
                    self.thread_names[(rank, pid, _int_id(e.get("tid"), odd))] = str(a.get("name", ""))
                elif e.get("name") == "process_name":
                    self.process_names[(rank, pid)] = str(a.get("name", ""))
        ints = {"rank": np.int32, "kind": np.int8, "name": np.int32}
        if args_c:
            for k in self.COLUMNS:
                self._cols[k].append(np.asarray(c[k], dtype=ints.get(k, np.int64)))
            self.args.add_dicts(args_c)

    def _drop_negative(self, cols: dict) -> tuple[dict, np.ndarray]:
        """Leave out events with a negative duration, and GPU activity with a negative timestamp.
        No profiler records the first. GPU times are converted from the device's clock, so a GPU
        event before the host clock's origin is a failed conversion (like the zero times of
        `_drop_untimed`); kept, one kernel at ts < 0 stretched a 1.13 ms step's replay to 667.8 ms.
        A CPU event may sit before the origin (an idle thread's first event). The count and the
        first such event go into `negative`, which the trace turns into a warning."""
        gpu = (cols["kind"] >= KERNEL) & (cols["kind"] <= GPU_SYNC)
        bad = (cols["dur"] < 0) | (gpu & (cols["ts"] < 0))
        if not bad.any():
            return cols, np.arange(len(bad))
        first = int(np.flatnonzero(bad)[0])
        self.negative.append(f"{int(bad.sum())} events with a negative duration or GPU timestamp were left out "
                             f"(the first: {self.names.values[cols['name'][first]][:100]!r} at ts "
                             f"{cols['ts'][first] / 1000:g} us, dur {cols['dur'][first] / 1000:g} us)")
        keep = np.flatnonzero(~bad)
        return {k: v[keep] for k, v in cols.items()}, keep

    def finish(self) -> tuple[dict, dict, dict]:
        """The events, memory and flow tables as numpy columns, events sorted by (rank, ts, -dur)."""
        ints = {"rank": np.int32, "kind": np.int8, "name": np.int32}
        cols = {k: np.concatenate(v).astype(ints.get(k, np.int64), copy=False) if v
                else np.zeros(0, ints.get(k, np.int64)) for k, v in self._cols.items()}
        cols, rows = self._drop_negative(cols)  # rows: each kept event's index into `args`
        order = np.lexsort((-cols["dur"], cols["ts"], cols["rank"]))
        events = {k: v[order] for k, v in cols.items()}
        events["args_idx"] = rows[order].astype(np.int64)
        memory = {k: np.asarray(v, dtype=np.int64) for k, v in self._mem.items()}
        by_time = np.lexsort((memory["ts"], memory["rank"]))
        flows = {k: np.asarray(v, dtype=bool if k == "start" else np.int64) for k, v in self._flows.items()}
        return events, {k: v[by_time] for k, v in memory.items()}, flows
