"""`daydream validate` and daydream.validate: the contract keys, the error formula, bad input."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from daydream.cli import main
from daydream.opts.dataloader import HANDOFF_NS, WORKER_INTERFERENCE
from daydream.validate import validate

KEYS = {"optimizations", "base_measured_ms", "optimized_measured_ms", "predicted_ms", "measured_speedup",
        "predicted_speedup", "error_pct"}


def _cpu_trace(path, data_us: float, compute_us: float):
    events = []
    for s in range(2):
        t0 = s * (data_us + compute_us)
        events.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{s}", "pid": 1, "tid": 1,
                       "ts": t0, "dur": data_us + compute_us, "args": {}})
        if data_us:
            events.append({"ph": "X", "cat": "cpu_op", "name": "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__",
                           "pid": 1, "tid": 1, "ts": t0, "dur": data_us, "args": {}})
        events.append({"ph": "X", "cat": "cpu_op", "name": "aten::conv2d", "pid": 1, "tid": 1, "ts": t0 + data_us,
                       "dur": compute_us, "args": {}})
    path.write_text(json.dumps({"schemaVersion": 1, "traceEvents": events}))
    return path


# the hand-off, the 400 us of compute, and the workers' interference with it (600 us of loading)
PREDICTED_MS = (HANDOFF_NS + 400e3 + WORKER_INTERFERENCE * 600e3) / 1e6


@pytest.fixture
def pair(tmp_path):
    return _cpu_trace(tmp_path / "base.json", 600, 400), _cpu_trace(tmp_path / "opt.json", 0, 550)


def test_validate_api_keys_and_error(pair):
    out = validate(str(pair[0]), str(pair[1]), ["dataloader:workers=2"])
    assert KEYS <= set(out)
    assert out["base_measured_ms"] == pytest.approx(1.0)
    assert out["optimized_measured_ms"] == pytest.approx(0.55)
    assert out["predicted_ms"] == pytest.approx(PREDICTED_MS)
    assert out["error_pct"] == pytest.approx(100 * abs(PREDICTED_MS - 0.55) / 0.55, rel=1e-4)
    assert out["measured_speedup"] == pytest.approx(1.0 / 0.55, rel=1e-5)
    assert out["predicted_speedup"] == pytest.approx(1.0 / PREDICTED_MS, rel=1e-5)
    assert out["optimizations"] == [{"name": "dataloader", "params": {"workers": 2, "prefetch": 2, "cores": 0, "load_ms": 0.0}}]


def test_validate_cli_json(pair):
    res = CliRunner().invoke(main, ["validate", str(pair[0]), str(pair[1]), "--opt", "dataloader:workers=2",
                                    "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert KEYS <= set(data)
    assert data["error_pct"] == pytest.approx(100 * abs(PREDICTED_MS - 0.55) / 0.55, abs=1e-3)


def test_validate_cli_table(pair):
    res = CliRunner().invoke(main, ["validate", str(pair[0]), str(pair[1]), "--opt", "dataloader:workers=2"])
    assert res.exit_code == 0, res.output
    assert "error" in res.output


@pytest.mark.parametrize("args", [
    ["missing.json", "{opt}", "--opt", "dataloader"],
    ["{base}", "missing.json", "--opt", "dataloader"],
    ["{base}", "{opt}", "--opt", "no-such-opt"],
    ["{base}", "{opt}", "--opt", "ddp:world_size=0"],
    ["{base}", "{opt}", "--opt", "dataloader:threads=3"],
])
def test_validate_bad_input_exits_2(pair, tmp_path, args):
    args = [a.format(base=pair[0], opt=pair[1]) for a in args]
    res = CliRunner().invoke(main, ["validate", *args, "--json"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert res.stdout.strip() == ""


def test_validate_truncated_trace_exits_2(pair, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"traceEvents": [')
    res = CliRunner().invoke(main, ["validate", str(pair[0]), str(bad), "--opt", "dataloader", "--json"])
    assert res.exit_code == 2


def test_validate_compares_the_plain_steps_where_both_runs_timed_them(pair):
    """Two `daydream profile` runs carry plain (unprofiled) step medians: the predicted unprofiled
    speedup is applied to BASE's and compared with OPTIMIZED's. Plain trace files have none."""
    from pathlib import Path
    from daydream.trace import load
    from daydream.whatif import whatif
    runs = Path(__file__).resolve().parents[1] / "traces" / "pairs" / "cpu" / "llama"
    out = validate(str(runs / "base"), str(runs / "fused-optimizer"), ["fused-optimizer"])
    plain = out["without_profiler"]
    base, opt = load(runs / "base").run["plain_step_ms"], load(runs / "fused-optimizer").run["plain_step_ms"]
    w = whatif(load(runs / "base"), ["fused-optimizer"])
    assert plain["base_plain_ms"] == pytest.approx(base) and plain["optimized_plain_ms"] == pytest.approx(opt)
    assert plain["predicted_speedup"] == pytest.approx(w.unprofiled_ms / w.predicted_unprofiled_ms, rel=1e-5)
    assert plain["predicted_ms"] == pytest.approx(base / plain["predicted_speedup"], rel=1e-5)
    assert plain["error_pct"] == pytest.approx(100 * abs(plain["predicted_ms"] - opt) / opt, rel=1e-3)
    res = CliRunner().invoke(main, ["validate", str(runs / "base"), str(runs / "fused-optimizer"),
                                    "--opt", "fused-optimizer"])
    assert res.exit_code == 0 and "predicted, no profiler" in res.output and "without the profiler" in res.output
    assert validate(str(pair[0]), str(pair[1]), ["dataloader:workers=2"])["without_profiler"] is None
