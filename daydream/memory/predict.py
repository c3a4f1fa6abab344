"""Memory what-ifs: the measured per-category timeline transformed by each `--opt`, in order.

Every model rescales category columns of the whole timeline and adds working sets where the step
needs them (the instants where activations are live, i.e. forward and backward), then the predicted
peak is read off the transformed timeline, so a peak that moves (say from the end of the forward to
the optimizer step) is found. Parameters are those of the optimization's record (its `memory` names
the model: a function here or in its own module), shared with `whatif`.
Assumptions common to all models: the recording ran in fp32 (4-byte elements) unless an earlier
`amp` said otherwise; each model's own formula and constants are in its docstring and in
docs/memory.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daydream.memory.timeline import CATEGORIES, COL, Timeline
from daydream.opts import OptChoice
from daydream.opts.params import optimization

PER_SAMPLE = ("activation", "input", "temporary", "autograd_detail")
# Bits per stored weight element (int4 also stores one fp16 scale per group of 128 weights, the
# group size of GPTQ/AWQ checkpoints; int8 and fp8 store one fp32 scale per output channel, which
# is below 0.1% of the weights and left out).
QUANT_BITS = {"int8": 8, "fp8": 8, "int4": 4}
INT4_GROUP = 128


@dataclass
class State:
    """What the models transform: the category timeline and what is known about its tensors."""
    bytes: np.ndarray          # float64 (times, categories)
    active: np.ndarray         # bool: activations live (forward and backward)
    optimizer_spans: list      # (start index, end index) into the timeline
    param_tensors: np.ndarray  # bytes of each parameter tensor, where known
    layers: dict               # module -> activation bytes
    activation_tensors: int    # activation tensors created per step
    act_elem_bytes: float = 4.0
    recording: dict = field(default_factory=dict)  # device, convolutions, cpu_bf16_onednn (memory doc)
    notes: list = field(default_factory=list)
    fp32: np.ndarray | None = None  # like `bytes`: made inside autocast's fp32 ops (memory/autocast.py)

    def col(self, name):
        return self.bytes[:, COL[name]]

    def scale(self, names, factor):
        for n in names:
            self.bytes[:, COL[n]] *= factor
            if self.fp32 is not None:
                self.fp32[:, COL[n]] *= factor

    def add(self, name, amount, mask):
        self.bytes[mask, COL[name]] += amount


def initial_state(tl: Timeline, layers: dict | None, recording: dict | None = None) -> State:
    spans = []
    for s, e in tl.optimizer:
        idx = np.flatnonzero((tl.times >= s) & (tl.times <= e))
        if idx.size:
            spans.append((max(int(idx[0]) - 1, 0), int(idx[-1])))
    # Forward and backward: activations live, outside the optimizer step (whose temporaries the
    # memory profiler may label as activations).
    active = (tl.bytes[:, COL["activation"]] > 0) & ~tl.optimizer_mask()
    per_step = int(tl.activation_tensors) // max(len(tl.optimizer), 1)
    return State(tl.bytes.astype(np.float64), active, spans,
                 np.asarray(tl.param_tensors, np.float64), dict(layers or {}), per_step,
                 recording=dict(recording or {}),
                 fp32=None if tl.fp32 is None else np.minimum(tl.fp32, tl.bytes).clip(0).astype(np.float64))


def _params_total(st: State) -> float:
    return float(st.col("parameter").max()) if len(st.bytes) else 0.0


def amp(st: State, dtype: str) -> None:
    """Autocast to a 16-bit type, the torch.amp recipe (Micikevicius et al. 2018): matmul/conv
    outputs and the tensors saved from them are 16-bit, so activations, autograd intermediates and
    temporaries halve (4 -> 2 bytes); inputs arrive from the data loader in fp32 and stay; fp32
    master parameters, their gradients and the optimizer state stay; plus one 16-bit copy of the
    weight for the forward and the GEMM saves it for the backward. Where the recording shares a
    clock with its trace, what autocast's fp32-policy ops make (a loss's log-softmax and its
    gradient, daydream.memory.autocast) stays 4 bytes an element."""
    if st.act_elem_bytes <= 2:
        st.notes.append(f"amp:{dtype}: activations already 16-bit; unchanged")
        return
    halved = ("activation", "temporary", "autograd_detail")
    kept = np.zeros(len(st.bytes)) if st.fp32 is None else st.fp32[:, [COL[c] for c in halved]].sum(axis=1)
    for c in halved:
        fp32 = 0.0 if st.fp32 is None else st.fp32[:, COL[c]]
        st.bytes[:, COL[c]] = fp32 + 0.5 * (st.bytes[:, COL[c]] - fp32)
    if kept.any():
        st.notes.append(f"amp:{dtype}: up to {kept.max() / 2**20:.1f} MiB made inside autocast's fp32 ops "
                        "(losses; on GPUs also norms and softmax) kept at 4 bytes")
    st.layers = {k: v * 0.5 for k, v in st.layers.items()}
    st.act_elem_bytes = 2.0
    copies = 0.5 * _params_total(st)
    st.add("parameter", copies, st.active)
    st.notes.append(f"amp:{dtype}: activation/temporary/autograd_detail x0.5, +{copies / 2**20:.1f} MiB "
                    "16-bit weight copies while activations are live; fp32 params, grads, optimizer state kept")
    if copies == 0:
        st.notes.append("amp: the recording has no parameter bytes (no memory profile categories); "
                        "weight copies not counted")
    if dtype == "bf16":
        _cpu_conv_fallback(st)


def im2col_bytes(conv: dict, elem_bytes: float = 2.0) -> float:
    """Bytes of ATen's slow_conv2d column buffer for one convolution call: `finput` of shape
    (N, C_in/groups * kh * kw, H_out * W_out) (aten/src/ATen/native/ConvolutionMM2d.cpp,
    slow_conv2d_forward; the backward allocates one buffer of the same shape for the input
    gradient's columns)."""
    n = conv["input"][0]
    _, cin_per_group, *kernel = conv["weight"]
    return float(n * cin_per_group * np.prod(kernel) * np.prod(conv["output"][2:]) * elem_bytes)


def _cpu_conv_fallback(st: State) -> None:
    """bf16 convolutions on a CPU whose oneDNN has no bf16 kernels: ATen's `use_mkldnn` check
    (aten/src/ATen/native/Convolution.cpp, `mkldnn_bf16_device_check`: AVX512-BW/VL/DQ or newer)
    fails, so `_convolution` falls back to `thnn_conv2d` / `_slow_conv2d_forward`, which unfolds the
    whole batch into a column buffer (im2col_bytes). The fp32 recording ran oneDNN, whose scratch
    the profiler cannot tie to a tensor (category unknown, above its level outside convolutions);
    that scratch is gone and the largest column buffer takes its place while activations are live
    (a convolution runs at every stage of a conv net's forward and backward). Needs the recording's
    `convolutions` table and `cpu_bf16_onednn` flag (memory.json.gz); GPUs use cuDNN, unchanged.
    Where oneDNN has bf16 kernels (or the recording does not say), what is unknown above that level
    while activations are live -- its scratch and the outputs of layers that save nothing for
    backward -- is bf16 and halves."""
    rec = st.recording
    convs = rec.get("convolutions") or []
    if str(rec.get("device", "")).split(":")[0] != "cpu" or not st.active.any():
        return
    unknown = st.col("unknown")
    floor = float(unknown[st.active].min())
    if rec.get("cpu_bf16_onednn", True):
        # what the profiler cannot tie to autograd while activations are live is in the compute
        # dtype: oneDNN's scratch (reordered activations, workspaces) and the outputs of layers that
        # save nothing for backward (a frozen backbone's convolutions); it halves too. Measured on the
        # memory_validation cnn (AVX512-BF16 EPYC: 8.47 -> 4.57 MB at the peak) and a user's
        # fine-tuning script with a frozen conv backbone (16.6 -> 9.0 MiB at its largest).
        above = np.maximum(unknown[st.active] - floor, 0)
        st.bytes[st.active, COL["unknown"]] = floor + 0.5 * above
        st.notes.append(f"amp:bf16: the recording CPU's oneDNN has bf16 kernels; what the profiler could not "
                        f"label while activations are live (unknown above {floor / 2**20:.1f} MiB: its scratch, "
                        "outputs of layers that save nothing for backward) halves with the activations")
        return
    if not convs:
        return
    workspace = max(im2col_bytes(c) for c in convs)
    st.bytes[st.active, COL["unknown"]] = np.minimum(unknown[st.active], floor)
    st.add("temporary", workspace, st.active)
    st.notes.append(f"amp:bf16: CPU without oneDNN bf16: convolutions fall back to slow_conv2d, oneDNN scratch "
                    f"(unknown above {floor / 2**20:.1f} MiB) replaced by a {workspace / 2**20:.1f} MiB im2col buffer")


def _units(st: State) -> tuple[float, str]:
    """Bytes of the largest FSDP unit: the parameters over the number of wrapped blocks, taken as
    the top-level modules of the layer table, else one block per weight+bias pair; never less than
    the largest single parameter tensor."""
    params = _params_total(st)
    groups = _top_level(st.layers)
    if len(groups) > 1:
        n, how = len(groups), f"{len(groups)} top-level modules"
    elif len(st.param_tensors):
        n, how = max(len(st.param_tensors) // 2, 1), f"{len(st.param_tensors)} parameter tensors / 2"
    else:
        n, how = 1, "one unit (no layer or tensor sizes known)"
    largest = float(st.param_tensors.max()) if len(st.param_tensors) else 0.0
    return max(params / n, largest), how


def fsdp(st: State, world_size: int, prefetch: bool, **_) -> None:
    """ZeRO-3 / FSDP (Rajbhandari et al. 2020): parameters, gradients and optimizer state are
    sharded, each rank holds 1/world_size; plus the gathered working set while activations are
    live: the unit in use (and the next one when prefetching) gathered in full, and one unit of
    unsharded gradients before its reduce-scatter."""
    unit, how = _units(st)
    for name in ("parameter", "gradient", "optimizer_state"):
        st.bytes[:, COL[name]] /= world_size
    gathered = unit * (2 if prefetch else 1)
    st.add("parameter", gathered, st.active)
    st.add("gradient", unit, st.active)
    st.notes.append(f"fsdp:world_size={world_size}: parameter/gradient/optimizer_state /{world_size}, "
                    f"+{gathered / 2**20:.1f} MiB gathered params and +{unit / 2**20:.1f} MiB unsharded "
                    f"grads per unit (unit = params / {how})")


def _top_level(layers: dict) -> dict:
    """Group a module table into checkpointable blocks: a name up to its first numbered component
    (`layer1.0.conv1` -> `layer1.0`, `encoder.layer.3.attn.q` -> `encoder.layer.3`: the entries of
    a ModuleList/Sequential of blocks), else its top-level component. -> block -> [bytes, ...]."""
    groups: dict = {}
    for k, v in layers.items():
        if v <= 0:
            continue
        parts = k.split(".")
        num = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        key = ".".join(parts[:num + 1]) if num is not None else parts[0]
        groups.setdefault(key, []).append(v)
    return groups


def activation_checkpointing(st: State, fraction: float, segments: int = 0) -> None:
    """Checkpoint the first `fraction` of the activation bytes, segment by segment (Chen et al.
    2016). A checkpointed segment keeps only its boundary (its input), estimated as its activations
    divided by the number of modules inside it that saved tensors (one saved tensor of the
    segment's width each); the rest is dropped at the end of its forward and recomputed at the
    start of its backward, where it lives exactly as long as in the recording.

    So at any instant of the forward or backward only the segment being run holds its full
    activations: the live activations become A'(t) = A(t) - sum of the dropped bytes of the
    segments before the current one, where the current segment is the one whose cumulative span
    contains the recorded level A(t) (in the forward A(t) rises through the segments in order, in
    the backward it falls back through them). The other categories at that instant (gradient
    buffers, workspaces) are those the recording had at the same point of the step. Segments: the
    blocks of the layer table (`_top_level`), else `segments` (0: sqrt(T)) equal segments of
    T/segments saved tensors each (T = activation tensors created per step)."""
    act = st.col("activation")
    total = float(act.max()) if len(st.bytes) else 0.0
    if total <= 0 or fraction <= 0:
        st.notes.append("activation-checkpointing: no activations (or fraction 0); unchanged")
        return
    groups = _top_level(st.layers)
    if len(groups) > 1:
        seg_bytes = np.array([sum(v) for v in groups.values()], np.float64)
        seg_tensors = np.array([len(v) for v in groups.values()], np.float64)
        # The table may not cover every activation byte: scale it to the measured total.
        seg_bytes *= total / seg_bytes.sum()
        how = f"{len(groups)} layers from the layer table"
    else:
        t = max(st.activation_tensors, 1)
        segs = int(segments) if segments > 0 else max(int(round(np.sqrt(t))), 1)
        seg_bytes = np.full(segs, total / segs)
        seg_tensors = np.full(segs, t / segs)
        how = f"{segs} equal segments of {t} activation tensors"
    cum = np.cumsum(seg_bytes)
    ckpt = cum / total <= fraction + 1e-9
    if not ckpt.any():
        ckpt[0] = True
    dropped = np.where(ckpt, seg_bytes - seg_bytes / np.maximum(seg_tensors, 1), 0.0)
    dropped_before = np.r_[0.0, np.cumsum(dropped)[:-1]]
    current = np.minimum(np.searchsorted(cum, act, side="left"), len(cum) - 1)
    reduction = np.where(st.active, dropped_before[current], 0.0)
    before_peak = float(act[st.active].max()) if st.active.any() else total
    st.bytes[:, COL["activation"]] = np.maximum(act - reduction, 0.0)
    after_peak = float(st.col("activation")[st.active].max()) if st.active.any() else total
    ratio = (total - dropped.sum()) / total
    st.layers = {k: v * ratio for k, v in st.layers.items()}
    st.notes.append(f"activation-checkpointing:fraction={fraction}: {int(ckpt.sum())} of {how} checkpointed, "
                    f"{dropped.sum() / 2**20:.1f} MiB dropped outside the segment being run (recomputed in "
                    f"its backward); peak activations {before_peak / 2**20:.1f} -> {after_peak / 2**20:.1f} MiB")


def quantize(st: State, dtype: str) -> None:
    """Weight-only quantization: the stored weights shrink from 4 bytes to bits/8 per element
    (QUANT_BITS, plus int4 group scales); while activations are live one layer's weights exist
    dequantized (the largest parameter tensor, fp32) as a temporary. Gradients and optimizer state,
    where the recording has them, are kept as recorded."""
    bits = QUANT_BITS[dtype]
    factor = bits / 32 + (2 / (INT4_GROUP * 4) if dtype == "int4" else 0.0)
    before = _params_total(st)
    st.scale(("parameter",), factor)
    largest = float(st.param_tensors.max()) if len(st.param_tensors) else 0.0
    st.add("temporary", largest, st.active)
    st.param_tensors = st.param_tensors * factor
    st.notes.append(f"quantize:{dtype}: parameter x{factor:.4f} ({before / 2**20:.1f} MiB -> "
                    f"{before * factor / 2**20:.1f} MiB), +{largest / 2**20:.1f} MiB dequantized layer")


def batch_size(st: State, factor: float) -> None:
    """Per-sample tensors (activations, inputs, temporaries, autograd intermediates) scale with the
    batch; parameters, gradients, optimizer state and unknown bytes do not."""
    st.scale(PER_SAMPLE, factor)
    st.layers = {k: v * factor for k, v in st.layers.items()}
    st.notes.append(f"batch-size:factor={factor}: {', '.join(PER_SAMPLE)} x{factor}")


def fused_optimizer(st: State) -> None:
    """A fused optimizer updates parameters and state in place in one kernel per group: every byte
    that the optimizer step allocates above the level at its start, other than new optimizer state,
    is a per-tensor or multi-tensor temporary and disappears."""
    if not st.optimizer_spans:
        st.notes.append("fused-optimizer: no optimizer step found in the recording; unchanged")
        return
    removed = 0.0
    for s, e in st.optimizer_spans:
        for name in CATEGORIES:
            if name == "optimizer_state":
                continue
            c = COL[name]
            excess = np.maximum(st.bytes[s:e + 1, c] - st.bytes[s, c], 0)
            removed = max(removed, float(excess.max()))
            st.bytes[s:e + 1, c] -= excess
    st.notes.append(f"fused-optimizer: optimizer-step temporaries removed (largest category excess "
                    f"{removed / 2**20:.1f} MiB)")


def ddp(st: State, world_size: int, **_) -> None:
    """DDP keeps a flat bucket copy of every gradient (gradient_as_bucket_view=False, the default),
    so gradient bytes double; nothing else changes on a rank."""
    st.scale(("gradient",), 2.0)
    st.notes.append(f"ddp:world_size={world_size}: gradient x2 (bucket copies)")


def predict(tl: Timeline, opts: list[OptChoice], layers: dict | None = None,
            recording: dict | None = None) -> tuple[Timeline, list[str]]:
    """The timeline after applying `opts` in order, and one note per model applied. `recording`:
    what the memory document says about the run (device, convolutions, cpu_bf16_onednn)."""
    st = initial_state(tl, layers, recording)
    for opt in opts:
        params = {k.replace("-", "_"): v for k, v in opt.params.items()}
        optimization(opt.name).memory_model()(st, **params)
    out = Timeline(tl.times.copy(), np.rint(np.maximum(st.bytes, 0)).astype(np.int64),
                   tl.source + " (predicted)", optimizer=list(tl.optimizer),
                   param_tensors=st.param_tensors.astype(np.int64), activation_tensors=tl.activation_tensors)
    return out, st.notes
