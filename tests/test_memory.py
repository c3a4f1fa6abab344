"""daydream memory: real recordings in, exact sums, predictions in the right direction and size."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daydream.errors import DaydreamError
from daydream.memory import CATEGORIES, memory
from daydream.memory.predict import predict
from daydream.memory.timeline import COL, Timeline, from_raw_rows
from daydream.opts import parse_opt

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
RAW = SHARED / "hta" / "memory_timeline.raw.gz"
BERT = SHARED / "tracelens" / "gaunernst_bert-small-uncased_h100.json.gz"
QWEN = SHARED / "tracelens" / "Qwen_Qwen1.5-0.5B-Chat_h100.json.gz"
RESNET_V100 = SHARED / "kineto" / "resnet50_v100_num_workers_0.json.gz"


@pytest.fixture(scope="module")
def raw_report():
    return memory(RAW)


def test_raw_peak_is_sum_of_categories(raw_report):
    rows = np.asarray(json.load(gzip.open(RAW)), np.int64)
    # The peak of the running sum of every signed row, evaluated after each instant.
    ts = np.where(rows[:, 0] < 0, rows[rows[:, 0] >= 0, 0].min(), rows[:, 0])
    live = np.cumsum(rows[np.argsort(ts, kind="stable"), 2])
    last = np.r_[np.sort(ts)[1:] != np.sort(ts)[:-1], True]
    assert raw_report.peak_bytes == live[last].max()
    at = raw_report.measured.at_peak()
    assert set(at) == set(CATEGORIES)
    assert sum(at.values()) == raw_report.peak_bytes
    # A100 ResNet-50 (25.6M params, fp32) with SGD momentum: parameters and momentum ~ 102 MB each,
    # activations dominate the peak.
    assert 100e6 < at["parameter"] < 105e6 and 100e6 < at["optimizer_state"] < 105e6
    assert at["activation"] > 0.8 * raw_report.peak_bytes
    assert len(raw_report.measured.optimizer) == 5  # five training steps, one optimizer step each


def test_raw_json_contract(raw_report):
    j = raw_report.as_json()
    for key in ("trace", "peak_bytes", "at_peak", "tbd_view", "mean", "max"):
        assert key in j
    assert "predicted" not in j
    assert sum(j["tbd_view"].values()) == j["peak_bytes"]
    assert j["tbd_view"]["feature_maps"] == j["at_peak"]["activation"] + j["at_peak"]["input"]


def test_batch_size_prediction_scales_only_per_sample(raw_report):
    rep = memory(RAW, ["batch-size:factor=2"])
    at, pred = rep.measured.at_peak(), rep.predicted.at_peak()
    for c in ("parameter", "optimizer_state"):
        assert pred[c] == at[c]
    per_sample = sum(at[c] for c in ("activation", "input", "temporary", "autograd_detail"))
    # The peak instant stays put when every per-sample column doubles, so the new peak is exact.
    assert rep.predicted_peak_bytes >= rep.peak_bytes + per_sample - 1
    assert sum(pred.values()) == rep.predicted_peak_bytes


def test_amp_and_checkpointing_shrink_fsdp_divides(raw_report):
    base = raw_report.peak_bytes
    amp = memory(RAW, ["amp:dtype=fp16"])
    assert 0.45 * base < amp.predicted_peak_bytes < 0.65 * base  # activations halve, weight copies added
    assert amp.predicted.at_peak()["parameter"] == pytest.approx(1.5 * raw_report.measured.at_peak()["parameter"], rel=1e-6)
    ckpt = memory(RAW, ["activation-checkpointing:fraction=1.0"])
    half = memory(RAW, ["activation-checkpointing:fraction=0.5"])
    assert ckpt.predicted_peak_bytes < half.predicted_peak_bytes < base
    fsdp = memory(RAW, ["fsdp:world_size=8"])
    p = fsdp.predicted.at_peak()
    # /8 plus the gathered working set, far below the unsharded parameters.
    assert p["optimizer_state"] == pytest.approx(raw_report.measured.at_peak()["optimizer_state"] / 8, rel=1e-6)
    assert p["parameter"] < 0.5 * raw_report.measured.at_peak()["parameter"]
    q = memory(RAW, ["quantize:dtype=int4"]).predicted.at_peak()
    assert q["parameter"] < 0.2 * raw_report.measured.at_peak()["parameter"]


def test_options_compose_in_order():
    tl = memory(RAW).measured
    a, _ = predict(tl, [parse_opt("amp"), parse_opt("fsdp:world_size=8")])
    b, _ = predict(tl, [parse_opt("fsdp:world_size=8"), parse_opt("amp")])
    # amp first: its 16-bit weight copies are sharded too; fsdp first: amp copies the gathered units.
    assert a.maximum()["parameter"] != b.maximum()["parameter"]
    same, _ = predict(tl, [parse_opt("amp"), parse_opt("fsdp:world_size=8")])
    assert same.peak_bytes == a.peak_bytes


def test_raw_rows_bad_codes():
    with pytest.raises(DaydreamError):
        from_raw_rows([[1, 9, 10, 0]], "x")
    with pytest.raises(DaydreamError):
        from_raw_rows([[1, 2, 10]], "x")


# -- a torch.profiler memory profile recorded here, on a tiny model -------------------------------

def _record(batch: int, checkpointing: bool = False) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import memory_validation as mv
    finally:
        sys.path.pop(0)
    return mv.record(lambda: mv.mlp(width=64, depth=4), batch, checkpointing=checkpointing)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    out = {}
    for name, kw in {"b256": dict(batch=256), "b512": dict(batch=512),
                     "ckpt": dict(batch=512, checkpointing=True)}.items():
        run = d / name
        run.mkdir()
        (run / "memory.json.gz").write_bytes(gzip.compress(orjson.dumps(_record(**kw))))
        out[name] = run
    return out


def test_profiled_run_directory(tiny_runs):
    rep = memory(tiny_runs["b512"])
    at = rep.measured.at_peak()
    assert sum(at.values()) == rep.peak_bytes
    # 4 blocks of two 64x64 Linear layers + head: 8*(64*64+64)+64*10+10 floats = 135,210 bytes.
    params = 4 * (8 * (64 * 64 + 64) + 64 * 10 + 10)
    assert abs(rep.measured.maximum()["gradient"] - params) <= 0.05 * params
    assert rep.layers and all(k.startswith(("blocks.", "head")) for k in rep.layers)
    assert rep.measured.optimizer, "the Adam step is found in the memory profile"


def test_profiled_predictions_match_measured(tiny_runs):
    doubled = memory(tiny_runs["b256"], ["batch-size:factor=2"]).predicted_peak_bytes
    measured = memory(tiny_runs["b512"]).peak_bytes
    assert abs(doubled - measured) / measured < 0.10
    ckpt = memory(tiny_runs["b512"], ["activation-checkpointing"]).predicted_peak_bytes
    measured = memory(tiny_runs["ckpt"]).peak_bytes
    assert ckpt < memory(tiny_runs["b512"]).peak_bytes
    assert abs(ckpt - measured) / measured < 0.25


# -- Kineto [memory] events through daydream.trace.load -------------------------------------------

def test_kineto_inference_trace_matches_total_allocated():
    from daydream.trace import load
    tr = load(QWEN)
    rep = memory(tr)
    mem = tr.memory_events
    cuda = mem[mem["device_type"] == 1]
    assert rep.peak_bytes == cuda["total_allocated"].max()
    at = rep.measured.at_peak()
    assert sum(at.values()) == rep.peak_bytes
    assert at["unknown"] > 0 and at["temporary"] > 0  # weights predate the trace; forward temporaries
    assert rep.capacity_bytes and rep.capacity_bytes > 70 * 2**30  # H100 80GB


def test_kineto_trace_without_addresses_is_unknown():
    rep = memory(RESNET_V100)
    at = rep.measured.at_peak()
    assert at["unknown"] == rep.peak_bytes > 1e9
    assert any("no addresses" in n for n in rep.measured.notes)


def test_oom_warning_against_capacity():
    assert memory(BERT).oom_warning is None
    # bert-small's 9.9 MB of forward temporaries x4096 (40 GB) on a V100 (at most 32 GB).
    rep = memory(BERT, ["batch-size:factor=1024", "batch-size:factor=4", "gpu:target=V100"])
    assert rep.capacity_bytes <= 32 * 2**30 < rep.predicted_peak_bytes
    assert "out of memory" in rep.as_json()["oom_warning"]


# -- command line ---------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run(["daydream", *args], capture_output=True, text=True)


def test_cli_json_and_report(tmp_path):
    out = tmp_path / "mem.html"
    r = _cli("memory", str(RAW), "--opt", "amp", "--opt", "fsdp:world_size=4", "--json", "--report", str(out))
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert set(j["at_peak"]) == set(CATEGORIES) == set(j["predicted"])
    assert j["optimizations"][1] == {"name": "fsdp", "params": {"world_size": 4, "prefetch": True, "interconnect": "nvlink", "units": 0}}
    page = out.read_text()
    assert "plotly" in page and "<script src=\"http" not in page
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("args", [
    ["memory", "/no/such/trace.json"],
    ["memory", str(RAW), "--opt", "warp-drive"],
    ["memory", str(RAW), "--opt", "fsdp:world_size=0"],
    ["memory", str(SHARED / "hta" / "alexnet_a100.json.gz")],  # no [memory] events
])
def test_cli_bad_input(args):
    r = _cli(*args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_cli_truncated_file(tmp_path):
    bad = tmp_path / "t.json.gz"
    bad.write_bytes(gzip.compress(b'[[1, 2, 3, 0], [4'))
    r = _cli("memory", str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1


MIB = 2**20


def _synthetic(activation, extra=None):
    """A timeline with the given activation levels (MiB) and optional {category: levels}."""
    n = len(activation)
    b = np.zeros((n, len(CATEGORIES)), np.int64)
    b[:, COL["activation"]] = np.asarray(activation) * MIB
    for name, levels in (extra or {}).items():
        b[:, COL[name]] = np.asarray(levels) * MIB
    return Timeline(np.arange(n, dtype=np.int64) * 1000, b, "synthetic")


def test_checkpointing_recompute_only_in_its_segments_backward():
    # Four blocks of 8 MiB (two saved tensors each): the forward rises 8 MiB per block, the backward
    # frees them last to first, with 6 MiB of gradient buffers while a block is backpropagated.
    act = [8, 16, 24, 32, 32, 24, 16, 8, 0]
    grads = [0, 0, 0, 0, 6, 6, 6, 6, 0]
    tl = _synthetic(act, {"autograd_detail": grads})
    layers = {f"blocks.{i}.{j}": 4 * MIB for i in range(4) for j in range(2)}
    pred, _ = predict(tl, [parse_opt("activation-checkpointing:fraction=1")], layers)
    # While block 3 is backpropagated: blocks 0-2 keep their 4 MiB boundary, block 3 is recomputed
    # in full (8 MiB), plus the gradient buffers: 3*4 + 8 + 6 = 26 MiB. The old model added the
    # recompute set to every instant (32/2 + 8 + 6 = 30 MiB).
    assert pred.peak_bytes == 26 * MIB
    assert pred.bytes[0, COL["activation"]] == 8 * MIB  # first block runs in full


def test_amp_bf16_cpu_conv_fallback_replaces_onednn_scratch_with_im2col_or_halves_it():
    act = [0, 8, 16, 16, 8, 0]
    scratch = [0, 4, 0, 4, 4, 0]  # oneDNN scratch while a convolution runs, none between them
    tl = _synthetic(act, {"unknown": scratch})
    conv = {"input": [32, 32, 32, 32], "weight": [32, 32, 3, 3], "output": [32, 32, 32, 32]}
    rec = {"device": "cpu", "convolutions": [conv], "cpu_bf16_onednn": False}
    pred, notes = predict(tl, [parse_opt("amp:dtype=bf16")], None, rec)
    im2col = 32 * 32 * 9 * 32 * 32 * 2  # N * C_in*kh*kw * H_out*W_out bf16 elements = 18 MiB
    assert im2col == 18 * MIB
    assert pred.bytes[:, COL["unknown"]].max() == 0
    assert pred.peak_bytes == 8 * MIB + im2col
    kept, _ = predict(tl, [parse_opt("amp:dtype=bf16")], None, {**rec, "cpu_bf16_onednn": True})
    assert kept.peak_bytes == (8 + 2) * MIB  # oneDNN has bf16: activations and its bf16 scratch halve
    # A script's recording has no convolution table: the unlabelled outputs of layers that save
    # nothing for backward (a frozen backbone) and oneDNN's scratch are bf16 under autocast all the
    # same; without bf16 kernels and without the table to size im2col by, nothing moves.
    script, notes = predict(tl, [parse_opt("amp:dtype=bf16")], None, {"device": "cpu"})
    assert script.peak_bytes == (8 + 2) * MIB and any("could not label" in n for n in notes)
    slow, _ = predict(tl, [parse_opt("amp:dtype=bf16")], None, {"device": "cpu", "cpu_bf16_onednn": False})
    assert slow.bytes[:, COL["unknown"]].max() == 4 * MIB
    gpu, _ = predict(tl, [parse_opt("amp:dtype=bf16")], None, {"device": "cuda:0"})
    assert gpu.bytes[:, COL["unknown"]].max() == 4 * MIB  # cuDNN's workspace: not measured, unchanged


def test_step_tensors_torch_files_as_parameters_are_relabelled_and_steps_found_once():
    """torch's memory profiler files some tensors of the step under `parameter`: a compiled
    forward's saved outputs, a for-loop Adam's sqrt denominators, the logits a step returns. A
    parameter outlives the step; these are activations (made outside the optimizer) or temporaries
    (inside it). A for-loop optimizer's temporary labelled activation does not split its step."""
    from daydream.memory.timeline import COL, from_raw_rows
    P, S, A, G = 0, 1, 4, 5  # torch's category indices: parameter, optimizer state, activation, gradient
    rows = [[-1, 1, 512, P], [-1, 1, 1024, P],
            [10, 2, 100, A], [11, 2, 2048, P], [12, 2, 4096, P],          # forward: saved output, logits 1
            [20, 2, 512, G], [21, 2, 1024, G], [22, 4, -2048, P], [23, 4, -100, A],  # backward
            [30, 2, 512, S], [31, 3, -512, P], [31, 3, 512, P],           # optimizer step 1, parameter 1
            [32, 2, 64, A], [33, 4, -64, A],                              # a temporary torch calls activation
            [34, 2, 1024, S], [35, 2, 1024, P], [36, 4, -1024, P],        # parameter 2: its sqrt denominator
            [37, 3, -1024, P], [37, 3, 1024, P],
            [40, 2, 100, A], [41, 2, 4096, P], [42, 4, -4096, P],         # step 2: logits 2, logits 1 freed
            [50, 3, -512, G], [50, 3, 512, G], [51, 4, -100, A],
            [60, 3, -512, S], [60, 3, 512, S], [61, 3, -512, P], [61, 3, 512, P]]
    tl = from_raw_rows(rows, "synthetic")
    assert tl.optimizer == [(30, 37), (60, 61)]
    param = dict(zip(tl.times.tolist(), tl.bytes[:, COL["parameter"]].tolist()))
    assert set(param.values()) == {1536}  # the parameters, and only them
    temporary = dict(zip(tl.times.tolist(), tl.bytes[:, COL["temporary"]].tolist()))
    assert temporary[35] == 1024 and max(temporary.values()) == 1024
    activation = dict(zip(tl.times.tolist(), tl.bytes[:, COL["activation"]].tolist()))
    # logits 2 is alive at the end: made after training began, between optimizer steps, an activation
    assert activation[12] == 100 + 2048 + 4096 and activation[22] == 100 + 4096 and activation[42] == 100 + 4096
    assert sorted(tl.param_tensors.tolist()) == [512, 1024]
    # a tensor labelled parameter made before the first optimizer step and never freed (a model built
    # while recording) keeps torch's label
    late = from_raw_rows([[5, 2, 256, P]] + rows, "synthetic")
    assert set(late.bytes[late.times >= 5, COL["parameter"]].tolist()) == {1536 + 256}


