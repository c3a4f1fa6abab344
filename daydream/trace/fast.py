"""Fast decoding: the trace's events straight into typed records, args left undecoded.

msgspec decodes `traceEvents` into `Event` structs whose `args` stay a raw slice of the input; only
the handful of keys every event is read for (correlation, ids, device, stream, sequence number)
are decoded up front, and the rest (shapes, call stacks, grid...) when a consumer asks for one
event's args (`Trace.args_of`). No dict is built per event, which is most of the time and memory
of a generic JSON load on big traces. Anything the typed decoder rejects (a malformed or unusual
trace) goes through the generic, per-event path in `events.py` instead, so the two paths accept
the same inputs.
"""
from __future__ import annotations

from typing import Any

import msgspec
import numpy as np


class CoreArgs(msgspec.Struct):
    """The args every event is read for; everything else stays undecoded until asked for."""
    correlation: Any = None
    external_id: Any = msgspec.field(default=None, name="External id")
    external_id_2021: Any = msgspec.field(default=None, name="external id")
    device: Any = None
    stream: Any = None
    sequence: Any = msgspec.field(default=None, name="Sequence number")
    fwd_thread: Any = msgspec.field(default=None, name="Fwd thread id")


class Event(msgspec.Struct):
    ph: Any = None
    cat: Any = None
    name: Any = None
    pid: Any = None
    tid: Any = None
    ts: Any = None
    dur: Any = None
    id: Any = None
    args: msgspec.Raw = msgspec.Raw(b"null")  # a slice of the input, decoded on demand


_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_EVENTS = msgspec.json.Decoder(list[Event])
_ANY = msgspec.json.Decoder()
_CORE = msgspec.json.Decoder(CoreArgs | None)  # `"args": null` and absent args both read as None


def decode(data: bytes) -> tuple[dict, list[Event]] | None:
    """(metadata, events) for a well-formed Kineto document, else None (use the generic path)."""
    try:
        top = _TOP.decode(data)
        raw_events = top.pop("traceEvents")
        events = _EVENTS.decode(raw_events)
        meta = {k: _ANY.decode(v) for k, v in top.items()}
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
        return None
    return meta, events


def args_dict(args: msgspec.Raw | None) -> dict:
    """An event's full `args` object, decoded from the slice kept at load time."""
    if args is None:
        return {}
    try:
        out = _ANY.decode(args)
    except msgspec.DecodeError:
        return {}
    return out if isinstance(out, dict) else {}


class Unusual(Exception):
    """The fast path met something only the generic path handles."""


def _num(values, scale: float) -> np.ndarray:
    if any(type(v) is bool for v in values):  # the generic path rejects booleans as times
        raise Unusual
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise Unusual from None
    if arr.dtype.kind not in "if":
        raise Unusual
    out = np.round(arr.astype(np.float64) * scale)
    if not np.isfinite(out).all() or np.abs(out).max(initial=0) >= 2**62:
        raise Unusual
    return out.astype(np.int64)


def _ids(values, default: int) -> np.ndarray:
    """Integer args (None -> default); odd values convert one by one as the generic path does."""
    from daydream.trace.events import _as_int
    out = [default if v is None else v for v in values]
    if all(type(v) is int and -2**62 < v < 2**62 for v in out):
        return np.asarray(out, np.int64) if out else np.zeros(0, np.int64)
    return np.fromiter((_as_int(v, default) for v in out), np.int64, len(out))


def _id_column(values, to_id) -> np.ndarray:
    """Thread/process ids through the generic converter, once per distinct value."""
    try:
        lookup = {v: to_id(v) for v in set(values)}
    except TypeError:  # unhashable ids (lists, dicts)
        raise Unusual from None
    return np.asarray([lookup[v] for v in values], np.int64) if values else np.zeros(0, np.int64)


def columns(events: list[Event], kind_of_cat: dict, other: int, skipped: set, gpu_kinds: tuple, names,
            to_id) -> dict:
    """Columns of the complete ('X') events, or raise Unusual."""
    x = [e for e in events if e.ph == "X"]
    cat_kind = {}
    kinds = []
    keep = []
    for i, e in enumerate(x):
        c = e.cat
        if c is not None and not isinstance(c, str):
            raise Unusual
        k = cat_kind.get(c)
        if k is None:
            if c is None:
                k = other
            else:
                low = c.lower()
                k = -1 if low in skipped else kind_of_cat.get(low, other)
            cat_kind[c] = k
        if k >= 0:
            kinds.append(k)
            keep.append(i)
    x = [x[i] for i in keep]
    if any(type(e.name) is not str for e in x):
        raise Unusual
    kind = np.asarray(kinds, np.int8)
    ts = _num([e.ts for e in x], 1000.0)
    dur = np.maximum(_num([0 if e.dur is None else e.dur for e in x], 1000.0), 0)
    pid = _id_column([e.pid for e in x], to_id)
    tid = _id_column([e.tid for e in x], to_id)
    args = [e.args for e in x]
    none = CoreArgs()
    try:
        a = [_CORE.decode(v) or none for v in args]
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise Unusual from None
    corr = _ids([v.correlation for v in a], -1)
    ext = _ids([v.external_id if v.external_id is not None else v.external_id_2021 for v in a], -1)
    seq = _ids([v.sequence for v in a], -1)
    fwd = _ids([v.fwd_thread for v in a], -1)
    gpu = (kind >= gpu_kinds[0]) & (kind <= gpu_kinds[1])  # GPU-side rows: device and stream
    g = np.flatnonzero(gpu)
    device = np.full(len(x), -1, np.int64)
    stream = np.full(len(x), -1, np.int64)
    absent = -(2 ** 61)  # an arg that is missing (not one that says -1) falls back to pid / tid
    device[g] = _ids([a[i].device for i in g.tolist()], absent)
    stream[g] = _ids([a[i].stream for i in g.tolist()], absent)
    device = np.where(gpu & (device == absent), pid, device)
    stream = np.where(gpu & (stream == absent), tid, stream)
    name = np.asarray([names(e.name) for e in x], np.int32) if x else np.zeros(0, np.int32)
    return {"kind": kind, "name": name, "pid": pid, "tid": tid, "device": device, "stream": stream,
            "ts": ts, "dur": dur, "corr": corr, "ext": ext, "seq": seq, "fwd_tid": fwd, "args": args}
