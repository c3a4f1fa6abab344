"""Writing a run directory: the Kineto trace, the memory timeline and run.json, all staged in a
temporary directory next to the target and renamed into place, so a reader never sees half a run.

Format of memory.json.gz (`daydream.memory/1`) is documented in docs/suite.md.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from daydream.errors import DaydreamError

RUN_SCHEMA = "daydream.run/1"
MEMORY_SCHEMA = "daydream.memory/1"
# Metadata keys that may carry secrets are never written (CONTRACT.md, "Secrets").
CREDENTIAL = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL|PASSWD|AUTH", re.IGNORECASE)


def redact_argv(argv: list[str]) -> list[str]:
    """The command line with values of credential-looking options replaced by `<removed>`
    (`--api-key=x` and `--api-key x` alike)."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append("<removed>")
            hide_next = False
        elif arg.startswith("-") and CREDENTIAL.search(arg.split("=", 1)[0]):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=<removed>")
            else:
                out.append(arg)
                hide_next = True
        elif CREDENTIAL.search(arg) and "=" in arg:
            out.append(arg.split("=", 1)[0] + "=<removed>")
        else:
            out.append(arg)
    return out


def _scrub(obj):
    """Drop credential-looking keys from trace metadata (dicts only; events keep their fields)."""
    if isinstance(obj, dict):
        return {k: (v if k == "traceEvents" else _scrub(v)) for k, v in obj.items() if not CREDENTIAL.search(k)}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    return obj


def device_name(device) -> str:
    import torch
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch
    try:
        daydream_version = version("daydream")
    except PackageNotFoundError:
        daydream_version = None
    return {"torch": torch.__version__, "python": platform.python_version(), "daydream": daydream_version,
            "cuda": torch.version.cuda, "platform": platform.platform()}


