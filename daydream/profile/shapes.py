"""Calibrations at the run's own shapes: the profiled steps' Linear calls and GEMM/attention ops
re-timed without the profiler, in the precisions the what-ifs ask about.

Why: one reference shape cannot price a small layer. On this 2-core EPYC (1 thread) int8 dynamic
quantization is 1.1x faster than fp32 at x 256 x 64, W 64 x 64 and 4.3x at 128 x 256 x 256; a bf16
CPU flash-attention backward is 4.2x slower than fp32 at the reference 8 x 4 x 64 x 32 and 10.5x at
llama-small's 4 x 4 x 64 x 16 (grouped-query, causal). So after the profiled steps
`measure_run_shapes(trace)` reads the distinct shapes from the exported trace and times each, at
most MAX_SHAPES per kind, most total time in the trace first, within BUDGET_S per kind; every
figure is the median over REPS alternating repetitions (so a load change on a shared machine hits
both precisions alike) of the mean over CALLS calls, in us per call.

run.json["calibration"]["cpu_linear_shapes"]["shapes"]: per aten::linear shape {"x", "w", "bias"}
  fp32_fwd_us / fp32_train_us  F.linear; forward only (no autograd) / forward + backward
  int8_fwd_us                  quantized::linear_dynamic on its prepacked int8 weight (fbgemm)
  int8_train_us                tbd_suite.variants.int8_forward_linear forward + backward (weight
                               quantized and packed per call, fp32 backward)
  cast_fwd_us                  the fp32 -> bf16 copies autocast makes of the input, the weight and
                               the bias (.to(bfloat16) of each)
  cast_bwd_us                  the bf16 -> fp32 copies of their gradients (ToCopyBackward0)
  The quantize what-if prices a call by int8 - fp32; the amp what-if adds the casts (the GEMM
  inside the call is priced by cpu_op_shapes).
run.json["calibration"]["cpu_op_shapes"]["ops"]: per (op, Input Dims, Input Strides, Concrete Inputs)
  of the GEMM ops (aten::mm, addmm, bmm, baddbmm), CPU flash attention, oneDNN LSTM layers
  (aten::mkldnn_rnn_layer; forward and backward of both), BatchNorm (native_batch_norm and its
  backward) and max-pooling (max_pool2d_with_indices) whose tensor inputs are all fp32: fp32_us
  and bf16_us, the aten op itself called on tensors of the recorded sizes and strides (a backward
  op on its own forward's outputs and workspace, run in the same precision; BatchNorm's and
  pooling's data in bf16, BatchNorm's weight, bias and statistics fp32, as autocast leaves them
  after a convolution). The amp what-if prices each such op by bf16_us - fp32_us (autocast runs
  the first three in bf16 on CPU, the last two in their input's dtype: bf16 behind a convolution).
  Timed with glibc's malloc pinned (pin_allocator): compute, not the page faults of the output.
run.json["calibration"]["cpu_conv_shapes"]["shapes"]: per fp32 2-d convolution shape of the trace's
  aten::convolution calls {"x", "w", "bias", "stride", "padding", "dilation", "groups",
  "input_grad"}: fp32_fwd_us / fp32_bwd_us, bf16_fwd_us / bf16_bwd_us and fp32_x2_fwd_us /
  fp32_x2_bwd_us (the batch doubled) of aten::convolution itself -- the dispatcher picks oneDNN or
  ATen's native path as in the run, so a bf16 or a doubled batch that moves a 1x1 convolution
  from the native path to oneDNN is timed on the path it takes -- forward without autograd, the
  backward as torch.autograd.grad on a kept graph. The amp and batch-size what-ifs price each
  convolution call (forward and backward) by the difference.
run.json["calibration"]["cpu_sparse_attention"]["shapes"]: per non-causal attention shape of those
  ops {"q", "k", "v"}: dense_fwd_us / dense_train_us (F.scaled_dot_product_attention, forward /
  forward + backward) and "sparse": [{"block", "density", "reorder", "fwd_us", "train_us"}] of
  tbd_suite.variants.block_sparse_attention (key/value blocks gathered per query block, dense SDPA
  on them; reorder: PAROAttention's tile permutation around it) at block sizes SPARSE_BLOCKS and
  densities SPARSE_DENSITIES. The sparse-attention what-if interpolates between them and dense.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from daydream import costs
from daydream.profile import calibrate

MAX_SHAPES = 24
BUDGET_S = 3.0
REPS = 5
CALLS = 10
SHAPE_BUDGET_S = 1.0  # about what one shape's timings may take (_median_us)
# Past BUDGET_S the re-timing goes on until the shapes timed hold COVER_SHARE of the family's
# recorded time, up to COVER_BUDGET_S: on a CPU without AVX512-BF16 a bf16 convolution takes ATen's
# im2col path, 0.3-0.6 s a call, and a user's U-Net spent the 3 s on its first of 9 shapes; the 8
# left kept the reference-shape class factor (5x slower) where their own shapes are 47-86x slower,
# and amp was predicted at 0.152x against 0.05-0.06x measured (all 9 timed, 22.5 s: 0.071x).
COVER_SHARE, COVER_BUDGET_S = 0.8, 30.0
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
ATTENTION_FWD = "aten::_scaled_dot_product_flash_attention_for_cpu"
ATTENTION_BWD = "aten::_scaled_dot_product_flash_attention_for_cpu_backward"
RNN_FWD = "aten::mkldnn_rnn_layer"            # one LSTM layer and direction on oneDNN (nn.LSTM on CPU)
RNN_BWD = "aten::mkldnn_rnn_layer_backward"
# A convolutional net's normalization and pooling: under CPU autocast they run in their input's
# dtype, bf16 after a convolution, with BatchNorm's weight, bias and statistics kept fp32.
NORM_POOL_OPS = ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::max_pool2d_with_indices")
# the positional arguments that take the compute dtype (the rest of a float op's tensors stay fp32)
DATA_ARGS = {"aten::native_batch_norm": (0,), "aten::native_batch_norm_backward": (0, 1),
             "aten::max_pool2d_with_indices": (0,)}
OPS = (*GEMM_OPS, ATTENTION_FWD, ATTENTION_BWD, RNN_FWD, RNN_BWD, *NORM_POOL_OPS)
SPARSE_BLOCKS = (32, 64)
SPARSE_DENSITIES = (0.25, 0.5)
METHOD = ("the run's own shapes re-timed without the profiler after the profiled steps, alternating "
          "repetitions, medians, the run's thread count (daydream.profile.shapes)")


def _calls(trace, names) -> list[tuple[int, str]]:
    all_names = np.asarray(trace.names, dtype=object)[trace.events["name"].to_numpy()]
    rows = np.flatnonzero(np.isin(all_names, names))
    return [(int(r), all_names[r]) for r in rows]


def _most_time_first(items) -> list:
    """Distinct values of (key, value, duration) items, most total duration first, MAX_SHAPES, each
    with its `share` of the items' recorded time (what the re-timing budget covers, _within)."""
    total, value = {}, {}
    for key, v, dur in items:
        value[key] = v
        total[key] = total.get(key, 0.0) + float(dur)
    whole = sum(total.values()) or 1.0
    return [{**value[k], "share": round(total[k] / whole, 4)}
            for k in sorted(total, key=lambda k: -total[k])][:MAX_SHAPES]


