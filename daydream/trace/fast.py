"""Fast decoding: the trace's events straight into typed records, skipping what we never read.

msgspec decodes `traceEvents` into `Event` structs whose `args` keep only the keys daydream uses
(correlation, ids, stream, shapes, memory counters...). Large strings such as Python call stacks
are skipped while parsing instead of being built and thrown away, which roughly halves load time
and peak memory on big traces. Anything the typed decoder rejects (a malformed or unusual trace)
goes through the generic, per-event path in `events.py` instead, so the two paths accept the same
inputs.
"""
from __future__ import annotations

from typing import Any

import msgspec
import numpy as np


class Args(msgspec.Struct, omit_defaults=True):
    correlation: Any = None
    external_id: Any = msgspec.field(default=None, name="External id")
    external_id_2021: Any = msgspec.field(default=None, name="external id")
    device: Any = None
    stream: Any = None
    sequence: Any = msgspec.field(default=None, name="Sequence number")
    fwd_thread: Any = msgspec.field(default=None, name="Fwd thread id")
    name: Any = None
    input_dims: Any = msgspec.field(default=None, name="Input Dims")
    input_type: Any = msgspec.field(default=None, name="Input type")
    concrete: Any = msgspec.field(default=None, name="Concrete Inputs")
    input_strides: Any = msgspec.field(default=None, name="Input Strides")
    grid: Any = None
    block: Any = None
    bytes: Any = None
    blocks_per_sm: Any = msgspec.field(default=None, name="blocks per SM")
    warps_per_sm: Any = msgspec.field(default=None, name="warps per SM")
    registers: Any = msgspec.field(default=None, name="registers per thread")
    shared_memory: Any = msgspec.field(default=None, name="shared memory")
    occupancy: Any = msgspec.field(default=None, name="est. achieved occupancy %")
    kind: Any = None
    mem_bytes: Any = msgspec.field(default=None, name="Bytes")
    total_allocated: Any = msgspec.field(default=None, name="Total Allocated")
    total_reserved: Any = msgspec.field(default=None, name="Total Reserved")
    device_type: Any = msgspec.field(default=None, name="Device Type")
    device_id: Any = msgspec.field(default=None, name="Device Id")
    addr: Any = msgspec.field(default=None, name="Addr")
    wait_on_stream: Any = None
    wait_on_record: Any = msgspec.field(default=None, name="wait_on_cuda_event_record_corr_id")
    in_nelems: Any = msgspec.field(default=None, name="In msg nelems")
    out_nelems: Any = msgspec.field(default=None, name="Out msg nelems")
    collective: Any = msgspec.field(default=None, name="Collective name")
    group_size: Any = msgspec.field(default=None, name="Group size")
    dtype: Any = None
    pg_name: Any = msgspec.field(default=None, name="Process Group Name")
    pg_ranks: Any = msgspec.field(default=None, name="Process Group Ranks")


class Event(msgspec.Struct):
    ph: Any = None
    cat: Any = None
    name: Any = None
    pid: Any = None
    tid: Any = None
    ts: Any = None
    dur: Any = None
    id: Any = None
    args: Args | None = None


_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_EVENTS = msgspec.json.Decoder(list[Event])
_ANY = msgspec.json.Decoder()


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


def args_dict(args: Args | None) -> dict:
    """The kept args of an event under their Kineto names."""
    return msgspec.to_builtins(args) if args is not None else {}


class Unusual(Exception):
    """The fast path met something only the generic path handles."""


def _num(values, scale: float) -> np.ndarray:
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
    """Integer ids (None -> default); anything else is unusual."""
    out = [default if v is None else v for v in values]
    try:
        arr = np.asarray(out)
    except (ValueError, TypeError, OverflowError):
        raise Unusual from None
    if arr.dtype.kind != "i":
        if len(arr) == 0:
            return np.zeros(0, np.int64)
        raise Unusual
    if len(arr) and (np.abs(arr).max() >= 2**62):
        raise Unusual
    return arr.astype(np.int64)


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
    none = Args()
    a = [v if v is not None else none for v in args]
    corr = _ids([v.correlation for v in a], -1)
    ext = _ids([v.external_id if v.external_id is not None else v.external_id_2021 for v in a], -1)
    seq = _ids([v.sequence for v in a], -1)
    fwd = _ids([v.fwd_thread for v in a], -1)
    gpu = np.isin(kind, gpu_kinds)
    device = np.where(gpu, _ids([v.device for v in a], -1), -1)
    stream = np.where(gpu, _ids([v.stream for v in a], -1), -1)
    device = np.where(gpu & (device == -1), pid, device)
    stream = np.where(gpu & (stream == -1), tid, stream)
    name = np.asarray([names(e.name) for e in x], np.int32) if x else np.zeros(0, np.int32)
    return {"kind": kind, "name": name, "pid": pid, "tid": tid, "device": device, "stream": stream,
            "ts": ts, "dur": dur, "corr": corr, "ext": ext, "seq": seq, "fwd_tid": fwd, "args": args}
