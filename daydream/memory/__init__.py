"""Memory breakdown at the peak and over time, measured and predicted under `--opt` choices.

`memory(path_or_trace, opts=[...]) -> MemoryReport`. Sources, best first: the torch.profiler memory
profile of a `daydream profile` run directory (`memory.json.gz`, every tensor labelled), a raw
`export_memory_timeline_raw` file, or the `[memory]` events of any Kineto trace (see `kineto.py`).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from daydream.errors import DaydreamError
from daydream.memory.kineto import from_trace_all_ranks
from daydream.memory.predict import predict
from daydream.memory.timeline import CATEGORIES, Timeline, from_raw_rows
from daydream.opts import OptChoice, parse_opt
from daydream.opts.params import GPU_ONLY

SCHEMA = "daydream.memory/1"
# The TBD paper's memory view (Zhu et al., IISWC 2018, Fig. 8): weights, gradients, feature maps,
# workspace; optimizer state kept apart.
TBD_VIEW = {
    "weights": ("parameter",),
    "gradients": ("gradient",),
    "feature_maps": ("activation", "input"),
    "workspace": ("temporary", "autograd_detail", "unknown"),
    "optimizer_state": ("optimizer_state",),
}


@dataclass
class MemoryReport:
    """Measured (and, with opts, predicted) memory of one recording."""
    trace: str
    device: str
    capacity_bytes: int | None
    measured: Timeline
    predicted: Timeline | None = None
    optimizations: list = field(default_factory=list)
    model_notes: list = field(default_factory=list)
    layers: dict = field(default_factory=dict)
    rank: int | None = None
    rank_peaks: dict = field(default_factory=dict)

    @property
    def peak_bytes(self) -> int:
        return self.measured.peak_bytes

    @property
    def predicted_peak_bytes(self) -> int | None:
        return self.predicted.peak_bytes if self.predicted is not None else None

    @property
    def breakdown(self) -> pd.DataFrame:
        """One row per category: bytes at the peak, its own maximum and time-weighted mean."""
        df = pd.DataFrame({"at_peak": self.measured.at_peak(), "max": self.measured.maximum(),
                           "mean": self.measured.mean()}).reindex(list(CATEGORIES))
        if self.predicted is not None:
            df["predicted_at_peak"] = pd.Series(self.predicted.at_peak())
        return df

    def timeline(self, predicted: bool = False) -> pd.DataFrame:
        """Bytes per category over time (ms from the first sample)."""
        tl = self.predicted if predicted else self.measured
        if tl is None:
            raise DaydreamError("no prediction: pass opts to memory()")
        df = pd.DataFrame(tl.bytes, columns=list(CATEGORIES))
        df.insert(0, "time_ms", (tl.times - tl.times[0]) / 1e6)
        return df

    @staticmethod
    def tbd_view(at_peak: dict) -> dict:
        return {k: int(sum(at_peak[c] for c in cats)) for k, cats in TBD_VIEW.items()}

    @property
    def oom_warning(self) -> str | None:
        if self.capacity_bytes is None:
            return None
        for label, tl in (("measured", self.measured), ("predicted", self.predicted)):
            if tl is not None and tl.peak_bytes > self.capacity_bytes:
                return (f"{label} peak {tl.peak_bytes / 2**30:.2f} GiB exceeds the {self.device} capacity "
                        f"{self.capacity_bytes / 2**30:.2f} GiB: out of memory")
        return None

    def as_json(self) -> dict:
        at_peak = self.measured.at_peak()
        out = {
            "trace": self.trace,
            "device": self.device,
            "capacity_bytes": self.capacity_bytes,
            "source": self.measured.source,
            "peak_bytes": self.peak_bytes,
            "peak_ms": float((self.measured.times[self.measured.peak_index] - self.measured.times[0]) / 1e6),
            "at_peak": at_peak,
            "max": self.measured.maximum(),
            "mean": self.measured.mean(),
            "tbd_view": self.tbd_view(at_peak),
            "duration_ms": float((self.measured.times[-1] - self.measured.times[0]) / 1e6),
            "samples": int(len(self.measured.times)),
            "notes": list(self.measured.notes),
            "oom_warning": self.oom_warning,
        }
        if self.rank is not None:
            out["rank"] = self.rank
            out["rank_peaks"] = {str(r): int(v) for r, v in self.rank_peaks.items()}
        if self.layers:
            out["layers"] = {k: int(v) for k, v in sorted(self.layers.items(), key=lambda kv: -kv[1])}
        if self.predicted is not None:
            pred = self.predicted.at_peak()
            out["optimizations"] = [o.as_json() for o in self.optimizations]
            out["predicted_peak_bytes"] = self.predicted.peak_bytes
            out["predicted"] = pred
            out["predicted_tbd_view"] = self.tbd_view(pred)
            out["model"] = list(self.model_notes)
        return out


def _capacity(device: str, props: list[dict]) -> int | None:
    """Device memory in bytes: the hardware table where it knows the device, else the trace's
    deviceProperties totalGlobalMem."""
    try:
        from daydream import hardware
        spec = hardware.lookup(device)
    except Exception:  # the table is optional; an unknown name falls through to the trace
        spec = None
    for attr in ("memory_bytes", "mem_bytes", "capacity_bytes"):
        value = getattr(spec, attr, None)
        if value:
            return int(value)
    for attr in ("memory_gib", "mem_gib"):
        value = getattr(spec, attr, None)
        if value:
            return int(value * 2**30)
    for attr in ("memory_gb", "mem_gb"):
        value = getattr(spec, attr, None)
        if value:
            return int(value * 1e9)
    for p in props:
        if p.get("name") == device and p.get("totalGlobalMem"):
            return int(p["totalGlobalMem"])
    from daydream import hardware
    if not props and hardware.assumed_device():  # --device, for a trace that does not say
        return int(hardware.lookup(hardware.assumed_device()).mem_bytes)
    return None


def _read_json(path: Path):
    from daydream.trace.reader import read_file
    try:
        return orjson.loads(read_file(path))  # gunzipped within the input limits (docs/input.md)
    except orjson.JSONDecodeError:
        raise DaydreamError(f"{path}: not valid JSON (truncated or not a trace?)") from None


def _sniff(path: Path) -> str:
    """'rows' for a raw memory timeline (starts '[['), 'memory' for a daydream.memory/1 document,
    else 'trace' (a Chrome trace starts '{' or '[{')."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        if head[:2] == b"\x1f\x8b":
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 256)
    except (OSError, zlib.error):
        return "trace"
    text = head.lstrip()
    if text[:1] == b"[" and text[1:].lstrip()[:1] == b"[":
        return "rows"
    if SCHEMA.encode() in text[:256] or path.name.endswith("memory.json.gz"):
        return "memory"
    return "trace"


