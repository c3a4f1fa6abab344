"""Trace formats: what a reader must give back, and the formats `load` knows.

A trace format is an object (usually a module) with a `name`, `claims(path)` and `read(path)`;
`read` turns a file (or directory, or archive) into `EventColumns`, the events table of
docs/model.md §1 with its side tables. Everything after that (steps, window, graph, simulation)
is the same for every format. Kineto/Chrome JSON is the first and the fallback format; another is
added with `register_format` (recipe and the tests it needs: docs/extending.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from daydream.trace.events import EventTable, scrub
from daydream.trace.fast import ArgsStore
from daydream.trace.reader import RawTrace, read_path


@dataclass
class EventColumns:
    """One trace as columns: what every format's reader returns.

    events:  EventTable.COLUMNS (rank, kind, name, pid, tid, device, stream, ts, dur, corr, ext,
             seq, fwd_tid) as int numpy arrays, ts/dur in integer ns, kind one of events.KIND_NAMES,
             name a code into `names`, -1 where a value is absent; plus args_idx (row -> its args in
             `args`); sorted by (rank, ts, -dur).
    memory:  [memory] counters (rank, ts, bytes, total_allocated, total_reserved, device_type,
             device_id, addr); flows: fwdbwd flow ends (rank, id, start, pid, tid, ts).
    meta:    rank -> the trace's metadata (deviceProperties, distributedInfo, ...), credentials
             dropped; warnings: what the reader left out and why (shown to the user).
    """
    events: dict[str, np.ndarray]
    memory: dict[str, np.ndarray]
    flows: dict[str, np.ndarray]
    names: list[str]
    args: ArgsStore
    meta: dict[int, dict]
    thread_names: dict = field(default_factory=dict)   # (rank, pid, tid) -> name
    process_names: dict = field(default_factory=dict)  # (rank, pid) -> name
    skipped: int = 0                                   # events without a usable time or name
    warnings: list = field(default_factory=list)       # other events left out, in sentences


@runtime_checkable
class TraceFormat(Protocol):
    """A reader for one kind of trace file."""
    name: str

    def claims(self, path: Path) -> bool:
        """Whether this format reads `path` (by its name or first bytes; no full parse)."""

    def read(self, path: Path) -> EventColumns:
        """The whole trace as columns; bad input raises a one-line DaydreamError."""


def columns_of(raws: list[RawTrace]) -> EventColumns:
    """Kineto ranks (parsed documents, one per rank) -> columns."""
    table = EventTable()
    meta = {}
    for raw in raws:
        table.add_rank(raw.rank, raw.events)
        raw.events = None  # let the parsed events go as soon as their columns exist
        meta[raw.rank] = scrub(raw.meta)
    events, memory, flows = table.finish()
    return EventColumns(events, memory, flows, table.names.values, table.args, meta,
                        table.thread_names, table.process_names, table.skipped, table.negative)


class KinetoJSON:
    """PyTorch profiler (Kineto) / Chrome trace JSON: a file, a run directory, a directory or
    archive of per-rank files (daydream/trace/reader.py). It claims every path, so it is tried last."""
    name = "kineto"

    @staticmethod
    def claims(path: Path) -> bool:
        return True

    @staticmethod
    def read(path: Path) -> EventColumns:
        return columns_of(read_path(path))


FORMATS: list[TraceFormat] = [KinetoJSON()]


def register_format(fmt: TraceFormat) -> TraceFormat:
    """Make `load` try `fmt` before the formats already known (Kineto JSON stays the fallback)."""
    if not isinstance(fmt, TraceFormat):
        raise TypeError(f"{fmt!r} is not a trace format (needs name, claims(path), read(path))")
    FORMATS.insert(0, fmt)
    return fmt


def format_for(path: Path) -> TraceFormat:
    return next(f for f in FORMATS if f.claims(path))