def test_amp_keeps_what_autocasts_fp32_ops_make_at_four_bytes():
    """Under autocast a loss runs in fp32 (cross_entropy_loss is on its fp32 list): the log-softmax it
    saves and the gradient its backward makes stay 4 bytes an element; the rest halves. Tensors
    made inside the fp32 spans are followed to their destruction by category and size."""
    from daydream.memory.timeline import COL, from_raw_rows
    A, D = 4, 6  # torch's category indices: activation, autograd_detail
    rows = [[-1, 1, 1000, 0],
            [10, 2, 800, A],                       # forward activations: halve
            [20, 2, 400, A],                       # inside the loss (20-30): the log-softmax, kept
            [40, 2, 400, D], [45, 4, -400, A],     # the loss's backward (40-50) makes a gradient: kept
            [60, 4, -400, D], [70, 4, -800, A]]
    tl = from_raw_rows(rows, "synthetic", (np.array([20, 40]), np.array([30, 50])))
    fp32 = dict(zip(tl.times.tolist(), tl.fp32.sum(axis=1).tolist()))
    assert fp32 == {10: 0, 20: 400, 40: 800, 45: 400, 60: 0, 70: 0}
    pred, notes = predict(tl, [parse_opt("amp:dtype=bf16")], None, {"device": "cuda:0"})
    act = dict(zip(tl.times.tolist(), pred.bytes[:, COL["activation"]].tolist()))
    detail = dict(zip(tl.times.tolist(), pred.bytes[:, COL["autograd_detail"]].tolist()))
    assert act[20] == 400 + 400 and act[45] == 400 and detail[40] == 400
    assert any("made inside autocast's fp32 ops" in n for n in notes)
    plain, _ = predict(from_raw_rows(rows, "synthetic"), [parse_opt("amp:dtype=bf16")], None, {"device": "cuda:0"})
    assert plain.bytes[:, COL["activation"]].max() == 600  # without the spans everything halves


