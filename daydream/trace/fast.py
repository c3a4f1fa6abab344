"""Fast decoding: a Kineto document's `traceEvents` straight into columns, args left undecoded.

msgspec splits the document into its metadata and the raw bytes of the `traceEvents` array; the
compiled scanner (daydream/_core.c:scan) then reads that array once and writes, per complete event,
the columns of the events table plus the byte span of its `args` object, and the fwdbwd flows.
Only the handful of args every event is read for (correlation, ids, device, stream, sequence
number) are read up front; the rest (shapes, call stacks, grid...) is decoded when a consumer asks
for one event's args (`Trace.args_of`). No Python object is built per event, which is what makes a million-event trace
load in seconds. Anything the scanner does not accept as ordinary (a string where a number belongs,
a name that is not a string...) sends the rank through the generic, per-event path in `events.py`,
so the two paths accept the same inputs.
"""
from __future__ import annotations

import bisect
import json

import msgspec
import numpy as np

from daydream import _core
from daydream.errors import DaydreamError

_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ANY = msgspec.json.Decoder()
_STR = msgspec.json.Decoder(str)
_ABSENT = -(2 ** 63)  # a device/stream arg that is missing (no real id is this far out): falls back to pid/tid
SCANNED = ("kind", "name", "pid", "tid", "device", "stream", "ts", "dur", "corr", "ext", "seq", "fwd_tid",
           "args_start", "args_end")


class RawEvents:
    """A rank's `traceEvents` array, still undecoded."""

    def __init__(self, raw: msgspec.Raw):
        self.raw = raw

    def is_nonempty_list(self) -> bool:
        """Whether the array opens with '[' and holds something (the generic path reports the rest)."""
        head = bytes(memoryview(self.raw)[:256]).lstrip(b" \t\r\n")
        return head[:1] == b"[" and head[1:].lstrip(b" \t\r\n")[:1] not in (b"]", b"")

    def dicts(self) -> list:
        """Every event as a plain object (the generic path); [] if the array is not a list.

        A number past the double range (`1e400`) makes msgspec refuse the whole array; the standard
        library reads it as infinity instead, and the event is skipped as having no usable time."""
        try:
            out = _ANY.decode(self.raw)
        except UnicodeDecodeError:
            raise DaydreamError("traceEvents holds bytes that are not UTF-8; not valid JSON") from None
        except msgspec.DecodeError:  # incl. ValidationError; msgspec >= 0.23 reports bad UTF-8 this way too
            try:
                out = json.loads(bytes(self.raw))
            except RecursionError:
                raise DaydreamError("traceEvents is nested too deeply to read; not a Kineto/Chrome trace") from None
            except (UnicodeDecodeError, ValueError):
                raise DaydreamError("traceEvents holds bytes that are not UTF-8 or a number out of range "
                                    "among them; not valid JSON") from None
        return out if isinstance(out, list) else []


def decode(data: bytes) -> tuple[dict, RawEvents] | None:
    """(metadata, raw events) for a well-formed JSON object whose `traceEvents` is a non-empty list,
    else None (the generic path then says what is wrong)."""
    try:
        top = _TOP.decode(data)
        events = RawEvents(top.pop("traceEvents"))
        meta = {k: _ANY.decode(v) for k, v in top.items()}
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, UnicodeDecodeError, RecursionError):
        return None  # RecursionError: nested deeper than msgspec reads (about 1,000 levels)
    return (meta, events) if events.is_nonempty_list() else None


def scan(events: RawEvents, names, to_id, kind_of, int_of) -> tuple[dict, list, np.ndarray, np.ndarray] | None:
    """Columns of the complete events, the metadata events (as dicts), the fwdbwd flows (rows of
    id, start, pid, tid, ts) and the `[memory]` counters (rows of ts, Bytes, Total Allocated, Total
    Reserved, Device Type, Device Id, Addr), or None.

    `names` is the table's name interner; `to_id` maps a non-integer pid/tid to an id, `kind_of` a
    category to an event kind (-1: skip the event) and `int_of` an integer arg written as a string
    to its value (None: not an integer); each is asked once per distinct value.
    """
    out = _core.scan(events.raw, names.codes, names.values, {}, to_id, {}, kind_of, {}, int_of, _STR.decode,
                     _ABSENT)
    if out is None:
        return None
    table = np.frombuffer(out[0], np.int64).reshape(-1, len(SCANNED))
    cols = {c: table[:, i] for i, c in enumerate(SCANNED)}  # views: EventTable.finish gathers them
    spans = np.frombuffer(out[1], np.int64).reshape(-1, 2).tolist()
    view = memoryview(events.raw)
    try:
        others = [_ANY.decode(view[s:e]) for s, e in spans]
    except (msgspec.ValidationError, RecursionError):  # 1e400 in a metadata event: the generic path
        return None
    return (cols, others, np.frombuffer(out[2], np.int64).reshape(-1, 5),
            np.frombuffer(out[3], np.int64).reshape(-1, 7))


class ArgsStore:
    """Every event's `args`, by events-table row: dicts from the generic path, byte spans of the
    raw document from the scanner (decoded on each request; consumers ask for few rows)."""

    def __init__(self):
        self._chunks: list = []  # (first row, list of dicts) or (first row, (buffer, starts, ends))
        self._firsts: list[int] = []
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add_dicts(self, dicts: list) -> None:
        self._firsts.append(self._n)
        self._chunks.append(dicts)
        self._n += len(dicts)

    def add_spans(self, buffer, starts: np.ndarray, ends: np.ndarray) -> None:
        self._firsts.append(self._n)
        self._chunks.append((memoryview(buffer), starts, ends))
        self._n += len(starts)

    def __getitem__(self, i: int) -> dict:
        k = bisect.bisect_right(self._firsts, i) - 1
        if k < 0 or i >= self._n:
            raise IndexError(i)
        chunk, j = self._chunks[k], i - self._firsts[k]
        if isinstance(chunk, list):
            return chunk[j]
        view, starts, ends = chunk
        if starts[j] < 0:
            return {}
        try:
            out = _ANY.decode(view[starts[j]:ends[j]])
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            return {}
        return out if isinstance(out, dict) else {}
