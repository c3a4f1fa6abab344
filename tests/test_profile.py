"""`daydream profile` (TBD models and unmodified scripts) and the committed pair corpus."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream.cli import main
from daydream.errors import DaydreamError
from daydream.graph import build_graph
from daydream.opts.params import parse_opt
from daydream.profile import rundir
from conftest import SHARED

REPO = Path(__file__).resolve().parents[1]
RUN_KEYS = {"schema", "kind", "model", "device", "device_name", "batch_size", "steps", "warmup", "amp",
            "settings", "versions", "step_ms", "plain_step_ms", "profiled_step_ms", "profiler_overhead_pct",
            "profiled_steps", "files", "complete"}


def _load_gz(path: Path):
    with gzip.open(path, "rb") as f:
        return json.loads(f.read())


def _profiler_steps(run_dir: Path) -> list[dict]:
    trace = _load_gz(run_dir / "trace.json.gz")
    return [e for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("cat") != "gpu_user_annotation"
            and e.get("name", "").startswith("ProfilerStep#")]


def _check_memory(run_dir: Path, device="cpu"):
    memory = _load_gz(run_dir / "memory.json.gz")
    assert memory["schema"] == "daydream.memory/1" and memory["device"] == device
    assert memory["categories"] == ["parameter", "optimizer_state", "input", "temporary", "activation",
                                    "gradient", "autograd_detail", "unknown"]
    assert memory["timeline"] and all(len(row) == 4 for row in memory["timeline"])
    assert {row[1] for row in memory["timeline"]} <= {1, 2, 3, 4}
    return memory


def _daydream(*args, **kwargs):
    return subprocess.run([sys.executable, "-c", "from daydream.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=240, **kwargs)


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r50"
    result = CliRunner().invoke(main, ["profile", "--model", "tbd:resnet50", "--steps", "2", "--warmup", "1",
                                       "--time-steps", "3", "--batch-size", "4", "--out", str(out), "--json"],
                                env={"DAYDREAM_TEST_API_TOKEN": "hunter2-secret-value"})
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_profile_model_writes_a_run_directory(resnet_run):
    out, printed = resnet_run
    assert sorted(p.name for p in out.iterdir()) == ["memory.json.gz", "run.json", "trace.json.gz"]
    run = json.loads((out / "run.json").read_text())
    assert RUN_KEYS <= set(run)
    assert printed["run_dir"] == str(out) and printed["model"] == run["model"] == "tbd:resnet50"
    assert run["batch_size"] == 4 and run["steps"] == 2 and run["device"] == "cpu" and run["amp"] is False
    assert len(run["step_ms"]["plain"]) == 3 and len(run["step_ms"]["profiled"]) == 2
    assert run["plain_step_ms"] == pytest.approx(sorted(run["step_ms"]["plain"])[1]) and run["profiled_step_ms"] > 0
    # The same steps' time inside Optimizer.step(): a part of each step, with and without the profiler.
    opt = run["optimizer_step_ms"]
    assert len(opt["plain"]) == 3 and len(opt["profiled"]) == 2
    assert all(0 < o < t for o, t in zip(opt["plain"] + opt["profiled"], run["step_ms"]["plain"] + run["step_ms"]["profiled"]))
    assert opt["plain_median"] == pytest.approx(sorted(opt["plain"])[1])
    assert len(run["page_faults"]["plain"]) == 3 and "warmup" not in run["page_faults"]  # timed before profiling
    assert run["settings"]["allocator"].startswith("glibc malloc pinned")  # suite runs time compute
    # what the optimizer updates: every parameter of the model, fp32
    assert run["optimizer_parameters"]["elements"] == run["parameters"]
    assert run["optimizer_parameters"]["bytes"] == 4 * run["parameters"]
    cost = run["profiler_event_cost"]
    assert set(cost["us_per_event"]) == {"op", "python", "memory"}
    assert all(v >= 0 for v in cost["us_per_event"].values()) and cost["events_per_step"]["op"] > 0
    assert run["versions"]["torch"] and run["versions"]["python"]
    steps = _profiler_steps(out)
    assert len(steps) == run["profiled_steps"] == 2
    memory = _check_memory(out)
    assert memory["aligned_with_trace"] and memory["base_time_ns"]
    # rows in ns; (ts - base_time_ns) / 1000 falls inside the trace's steps
    last_us = (max(r[0] for r in memory["timeline"]) - memory["base_time_ns"]) / 1000
    assert steps[0]["ts"] <= last_us <= steps[-1]["ts"] + steps[-1]["dur"] + 1
    assert memory["layers"] and all(isinstance(v, int) and v > 0 for v in memory["layers"].values())
    # ResNet-50's convolutions, for the memory model's CPU im2col term, and whether oneDNN has bf16.
    assert memory["convolutions"] and {"input", "weight", "output"} <= set(memory["convolutions"][0])
    assert isinstance(memory["cpu_bf16_onednn"], bool)


def test_profile_records_no_environment(resnet_run):
    out, printed = resnet_run
    blobs = [(out / "run.json").read_bytes(), gzip.decompress((out / "trace.json.gz").read_bytes()),
             gzip.decompress((out / "memory.json.gz").read_bytes()), json.dumps(printed).encode()]
    for blob in blobs:
        assert b"hunter2-secret-value" not in blob and b"DAYDREAM_TEST_API_TOKEN" not in blob
    assert "env" not in json.loads(blobs[0]) and "environment" not in json.loads(blobs[0])


def test_rewriting_a_run_directory_replaces_it_and_never_leaves_temporaries(tmp_path):
    target = tmp_path / "run"
    for content in (b"first", b"second"):
        with rundir.staged(target) as staging:
            (staging / "run.json").write_bytes(content)
    assert (target / "run.json").read_bytes() == b"second"
    with pytest.raises(RuntimeError):
        with rundir.staged(target) as staging:
            (staging / "run.json").write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert (target / "run.json").read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "thesis.tex").write_text("x")
    with pytest.raises(DaydreamError, match="not a daydream run directory"):
        with rundir.staged(tmp_path / "notarun"):
            pass


@pytest.mark.parametrize("args, message", [
    (["--model", "tbd:alexnet"], "unknown TBD model"),
    (["--model", "tbd:vit", "--device", "cuda"], "no CUDA device"),
    ([], "nothing to profile"),
    (["--model", "tbd:vit", "--", "python", "x.py"], "either --model or a command"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    if "cuda" in args:
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(main, ["profile", *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_redact_argv_hides_credential_values():
    argv = ["python", "train.py", "--api-key", "abc", "--hf_token=xyz", "lr=0.1", "PASSWORD=pw", "--epochs", "3"]
    assert rundir.redact_argv(argv) == ["python", "train.py", "--api-key", "<removed>", "--hf_token=<removed>",
                                        "lr=0.1", "PASSWORD=<removed>", "--epochs", "3"]


SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from torch import nn
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    crash_at, code, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    for i in range(steps):
        if i == crash_at:
            raise RuntimeError("deliberate crash at step %d" % i)
        loss = model(torch.randn(8, 16)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    print("script finished", flush=True)
    sys.exit(code)
""")


