"""A measured calibration of this CPU's 16-bit speed, recorded in run.json at `daydream profile`
time (CPU runs), because no hardware table can know it: whether PyTorch has fast bf16 kernels on
a CPU depends on its ISA (AVX-512-BF16, AMX) and on which oneDNN/ATen paths this torch build
takes. On an AVX2-only part bf16 convolutions and matmuls fall back to slow reference loops that
are several to tens of times SLOWER than fp32, the opposite of what a peak-FLOP/s table says.

Method (`measure`): for each op class, a representative training-sized op runs forward and
backward in fp32 and with bf16 inputs, alternating fp32/bf16 repetitions (so a load change on a
shared machine hits both alike), on the run's own thread count; the forward and backward times
are the medians of the repetitions. The recorded figure per class is a speedup,

    cpu_bf16_speedup[class] = (t_fp32_fwd + t_fp32_bwd) / (t_bf16_fwd + t_bf16_bwd)

(< 1: bf16 is slower). Forward and backward are summed, not kept apart: a single forward of a
slow bf16 path varies by 4x between repetitions on a loaded machine, the sum far less. Classes and their ops:
  matmul      F.linear (x W^T, as nn.Linear runs it), x 128 x 256, W 256 x 256 (the order of a
              small transformer's projections);
  conv        F.conv2d, 8 x 32 x 8 x 8 input, 32 x 32 x 3 x 3 weight, padding 1;
  attention   F.scaled_dot_product_attention, q = k = v of 8 x 4 x 64 x 32;
  elementwise F.gelu on 256 x 1024.
Plus `cast_bytes_per_s`: the rate of an fp32 -> bf16 copy of 1 Mi elements (bytes read + written
per second), what autocast's weight casts cost. The inputs are made in bf16 directly (no autocast):
the casts autocast adds are modelled separately, from this rate.

Plus the int8 dynamic-quantization path (fbgemm, what the quantize what-if prices on a CPU), a
fixed-plus-work split like the GPU kernels' d = f + work: `cpu_int8_linear` holds the per-call
times of an fp32 F.linear with bias and of quantized::linear_dynamic on its prepacked int8 weight
at a negligible shape (x 1 x 8, W 8 x 8: `fp32_call_us`, `int8_call_us` -- the int8 op's own
per-call work: choosing the activation's quantization parameters, allocations, fbgemm set-up) and
at the matmul class's shape (x 128 x 256, W 256 x 256: `ref_fp32_us`, `ref_int8_us`), forward only
(the int8 op has no backward), alternating repetitions, medians; `work_speedup` = (ref_fp32 -
fp32_call) / (ref_int8 - int8_call), the speed of the int8 path's shape-dependent work (quantizing
the activation, the GEMM, the fused bias and dequantize epilogue) over the fp32 path's (the GEMM,
addmm's bias copy). `int8_weight_pack_ns_per_element`: median time of quantizing (per tensor) and
packing the 256 x 256 fp32 weight, per element -- what a step that trains on int8 forwards pays per
Linear, its weights having changed. All absent where the torch build has no fbgemm engine.

Plus, because one speedup per class cannot describe ops far from the class's shape or a path
that is slow in one direction only (this host's bf16 attention: forward 1.4x, backward ~9x slower
than fp32):
* `cpu_bf16_speedup_fwd` / `cpu_bf16_speedup_bwd`: the same medians, forward and backward apart
  (t_fp32_fwd / t_bf16_fwd, t_fp32_bwd / t_bf16_bwd);
* `cpu_bf16_matmul`: the forward F.linear (no bias) at two shapes, GEMM_SHAPES = x 256 x 64,
  W 64 x 64 and the matmul class's x 128 x 256, W 256 x 256 (rows, in, out), fp32 and bf16
  alternating, medians: {"flops": [2 r i o ...], "fp32_us": [...], "bf16_us": [...]}. The amp
  model fits t = c + FLOPs / R per dtype through the two points (c: the per-call cost, R: the
  GEMM rate), so a 64-wide layer, where bf16's per-call set-up outweighs its faster arithmetic,
  is priced differently from a 256-wide one.
Plus, at the run's own shapes (daydream.profile.shapes): `cpu_linear_shapes` and `cpu_op_shapes`.
Re-measure the corpus's calibration on the host that recorded it with
`python benchmarks/validate_compute.py --calibrate-corpus` (and `--calibrate-linear-shapes`).

Budget: about 1 s in all (BUDGET_S); each class stops repeating once its share is spent, so a very
slow fallback path still yields one measurement rather than a long wait.
"""
from __future__ import annotations

