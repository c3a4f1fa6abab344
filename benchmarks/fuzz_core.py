"""Differential fuzzing of the compiled scanner (daydream/_core.c `scan`), meant to run under
AddressSanitizer and UBSan (benchmarks/fuzz_core_asan.sh builds that and runs this).

Seeds are real events: the first events of every shared trace, re-serialised. Each round mutates a
seed (byte flips, insertions of JSON-significant bytes, truncation, splices of hostile tokens such
as 1e400, lone surrogates, deep nesting, huge integers, odd whitespace) and hands the bytes to the
scanner. Two things are checked:
1. the scanner never crashes (the sanitizers abort the process on any memory or UB error);
2. where the mutated bytes are still valid JSON that the scanner accepts, its columns equal those of
   the generic per-event path (`EventTable._add_rank_dicts`), which decides the odd cases.
A disagreement, or a Python exception where the loader should refuse with one line, is written to
benchmarks/results/fuzz_core_disagreements/ and counted; the exit status is 1 if there was any.

Usage: python benchmarks/fuzz_core.py [--seconds 60] [--seed 0]
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path

import msgspec

from daydream.errors import DaydreamError
from daydream.trace import events as E
from daydream.trace import fast

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "traces"
OUT = HERE / "results" / "fuzz_core_disagreements"
COLS = ("kind", "pid", "tid", "device", "stream", "ts", "dur", "corr", "ext", "seq", "fwd_tid")
HOSTILE = [b"1e400", b"-1e400", b"\"\\ud800\"", b"[" * 2000 + b"]" * 2000, b"99999999999999999999999",
           b"-0", b"0.000000000000000000001", b"\"\\u0000\"", b"\xff\xfe", b"NaN", b"\t\r\n ", b"{}", b"null",
           b"\"[bold]\"", b"\"\x1b[31m\""]


def seeds(per_trace: int = 60) -> list[bytes]:
    out = []
    for path in sorted(SHARED.glob("*/*.json.gz")):
        try:
            events = json.loads(gzip.decompress(path.read_bytes()))
        except (OSError, ValueError):
            continue
        if isinstance(events, dict):
            events = events.get("traceEvents", [])
        step = max(1, len(events) // per_trace)
        out.append(json.dumps(events[::step][:per_trace]).encode())
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        pos = rng.randrange(len(b)) if b else 0
        if op < 0.35 and b:
            b[pos] = rng.choice(b'{}[]",:0123456789-.eE\\ ntfu')
        elif op < 0.6:
            b[pos:pos] = rng.choice(HOSTILE)
        elif op < 0.75 and b:
            del b[pos:pos + rng.randint(1, 16)]
        elif op < 0.85:
            b = b[:pos]
        elif b:
            b[pos] = rng.randrange(256)
    return bytes(b)


def scan(data: bytes):
    """The events table of `data` as the loader builds it on the scanner's path (after msgspec has
    validated the document: fast.decode), or (None, table) where the scanner sends it to the
    generic path. Unvalidated bytes go to the scanner too, for memory safety alone."""
    table = E.EventTable()
    args = (table.names, lambda v: E._int_id(v, table._odd), table._kind_of, lambda v: E._as_int(v, None))
    try:
        fast.scan(fast.RawEvents(msgspec.Raw(data)), *args)
    except msgspec.DecodeError:
        pass  # a malformed escape in an unvalidated name; the loader never gets here with it
    try:
        decoded = fast.decode(b'{"traceEvents": ' + data + b"}")
    except (RecursionError, DaydreamError):  # refused with one line by the loader
        decoded = None
    if decoded is None:
        return None, table
    table = E.EventTable()
    try:
        table.add_rank(0, decoded[1])
        if not any(isinstance(chunk, tuple) for chunk in table.args._chunks):
            return None, table  # the scanner declined: the generic path decided
        cols, _, _ = table.finish()
    except DaydreamError:  # a one-line refusal (the loader's answer to absurd values)
        return None, table
    return cols, table


def generic(data: bytes):
    try:
        events = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(events, list):
        return None
    table = E.EventTable()
    table._add_rank_dicts(0, events)
    cols, _, _ = table.finish()
    return cols, table


def agree(cols, table, data: bytes) -> bool:
    """The scanner path's finished table equals the generic path's (both sorted by finish())."""
    g = generic(data)
    if g is None:
        return True  # the scanner accepted what Python's json refuses: msgspec decides for both paths
    gcols, gtable = g
    for c in COLS:
        if cols[c].tolist() != gcols[c].tolist():
            return False
    names = [table.names.values[i] for i in cols["name"]]
    return names == [gtable.names.values[i] for i in gcols["name"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from daydream import _core
    print(f"core: {_core.__file__}", file=sys.stderr)
    rng = random.Random(args.seed)
    corpus = seeds()
    if not corpus:
        raise SystemExit(f"no seed traces under {SHARED}")
    counts = {"runs": 0, "accepted": 0, "odd": 0, "disagreements": 0, "exceptions": 0}
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        data = mutate(rng.choice(corpus), rng)
        counts["runs"] += 1
        try:
            out, table = scan(data)
        except Exception as exc:  # noqa: BLE001 - a Python error where a one-line refusal belongs
            counts["exceptions"] += 1
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / f"exception_{args.seed}_{counts['runs']}_{type(exc).__name__}.json").write_bytes(data)
            continue
        if out is None:
            counts["odd"] += 1
            continue
        counts["accepted"] += 1
        if not agree(out, table, data):
            counts["disagreements"] += 1
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / f"case_{args.seed}_{counts['runs']}.json").write_bytes(data)
    print(json.dumps(counts))
    return 1 if counts["disagreements"] or counts["exceptions"] else 0


if __name__ == "__main__":
    sys.exit(main())