def _memory_doc(doc, source: str, fp32_spans: tuple | None = None,
                phases: dict | None = None) -> tuple[Timeline, dict, str | None, dict]:
    """-> (timeline, layer table, device, recording facts for the models: device, convolutions,
    cpu_bf16_onednn). `fp32_spans`: autocast's fp32 ops, `phases` the steps' forward spans, on
    the rows' clock (timeline.from_raw_rows)."""
    if isinstance(doc, list):
        return from_raw_rows(doc, source), {}, None, {}
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise DaydreamError(f"{source}: not a {SCHEMA} memory file nor export_memory_timeline_raw rows")
    cats = doc.get("categories")
    rows = doc.get("timeline")
    if cats is not None and [str(c).lower() for c in cats] != [c for c in _torch_names()]:
        rows = _remap(rows, cats, source)
    layers = doc.get("layers") or {}
    if not isinstance(layers, dict):
        raise DaydreamError(f"{source}: 'layers' must map module names to bytes")
    convs = doc.get("convolutions") or []
    def shape(x, n):
        return isinstance(x, list) and len(x) >= n and all(isinstance(d, int) and d >= 0 for d in x)
    if not isinstance(convs, list) or not all(isinstance(c, dict) and shape(c.get("input"), 1) and shape(
            c.get("weight"), 3) and shape(c.get("output"), 3) for c in convs):
        raise DaydreamError(f"{source}: 'convolutions' must be a list of {{input, weight, output}} shapes")
    recording = {"device": doc.get("device"), "convolutions": convs}
    if "cpu_bf16_onednn" in doc:
        recording["cpu_bf16_onednn"] = bool(doc["cpu_bf16_onednn"])
    return (from_raw_rows(rows, source, fp32_spans, phases), {str(k): float(v) for k, v in layers.items()},
            doc.get("device"), recording)


def step_spans(trace, base_ns: int) -> dict:
    """{"forward": (starts, ends)} of the profiled steps (memory.kineto's phases: a step's start to
    its first backward op), on the memory rows' clock (trace ns + the recording's base time)."""
    from daydream.memory.kineto import step_phases
    spans = sorted(p["forward"] for r in trace.ranks for p in step_phases(trace, r) if p["forward"][1] > p["forward"][0])
    return {"forward": (np.array([a for a, _ in spans], np.int64) + base_ns,
                        np.array([b for _, b in spans], np.int64) + base_ns)}