import statistics
import time
import warnings

METHOD = ("alternating fp32/bf16 forward+backward microbenchmark, median of repetitions, "
          "run's thread count (daydream.profile.calibrate)")
BUDGET_S = 1.0
REPS = 5
CAST_ELEMENTS = 1 << 20
FIXED_SHAPE = (1, 8, 8)  # rows, in, out of the linear whose time is (almost) only the per-call cost
GEMM_SHAPES = ((256, 64, 64), (128, 256, 256))  # rows, in, out: the two points of cpu_bf16_matmul


def _cases():
    import torch
    import torch.nn.functional as F

    def matmul(dtype):
        x = torch.randn(128, 256, dtype=dtype, requires_grad=True)
        w = torch.randn(256, 256, dtype=dtype, requires_grad=True)
        return (x, w), F.linear

    def conv(dtype):
        x = torch.randn(8, 32, 8, 8, dtype=dtype, requires_grad=True)
        w = torch.randn(32, 32, 3, 3, dtype=dtype, requires_grad=True)
        return (x, w), lambda x, w: F.conv2d(x, w, padding=1)

    def attention(dtype):
        q = torch.randn(8, 4, 64, 32, dtype=dtype, requires_grad=True)
        return (q,), lambda q: F.scaled_dot_product_attention(q, q, q)

    def elementwise(dtype):
        x = torch.randn(256, 1024, dtype=dtype, requires_grad=True)
        return (x,), F.gelu

    return {"matmul": matmul, "conv": conv, "attention": attention, "elementwise": elementwise}


def _once(make, dtype) -> tuple[float, float]:
    """(forward s, backward s) of one fresh op."""
    import torch
    args, fn = make(dtype)
    t0 = time.perf_counter()
    y = fn(*args)
    t1 = time.perf_counter()
    y.backward(gradient=torch.ones_like(y))
    return t1 - t0, time.perf_counter() - t1


def median_us(ops: dict, reps: int, calls: int, budget_s: float | None = None) -> dict:
    """{name: us per call} of {name: fn}: one warm-up call each, then `reps` alternating repetitions
    of `calls` calls (a load change on a shared machine hits every op alike), medians, unrounded.
    With `budget_s`, ops whose calls are slow get fewer calls per repetition (at least one) and, if
    need be, three repetitions, so that the whole stays near the budget instead of taking minutes;
    where one call of each already takes longer than the budget (bf16 convolutions on ATen's
    im2col path, 0.4-0.6 s a call on a CPU without AVX512-BF16), one more call of each is the
    measurement: the timer's and the host's noise are far below such a call, and three would
    spend the whole re-timing budget on one shape."""
    times = {k: [] for k in ops}
    one = 0.0
    for fn in ops.values():  # warm-up, and what one call of each costs
        t0 = time.perf_counter()
        fn()
        one += time.perf_counter() - t0
    if budget_s is not None:
        calls = max(1, min(calls, int(budget_s / max(reps * one, 1e-9))))
        reps = reps if calls > 1 or reps * one <= budget_s else (1 if one > budget_s else 3)
    for _ in range(reps):
        for k, fn in ops.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[k].append(1e6 * (time.perf_counter() - t0) / calls)
    return {k: statistics.median(v) for k, v in times.items()}


