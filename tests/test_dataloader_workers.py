"""dataloader reads the workers a trace already uses and predicts both directions."""
from __future__ import annotations

import json

import pytest

from conftest import REPO, shared
from daydream.opts.dataloader import HANDOFF_NS, WORKER_INTERFERENCE
from daydream.trace import load
from daydream.validate import validate
from daydream.whatif import whatif

US = 1_000  # ns


def _trace(tmp_path, iterator: str, data_us: float):
    """Two 1 ms steps on one CPU thread: the DataLoader span, then 400 us of model work."""
    events = []
    for s in range(2):
        t0 = 1000 * s
        events.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{s}", "pid": 1, "tid": 1,
                       "ts": t0, "dur": 1000, "args": {}})
        events.append({"ph": "X", "cat": "cpu_op", "name": f"enumerate(DataLoader)#{iterator}.__next__",
                       "pid": 1, "tid": 1, "ts": t0, "dur": data_us, "args": {}})
        events.append({"ph": "X", "cat": "cpu_op", "name": "aten::conv2d", "pid": 1, "tid": 1,
                       "ts": t0 + 600, "dur": 400, "args": {}})
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"schemaVersion": 1, "traceEvents": events}))
    return path


def test_multiprocess_trace_to_zero_workers_loads_on_main_thread(tmp_path):
    # the recorded 50 us is the hand-off; with load_ms=0.6 the main thread pays 600 us per step instead
    path = _trace(tmp_path, "_MultiProcessingDataLoaderIter", 50)
    out = whatif(load(path), ["dataloader:workers=0,load_ms=0.6"])
    assert out.predicted_ms == pytest.approx(out.replay_ms + 0.55, rel=1e-6)
    assert any("loads each batch itself" in n and "load_ms" in n for n in out.notes)


def test_multiprocess_trace_without_loading_cost_says_so(tmp_path):
    # a CPU trace copies no batch to a device: nothing to size the loading by, and the note says so
    path = _trace(tmp_path, "_MultiProcessingDataLoaderIter", 50)
    out = whatif(load(path), ["dataloader:workers=0"])
    assert out.predicted_ms == out.replay_ms
    assert any("pass load_ms" in n for n in out.notes)


def test_multiprocess_trace_to_fewer_workers_stalls(tmp_path):
    # one worker loading 2 ms batches cannot keep up with ~1 ms steps: the main thread waits
    path = _trace(tmp_path, "_MultiProcessingDataLoaderIter", 50)
    out = whatif(load(path), ["dataloader:workers=1,prefetch=1,load_ms=2"])
    assert out.predicted_ms > out.replay_ms + 0.3
    # eight keep up: the hand-off stays what it was, and the note says so
    out8 = whatif(load(path), ["dataloader:workers=8,load_ms=2"])
    assert out8.predicted_ms == pytest.approx(out8.replay_ms)
    assert any("go from 0.05 to 0.05 ms/step" in n for n in out8.notes)


def test_single_process_trace_to_zero_workers_is_a_noted_no_op(tmp_path):
    path = _trace(tmp_path, "_SingleProcessDataLoaderIter", 600)
    out = whatif(load(path), ["dataloader:workers=0"])
    assert out.predicted_ms == out.replay_ms
    assert any("already loads with workers=0" in n for n in out.notes)
    # and the other direction moves the recorded loading to the workers, whose 600 us of loading
    # slow the main thread's 400 us of model work by WORKER_INTERFERENCE x 600 us
    out4 = whatif(load(path), ["dataloader:workers=4"])
    assert out4.predicted_ms == pytest.approx((HANDOFF_NS + 400 * US + WORKER_INTERFERENCE * 600 * US) / 1e6)


def test_resnet50_v100_pair_both_directions_within_ten_percent():
    w0 = load(shared("kineto/resnet50_v100_num_workers_0.json.gz"))
    w4 = load(shared("kineto/resnet50_v100_num_workers_4.json.gz"))
    up = validate(w0, w4, ["dataloader:workers=4"])
    down = validate(w4, w0, ["dataloader:workers=0"])
    assert up["error_pct"] <= 10.0 and up["predicted_ms"] < up["base_measured_ms"] * 0.8
    assert down["error_pct"] <= 10.0 and down["predicted_ms"] > down["base_measured_ms"] * 1.15
    # the hand-off is never called loading
    assert not any("loading moved" in n for n in down["notes"])