@pytest.fixture()
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def _window_overrun_us(run_dir: Path) -> float:
    """How far the CPU events that start inside the kept ProfilerSteps run past the last one (us)."""
    events = [e for e in _load_gz(run_dir / "trace.json.gz")["traceEvents"] if e.get("ph") == "X"]
    steps = _profiler_steps(run_dir)
    first, last = min(s["ts"] for s in steps), max(s["ts"] + s["dur"] for s in steps)
    inside = [e["ts"] + e.get("dur", 0) for e in events if e.get("cat") != "gpu_user_annotation"
              and first <= e["ts"] <= last]
    return max(inside) - last


def test_profile_unmodified_script_passes_output_and_exit_code_through(script, tmp_path):
    out = tmp_path / "run"
    # 2 warm-up + 1 profiler warm-up + 3 profiled steps; step 7 stops the profiler (untimed); 8-10 timed.
    result = _daydream("profile", "--steps", "3", "--warmup", "2", "--time-steps", "3", "--out", str(out), "--json",
                       "--", sys.executable, str(script), "-1", "3", "14", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    printed = json.loads(result.stdout)  # --json: exactly one object; the script's stdout went to stderr
    assert printed["exit_code"] == 3 and printed["run_dir"] == str(out)
    assert "script finished" in result.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "script" and run["complete"] is True and run["optimizer_steps"] == 10
    assert run["command"][-4:] == [str(script), "-1", "3", "14"]
    assert len(run["step_ms"]["plain"]) == 3 and len(run["step_ms"]["profiled"]) == 3
    opt = run["optimizer_step_ms"]
    assert len(opt["plain"]) == 3 and len(opt["profiled"]) == 3
    assert all(0 < o < t for o, t in zip(opt["plain"] + opt["profiled"], run["step_ms"]["plain"] + run["step_ms"]["profiled"]))
    assert len(_profiler_steps(out)) == run["profiled_steps"] == 3
    assert run["calibration"]["cpu_bf16_speedup"] and run["profiler_event_cost"]["us_per_event"]["op"] >= 0
    # each plain, warm-up and profiled step's minor page faults, the warm-up steps' time, a fault's cost
    faults = run["page_faults"]
    assert len(faults["plain"]) == 3 and len(faults["profiled"]) == 3 and len(faults["warmup"]) == 1
    assert all(isinstance(f, int) and f >= 0 for f in faults["plain"] + faults["warmup"] + faults["profiled"])
    assert len(run["warmup_step_ms"]) == 1 and run["calibration"]["page_fault_ns"] > 0
    _check_memory(out)
    # Whole steps: the profiler used to be stopped inside the last step's optimizer.step, whose span
    # then ran on through the teardown (~10 ms); now nothing that starts in a kept step outlives it by
    # more than the return from the step hook, and the window is the kept steps.
    from daydream.trace import load
    assert _window_overrun_us(out) < 5000  # the old hook's trace of benchmarks/scripts/tiny_transformer.py: 19,377
    steps = _profiler_steps(out)
    first, last = min(s["ts"] for s in steps), max(s["ts"] + s["dur"] for s in steps)
    trace = load(out)
    assert trace.steps == 3
    assert trace.measured_ms * 1e3 * 3 == pytest.approx(last - first + _window_overrun_us(out), rel=1e-3)


def test_python_frames_enclosing_the_last_kept_step_are_cut_at_its_end():
    """A loop body that holds several optimizer steps (a GAN's) starts inside the kept steps and runs
    past them: its frame is cut at the last kept step's end, so the window is the kept steps. Frames
    inside the steps, frames that started before them and operators are left as they are."""
    events = [
        {"ph": "X", "cat": "python_function", "name": "train.py(40): train_step", "ts": 150.0, "dur": 200.0},
        {"ph": "X", "cat": "python_function", "name": "train.py(10): <module>", "ts": 50.0, "dur": 900.0},
        {"ph": "X", "cat": "python_function", "name": "nn/module.py: forward", "ts": 160.0, "dur": 20.0},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 250.0, "dur": 30.0},
        {"ph": "X", "cat": "python_function", "name": "after.py: later", "ts": 300.0, "dur": 50.0},
    ]
    assert rundir.clip_enclosing_frames(events, 100.0, 300.0) == 1
    assert events[0]["dur"] == 150.0  # cut at 300
    assert [e["dur"] for e in events[1:]] == [900.0, 20.0, 30.0, 50.0]
    # an annotation that starts inside and closes after the last step's end (the Optimizer.step span
    # around the step hook) stays enclosed: the frame is cut at its end instead
    events[0]["dur"] = 200.0
    events.append({"ph": "X", "cat": "user_annotation", "name": "Optimizer.step#SGD.step", "ts": 280.0, "dur": 30.0})
    assert rundir.clip_enclosing_frames(events, 100.0, 300.0) == 1 and events[0]["dur"] == 160.0