def check_target(out_dir) -> Path:
    """Refuse an --out that exists and is not a run directory (before any work is done)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "run.json").exists())):
        raise DaydreamError(f"{out} exists and is not a daydream run directory; choose another --out")
    return out


@contextlib.contextmanager
def staged(out_dir: str | os.PathLike):
    """Yield a fresh temporary directory; on success it replaces `out_dir` (an existing run
    directory there is replaced, any other existing non-empty path is refused)."""
    out = check_target(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json_gz(path: Path, obj) -> None:
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
        f.write(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY))


def export_trace(prof, staging: Path, keep_steps: int | None = None) -> int:
    """Write the profiler's Kineto trace as trace.json.gz (metadata scrubbed); returns the number of
    CPU-side ProfilerStep spans in it (CUDA traces mirror them as gpu_user_annotation). Remembers the
    trace's baseTimeNanoseconds for the memory timeline.

    `keep_steps`: keep only the first that many ProfilerStep spans (by start) and drop the later ones
    with their GPU mirrors: a step that a profiler stop or an exit cut short is not a step. Their
    events stay in the trace, outside the analysis window."""
    raw = staging / "trace.raw.json"
    prof.export_chrome_trace(str(raw))
    trace = _scrub(orjson.loads(raw.read_bytes()))
    raw.unlink()
    prof._daydream_base_time_ns = trace.get("baseTimeNanoseconds")
    events = trace.get("traceEvents", [])

    def is_step(e):
        return e.get("ph") == "X" and str(e.get("name", "")).startswith("ProfilerStep#")
    cpu_steps = sorted((e for e in events if is_step(e) and e.get("cat") != "gpu_user_annotation"),
                       key=lambda e: float(e.get("ts", 0)))
    if keep_steps is not None and len(cpu_steps) > keep_steps:
        kept = {e["name"] for e in cpu_steps[:keep_steps]}
        trace["traceEvents"] = [e for e in events if not is_step(e) or e["name"] in kept]
        cpu_steps = cpu_steps[:keep_steps]
    if cpu_steps:
        first, last = cpu_steps[0], cpu_steps[-1]
        clipped = clip_enclosing_frames(trace["traceEvents"], float(first["ts"]),
                                        float(last["ts"]) + float(last.get("dur", 0)))
        if clipped:
            trace["daydream_clipped_frames"] = clipped
    write_json_gz(staging / "trace.json.gz", trace)
    return len(cpu_steps)


CPU_SPAN_CATS = ("cpu_op", "user_annotation", "cuda_runtime", "cuda_driver")


def clip_enclosing_frames(events: list, start_us: float, end_us: float) -> int:
    """Cut the Python frames that start inside the kept steps [start_us, end_us) and run on past
    them; returns how many. Such a frame encloses the step boundary (a loop body that holds several
    optimizer steps, as a GAN's does) and the window's rule (CONTRACT.md: it ends at the latest end
    of the CPU events that start inside the steps) would otherwise stretch the window past the last
    kept step by whatever the script did next. They are cut where the other CPU spans that start
    inside the steps end (at least `end_us`): operators never straddle the last step's end (an
    optimizer-step hook), but the `Optimizer.step` span that runs the hook does close ~0.1 ms after
    it, and a frame enclosing it must still enclose it (the graph nests them)."""
    cut = end_us
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in CPU_SPAN_CATS and start_us <= float(e.get("ts", 0)) < end_us:
            cut = max(cut, float(e["ts"]) + float(e.get("dur", 0)))
    n = 0
    for e in events:
        if e.get("ph") != "X" or e.get("cat") != "python_function":
            continue
        ts = float(e.get("ts", 0))
        if start_us <= ts < end_us and cut < ts + float(e.get("dur", 0)):
            e["dur"] = cut - ts
            n += 1
    return n


def export_memory(prof, staging: Path, device: str, layers: dict | None, aligned: bool = True,
                  recording: dict | None = None) -> str | None:
    """Write memory.json.gz from torch's memory profiler (the rows of
    `export_memory_timeline(....raw.json.gz)`); returns an error message instead when torch cannot
    build the timeline. `aligned` is False when the timeline comes from a separate profiled step
    (traces recorded without Python stacks), so its timestamps fall outside trace.json.gz."""
    import torch
    from torch.profiler import _memory_profiler as mp

    dev = torch.device(device)
    dev_str = f"{dev.type}:{dev.index or 0}" if dev.type == "cuda" else "cpu"
    try:
        timeline = mp.MemoryProfileTimeline(prof._memory_profile())
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "raw.json")
            timeline.export_memory_timeline_raw(path, dev_str)
            rows = orjson.loads(Path(path).read_bytes())
    except Exception as exc:  # torch's private memory profiler: keep the run, say why memory is missing
        return f"{type(exc).__name__}: {exc}"
    categories = [None] * (len(mp._CATEGORY_TO_INDEX))
    for cat, idx in mp._CATEGORY_TO_INDEX.items():
        categories[idx] = cat.name.lower() if cat is not None else "unknown"
    actions = [None] * (max(mp._ACTION_TO_INDEX.values()) + 1)
    for act, idx in mp._ACTION_TO_INDEX.items():
        actions[idx] = act.name.lower()
    write_json_gz(staging / "memory.json.gz", {
        "schema": MEMORY_SCHEMA,
        "device": dev_str,
        "time_unit": "ns",
        "aligned_with_trace": aligned,
        "base_time_ns": getattr(prof, "_daydream_base_time_ns", None) if aligned else None,
        "columns": ["ts", "action", "bytes", "category"],
        "actions": actions,
        "categories": categories,
        "timeline": rows,
        "layers": layers or {},
        **(recording or {}),  # convolutions, cpu_bf16_onednn: facts the memory what-ifs use
    })
    return None


def write_run_json(staging: Path, info: dict) -> None:
    info = {k: v for k, v in info.items() if not CREDENTIAL.search(k)}
    (staging / "run.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


class OptimizerClock:
    """Wall time spent inside `Optimizer.step()` calls (every optimizer), read once per training step.

    With the plain and profiled steps' optimizer time, the profiler's per-event cost splits between
    the optimizer and the rest of the step (daydream.transform.profiler_cost): a for-loop optimizer's
    events cost far less each than the forward's and backward's (on a user's AdamW script 0.3 us
    against 2-3 us), and one uniform figure strips the optimizer almost bare. Global step hooks, a
    perf_counter each: about 1 us per step. Host time only: on a GPU the step's kernels run after."""

    def __init__(self):
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
        self.total = 0.0
        self.started = None
        self.depth = 0  # a wrapper optimizer's step() runs its inner optimizer's: time the outermost
        self.handles = [register_optimizer_step_pre_hook(self._pre), register_optimizer_step_post_hook(self._post)]

    def _pre(self, *_):
        if self.depth == 0:
            self.started = time.perf_counter()
        self.depth += 1

    def _post(self, *_):
        self.depth = max(self.depth - 1, 0)
        if self.depth == 0 and self.started is not None:
            self.total += time.perf_counter() - self.started
            self.started = None

    def take(self) -> float:
        """Milliseconds inside optimizer steps since the last take."""
        ms, self.total = 1e3 * self.total, 0.0
        return ms

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def optimizer_parameters(optimizers) -> dict:
    """What the optimizers update each step, exactly (run.json `optimizer_parameters`): tensors,
    elements and bytes of their distinct parameters that hold a gradient (frozen parameters stay
    in a fine-tuning optimizer's groups but its step skips them), or that require one where no
    gradient is set. Gradient accumulation repeats AccumulateGrad in the trace, so the trace's
    shapes overcount (daydream.opts._structure.parameter_bytes)."""
    params = list({id(p): p for o in optimizers for g in o.param_groups for p in g["params"]}.values())
    updated = [p for p in params if p.grad is not None] or [p for p in params if p.requires_grad]
    return {"tensors": len(updated), "elements": sum(p.numel() for p in updated),
            "bytes": sum(p.numel() * p.element_size() for p in updated)}