def linear_shapes(trace) -> list[dict]:
    dur = trace.events["dur"].to_numpy()
    items = []
    for r, _ in _calls(trace, ["aten::linear"]):
        shape = costs.linear_shape(trace.args_of(r).get("Input Dims"))
        if shape is not None and len(shape["x"]) >= 2 and all(shape["w"]):
            items.append((costs.linear_shape_key(shape), shape, dur[r]))
    return _most_time_first(items)


def op_shapes(trace) -> list[dict]:
    dur = trace.events["dur"].to_numpy()
    items = []
    for r, name in _calls(trace, list(OPS)):
        args = trace.args_of(r)
        dims, types = args.get("Input Dims") or [], args.get("Input type") or []
        if name == RNN_BWD:  # its last input is the forward's workspace (bytes), not data
            dims, types = dims[:-1], types[:-1]
        tensors = [t for d, t in zip(dims, types) if isinstance(d, list) and d]
        if tensors and all(t == "float" for t in tensors):
            items.append((costs.op_shape_key(name, args), {"op": name, "dims": args.get("Input Dims"),
                                                           "strides": args.get("Input Strides"),
                                                           "concrete": args.get("Concrete Inputs")}, dur[r]))
    return _most_time_first(items)


# glibc mallopt parameters (malloc.h) and the values the re-timing pins them to: blocks up to the
# largest mmap threshold glibc allows on 64-bit come from the heap, and freed memory stays in it.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
PINNED_MMAP_BYTES, PINNED_TRIM_BYTES = 32 << 20, 256 << 20