@pytest.mark.parametrize("crash", [True, False])
def test_script_that_stops_early_keeps_whole_steps_and_warns(script, tmp_path, crash, capfd):
    """Crashing in step 6 or simply ending after 5 steps: ProfilerStep#1 and #2 are whole, the step the
    exit cut short is dropped; analyze and whatif warn that the run is incomplete."""
    from daydream.analysis import analyze
    from daydream.profile import profile_script
    from daydream.trace import load
    from daydream.whatif import whatif
    out = tmp_path / "run"
    args = ["5", "0", "8"] if crash else ["-1", "0", "5"]
    code, run = profile_script([sys.executable, str(script), *args], steps=5, warmup=2, out_dir=out)
    err = capfd.readouterr().err
    assert code == (1 if crash else 0)
    assert ("deliberate crash" in err) == crash
    assert "stopped after 2 of 5 profiled steps" in err
    assert run["complete"] is False and run["optimizer_steps"] == 5
    assert run["profiled_steps"] == len(_profiler_steps(out)) == len(run["step_ms"]["profiled"]) == 2
    assert run["plain_step_ms"] is None  # no step ran after profiling
    trace = load(out)
    assert trace.steps == 2
    warning = [w for w in trace.warnings if w.startswith("incomplete run")]
    assert warning and warning == [w for w in analyze(trace)["warnings"] if w.startswith("incomplete")]
    assert warning[0] in whatif(trace).to_json()["notes"]
    result = CliRunner().invoke(main, ["analyze", str(out)])
    assert result.exit_code == 0 and "warning: incomplete run" in " ".join(result.stdout.split())