def _torch_names():
    from daydream.memory.timeline import TORCH_CATEGORIES
    return TORCH_CATEGORIES


def _remap(rows, cats, source):
    """Rows whose category indices follow another order (named in the file) -> torch's order."""
    names = _torch_names()
    try:
        lut = np.array([names.index(_canon(c)) for c in cats], np.int64)
        arr = np.asarray(rows, np.int64)
        arr[:, 3] = lut[arr[:, 3]]
    except (ValueError, IndexError, TypeError):
        raise DaydreamError(f"{source}: memory categories {cats} do not match torch's") from None
    return arr


def _canon(name) -> str:
    n = str(name).lower().replace("category.", "")
    return "unknown" if n in ("none", "null", "") else n


def _load(source, step_annotation=None, fp32: bool = False):
    """-> (Timeline, layers, device, capacity, rank, rank peaks, recording facts). `fp32`: find the
    bytes autocast would keep in fp32 (daydream.memory.autocast), where the memory rows and the
    trace share a clock."""
    from daydream import trace as trace_mod
    if isinstance(source, trace_mod.Trace):
        tr = source
    else:
        p = Path(source)
        if not p.exists():
            raise DaydreamError(f"{p}: no such file or directory")
        if p.is_dir() and (p / "memory.json.gz").exists():
            doc = _read_json(p / "memory.json.gz")
            tr = trace_mod.load(p, step_annotation) if (p / "trace.json.gz").exists() else None
            spans = phases = None
            if tr is not None and isinstance(doc, dict) and doc.get("aligned_with_trace") \
                    and isinstance(doc.get("base_time_ns"), int):
                base = doc["base_time_ns"]
                phases = step_spans(tr, base)
                if fp32:
                    from daydream.memory.autocast import fp32_spans
                    starts, ends = fp32_spans(tr, str(doc.get("device") or tr.device))
                    spans = (starts + base, ends + base)
            tl, layers, device, rec = _memory_doc(doc, str(p / "memory.json.gz"), spans, phases)
            props, name = [], device
            if tr is not None:
                # The GPU's name (for its capacity) rather than memory.json.gz's "cuda:0".
                props, name = tr.device_properties, tr.device if tr.device != "cpu" else (device or "cpu")
            name = str(name or "unknown device")
            return tl, layers, name, _capacity(name, props), None, {}, rec
        if p.is_file() and _sniff(p) != "trace":
            tl, layers, device, rec = _memory_doc(_read_json(p), str(p))
            name = str(device or "unknown device")
            return tl, layers, name, _capacity(name, []), None, {}, rec
        tr = trace_mod.load(p, step_annotation)
    timelines = from_trace_all_ranks(tr)
    if not timelines:
        raise DaydreamError(f"{tr.path}: no [memory] events on any rank")
    peaks = {r: tl.peak_bytes for r, tl in timelines.items()}
    rank = max(peaks, key=peaks.get)
    multi = len(tr.ranks) > 1
    return (timelines[rank], {}, tr.device, _capacity(tr.device, tr.device_properties),
            rank if multi else None, peaks if multi else {}, {"device": tr.device})


def memory(source, opts=(), step_annotation: str | None = None) -> MemoryReport:
    """Measured memory breakdown of `source` (path or `daydream.trace.Trace`), predicted under
    `opts` (OptChoice or `--opt` strings) applied in order."""
    choices = [o if isinstance(o, OptChoice) else parse_opt(o) for o in opts]
    tl, layers, device, capacity, rank, peaks, recording = _load(source, step_annotation,
                                                                 fp32=any(o.name == "amp" for o in choices))
    if str(device).lower().startswith("cpu"):  # refused as `whatif` refuses them
        for o in choices:
            if o.name in GPU_ONLY:
                raise DaydreamError(GPU_ONLY[o.name])
    report = MemoryReport(trace=str(getattr(source, "path", source)), device=device, capacity_bytes=capacity,
                          measured=tl, optimizations=choices, layers=layers, rank=rank, rank_peaks=peaks)
    for o in choices:
        if o.name == "gpu":
            report.device = str(o.params["target"])
            report.capacity_bytes = _capacity(report.device, [])
    if choices:
        report.predicted, report.model_notes = predict(tl, choices, layers, recording)
    return report


__all__ = ["memory", "MemoryReport", "CATEGORIES", "TBD_VIEW", "SCHEMA"]