def pin_allocator() -> bool:
    """Keep glibc's malloc from handing freed blocks back to the kernel, so that a re-timed op pays
    its compute and not the page faults of its output (docs/profiling.md, "Page faults"): the
    first convolution of a user's CNN, a 16 MiB fp32 output, timed 10.25 ms with glibc's dynamic
    thresholds and 1.13 ms pinned (bf16: 0.99 and 0.97), which made amp's delta for it mostly the
    fp32 output's faults. Static from here on (mallopt cannot give the dynamic thresholds back):
    a script's steps after its calibration run pinned too. False where the C library has no
    mallopt (not glibc)."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, PINNED_MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, PINNED_TRIM_BYTES))


def measure_run_shapes(trace, budget_s: float = BUDGET_S) -> dict:
    """`cpu_linear_shapes`, `cpu_op_shapes`, `cpu_conv_shapes` and `cpu_sparse_attention` for a
    loaded trace of this process's run (module docstring); empty parts are left out, and a shape
    whose re-timing fails (an op this torch build refuses at those sizes or in that dtype) is
    dropped: its calls keep the what-ifs' other models. Sets the quantized engine to fbgemm where
    it exists; pins glibc's malloc first (pin_allocator): compute, not page faults."""
    import torch
    out = {}
    pinned = pin_allocator()

    def keep(key: str, items_key: str, items: list) -> list:
        if items:
            out[key] = {items_key: items, "threads": torch.get_num_threads(), "method": METHOD,
                        "allocator_pinned": pinned}
        return items
    with warnings.catch_warnings():  # torch deprecates quantize_per_tensor; not the user's script's warning
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        keep("cpu_linear_shapes", "shapes", _timed(_time_linear, linear_shapes(trace), budget_s))
    ops = keep("cpu_op_shapes", "ops", _timed(_time_op, op_shapes(trace), budget_s))
    keep("cpu_conv_shapes", "shapes", _timed(_time_conv, conv_shapes(trace), budget_s))
    keep("cpu_sparse_attention", "shapes", _timed(_time_sparse, sparse_shapes(ops), budget_s))
    return out


def measure_run_shapes_or_note(load, path) -> dict:
    """measure_run_shapes of the trace at `path` for `daydream profile`, which must not lose a run it
    has recorded: a failure becomes `shape_calibration_error` in the calibration instead."""
    try:
        return measure_run_shapes(load(path))
    except Exception as exc:  # noqa: BLE001 -- the trace and memory profile are already written
        return {"shape_calibration_error": f"{type(exc).__name__}: {exc}"[:300]}


def _timed(time_one, shapes: list[dict], budget_s: float) -> list[dict]:
    """time_one(shape) for the shapes the budget allows; a shape that fails or gives None is left out."""
    out = []
    for shape in _within(shapes, budget_s):
        try:
            m = time_one(shape)
        except Exception:  # noqa: BLE001 -- any refusal of this torch build drops that one shape
            m = None
        if m:
            out.append(m)
    return out


def conv_shapes(trace) -> list[dict]:
    """The distinct fp32, non-transposed 2-d convolutions of the trace's aten::convolution calls,
    with whether their backward computes the input's gradient (its output_mask, False for the
    first layer on the images)."""
    dur = trace.events["dur"].to_numpy()
    input_grad = {}
    for r, name in _calls(trace, ["aten::convolution_backward"]):
        a = trace.args_of(r)
        key = costs.conv_key(name, a.get("Input Dims"), a.get("Concrete Inputs"))
        if key:
            input_grad[key] = str((a.get("Concrete Inputs") or [""])[-1]).startswith("[True")
    items = []
    for r, name in _calls(trace, ["aten::convolution"]):
        a = trace.args_of(r)
        dims, conc, types = a.get("Input Dims") or [], a.get("Concrete Inputs") or [], a.get("Input type") or []
        key = costs.conv_key(name, dims, conc)
        if key is None or len(dims[0]) != 4 or types[:2] != ["float", "float"]:
            continue
        shape = {"x": dims[0], "w": dims[1], "bias": bool(dims[2]), "stride": conc[3], "padding": conc[4],
                 "dilation": conc[5], "groups": conc[8], "input_grad": input_grad.get(key, True)}
        items.append((key, shape, dur[r]))
    return _most_time_first(items)