def test_script_that_never_steps_leaves_nothing_and_says_so(tmp_path):
    script = tmp_path / "idle.py"
    script.write_text("print('no training here')\n")
    out = tmp_path / "run"
    result = _daydream("profile", "--out", str(out), "--", sys.executable, str(script), cwd=tmp_path)
    assert result.returncode == 2 and "no training here" in result.stdout
    assert "no run directory written" in result.stderr and not out.exists()


def test_saved_activation_bytes_shrink_under_checkpointing():
    import torch

    import tbd_suite
    from daydream.profile import saved_activation_bytes
    torch.set_num_threads(1)
    sizes = [sum(saved_activation_bytes(tbd_suite.get("vit").build("small", batch_size=4, checkpointing=c)).values())
             for c in (False, True)]
    assert sizes[0] > 0 and sizes[1] < sizes[0] / 2


def test_committed_pair_corpus_is_complete_and_names_valid_whatifs():
    root = REPO / "traces" / "pairs"
    index = json.loads((root / "index.json").read_text())
    assert index["schema"] == "daydream.pairs/1" and index["pairs"]
    assert index["repetitions"] >= 5 and index["rep_steps"] >= 10
    settings = set()
    for pair in index["pairs"]:
        parse_opt(pair["whatif"]["opt"])  # raises on an unknown optimization or parameter
        settings.add(pair["setting"])
        assert len(pair["base_rep_ms"]) == len(pair["optimized_rep_ms"]) == index["repetitions"]
        lo, hi = pair["speedup_ci"]
        assert lo <= pair["measured_speedup"] <= hi and pair["outside_noise"] == (lo > 1 or hi < 1)
        for key in ("base", "optimized"):
            run_dir = root / pair[key]
            assert {"trace.json.gz", "run.json"} <= {p.name for p in run_dir.iterdir()}
            run = json.loads((run_dir / "run.json").read_text())
            assert run["profiled_steps"] == index["steps"]
        base, opt = (json.loads((root / pair[k] / "run.json").read_text()) for k in ("base", "optimized"))
        if pair["setting"] == "batch-size":
            assert opt["batch_size"] == 2 * base["batch_size"]
        if pair["setting"] == "amp":
            assert base["amp"] is False and opt["amp"] == "bf16"
        if pair["setting"].startswith("quantize"):
            assert opt["settings"]["quantize"] and not base["settings"]["quantize"]
            assert opt["settings"]["inference"] == base["settings"]["inference"] == (pair["setting"] == "quantize-inference")
    from daydream.profile.capture import SETTINGS
    assert settings == set(SETTINGS)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 16e6


def test_fresh_cpu_run_replays_within_two_percent(resnet_run):
    """The core's replay on a trace recorded here and now (issue: fresh CPU traces replay within 2%)."""
    from daydream.sim import simulate
    from daydream.trace import load
    out, _ = resnet_run
    trace = load(out)
    assert trace.steps == 2
    replay = simulate(build_graph(trace)).per_step_ms
    assert abs(replay - trace.measured_ms) / trace.measured_ms <= 0.02


def test_plain_step_time_is_a_median_and_overhead_never_negative():
    summary = rundir.summarize_steps([10.0, 11.0, 50.0, 10.5], [13.0, 12.0, 14.0])
    assert summary["plain_step_ms"] == 10.75  # one step slowed by another process moves nothing
    assert summary["profiled_step_ms"] == 13.0
    assert summary["profiler_overhead_pct"] == pytest.approx(100 * 2.25 / 10.75, abs=0.01)
    noisy = rundir.summarize_steps([12.0, 12.5, 13.0], [11.0, 11.5, 12.0])
    assert noisy["profiler_overhead_pct"] == 0.0 and noisy["plain_step_ms_median"] == 12.5
    assert rundir.summarize_steps([], [5.0])["plain_step_ms"] is None