def _run_dir(tmp_path, calibration: dict | None):
    """A run directory: two 1 ms steps whose DataLoader span (600 us) collates two 3x4x4 samples
    (aten::stack inside it), then 400 us of model work; run.json with `calibration` when given."""
    import gzip
    events = []
    for s in range(2):
        t0 = 1000 * s
        events += [{"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{s}", "pid": 1, "tid": 1,
                    "ts": t0, "dur": 1000, "args": {}},
                   {"ph": "X", "cat": "cpu_op", "name": "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__",
                    "pid": 1, "tid": 1, "ts": t0, "dur": 600, "args": {}},
                   {"ph": "X", "cat": "cpu_op", "name": "aten::stack", "pid": 1, "tid": 1, "ts": t0 + 500,
                    "dur": 50, "args": {"Input Dims": [[[3, 4, 4], [3, 4, 4]], []]}},
                   {"ph": "X", "cat": "cpu_op", "name": "aten::conv2d", "pid": 1, "tid": 1,
                    "ts": t0 + 600, "dur": 400, "args": {}}]
    d = tmp_path / ("cal" if calibration else "plain")
    d.mkdir()
    with gzip.open(d / "trace.json.gz", "wt") as f:
        json.dump({"schemaVersion": 1, "traceEvents": events}, f)
    (d / "run.json").write_text(json.dumps({"settings": {"workers": 0, "threads": 1},
                                            **({"calibration": calibration} if calibration else {})}))
    return d


def test_measured_dataloader_calibration_replaces_the_handoff_constant(tmp_path):
    cal = {"dataloader": {"workers": 2, "handoff_fixed_us": 1000.0, "handoff_ns_per_byte": 0.5,
                          "compute_stretch": 0.1}}
    plain = whatif(load(_run_dir(tmp_path, None)), ["dataloader:workers=2"])
    out = whatif(load(_run_dir(tmp_path, cal)), ["dataloader:workers=2"])
    # per step: the hand-off 1000 us + 0.5 ns x (2 x 48 fp32 = 384 B) in place of HANDOFF_NS, and
    # the 400 us of model work 10% longer; the queue (2 workers x 2) never runs dry
    handoff = 1000 * US + 0.5 * 384
    assert out.predicted_ms - plain.predicted_ms == pytest.approx((handoff - HANDOFF_NS + 0.1 * 400 * US) / 1e6,
                                                                  rel=1e-6)
    assert any("measured DataLoader calibration" in n and "0.4 kB" in n for n in out.notes)


def test_measure_dataloader_times_a_real_multiprocess_loader():
    import torch

    from daydream.profile import calibrate
    torch.set_num_threads(1)
    cal = calibrate.measure_dataloader(workers=1, block=2, reps=1)["dataloader"]
    assert cal["workers"] == 1 and cal["threads"] == 1
    # a multi-process hand-off (queue get, unpickling shared-memory handles) is never free, and
    # costs more than a single-process next() that only indexes the trivial dataset
    assert cal["handoff_fixed_us"] > 0 and cal["handoff_fixed_us"] > cal["single_process_next_us"] / 2
    assert cal["handoff_ns_per_byte"] >= 0 and cal["compute_stretch"] >= 0 and cal["compute_ms"] > 0


def test_dataloader_steps_are_found_by_their_loading_tasks_not_their_durations():
    """Without the profiler's cost a cheap loader's data-phase tasks can be 0 ns; every step still
    loads a batch, so the model still applies (it used to say 'N batches in 1 step' and change nothing)."""
    from daydream.graph import build_graph
    from daydream.graph.phases import DATA
    from daydream.opts.context import Context
    from daydream.opts.params import parse_opt
    from daydream.table import set_column
    from daydream.whatif import apply_optimizations
    trace = load(REPO / "traces" / "pairs" / "cpu" / "bert" / "base")
    graph = build_graph(trace)
    dur = graph.column("dur").copy()
    dur[graph.column("phase") == DATA] = 0
    set_column(graph, "tasks", "dur", dur)
    ctx = Context.of(trace)
    apply_optimizations(graph, [parse_opt("dataloader:workers=2")], ctx)
    assert not any("nothing changed" in n for n in ctx.notes), ctx.notes
    assert any("hand-off" in n for n in ctx.notes)