def _int8_linear(reps: int, calls: int = 20) -> dict:
    """`cpu_int8_linear` and `int8_weight_pack_ns_per_element` (module docstring), or {}."""
    import torch
    import torch.nn.functional as F
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return {}
    torch.backends.quantized.engine = "fbgemm"

    def operands(rows, inner, outer):
        x, w, b = torch.randn(rows, inner), torch.randn(outer, inner), torch.randn(outer)
        scale = max(float(w.abs().max()) / 127.5, 1e-8)
        return x, w, b, lambda: torch.ops.quantized.linear_prepack(
            torch.quantize_per_tensor(w, scale, 0, torch.qint8), b)

    ops = {}
    for shape, (rows, inner, outer) in (("ref", (128, 256, 256)), ("tiny", FIXED_SHAPE)):
        x, w, b, pack = operands(rows, inner, outer)
        packed = pack()
        ops[f"fp32 {shape}"] = lambda x=x, w=w, b=b: F.linear(x, w, b)
        ops[f"int8 {shape}"] = lambda x=x, p=packed: torch.ops.quantized.linear_dynamic(x, p, reduce_range=True)
        if shape == "ref":
            ops["pack"], ref_weight = pack, w.numel()
    with torch.inference_mode():
        us = median_us(ops, reps, calls)
    work_fp32 = max(us["fp32 ref"] - us["fp32 tiny"], 1e-3)
    work_int8 = max(us["int8 ref"] - us["int8 tiny"], 1e-3)
    return {"cpu_int8_linear": {"fp32_call_us": round(us["fp32 tiny"], 4), "int8_call_us": round(us["int8 tiny"], 4),
                                "work_speedup": round(work_fp32 / work_int8, 4),
                                "ref_fp32_us": round(us["fp32 ref"], 4), "ref_int8_us": round(us["int8 ref"], 4)},
            "int8_weight_pack_ns_per_element": round(1e3 * us["pack"] / ref_weight, 4)}


def _bf16_matmul(reps: int, calls: int = 20) -> dict:
    """`cpu_bf16_matmul` (module docstring): forward F.linear times at GEMM_SHAPES, fp32 and bf16."""
    import torch
    import torch.nn.functional as F
    out = {"flops": [2 * r * i * o for r, i, o in GEMM_SHAPES], "fp32_us": [], "bf16_us": []}
    with torch.no_grad():
        for rows, inner, outer in GEMM_SHAPES:
            ops = {}
            for key, dtype in (("fp32_us", torch.float32), ("bf16_us", torch.bfloat16)):
                x, w = torch.randn(rows, inner, dtype=dtype), torch.randn(outer, inner, dtype=dtype)
                ops[key] = lambda x=x, w=w: F.linear(x, w)
            for k, v in median_us(ops, reps, calls).items():
                out[k].append(round(v, 4))
    return out


def measure(budget_s: float = BUDGET_S, reps: int = REPS) -> dict:
    """The calibration dict written to run.json["calibration"] (see the module docstring)."""
    import torch
    cases = _cases()
    share = budget_s * 0.9 / len(cases)
    speedup, speedup_fwd, speedup_bwd = {}, {}, {}
    for cls, make in cases.items():
        start = time.perf_counter()
        for dtype in (torch.float32, torch.bfloat16):  # warm-up: first calls pick kernels, allocate
            _once(make, dtype)
        times = {torch.float32: [], torch.bfloat16: []}
        for _ in range(reps):
            for dtype in (torch.float32, torch.bfloat16):
                times[dtype].append(_once(make, dtype))
            if time.perf_counter() - start > share:
                break
        fwd = {d: statistics.median(t[0] for t in ts) for d, ts in times.items()}
        bwd = {d: statistics.median(t[1] for t in ts) for d, ts in times.items()}
        f32, b16 = torch.float32, torch.bfloat16
        speedup[cls] = round((fwd[f32] + bwd[f32]) / (fwd[b16] + bwd[b16]), 4)
        speedup_fwd[cls] = round(fwd[f32] / fwd[b16], 4)
        speedup_bwd[cls] = round(bwd[f32] / bwd[b16], 4)
    with warnings.catch_warnings():  # torch deprecates quantize_per_tensor; not the user's script's warning
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        int8 = _int8_linear(reps)
    x = torch.randn(CAST_ELEMENTS)
    casts = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        x.to(torch.bfloat16)
        casts.append(time.perf_counter() - t0)
    return {
        "cpu_bf16_speedup": speedup,
        "cpu_bf16_speedup_fwd": speedup_fwd,
        "cpu_bf16_speedup_bwd": speedup_bwd,
        "cpu_bf16_matmul": _bf16_matmul(reps),
        "cast_bytes_per_s": round(CAST_ELEMENTS * (4 + 2) / statistics.median(casts[1:])),
        **({"cpu_llc_bytes": llc} if (llc := last_level_cache_bytes()) else {}),
        **_dram_or_nothing(llc, reps),
        **_page_fault_or_nothing(reps),
        **int8,
        "threads": torch.get_num_threads(),
        "method": METHOD,
    }