def test_plain_step_time_of_a_gan_is_the_profiled_windows_mix_of_step_kinds():
    """Steps of two kinds (kind 1: a generator update inside the critic step): the window holds 4 of
    kind 0 and 1 of kind 1, so the plain step is 0.8 x median(kind 0) + 0.2 x median(kind 1); one
    kind missing among the plain steps, or a single kind, keeps the plain median."""
    plain = [5.0, 3.0, 3.2, 2.8, 3.1, 5.4, 3.0, 2.9, 3.3, 3.0]
    kinds = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    s = rundir.summarize_steps(plain, [6.0, 9.0, 5.0, 5.0, 5.1], kinds, [0, 1, 0, 0, 0])
    assert s["plain_step_ms"] == pytest.approx(0.8 * 3.0 + 0.2 * 5.2)
    assert s["plain_step_ms_median"] == 3.05 and s["step_kinds"]["1"]["plain_steps"] == 2
    assert rundir.summarize_steps(plain, [6.0, 9.0], [0] * 10, [0, 1])["plain_step_ms"] == 3.05
    assert "step_kinds" not in rundir.summarize_steps(plain, [5.0] * 5, kinds, [0] * 5)


def test_profiler_cost_carries_over_to_the_next_segments_of_its_thread(resnet_run):
    """A cost larger than its segment moves on to the following segments of the same thread
    (removable_ns); nothing is taken from a task beyond its duration."""
    import numpy as np

    from daydream.transform import profiler_cost as overhead
    from daydream.trace import load
    graph = build_graph(load(resnet_run[0]))
    dur = graph.column("dur")
    cpu = np.flatnonzero((graph.column("kind") == 0) & (dur > 0))
    thread = graph.column("resource")[cpu[0]]
    mine = cpu[graph.column("resource")[cpu] == thread]
    mine = mine[np.argsort(graph.column("obs_start")[mine])][:3]
    cost = np.zeros(graph.n_tasks)
    cost[mine[0]] = dur[mine[0]] + dur[mine[1]] / 2  # more than the first segment holds
    cut = overhead.removable_ns(graph, cost)
    assert cut[mine[0]] == dur[mine[0]] and cut[mine[1]] == pytest.approx(dur[mine[1]] / 2)
    assert cut[mine[2]] == 0 and cut.sum() == pytest.approx(cost.sum())
    assert (cut <= dur).all()


def test_unprofiled_step_time_in_analyze_and_whatif(resnet_run):
    """unprofiled_ms: the replay with the run's calibrated per-event cost removed; below the profiled
    replay by the cost of the events of a step, and absent (null) for a trace without a calibration."""
    from daydream.analysis import analyze
    from daydream.transform import profiler_cost as overhead
    from daydream.sim import simulate
    from daydream.trace import load
    from daydream.whatif import whatif
    out, run = resnet_run
    trace = load(out)
    result = whatif(trace, ["fused-optimizer"]).to_json()
    graph = build_graph(trace)
    cost = overhead.event_cost_of(trace, graph)
    # A fresh run times its optimizer steps; whether they split the cost depends on the steps' timing
    # noise, so three outcomes are valid here, each named: the split; one cost for the step, with a
    # note (a negative part, or an optimizer rate out of band); the calibration as it is, with a note
    # (the step medians themselves out of band, as on a host loaded by the parallel test workers).
    split = cost.outside_model_us is not None
    one_cost = cost.source == "run" and "one cost for every event" in (cost.note or "")
    calibration = cost.source == "calibration" and "the calibration is used as it is" in (cost.note or "")
    assert split or one_cost or calibration, cost
    assert "optimizer_step_ms" in trace.run
    removed_ms = overhead.profiler_cost_ns(graph, cost.us_per_event, cost.outside_model_us)[
        graph.column("in_window")].sum() / 1e6 / trace.steps
    assert removed_ms > 0
    # No more than the events' cost comes off (a cost larger than its thread has left is cut; 2%: backlog
    # carried in from the segments before the window).
    assert 0 < result["unprofiled_ms"] < result["replay_ms"] <= result["unprofiled_ms"] + removed_ms * 1.02
    assert 0 < result["predicted_unprofiled_ms"] < result["predicted_ms"]
    # A cost small enough never to be cut comes off whole: the replay shrinks by exactly the events' cost.
    small = {"op": 0.01, "python": 0.005, "memory": 0.02}
    small_ms = overhead.profiler_cost_ns(graph, small)[graph.column("in_window")].sum() / 1e6 / trace.steps
    assert simulate(overhead.without_profiler(graph, overhead.EventCost(small, "calibration", 1.0))).per_step_ms == pytest.approx(
        result["replay_ms"] - small_ms, rel=0.002)
    assert analyze(trace)["unprofiled_ms"] == pytest.approx(result["unprofiled_ms"], rel=1e-6)
    plain = load(REPO / "tests" / "data" / "cpu_resnet50_sleeping_thread.json.gz")
    assert whatif(plain).to_json()["unprofiled_ms"] is None and analyze(plain)["unprofiled_ms"] is None


