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
                                       "--batch-size", "4", "--out", str(out), "--json"],
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
    assert len(run["step_ms"]["plain"]) == 2 and len(run["step_ms"]["profiled"]) == 2
    assert run["plain_step_ms"] > 0 and run["profiled_step_ms"] > 0
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
    crash_at, code = int(sys.argv[1]), int(sys.argv[2])
    for i in range(8):
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


def test_profile_unmodified_script_passes_output_and_exit_code_through(script, tmp_path):
    out = tmp_path / "run"
    result = _daydream("profile", "--steps", "3", "--warmup", "2", "--out", str(out), "--json", "--",
                       sys.executable, str(script), "-1", "3", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    printed = json.loads(result.stdout)  # --json: exactly one object; the script's stdout went to stderr
    assert printed["exit_code"] == 3 and printed["run_dir"] == str(out)
    assert "script finished" in result.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "script" and run["complete"] is True and run["optimizer_steps"] == 6
    assert run["command"][-3:] == [str(script), "-1", "3"]
    assert len(run["step_ms"]["plain"]) == 1 and len(run["step_ms"]["profiled"]) == 3
    assert len(_profiler_steps(out)) == run["profiled_steps"] == 3
    _check_memory(out)


def test_crashing_script_still_leaves_its_trace(script, tmp_path, capfd):
    from daydream.profile import profile_script
    out = tmp_path / "run"
    code, run = profile_script([sys.executable, str(script), "5", "0"], steps=5, warmup=2, out_dir=out)
    err = capfd.readouterr().err
    assert code == 1
    assert "deliberate crash" in err and "stopped after 2 of 5 profiled steps" in err
    assert run["complete"] is False and run["optimizer_steps"] == 5
    assert len(_profiler_steps(out)) >= 2


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
    settings = set()
    for pair in index["pairs"]:
        parse_opt(pair["whatif"]["opt"])  # raises on an unknown optimization or parameter
        settings.add(pair["setting"])
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
    assert settings == {"amp", "fused-optimizer", "dataloader", "activation-checkpointing", "batch-size"}
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 12e6


def test_fresh_cpu_run_replays_within_two_percent(resnet_run):
    """The core's replay on a trace recorded here and now (issue: fresh CPU traces replay within 2%)."""
    from daydream.sim import simulate
    from daydream.trace import load
    out, _ = resnet_run
    trace = load(out)
    assert trace.steps == 2
    replay = simulate(build_graph(trace)).per_step_ms
    assert abs(replay - trace.measured_ms) / trace.measured_ms <= 0.02