def test_fp32_spans_follow_a_loss_into_its_backward():
    """A committed CPU run of BERT: cross-entropy's forward, and the backward nodes of the ops run
    inside it (found by sequence number), are fp32 spans; nothing else is."""
    from daydream.memory.autocast import fp32_spans
    from daydream.trace import load
    from daydream.trace.events import CPU_OP
    trace = load(Path(__file__).resolve().parents[1] / "traces" / "pairs" / "cpu" / "bert" / "base")
    starts, ends = fp32_spans(trace, "cpu")
    ev = trace.events
    names = np.asarray(trace.names, dtype=object)[ev["name"].to_numpy()]
    ts = ev["ts"].to_numpy()
    op = ev["kind"].to_numpy() == CPU_OP
    losses = np.flatnonzero(op & (names == "aten::cross_entropy_loss"))
    assert len(losses) and len(starts) >= 2 * len(losses)  # each loss and its backward nodes
    for i in losses:
        k = np.searchsorted(starts, ts[i], side="right") - 1
        assert starts[k] == ts[i]
    nodes = np.flatnonzero(op & np.isin(names, ["NllLossBackward0", "LogSoftmaxBackward0"]))
    assert len(nodes) and all(((starts <= ts[i]) & (ts[i] <= ends)).any() for i in nodes)
    linear = np.flatnonzero(op & (names == "aten::linear"))
    assert not any(((starts <= ts[i]) & (ts[i] <= ends)).any() for i in linear)
    assert len(fp32_spans(trace, "cuda")[0]) > len(starts)  # on a GPU layer norm and softmax too


