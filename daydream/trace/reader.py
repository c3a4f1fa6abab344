"""Reading trace files: one Kineto/Chrome JSON document per rank.

Accepts a `.json` or `.json.gz` file, a run directory written by `daydream profile`
(`trace.json.gz`), a directory holding one trace per rank, or a `.tar.gz` of such files.
Everything that can go wrong with the bytes on disk becomes a one-line `DaydreamError`.
"""
from __future__ import annotations

import io
import os
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import orjson
from zlib_ng import zlib_ng

from daydream.errors import DaydreamError
from daydream.files import TRACE_SUFFIXES
from daydream.trace import fast

_GZIP = b"\x1f\x8b"
_IN_CHUNK = 4 << 20    # compressed bytes read at a time
_OUT_CHUNK = 64 << 20  # most bytes inflated at a time: the cap is checked between pieces
_TAR_CHUNK = 1 << 20   # the same, for a tar archive read as a stream

# Input limits (docs/api.md, "Input limits"). Far above any real trace we know of: the largest
# shared trace (kineto/resnet50_v100) holds 35 MB of JSON and 75,718 events, the largest we have
# met 172 MB; the caps are 100x and 1,000x that.
DEFAULT_MAX_BYTES = 20 * 10**9
DEFAULT_MAX_EVENTS = 200 * 10**6
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def _limit(var: str, default: int, unit: str) -> int:
    text = os.environ.get(var, "").strip()
    if not text:
        return default
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]i?)?" + (r"b?" if unit == "bytes" else ""), text, re.I)
    if not m or float(m.group(1)) * _UNITS[(m.group(2) or "").lower()] < 1:
        raise DaydreamError(f"{var}={text!r} is not a positive number of {unit} (e.g. 20G, 500M, 1000000)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def _size(n: int) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 10**9 else f"{n / 1e6:.3g} MB" if n >= 10**6 else f"{n:,} bytes"


class Limits:
    """How much one TRACE may hold, all ranks together: bytes read out of it (the size of each
    plain file or archive member read, plus everything inflated from gzip) and events (counted as
    `"ph"` keys in the JSON text, before it is parsed). DAYDREAM_MAX_BYTES and DAYDREAM_MAX_EVENTS
    override the defaults."""

    def __init__(self, max_bytes: int | None = None, max_events: int | None = None):
        self.max_bytes = max_bytes or _limit("DAYDREAM_MAX_BYTES", DEFAULT_MAX_BYTES, "bytes")
        self.max_events = max_events or _limit("DAYDREAM_MAX_EVENTS", DEFAULT_MAX_EVENTS, "events")
        self.bytes = 0
        self.events = 0
        self._uncounted: list = []  # documents whose events are not counted yet
        self._bound = 0  # the most events they can hold

    def take_bytes(self, n: int, name: str) -> None:
        """Count `n` more bytes, refusing them if the total would pass the cap."""
        if self.bytes + n > self.max_bytes:
            raise DaydreamError(f"{name}: the trace holds more than {_size(self.max_bytes)} of data once "
                                f"decompressed (DAYDREAM_MAX_BYTES={self.max_bytes}); if it is real, raise "
                                "DAYDREAM_MAX_BYTES")
        self.bytes += n

    def take_events(self, data, name: str) -> None:
        """Count the events of one document's JSON text (its `"ph"` keys) before it is parsed.

        A `"ph"` key takes at least 7 bytes (`"ph":0,`), so the count (0.5 s per GB) is made only
        once the documents read so far are large enough to hold more events than the cap."""
        self._uncounted.append(data)
        self._bound += len(data) // 7 + 1
        if self.events + self._bound <= self.max_events:
            return
        self.events += sum(d.count(b'"ph"') for d in self._uncounted)
        self._uncounted, self._bound = [], 0
        if self.events > self.max_events:
            raise DaydreamError(f"{name}: the trace holds more than {self.max_events:,} events "
                                f"(DAYDREAM_MAX_EVENTS={self.max_events}); if it is real, raise "
                                "DAYDREAM_MAX_EVENTS")


@dataclass
class RawTrace:
    """One rank's parsed trace: its metadata and its events (raw `traceEvents` bytes, or plain dicts)."""
    source: str
    rank: int
    meta: dict
    events: list


def _corrupt(name: str, why) -> DaydreamError:
    return DaydreamError(f"{name}: truncated or corrupt gzip ({why}); re-copy or re-record the trace")


def _inflated(first: bytes, read, name: str, limits: Limits, out_chunk: int = _OUT_CHUNK):
    """The output of a gzip stream (one member or several, back to back), in pieces of at most
    `out_chunk` bytes, each counted against the byte cap before it is handed on: a small file that
    inflates to terabytes is refused once the cap is reached, holding at most one piece more.

    zlib-ng inflates twice as fast as zlib here (0.31 s against 0.67 s for 172 MB)."""
    d = zlib_ng.decompressobj(31)
    data = first
    while True:
        try:
            piece = d.decompress(data, out_chunk)
        except zlib_ng.error as exc:
            raise _corrupt(name, exc) from None
        if piece:
            limits.take_bytes(len(piece), name)
            yield piece
        data = d.unconsumed_tail
        if d.eof:  # end of a member: another may follow
            data = d.unused_data or read(_IN_CHUNK)
            if len(data) == 1:
                data += read(_IN_CHUNK)
            while data and not data.strip(b"\0"):  # zero padding after the last member
                data = read(_IN_CHUNK)
            if not data:
                return
            if data[:2] != _GZIP:
                raise _corrupt(name, "data after the end of the compressed stream")
            d = zlib_ng.decompressobj(31)
        elif not data and not piece:
            data = read(_IN_CHUNK)
            if not data:
                raise _corrupt(name, "compressed data ended before the end-of-stream marker")


def _gunzip(first: bytes, read, name: str, limits: Limits) -> bytes | bytearray:
    out = b""
    for piece in _inflated(first, read, name, limits):
        if not out:
            out = piece  # one piece (most traces): no copy
        else:
            if isinstance(out, bytes):
                out = bytearray(out)
            out += piece
    return out


class _InflatingReader:
    """A gzip stream as a read-only file (for tarfile's stream mode): inflated as it is read, in
    pieces of _TAR_CHUNK (tarfile asks for a member at a time; 64 MB pieces made a pass over a
    large archive peak at 125 MB of buffers)."""

    def __init__(self, f, name: str, limits: Limits):
        self._pieces = _inflated(f.read(_IN_CHUNK), f.read, name, limits, _TAR_CHUNK)
        self._buf = memoryview(b"")

    def read(self, n: int = -1) -> bytes:
        out = []
        while n < 0 or n > 0:
            if not self._buf:
                piece = next(self._pieces, None)
                if piece is None:
                    break
                self._buf = memoryview(piece)
            take = self._buf if n < 0 else self._buf[:n]
            out.append(take)
            self._buf = self._buf[len(take):]
            if n > 0:
                n -= len(take)
        return b"".join(out)


def _read_file(p: Path, name: str, limits: Limits):
    """A file's JSON text: inflated if it is gzip, bounded by the byte cap either way (a regular
    file by its size before it is read, a pipe as it is read)."""
    try:
        with open(p, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode):
                gzipped = f.read(2) == _GZIP
                f.seek(0)
                if gzipped:
                    return _gunzip(f.read(_IN_CHUNK), f.read, name, limits)
                limits.take_bytes(st.st_size, name)
                return f.read()
            first = f.read(_IN_CHUNK)
            if first[:2] == _GZIP:
                return _gunzip(first, f.read, name, limits)
            out = bytearray(first)
            limits.take_bytes(len(first), name)
            while chunk := f.read(_IN_CHUNK):
                limits.take_bytes(len(chunk), name)
                out += chunk
            return out
    except OSError as exc:
        raise DaydreamError(f"{p}: cannot read ({exc.strerror})") from None


def _decode(data, name: str, limits: Limits) -> tuple[dict, fast.RawEvents | list]:
    if data[:2] == _GZIP:  # a gzip archive member
        member = io.BytesIO(data)
        data = _gunzip(member.read(_IN_CHUNK), member.read, name, limits)
    limits.take_events(data, name)
    typed = fast.decode(data)
    if typed is not None:
        return typed
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DaydreamError(f"{name}: not valid JSON ({exc}); is this a Kineto/Chrome trace?") from None
    if isinstance(doc, list):  # the Chrome "JSON array" form: events only
        doc = {"traceEvents": doc}
    if not isinstance(doc, dict) or "traceEvents" not in doc:
        raise DaydreamError(f"{name}: JSON has no 'traceEvents'; expected a Kineto/Chrome trace")
    if not isinstance(doc["traceEvents"], list):
        raise DaydreamError(f"{name}: 'traceEvents' is not a list")
    if not doc["traceEvents"]:
        raise DaydreamError(f"{name}: the trace has no events; was the profiler active?")
    events = doc.pop("traceEvents")
    return doc, events


def _rank_of(meta: dict, fallback: int) -> int:
    info = meta.get("distributedInfo")
    if isinstance(info, dict) and isinstance(info.get("rank"), int):
        return info["rank"]
    return fallback


def _rank_hint(name: str, fallback: int) -> int:
    m = re.search(r"rank[_-]?(\d+)", name)
    return int(m.group(1)) if m else fallback


def _assign_ranks(traces: list[RawTrace]) -> list[RawTrace]:
    """Ranks from distributedInfo, else from the file name, else file order. If any two files claim
    the same rank, every file gets its position in file order instead (ranks must be unique)."""
    ranks = [t.rank for t in traces]
    if len(set(ranks)) != len(ranks):
        for i, t in enumerate(traces):
            t.rank = i
    return sorted(traces, key=lambda t: t.rank)


def read_path(path: str | Path, limits: Limits | None = None) -> list[RawTrace]:
    """Read every rank's trace under `path`, within `limits` (default: Limits())."""
    p = Path(path)
    limits = limits or Limits()
    if not p.exists():
        raise DaydreamError(f"{p}: no such file or directory")
    if p.is_dir():
        run_trace = p / "trace.json.gz"
        files = [run_trace] if run_trace.exists() else sorted(
            f for f in p.iterdir() if f.is_file() and f.name.endswith(TRACE_SUFFIXES))
        if not files:  # a multi-rank `daydream profile` run: one run directory per rank
            files = sorted((d / "trace.json.gz" for d in p.iterdir() if (d / "trace.json.gz").is_file()),
                           key=lambda f: f.parent.name)
        if not files:
            raise DaydreamError(f"{p}: directory holds no trace files (*.json, *.json.gz)")
        out = []
        for i, f in enumerate(files):
            meta, events = _decode(_read_file(f, str(f), limits), str(f), limits)
            out.append(RawTrace(str(f), _rank_of(meta, _rank_hint(f.name, i)), meta, events))
        return _assign_ranks(out)
    if p.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _read_archive(p, limits)
    data = _read_file(p, str(p), limits)
    meta, events = _decode(data, str(p), limits)
    return [RawTrace(str(p), _rank_of(meta, 0), meta, events)]


def archive_members(p: str | Path, limits: Limits | None = None, read=lambda name: True, hold: bool = True):
    """(name, bytes, link target) of every trace member of a tar archive (gzipped or not), in
    archive order, in one forward pass: never a seek back into a gzip stream, each member read
    once. Members for which `read(name)` is false are listed with None (not read). A hard link is
    given the bytes of the member it links to (tar stores the file once, then links) and that
    member's name; a hard link to anything else, and a symbolic link (its target may lie
    outside), are refused. With hold=False the members' bytes are not kept for links that may
    follow (a hard link then comes with None: read its target with `read_member`), so a pass over
    a large archive holds one member at a time."""
    p, limits = Path(p), limits or Limits()
    kept = {}  # member name -> its bytes (None unless held), for the hard links that may follow
    try:
        with open(p, "rb") as f:
            gzipped = f.read(2) == _GZIP
            f.seek(0)
            source = _InflatingReader(f, str(p), limits) if gzipped else f
            with tarfile.open(fileobj=source, mode="r|") as tar:
                for m in tar:
                    name = f"{p}:{m.name}"
                    if not m.name.endswith(TRACE_SUFFIXES):
                        continue
                    if m.islnk():
                        if m.linkname not in kept:
                            raise DaydreamError(f"{name}: a hard link to {m.linkname}, which is not a trace file "
                                                "earlier in the archive; archive the file itself")
                        data = kept[m.linkname] if read(m.name) else None
                    elif m.issym():
                        raise DaydreamError(f"{name}: a symbolic link (to {m.linkname}); archive the file itself")
                    elif not m.isfile():
                        continue
                    elif not read(m.name):
                        data = None
                    else:
                        if gzipped:  # inflated bytes are counted as they come; refuse a bomb up front
                            if limits.bytes + m.size > limits.max_bytes:
                                limits.take_bytes(m.size, name)
                        else:
                            limits.take_bytes(m.size, name)
                        data = tar.extractfile(m).read()
                    kept[m.name] = data if hold else None
                    yield m.name, data, (m.linkname if m.islnk() else None)
    except (tarfile.TarError, EOFError) as exc:
        raise DaydreamError(f"{p}: unreadable tar archive ({exc})") from None
    except OSError as exc:
        raise DaydreamError(f"{p}: unreadable tar archive ({exc.strerror or exc})") from None


def _read_archive(p: Path, limits: Limits) -> list[RawTrace]:
    """Every trace member of an archive, parsed (see `archive_members`)."""
    docs = [(n, *_decode(data, f"{p}:{n}", limits)) for n, data, _ in archive_members(p, limits)]
    if not docs:
        raise DaydreamError(f"{p}: archive holds no trace files (*.json, *.json.gz)")
    docs.sort(key=lambda d: d[0])  # file order, for the ranks no name or metadata gives
    return _assign_ranks([RawTrace(f"{p}:{n}", _rank_of(meta, _rank_hint(n.rsplit("/", 1)[-1], i)), meta, events)
                          for i, (n, meta, events) in enumerate(docs)])


def read_member(p: str | Path, member: str, limits: Limits | None = None) -> bytes:
    """One trace member's bytes, reading the archive forward only as far as that member."""
    for name, data, target in archive_members(p, limits, read=lambda n: n == member):
        if name == member:
            return read_member(p, target, limits) if data is None else data  # None: a hard link
    raise DaydreamError(f"{p}: no trace member {member!r} in the archive")


def read_file(path: str | Path, limits: Limits | None = None):
    """One file's bytes, gunzipped if it is gzip, within `limits` (other files daydream reads:
    memory timelines)."""
    return _read_file(Path(path), str(path), limits or Limits())


def open_bytes(data: bytes, name: str = "<bytes>", limits: Limits | None = None) -> RawTrace:
    """Parse a trace held in memory (tests, notebooks)."""
    meta, events = _decode(data, name, limits or Limits())
    return RawTrace(name, _rank_of(meta, 0), meta, events)


__all__ = ["RawTrace", "Limits", "read_path", "read_file", "open_bytes", "TRACE_SUFFIXES"]