def test_profiler_cost_is_scaled_to_the_runs_own_overhead_on_cpu_only():
    """On a CPU-only run every event costs the same, so that a step's events cost the run's profiled
    minus plain medians (`scale`: that against the calibration's total); medians that imply a factor outside
    RUN_SCALE_BAND, and GPU traces, keep the calibration (the former with a note)."""
    from daydream.trace import load
    from daydream.transform import profiler_cost as overhead
    trace = load(REPO / "traces" / "pairs" / "cpu" / "llama" / "base")
    run = trace.run
    cost = overhead.event_cost_of(trace)
    calibrated = overhead.calibrated_cost(run)
    n = overhead.events_per_step(trace)
    assert cost.source == "run" and n["op"] > 100
    median_step_ms = cost.us_per_event["op"] * overhead.events_in_median_step(trace) / 1e3
    assert median_step_ms == pytest.approx(run["profiled_step_ms_median"] - run["plain_step_ms_median"], rel=1e-9)
    charged_ms = cost.us_per_event["op"] * sum(n.values()) / 1e3
    assert cost.us_per_event["op"] == cost.us_per_event["memory"] == cost.us_per_event["python"] > 0
    assert cost.scale == pytest.approx(charged_ms / (sum(calibrated[k] * n[k] for k in overhead.KINDS) / 1e3))
    # A plain median slower than the profiled one (noise on a loaded host): the calibration, said so.
    trace.run = {**run, "plain_step_ms_median": run["profiled_step_ms_median"] + 1.0}
    noisy = overhead.event_cost_of(trace)
    assert noisy.source == "calibration" and noisy.us_per_event == calibrated and "outside 0.25-4x" in noisy.note
    # A GPU trace: its step hides CPU cost behind the GPU, so the calibration as it is.
    gpu = load(SHARED / "tracelens" / "gaunernst_bert-small-uncased_h100.json.gz")
    gpu.run = dict(run)
    assert overhead.event_cost_of(gpu).source == "calibration" and overhead.event_cost_of(gpu).note is None
    trace.run = {}
    assert overhead.event_cost_of(trace) is None


def test_profiler_cost_splits_between_forward_backward_and_the_rest():
    """With the optimizer steps timed with and without the profiler (run.json optimizer_step_ms), every
    event outside forward and backward costs the optimizer's difference over the optimizer spans'
    events, and forward and backward events the remainder of the step difference over theirs, so a
    median step still pays the step difference; each task is charged by its phase. A negative part
    (noise) keeps one cost, with a note; without the graph there is nothing to split."""
    from daydream.trace import load
    from daydream.transform import profiler_cost as overhead
    trace = load(REPO / "traces" / "pairs" / "cpu" / "llama" / "base")
    graph = build_graph(trace)
    run = {k: v for k, v in trace.run.items() if k != "optimizer_step_ms"}
    assert trace.run["optimizer_step_ms"]["plain_median"] > 0  # the committed corpus timed its optimizer steps
    assert overhead.event_cost_of(trace, graph).outside_model_us > 0  # and its cost splits
    diff = run["profiled_step_ms_median"] - run["plain_step_ms_median"]
    trace.run = run
    uniform = overhead.event_cost_of(trace, graph)
    assert uniform.outside_model_us is None  # without the optimizer's timings: one cost
    n_opt = overhead.events_in_median_step(trace, only_optimizer=True)
    assert 100 < n_opt < overhead.events_in_median_step(trace)
    trace.run = {**run, "optimizer_step_ms": {"plain_median": 1.0, "profiled_median": 1.0 + diff / 8}}
    split = overhead.event_cost_of(trace, graph)
    assert overhead.event_cost_of(trace).outside_model_us is None
    assert split.outside_model_us == pytest.approx(diff / 8 * 1e3 / n_opt)
    assert split.us_per_event["op"] > split.outside_model_us > 0
    assert split.to_json()["us_per_event_outside_model"] == pytest.approx(split.outside_model_us, abs=1e-4)
    # Charged by phase: the two rates on their own tasks, and a window step pays about the step
    # difference (exactly for the median step; the window's steps differ a little).
    model = overhead.model_task_mask(graph)
    both = overhead.profiler_cost_ns(graph, split.us_per_event, split.outside_model_us)
    counts = overhead.profiler_cost_ns(graph, dict.fromkeys(overhead.KINDS, 1e-3))
    assert model.any() and (~model).any()
    assert both[model] == pytest.approx(counts[model] * 1e3 * split.us_per_event["op"])
    assert both[~model] == pytest.approx(counts[~model] * 1e3 * split.outside_model_us)
    window = graph.column("in_window")
    assert both[window].sum() / 1e6 / trace.steps == pytest.approx(diff, rel=0.05)
    # The optimizer timed slower with the profiler than the whole step grew: one cost, said so.
    trace.run = {**run, "optimizer_step_ms": {"plain_median": 1.0, "profiled_median": 1.0 + 5 * diff}}
    noisy = overhead.event_cost_of(trace, graph)
    assert noisy.outside_model_us is None and noisy.us_per_event == uniform.us_per_event
    assert "one cost for every event" in noisy.note
    trace.run = {**run, "optimizer_step_ms": {"plain_median": 1.0, "profiled_median": 0.9}}
    assert "one cost for every event" in overhead.event_cost_of(trace, graph).note
    # An optimizer rate above 4x the calibration's mean per event is noise too, though the rest of
    # the step could pay for it: with the calibration at a quarter (the step's scale still inside
    # the band), 0.6 us an optimizer event is 5x it.
    cheap = {k: v / 4 for k, v in run["profiler_event_cost"]["us_per_event"].items()}
    calibration = {**run["profiler_event_cost"], "us_per_event": cheap}
    calibration.pop("us_per_event_wall", None)
    trace.run = {**run, "profiler_event_cost": calibration,
                 "optimizer_step_ms": {"plain_median": 1.0, "profiled_median": 1.0 + 0.6 * n_opt / 1e3}}
    high = overhead.event_cost_of(trace, graph)
    assert high.source == "run" and high.outside_model_us is None and "above 4x the calibrated" in high.note
    trace.run = {**trace.run, "optimizer_step_ms": {"plain_median": 1.0, "profiled_median": 1.0 + 0.3 * n_opt / 1e3}}
    assert overhead.event_cost_of(trace, graph).outside_model_us == pytest.approx(0.3)