@st.composite
def _raw_rows(draw):
    """Raw memory rows as torch writes them: tensors created (or alive before), some version bumps
    (a -/+ pair across two categories), destroyed in any order; sizes from a few values so that
    size matching is ambiguous; timestamps non-decreasing."""
    sizes = [512, 4096, 1 << 20]
    out, alive, ts = [], [], 0
    for _ in range(draw(st.integers(1, 30))):
        ts += draw(st.integers(0, 5))
        choice = draw(st.sampled_from(("pre", "create", "bump", "destroy")))
        if choice in ("pre", "create") or not alive:
            size, cat = draw(st.sampled_from(sizes)), draw(st.integers(0, 7))
            out.append([-1 if choice == "pre" else ts, 1 if choice == "pre" else 2, size, cat])
            alive.append((size, cat))
        elif choice == "bump":
            i = draw(st.integers(0, len(alive) - 1))
            size, cat = alive[i]
            new = draw(st.integers(0, 7))
            out += [[ts, 3, -size, cat], [ts, 3, size, new]]
            alive[i] = (size, new)
        else:
            size, cat = alive.pop(draw(st.integers(0, len(alive) - 1)))
            out.append([ts, 4, -size, cat])
    if not any(r[0] >= 0 for r in out):
        out.append([ts + 1, 2, 512, 7])
    return out