def _time_conv(shape: dict) -> dict | None:
    """Forward and backward of one convolution at the dispatcher (aten::convolution picks oneDNN or
    ATen's native path, as in the run): fp32, bf16, and fp32 with the batch doubled."""
    import json

    import torch
    stride, padding, dilation = (json.loads(shape[k]) for k in ("stride", "padding", "dilation"))
    groups = int(shape["groups"])
    ops = {}
    for tag, dtype, batch in (("fp32", torch.float32, 1), ("bf16", torch.bfloat16, 1), ("fp32_x2", torch.float32, 2)):
        x = torch.randn(shape["x"][0] * batch, *shape["x"][1:], dtype=dtype, requires_grad=shape["input_grad"])
        w = torch.randn(*shape["w"], dtype=dtype, requires_grad=True)
        b = torch.randn(shape["w"][0], dtype=dtype, requires_grad=True) if shape["bias"] else None

        def conv(x=x, w=w, b=b):
            return torch.ops.aten.convolution(x, w, b, stride, padding, dilation, False, [0, 0], groups)
        try:
            y = conv()
        except RuntimeError:
            return None
        leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]
        grad = torch.randn_like(y)

        def forward(conv=conv):
            with torch.no_grad():
                conv()

        def backward(y=y, leaves=leaves, grad=grad):
            torch.autograd.grad(y, leaves, grad, retain_graph=True)
        ops[f"{tag}_fwd_us"], ops[f"{tag}_bwd_us"] = forward, backward
    return {**shape, **_median_us(ops)}


def sparse_shapes(ops: list[dict]) -> list[dict]:
    """The distinct non-causal attention shapes (q, k, v sizes; no grouped-query heads) of the
    re-timed forward flash-attention ops, for the block-sparse re-timing."""
    out, seen = [], set()
    for o in ops:
        if o["op"] != ATTENTION_FWD or len(o["dims"]) < 5:
            continue
        q, k, v = o["dims"][:3]
        causal = (o.get("concrete") or [""] * 5)[4] == "True"
        masked = len(o["dims"]) > 5 and bool(o["dims"][5])
        key = repr((q, k, v))
        if causal or masked or key in seen or not (len(q) == 4 and q == k == v):
            continue
        seen.add(key)
        out.append({"q": q, "k": k, "v": v})
    return out


def _time_sparse(shape: dict) -> dict | None:
    """Dense attention and tbd_suite.variants.block_sparse_attention, forward and training (forward
    + backward), at one attention shape: per block size of SPARSE_BLOCKS dividing its length, at
    SPARSE_DENSITIES, with and without the token reorder (where the tokens form a square grid)."""
    import torch
    import torch.nn.functional as F

    from tbd_suite.variants import BlockSparse, block_sparse_attention
    length = shape["q"][2]
    q, k, v = (torch.randn(*shape["q"], requires_grad=True) for _ in range(3))
    grad = torch.ones(*shape["q"])

    def run(fn, train):
        def go():
            if train:
                q.grad = k.grad = v.grad = None
                fn(q, k, v).backward(grad)
            else:
                with torch.no_grad():
                    fn(q, k, v)
        return go

    ops = {"dense_fwd_us": run(F.scaled_dot_product_attention, False),
           "dense_train_us": run(F.scaled_dot_product_attention, True)}
    variants = []
    for block in SPARSE_BLOCKS:
        if length % block or length // block < 2:
            continue
        for density in SPARSE_DENSITIES:
            for reorder in (False, True):
                cfg = BlockSparse(density, block, reorder)
                try:
                    block_sparse_attention(q.detach(), k.detach(), v.detach(), cfg)
                except ValueError:  # no square token grid for the reorder
                    continue
                name = f"{block}/{density}/{reorder}"
                variants.append((name, cfg))
                ops[f"{name} fwd"] = run(lambda q, k, v, cfg=cfg: block_sparse_attention(q, k, v, cfg), False)
                ops[f"{name} train"] = run(lambda q, k, v, cfg=cfg: block_sparse_attention(q, k, v, cfg), True)
    if not variants:
        return None
    us = _median_us(ops)
    return {**shape, "dense_fwd_us": us["dense_fwd_us"], "dense_train_us": us["dense_train_us"],
            "sparse": [{"block": cfg.block, "density": cfg.density, "reorder": cfg.reorder,
                        "fwd_us": us[f"{name} fwd"], "train_us": us[f"{name} train"]} for name, cfg in variants]}