def minor_faults() -> int:
    """Minor page faults of this process so far (all its threads; DataLoader workers are processes
    of their own): a step's count is the fresh pages it touched, which glibc's malloc makes whenever
    it hands large buffers back to the kernel between steps (docs/profiling.md, "Page faults")."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def summarize_steps(plain: list[float], profiled: list[float], plain_kinds: list[int] | None = None,
                    profiled_kinds: list[int] | None = None, plain_optimizer: list[float] | None = None,
                    profiled_optimizer: list[float] | None = None, plain_faults: list[int] | None = None,
                    warmup_faults: list[int] | None = None, profiled_faults: list[int] | None = None) -> dict:
    """Wall-clock step times with and without the profiler, and the profiler's overhead.

    plain_step_ms     median of the steady-state steps timed WITHOUT the profiler (after warm-up);
                      where the profiled steps are of several kinds (`*_kinds`: how many steps of
                      other optimizers each training step held -- a GAN's generator update falls
                      into one critic step in five), the window's mix of kinds, each at the median
                      of its plain steps: sum_k (profiled steps of kind k / profiled steps) x
                      median(plain steps of kind k), so that it describes the same steps the
                      profiled window's mean does (plain_step_ms_median keeps the plain median);
    profiled_step_ms  mean of the profiled steps (what the trace's window measures per step);
    profiler_overhead_pct = 100 * (profiled median - plain median) / plain median, medians so that one
    step slowed by another process on a shared machine moves neither side. The profiler only adds
    work, so a negative difference is noise between the two phases and is reported as 0 (the raw
    medians stay in run.json).
    optimizer_step_ms  the same steps' time inside Optimizer.step() (OptimizerClock), per step and
                      as medians, where it was timed.
    page_faults       the plain steps' minor page faults (minor_faults), per step and their median;
                      with `warmup_faults` / `profiled_faults`, the warm-up steps' (before any
                      profiler ran) and the profiled steps' too."""
    def median(xs):
        return None if not xs else round(statistics.median(xs), 4)
    p, q = median(plain), median(profiled)
    mean_profiled = sum(profiled) / len(profiled) if profiled else None
    mixed = None
    kinds = sorted(set(profiled_kinds or []))
    if len(kinds) > 1 and plain_kinds and len(plain_kinds) == len(plain) \
            and all(k in plain_kinds for k in kinds):
        mixed = {str(k): {"profiled_steps": profiled_kinds.count(k), "plain_steps": plain_kinds.count(k),
                          "plain_median_ms": median([t for t, j in zip(plain, plain_kinds) if j == k])}
                 for k in kinds}
    plain_step = p if mixed is None else round(sum(
        v["profiled_steps"] / len(profiled_kinds) * v["plain_median_ms"] for v in mixed.values()), 4)
    return {
        "plain_step_ms_median": p,
        "profiled_step_ms_median": q,
        "step_ms": {"plain": [round(x, 4) for x in plain], "profiled": [round(x, 4) for x in profiled]},
        **({"step_kinds": {"meaning": "other optimizers' steps within each training step", **mixed}}
           if mixed else {}),
        "plain_step_ms": plain_step,
        "profiled_step_ms": None if mean_profiled is None else round(mean_profiled, 4),
        "profiler_overhead_pct": None if not p or q is None else round(max(0.0, 100.0 * (q - p) / p), 2),
        **({"optimizer_step_ms": {
            "plain": [round(x, 4) for x in plain_optimizer], "profiled": [round(x, 4) for x in profiled_optimizer],
            "plain_median": median(plain_optimizer), "profiled_median": median(profiled_optimizer)}}
           if plain_optimizer and profiled_optimizer and None not in [*plain_optimizer, *profiled_optimizer]
           and any(x > 0 for x in profiled_optimizer) else {}),  # none stepped: inference
        **({"page_faults": {"plain": list(plain_faults), "plain_median": median(plain_faults),
                            **({"warmup": list(warmup_faults), "warmup_median": median(warmup_faults)}
                               if warmup_faults and None not in warmup_faults else {}),
                            **({"profiled": list(profiled_faults), "profiled_median": median(profiled_faults)}
                               if profiled_faults and None not in profiled_faults else {})}}
           if plain_faults and None not in plain_faults else {}),
    }