@st.composite
def _disjoint_spans(draw):
    """Sorted, disjoint [start, end] spans over the rows' clock."""
    starts, ends, t = [], [], 0
    for _ in range(draw(st.integers(0, 4))):
        t += draw(st.integers(0, 40))
        starts.append(t)
        t += draw(st.integers(0, 20))
        ends.append(t)
        t += 1
    return np.array(starts, np.int64), np.array(ends, np.int64)


@settings(max_examples=200, deadline=None)
@given(rows=_raw_rows(), spans=_disjoint_spans())
def test_relabelling_and_fp32_spans_keep_every_byte(rows, spans):
    """Whatever the rows, the label corrections move bytes between categories and never create or
    lose any (the total over time is torch's); the fp32 part is never negative, and amp's
    prediction with it never falls below the one that halves everything."""
    from daydream.memory.timeline import coalesce
    arr = np.asarray(rows, np.int64)
    ts = np.where(arr[:, 0] < 0, arr[arr[:, 0] >= 0, 0].min(), arr[:, 0])
    order = np.argsort(ts, kind="stable")
    _, torch_total = coalesce(ts[order], np.zeros(len(arr), np.int64), arr[order, 2])
    tl = from_raw_rows(rows, "hypothesis", spans)
    assert (tl.total == torch_total[:, 0]).all()
    assert (tl.fp32 >= 0).all()
    if not (arr[:, 1] == 3).any():  # without version bumps torch's columns never go negative: nor ours
        assert (tl.bytes >= 0).all() and (tl.fp32 <= tl.bytes).all()
    kept, _ = predict(tl, [parse_opt("amp:dtype=bf16")], None, {"device": "cuda:0"})
    halved, _ = predict(from_raw_rows(rows, "hypothesis"), [parse_opt("amp:dtype=bf16")], None, {"device": "cuda:0"})
    assert (kept.bytes >= halved.bytes - 1).all()