def _within(items, budget_s):
    """The items (most recorded time first) that BUDGET_S allows, and past it those needed until
    COVER_SHARE of the recorded time is re-timed, within COVER_BUDGET_S (items without a `share`
    count as covering it all: BUDGET_S alone)."""
    start, covered = time.perf_counter(), 0.0
    for item in items:
        spent = time.perf_counter() - start
        if spent > COVER_BUDGET_S or (spent > budget_s and covered >= COVER_SHARE):
            return
        yield item
        covered += float(item.get("share", 1.0))


def _median_us(ops: dict) -> dict:
    """calibrate.median_us within SHAPE_BUDGET_S per shape, rounded: a slow shape (one large layer)
    gets fewer calls and repetitions instead of taking minutes."""
    return {k: round(v, 4) for k, v in calibrate.median_us(ops, REPS, CALLS, SHAPE_BUDGET_S).items()}


def _time_linear(shape: dict) -> dict:
    import torch
    import torch.nn.functional as F
    x32, w32 = torch.randn(*shape["x"]), torch.randn(*shape["w"])
    b32 = torch.randn(shape["w"][0]) if shape["bias"] else None
    ones = torch.ones(*shape["x"][:-1], shape["w"][0])

    def leaves(dtype):
        return [t.detach().to(dtype, copy=True).requires_grad_() if t is not None else None for t in (x32, w32, b32)]

    def train(fn, dtype):
        x, w, b = leaves(dtype)

        def run():
            x.grad = w.grad = None
            if b is not None:
                b.grad = None
            fn(x, w, b).backward(ones)
        return run

    def forward(fn, args):
        def run():
            with torch.no_grad():
                fn(*args)
        return run

    present = [t for t in (x32, w32, b32) if t is not None]
    half = [t.to(torch.bfloat16) for t in present]

    def casts(tensors, dtype):
        def run():
            for t in tensors:
                t.to(dtype)
        return run

    ops = {"fp32_fwd_us": forward(F.linear, (x32, w32, b32)), "fp32_train_us": train(F.linear, torch.float32),
           "cast_fwd_us": casts(present, torch.bfloat16), "cast_bwd_us": casts(half, torch.float32)}
    if "fbgemm" in torch.backends.quantized.supported_engines:
        from tbd_suite.variants import int8_forward_linear
        torch.backends.quantized.engine = "fbgemm"
        scale = max(float(w32.abs().max()) / 127.5, 1e-8)
        packed = torch.ops.quantized.linear_prepack(torch.quantize_per_tensor(w32, scale, 0, torch.qint8), b32)
        ops["int8_fwd_us"] = forward(lambda x: torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True),
                                     (x32,))
        ops["int8_train_us"] = train(int8_forward_linear, torch.float32)
    return {**shape, **_median_us(ops)}


def _scalar(text: str):
    if text in ("True", "False"):
        return text == "True"
    if text.startswith("[") and text.endswith("]"):  # a list: an RNN's batch_sizes, BatchNorm's output_mask
        return [_scalar(x.strip()) for x in text[1:-1].split(",") if x.strip()]
    try:
        return int(text)
    except ValueError:
        return float(text)


def _arguments(shape: dict, dtype):
    """The op's positional arguments: tensors of the recorded sizes and strides in `dtype` (only the
    data arguments of DATA_ARGS' ops; their other tensors fp32), scalars as recorded, None for an
    absent optional."""
    import torch
    concrete = shape.get("concrete") or [""] * len(shape["dims"])
    strides = shape.get("strides") or [None] * len(shape["dims"])
    data = DATA_ARGS.get(shape["op"])
    args = []
    for i, (dims, stride, value) in enumerate(zip(shape["dims"], strides, concrete)):
        if isinstance(dims, list) and dims:
            dt = dtype if data is None or i in data else torch.float32
            t = torch.empty_strided(dims, stride, dtype=dt) if stride else torch.empty(dims, dtype=dt)
            args.append(t.normal_().abs_() if shape["op"].startswith("aten::native_batch_norm") and i >= 3
                        else t.normal_())  # running variance and inverse std are positive
        else:
            args.append(_scalar(value) if value not in ("", None) else None)
    return args