def _dram_or_nothing(llc: int | None, reps: int) -> dict:
    """{"dram_bytes_per_s": ...}, or {} where the host cannot spare the memory (the run it
    calibrates is recorded already and must not be lost to this)."""
    try:
        return {"dram_bytes_per_s": dram_stream_bytes_per_s(llc, reps)}
    except (RuntimeError, MemoryError):
        return {}


def _page_fault_or_nothing(reps: int) -> dict:
    """{"page_fault_ns": ...}, or {} where the host cannot map the memory."""
    try:
        return {"page_fault_ns": page_fault_ns(reps)}
    except (OSError, RuntimeError, MemoryError, ValueError):
        return {}


def page_fault_ns(reps: int = REPS, nbytes: int = 32 << 20) -> int:
    """Wall-clock cost of one 4 KiB page touched for the first time, the way an op writes its
    fresh output: `zero_()` on the run's threads over `nbytes` of freshly mapped memory, minus the
    same `zero_()` over memory already touched, per page; median over `reps` after one warm-up.
    What a step pays for each minor fault it takes (run.json `page_faults`; the allocator-state
    warning prices them with it, docs/profiling.md "Page faults").
    On this repository's EPYC VM, 2 threads: ~1 us a page (2.1 us on one thread)."""
    import mmap
    import torch
    pages = nbytes // 4096
    warm = torch.empty(nbytes // 4)
    warm.zero_()
    fresh_s, warm_s = [], []
    for _ in range(reps + 1):
        buf = mmap.mmap(-1, nbytes)
        try:
            fresh = torch.frombuffer(buf, dtype=torch.float32)
            t0 = time.perf_counter()
            fresh.zero_()
            fresh_s.append(time.perf_counter() - t0)
            del fresh
        finally:
            buf.close()
        t0 = time.perf_counter()
        warm.zero_()
        warm_s.append(time.perf_counter() - t0)
    cost = statistics.median(fresh_s[1:]) - statistics.median(warm_s[1:])
    return max(round(1e9 * cost / pages), 0)


def dram_stream_bytes_per_s(llc: int | None, reps: int = REPS) -> int:
    """In-place streaming rate beyond the caches on the run's threads: `x.add_(z)` over two fp32
    tensors holding twice the last-level cache together (64 MiB where it is unknown, 512 MiB at
    most), 12 bytes moved per element (x and z read, x written), median over `reps` after one
    warm-up. What a fused optimizer's update streams at when its working set does not fit (the
    fused-optimizer model); on this repository's EPYC VM, one thread: ~61 GB/s at 134 MB, where
    the STREAM-era rule of thumb for one core said 12."""
    import torch
    total = min(max(2 * (llc or 0), 64 << 20), 512 << 20)
    n = total // 8
    x, z = torch.ones(n), torch.ones(n)
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        x.add_(z)
        times.append(time.perf_counter() - t0)
    return round(n * 12 / statistics.median(times[1:]))


def last_level_cache_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """Size of the largest data/unified cache of cpu0 (Linux sysfs `index*/size`, e.g. "32768K"),
    None where sysfs does not say (other OSes, containers that hide it). The fused-optimizer model
    takes half of it as what an update's working set may use and still stream at the calibrated
    in-cache rate."""
    import glob
    import os
    best = None
    for d in glob.glob(os.path.join(root, "index*")):
        try:
            kind = open(os.path.join(d, "type")).read().strip()
            text = open(os.path.join(d, "size")).read().strip().upper()
        except OSError:
            continue
        if kind == "Instruction" or not text:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        try:
            size = int(text.rstrip("KMG")) * unit
        except ValueError:
            continue
        best = max(best or 0, size)
    return best


# --- DataLoader workers (the dataloader what-if) --------------------------------------------------
# What W DataLoader worker processes cost the main process on THIS machine, which no constant
# measured elsewhere knows (torch 1.8 on a 20-core Xeon: 0.1 ms a hand-off; torch 2.13 on a 2-core
# VM: 1-4 ms, and the main thread's compute stretched while workers run). Method
# (`measure_dataloader`): a real DataLoader over a trivial dataset (zero tensors: the loading itself
# costs nothing, only the worker machinery remains), one batch per "step" of a fixed compute block
# (F.linear chain, ~DL_COMPUTE_MS) that leaves the workers time to refill the queue, so next() finds
# its batch already queued. Steps alternate between num_workers=0 and num_workers=W (blocks of
# DL_BLOCK steps, so a load change on a shared machine hits both alike); medians:
#   handoff_fixed_us    next() with W workers, batch of DL_SMALL_ELEMENTS fp32 (per-call cost)
#   handoff_ns_per_byte (next() at DL_LARGE_ELEMENTS - next() at DL_SMALL) / byte difference
#   compute_stretch     compute block with W workers / without - 1 (>= 0): the main thread's own
#                       work slowed by the workers' per-batch activity (wake-ups, shared-memory
#                       set-up and release), on a host whose cores they share
DL_WORKERS = 2
DL_COMPUTE_MS = 4.0
DL_BLOCK = 4
DL_REPS = 6
DL_SMALL_ELEMENTS = 16
DL_LARGE_ELEMENTS = 1 << 20  # 4 MiB fp32 batch
DL_METHOD = ("real DataLoader over zero tensors, batch already queued, alternating num_workers=0/W "
             "blocks around a fixed compute block, medians (daydream.profile.calibrate.measure_dataloader)")


class _Zeros:
    """A trivial map-style dataset: `length` fp32 zero tensors of `elements` each."""

    def __init__(self, elements: int, length: int):
        self.elements, self.length = elements, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        import torch
        return torch.zeros(self.elements)


def measure_dataloader(workers: int = DL_WORKERS, block: int = DL_BLOCK, reps: int = DL_REPS) -> dict:
    """{"dataloader": {...}} for run.json["calibration"] (see the comment above)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    x, w = torch.randn(64, 256), torch.randn(256, 256)
    t0 = time.perf_counter()
    calls = 0
    while time.perf_counter() - t0 < 0.02:
        F.linear(x, w)
        calls += 1
    calls = max(1, int(calls * DL_COMPUTE_MS / 20))

    def compute() -> float:
        t = time.perf_counter()
        for _ in range(calls):
            F.linear(x, w)
        return time.perf_counter() - t

    steps = block * reps
    loaders = {}
    for elements in (DL_SMALL_ELEMENTS, DL_LARGE_ELEMENTS):
        for n in (0, workers):
            loaders[elements, n] = iter(DataLoader(_Zeros(elements, 2 * steps + 8), batch_size=1,
                                                   num_workers=n, persistent_workers=n > 0))
    handoff = {k: [] for k in loaders}
    work = {k: [] for k in loaders}
    try:
        for it in loaders.values():  # workers started, first batches queued
            next(it)
        for _ in range(reps):
            for key in ((DL_SMALL_ELEMENTS, 0), (DL_SMALL_ELEMENTS, workers),
                        (DL_LARGE_ELEMENTS, workers), (DL_LARGE_ELEMENTS, 0)):
                it = loaders[key]
                for _ in range(block):
                    work[key].append(compute())
                    t = time.perf_counter()
                    batch = next(it)
                    handoff[key].append(time.perf_counter() - t)
                    del batch
    finally:
        for it in loaders.values():
            if hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
    med = {k: statistics.median(v) for k, v in handoff.items()}
    small, large = med[DL_SMALL_ELEMENTS, workers], med[DL_LARGE_ELEMENTS, workers]
    per_byte = max(large - small, 0.0) / ((DL_LARGE_ELEMENTS - DL_SMALL_ELEMENTS) * 4)
    base = statistics.median(work[DL_SMALL_ELEMENTS, 0] + work[DL_LARGE_ELEMENTS, 0])
    loaded = statistics.median(work[DL_SMALL_ELEMENTS, workers] + work[DL_LARGE_ELEMENTS, workers])
    return {"dataloader": {"workers": workers, "handoff_fixed_us": round(small * 1e6, 2),
                           "handoff_ns_per_byte": round(per_byte * 1e9, 5),
                           "compute_stretch": round(max(loaded / base - 1, 0.0), 4),
                           "compute_ms": round(base * 1e3, 3), "single_process_next_us":
                               round(med[DL_SMALL_ELEMENTS, 0] * 1e6, 2),
                           "threads": torch.get_num_threads(), "method": DL_METHOD}}