def test_unknown_tensors_made_in_a_forward_and_alive_into_its_backward_are_activations():
    """Rows torch left unlabelled are relabelled by their lifetime against the steps' forward spans:
    made in a forward, destroyed after it -> activation; made and destroyed inside the forward, or
    made outside any forward, stay unknown. Bytes are only moved."""
    from daydream.memory.timeline import COL, from_raw_rows
    U = 7  # torch's index of None (unknown)
    rows = [[-1, 1, 64, 0],
            [10, 2, 400, U], [12, 2, 300, U], [14, 4, -300, U],  # forward 10-20: saved 400, scratch 300
            [30, 4, -400, U],                                    # backward frees the saved one
            [35, 2, 50, U], [38, 4, -50, U]]                     # made in the backward: kept unknown
    phases = {"forward": (np.array([10]), np.array([20]))}
    tl = from_raw_rows(rows, "synthetic", None, phases)
    act = dict(zip(tl.times.tolist(), tl.bytes[:, COL["activation"]].tolist()))
    unk = dict(zip(tl.times.tolist(), tl.bytes[:, COL["unknown"]].tolist()))
    assert act == {10: 400, 12: 400, 14: 400, 30: 0, 35: 0, 38: 0}
    assert unk[12] == 300 and unk[14] == 0 and unk[35] == 50
    assert any("labelled by their lifetime" in n for n in tl.notes)
    plain = from_raw_rows(rows, "synthetic")
    assert (plain.total == tl.total).all() and plain.bytes[:, COL["activation"]].max() == 0