def _lstm_under_autocast(op, name: str, args: list, kw: dict):
    """An LSTM layer's bf16 call as autocast makes it. Autocast's cast cache lives one autocast
    region, so every step casts the layer's fp32 weights (and its fp32 input and states) anew, and
    oneDNN meets new weight tensors each time: on this host a 12 x 8 x 128 layer (hidden 64) takes
    82 us in bf16 on the same tensors, 106 us with fresh casts (16 us of copies), 105 us in fp32.
    The forward therefore casts its seven tensor inputs from fp32 inside each timed call; the
    backward adds the copies of the four weight gradients back to fp32 (ToCopyBackward0)."""
    import torch
    if name == RNN_FWD:
        fp32 = [a.float() if isinstance(a, torch.Tensor) else a for a in args]

        def forward():
            return op(*[a.to(torch.bfloat16) if isinstance(a, torch.Tensor) else a for a in fp32], **kw)
        return forward
    weights = args[1:5]

    def backward():
        out = op(*args, **kw)
        for w in weights:
            w.to(torch.float32)
        return out
    return backward


def _time_op(shape: dict) -> dict | None:
    """fp32_us and bf16_us of one recorded op shape, or None where the op cannot be replayed. Where
    fp32 runs but this CPU and torch build refuse the bf16 call (oneDNN has no bf16 LSTM on a CPU
    without AVX512-BF16/AMX: "could not create a primitive descriptor"), fp32_us and that refusal
    as `bf16_refused`: under autocast the user's run would fail here, which amp says."""
    import torch
    name = shape["op"]
    fns = {}
    try:
        for key, dtype in (("fp32_us", torch.float32), ("bf16_us", torch.bfloat16)):
            args = _arguments(shape, dtype)
            if name == ATTENTION_BWD:  # grad_out, q, k, v, out, logsumexp, dropout_p, is_causal, mask, scale
                q, k, v = args[1:4]
                out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, *args[6:8])[:2]
                args = [args[0], q, k, v, out, lse, *args[6:]]
            elif name == RNN_BWD:
                # input, 4 weights, hx, cx, output, hy, cy, grad_output, grad_hy, grad_cy, reverse, mode,
                # hidden_size, num_layers, has_biases, train, bidirectional, batch_sizes, batch_first,
                # workspace; the forward takes input .. cx, reverse, batch_sizes, mode, hidden_size,
                # num_layers, has_biases, bidirectional, batch_first, train
                (reverse, mode, hidden, layers, biases, train, bidirectional, sizes, batch_first) = args[13:22]
                out, hy, cy, workspace = torch.ops.aten.mkldnn_rnn_layer(
                    *args[:7], reverse, sizes, mode, hidden, layers, biases, bidirectional, batch_first, train)
                args = [*args[:7], out, hy, cy, args[10], None, None, *args[13:22], workspace]
            op = getattr(torch.ops.aten, name.split("::", 1)[1]).default
            schema = op._schema.arguments
            pos = [a for a, arg in zip(args, schema) if not arg.kwarg_only]
            kw = {arg.name: a for a, arg in zip(args, schema) if arg.kwarg_only}
            if dtype == torch.bfloat16 and name in (RNN_FWD, RNN_BWD):
                fns[key] = _lstm_under_autocast(op, name, pos, kw)
            else:
                fns[key] = (lambda op=op, pos=pos, kw=kw: op(*pos, **kw))
            fns[key]()
    except RuntimeError as exc:
        if key != "bf16_us":
            return None
        fns.pop(key, None)
        with torch.no_grad():
            return {**shape, **_median_us(fns), "bf16_refused": " ".join(str(exc).split()).split(". ")[0][:160]}
    except (TypeError, ValueError, IndexError):
        return None
    with torch.no_grad():
        return {**shape, **_median_us(fns)}