def test_validate_warns_when_base_and_optimized_look_unrelated():
    """A real pair validates without a warning; two different models (by run.json and by their
    operator mixes) are flagged, in --json and in the human output."""
    from daydream.validate import validate
    pairs = REPO / "traces" / "pairs" / "cpu"
    assert validate(pairs / "resnet50" / "base", pairs / "resnet50" / "amp", ["amp"])["warnings"] == []
    warnings = validate(pairs / "resnet50" / "base", pairs / "bert" / "base", [])["warnings"]
    assert any("model differs: tbd:resnet50 vs tbd:bert" in w for w in warnings)
    assert any("operator mixes per step are" in w for w in warnings)
    result = CliRunner().invoke(main, ["validate", str(pairs / "llama" / "base"), str(pairs / "transformer" / "base")])
    assert result.exit_code == 0 and "look unrelated" in " ".join(result.stdout.split())


def test_capture_never_defaults_into_the_shipped_pairs():
    from daydream.cli.capture import capture_command
    from daydream.profile.capture import default_pairs_dir
    out = default_pairs_dir()
    assert out.parts[0] == "runs" and out.name.startswith("pairs-")
    assert next(p for p in capture_command.params if p.name == "out").default is None


def test_gradient_accumulation_counts_each_parameter_once(tmp_path):
    """A script that accumulates gradients over 4 micro-batches records 4 AccumulateGrad events per
    parameter and step. The optimizer's own parameter bytes go to run.json, and without them the
    step's AccumulateGrad sequence, 4 identical repeats, counts once; so fused-optimizer prices one
    update of the parameters (it priced four, above the for-loop's own time: "no change")."""
    import numpy as np

    from daydream.opts import _structure as C
    from daydream.trace import load
    from daydream.whatif import whatif
    out = tmp_path / "run"
    result = _daydream("profile", "--steps", "3", "--warmup", "2", "--time-steps", "3", "--out", str(out), "--json",
                       "--", sys.executable, str(REPO / "benchmarks" / "scripts" / "mlp_accum.py"),
                       "--steps", "12", "--width", "128", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = json.loads((out / "run.json").read_text())
    width = 128
    params = 256 * width + width + width * width + width + width * 10 + 10
    assert run["optimizer_parameters"] == {"tensors": 6, "elements": params, "bytes": 4 * params}
    trace = load(out)
    graph = build_graph(trace)
    assert C.parameter_bytes(graph, trace.run) == (4 * params, "the optimizer's parameters (run.json)")
    trace.run = {k: v for k, v in run.items() if k != "optimizer_parameters"}
    assert C.parameter_bytes(graph, trace.run) == (4 * params, "AccumulateGrad shapes")
    assert C._repeats(np.array([3, 1, 3, 1, 3, 1])) == 3 and C._repeats(np.array([5, 5, 5])) == 1
    assert C._repeats(np.array([3, 1, 2])) == 1
    w = whatif(load(out), ["fused-optimizer"])
    assert w.predicted_unprofiled_ms < w.unprofiled_ms


def test_optimizer_parameters_counts_what_the_step_updates_once():
    """Frozen parameters stay in a fine-tuning optimizer's groups but its step skips them; a
    parameter two optimizers share is one tensor."""
    import torch
    from daydream.profile.rundir import optimizer_parameters
    frozen, head, shared = torch.nn.Linear(8, 8), torch.nn.Linear(8, 2), torch.nn.Parameter(torch.zeros(5))
    frozen.requires_grad_(False)
    a = torch.optim.SGD([*frozen.parameters(), *head.parameters(), shared], lr=0.1)
    b = torch.optim.SGD([shared], lr=0.1)
    # before any backward: what requires a gradient
    assert optimizer_parameters([a, b]) == {"tensors": 3, "elements": 8 * 2 + 2 + 5, "bytes": 4 * 23}
    (head(frozen(torch.ones(1, 8))).sum()).backward()
    # after it: what holds a gradient (the shared parameter took no part in the loss)
    assert optimizer_parameters([a, b]) == {"tensors": 2, "elements": 18, "bytes": 72}


def test_optimizer_clock_times_a_wrapper_optimizer_once_and_whole():
    """A wrapper optimizer whose step() runs an inner optimizer's step (lookahead, LARS-style
    wrappers): the outermost step is timed, its own work included, and counted once."""
    import time
    import torch
    from daydream.profile.rundir import OptimizerClock

    class Wrapper(torch.optim.Optimizer):
        def __init__(self, inner):
            self.inner = inner
            super().__init__(inner.param_groups, {})

        @torch.no_grad()
        def step(self, closure=None):
            self.inner.step()
            time.sleep(0.02)  # the wrapper's own work, after the inner step

    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = Wrapper(torch.optim.SGD([p], lr=0.1))
    with OptimizerClock() as clock:
        opt.step()
        ms = clock.take()
        assert clock.depth == 0
    assert 20 <= ms < 1000


def test_memory_amp_finds_the_loss_on_the_runs_own_clock(resnet_run):
    """A run's memory rows share the trace's clock (base_time_ns): the memory amp model finds its
    cross-entropy loss and the loss's backward there and keeps what they make at 4 bytes."""
    from daydream.memory import memory
    out, _ = resnet_run
    report = memory(out, ["amp"])
    assert report.measured.fp32 is not None and report.measured.fp32.max() > 0
    assert any("made inside autocast's fp32 ops" in n for n in report.model_notes)
    assert memory(out).measured.fp32 is None  # found only for amp


def test_a_script_whose_own_steps_faulted_pages_the_profiler_stopped_is_said_so():
    """glibc's malloc hands large freed blocks back to the kernel until a large enough free raises its
    thresholds, which the profiler's buffers do: a script's warm-up steps then fault thousands of pages
    a step that its plain steps after profiling do not (a user's frozen-backbone CNN: 9,548 vs 1 a
    step, 43.5 vs 31.2 ms). Every figure of such a run carries a warning with the measured cost; a
    run without the shift, or without the counts, carries none."""
    from daydream.trace import _allocator_shift
    run = {"page_faults": {"warmup_median": 9548.0, "plain_median": 1.0, "plain": [1], "warmup": [9548]},
           "warmup_step_ms": [46.9, 43.5, 40.4], "plain_step_ms": 31.2107, "calibration": {"page_fault_ns": 1230}}
    text = _allocator_shift(run)
    assert "9548 minor page faults each and 43.50 ms" in text and "after profiling 1 and 31.21 ms" in text
    assert "~11.7 ms a step at the 1.23 us a fault" in text and "MALLOC_TRIM_THRESHOLD_" in text
    assert "~" not in _allocator_shift({**run, "calibration": {}})  # no measured cost: no price
    assert _allocator_shift({**run, "page_faults": {"warmup_median": 900.0, "plain_median": 0.0}}) is None
    assert _allocator_shift({**run, "page_faults": {"warmup_median": 9548.0, "plain_median": 1500.0}}) is None
    assert _allocator_shift({k: v for k, v in run.items() if k != "warmup_step_ms"}) is None
    assert _allocator_shift({"page_faults": "many"}) is None