@settings(max_examples=200, deadline=None)
@given(rows=_raw_rows(), spans=_disjoint_spans())
def test_lifetime_relabelling_keeps_every_byte(rows, spans):
    """Whatever the rows and forward spans, relabelling unknown tensors by lifetime moves bytes
    between categories and never creates or loses any; without version bumps no column goes negative."""
    arr = np.asarray(rows, np.int64)
    plain = from_raw_rows(rows, "hypothesis")
    tl = from_raw_rows(rows, "hypothesis", None, {"forward": spans})
    assert (tl.total == plain.total).all()
    if not (arr[:, 1] == 3).any():
        assert (tl.bytes >= 0).all()


def _record_conv_net(out, workers: int):
    """A small conv net trained 4 profiled steps on batches from a DataLoader with `workers`
    workers, written as daydream profile writes a run (trace.json.gz, memory.json.gz)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from daydream.profile.rundir import export_memory, export_trace
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.SiLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = TensorDataset(torch.randn(64, 3, 32, 32), torch.randint(0, 2, (64, 32, 32)))
    batches = iter(DataLoader(data, batch_size=8, num_workers=workers))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True,
                                profile_memory=True, with_stack=True,
                                schedule=torch.profiler.schedule(wait=0, warmup=1, active=4, repeat=1)) as prof:
        for _ in range(5):
            x, y = next(batches)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            prof.step()
    out.mkdir()
    export_trace(prof, out, keep_steps=3)
    assert export_memory(prof, out, "cpu", None) is None
    return out


def test_a_dataloader_workers_batch_leaves_no_activation_unlabelled(tmp_path):
    """A real CPU recording whose batches come from a DataLoader worker: torch's memory profiler
    files the batch under `parameter` and leaves every activation unknown (it floods activations
    forward from the inputs it finds); read with the trace's forward spans, the net's saved
    feature maps are activations again, as many as torch labels when the batch is made in-process."""
    from daydream.memory import _memory_doc, _read_json, memory
    worker = _record_conv_net(tmp_path / "worker", 1)
    in_process = _record_conv_net(tmp_path / "in_process", 0)
    relabelled = memory(str(worker)).measured.maximum()
    torch_alone = _memory_doc(_read_json(worker / "memory.json.gz"), "rows alone")[0].maximum()
    truth = memory(str(in_process)).measured.maximum()
    # 8 x 16 x 32 x 32 fp32 maps are 0.5 MiB; the net saves several a step (conv, norm, SiLU outputs)
    assert truth["activation"] >= 4 * (8 * 16 * 32 * 32 * 4), truth
    assert relabelled["activation"] == pytest.approx(truth["activation"], rel=0.2), (relabelled, truth)
    assert torch_alone["activation"] < 0.2 * truth["activation"], torch_alone  # what torch labels alone
