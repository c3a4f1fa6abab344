"""Decides the compiled JSON scanner: is it worth its C, against a kept library doing the same job?

The scanner (daydream/_core.c `scan`, driven by daydream/trace/fast.py) turns the raw bytes of a
rank's `traceEvents` into the events-table columns (kind, name code, pid, tid, device, stream, ts,
dur, correlation, external id, sequence number, forward thread id, and each event's args byte span),
plus the fwdbwd flows and the `[memory]` counters, without a Python object per event.

The contender is msgspec doing a *full* typed decode into the same columns: every event decoded
into a `msgspec.Struct` (unknown keys skipped by msgspec in C), its `args` kept as `msgspec.Raw`
(a zero-copy view, the equivalent of the scanner's byte span) and decoded a second time into a
typed Struct holding just the ids the table needs, then each column built from the Structs with
one list comprehension and `np.asarray`. Names are interned with a dict, as the table does.
A third row is the generic path (msgspec into plain dicts, then the per-event Python pass of
`EventTable._add_rank_dicts`), for scale.

Each variant runs in its own process on the already-decompressed document bytes (gunzip is the
same for all and left out); the process reports its wall time for the decode and its peak RSS
(VmHWM) above the high-water mark it had once the bytes were in memory. Inputs: the real A100 trace
ns_resolution_a100.json.gz (~45k events) and a 1M-event trace synthesized from it by
bench_load_scaling.synthesize (the real launch/kernel/flow structure, copied).

Decision rule (issue 12): keep the C scanner only if it wins by >= 1.5x in time or peak memory at
1M events. Writes benchmarks/results/bench_scanner.json and prints the table with ratios.

Usage: python benchmarks/bench_scanner.py [--events 1000000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCE = REPO.parent / "shared" / "traces" / "hta" / "ns_resolution_a100.json.gz"
OUT = HERE / "results" / "bench_scanner.json"

# One variant, run in a fresh process: argv = variant, path of the plain JSON document.
CHILD = r'''
import gc, json, sys, time
import numpy as np
import msgspec
variant, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
gc.collect()

def status_kb(key):
    # VmHWM, not ru_maxrss: after exec, Linux carries the parent's high-water mark into ru_maxrss.
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(key)

base_kb = status_kb("VmHWM")

def peak_mb():
    return (status_kb("VmHWM") - base_kb) / 1024

if variant == "scanner":
    from daydream.trace import fast
    from daydream.trace.events import EventTable
    t0 = time.perf_counter()
    meta, raw = fast.decode(data)
    table = EventTable()
    table.add_rank(0, raw)
    events, memory, flows = table.finish()
    n = len(events["ts"])
    assert len(table.args) == n
    took = time.perf_counter() - t0
    fast_path = isinstance(table.args._chunks[0], tuple)
elif variant == "generic":
    from daydream.trace import fast
    from daydream.trace.events import EventTable
    t0 = time.perf_counter()
    meta, raw = fast.decode(data)
    table = EventTable()
    table.add_rank(0, raw.dicts())
    events, memory, flows = table.finish()
    n = len(events["ts"])
    took = time.perf_counter() - t0
    fast_path = False
else:
    from msgspec import Raw, Struct, field
    from typing import Optional, Union

    class Args(Struct):
        correlation: Optional[int] = None
        external_id: Optional[int] = field(default=None, name="External id")
        device: Optional[int] = None
        stream: Optional[int] = None
        seq: Optional[int] = field(default=None, name="Sequence number")
        fwd_tid: Optional[int] = field(default=None, name="Fwd thread id")
        nbytes: Optional[int] = field(default=None, name="Bytes")
        total_allocated: Optional[int] = field(default=None, name="Total Allocated")
        total_reserved: Optional[int] = field(default=None, name="Total Reserved")
        device_type: Optional[int] = field(default=None, name="Device Type")
        device_id: Optional[int] = field(default=None, name="Device Id")
        addr: Optional[int] = field(default=None, name="Addr")

    class Event(Struct):
        ph: str = ""
        cat: Optional[str] = None
        name: Union[str, int, float, None] = None
        pid: Union[int, str, None] = None
        tid: Union[int, str, None] = None
        ts: Optional[float] = None
        dur: Optional[float] = None
        id: Union[int, str, None] = None
        args: Raw = Raw(b"null")

    class Doc(Struct):
        traceEvents: list[Event]

    KINDS = {"cpu_op": 0, "operator": 0, "user_annotation": 1, "python_function": 2, "cuda_runtime": 3,
             "runtime": 3, "cuda_driver": 3, "kernel": 4, "gpu_memcpy": 5, "memcpy": 5, "gpu_memset": 6,
             "memset": 6, "gpu_user_annotation": 7, "cuda_sync": 8}
    SKIP = {"trace", "cpu_instant_event", "overhead"}
    t0 = time.perf_counter()
    doc = msgspec.json.decode(data, type=Doc)
    args_dec = msgspec.json.Decoder(Args)
    names, odd = {}, {}

    def code(v, table):
        c = table.get(v)
        if c is None:
            c = table[v] = len(table)
        return c

    def ident(v):
        return v if isinstance(v, int) else -1 - code(v, odd)

    def kind(cat):
        if cat is None:
            return 9
        low = cat.lower()
        return -1 if low in SKIP else KINDS.get(low, 9)

    xs = [e for e in doc.traceEvents if e.ph == "X" and e.ts is not None]
    kinds = [kind(e.cat) for e in xs]
    xs = [e for e, k in zip(xs, kinds) if k >= 0]
    kinds = [k for k in kinds if k >= 0]
    args = [args_dec.decode(e.args) if bytes(memoryview(e.args)[:1]) == b"{" else Args() for e in xs]
    cols = {
        "kind": np.asarray(kinds, np.int8),
        "name": np.asarray([code(e.name if isinstance(e.name, str) else str(e.name), names) for e in xs], np.int32),
        "pid": np.asarray([ident(e.pid) for e in xs], np.int64),
        "tid": np.asarray([ident(e.tid) for e in xs], np.int64),
        "ts": np.rint(np.asarray([e.ts for e in xs], np.float64) * 1000).astype(np.int64),
        "dur": np.maximum(np.rint(np.asarray([e.dur or 0.0 for e in xs], np.float64) * 1000), 0).astype(np.int64),
        "corr": np.asarray([-1 if a.correlation is None else a.correlation for a in args], np.int64),
        "ext": np.asarray([-1 if a.external_id is None else a.external_id for a in args], np.int64),
        "seq": np.asarray([-1 if a.seq is None else a.seq for a in args], np.int64),
        "fwd_tid": np.asarray([-1 if a.fwd_tid is None else a.fwd_tid for a in args], np.int64),
        "device": np.asarray([-1 if a.device is None else a.device for a in args], np.int64),
        "stream": np.asarray([-1 if a.stream is None else a.stream for a in args], np.int64),
    }
    raw_args = [e.args for e in xs]  # kept, as the scanner keeps spans, for args_of
    del args
    mem = [(e.ts, args_dec.decode(e.args)) for e in doc.traceEvents
           if e.ph in ("i", "I") and e.name == "[memory]" and bytes(memoryview(e.args)[:1]) == b"{"]
    memory = {"ts": np.asarray([m[0] for m in mem]), "bytes": np.asarray([m[1].nbytes or 0 for m in mem])}
    flows = [(e.id, e.ph == "s", e.pid, e.tid, e.ts) for e in doc.traceEvents
             if e.ph in ("s", "f") and e.cat == "fwdbwd"]
    order = np.lexsort((-cols["dur"], cols["ts"]))
    events = {k: v[order] for k, v in cols.items()}
    n = len(order)
    took = time.perf_counter() - t0
    fast_path = False
print(json.dumps({"variant": variant, "events": n, "seconds": round(took, 4),
                  "peak_mb": round(peak_mb(), 1), "fast_path": fast_path}))
'''


def _run(variant: str, path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, variant, str(path)], capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed on {path.name}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant and input (best kept)")
    parser.add_argument("--skip-generic", action="store_true", help="skip the slow generic path at 1M events")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from bench_load_scaling import synthesize

    source_bytes = gzip.decompress(SOURCE.read_bytes())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "ns_resolution.json"
        small.write_bytes(source_bytes)
        big_doc, facts = synthesize(json.loads(source_bytes), args.events)
        big = Path(tmp) / "synthetic_1m.json"
        big.write_text(json.dumps(big_doc))
        del big_doc
        for label, path in (("ns_resolution (real)", small), (f"synthetic ({facts['events']:,} in file)", big)):
            variants = ["scanner", "msgspec"] + ([] if args.skip_generic and path is big else ["generic"])
            results = {}
            for v in variants:
                runs = [_run(v, path) for _ in range(args.repeat)]
                results[v] = min(runs, key=lambda r: r["seconds"]) | {
                    "peak_mb": min(r["peak_mb"] for r in runs)}
            counts = {r["events"] for r in results.values()}
            if len(counts) != 1:
                raise SystemExit(f"variants disagree on the event count of {label}: {results}")
            rows.append({"input": label, "bytes": path.stat().st_size, **{v: results[v] for v in variants}})

    print(f"{'input':<24} {'variant':<9} {'events':>9} {'seconds':>8} {'peak MB':>8} {'vs scanner (time, MB)':>22}")
    for row in rows:
        base = row["scanner"]
        for v in ("scanner", "msgspec", "generic"):
            if v not in row:
                continue
            r = row[v]
            ratio = f"{r['seconds'] / base['seconds']:.2f}x, {r['peak_mb'] / max(base['peak_mb'], 0.1):.2f}x"
            print(f"{row['input']:<24} {v:<9} {r['events']:>9,} {r['seconds']:>8.3f} {r['peak_mb']:>8.1f} {ratio:>22}")
    big_row = rows[-1]
    t_ratio = big_row["msgspec"]["seconds"] / big_row["scanner"]["seconds"]
    m_ratio = big_row["msgspec"]["peak_mb"] / max(big_row["scanner"]["peak_mb"], 0.1)
    keep = t_ratio >= 1.5 or m_ratio >= 1.5
    verdict = (f"at {big_row['scanner']['events']:,} events msgspec takes {t_ratio:.2f}x the scanner's time and "
               f"{m_ratio:.2f}x its peak memory: {'keep' if keep else 'remove'} the C scanner (rule: >= 1.5x in either)")
    print(verdict)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "time_ratio": t_ratio, "memory_ratio": m_ratio,
                                    "keep_scanner": keep, "verdict": verdict}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
