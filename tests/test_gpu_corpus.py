"""benchmarks/gpu_corpus.sh dry-runs on CPU: the gate, the suite pairs, the quantize pair, the
index and the per-model archives, with tiny sizes."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    env = {**os.environ, "OUT": str(out), "MODELS": "transformer", "SETTINGS": "batch-size,amp-fp16",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_corpus.sh"), "--device", "cpu"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, proc.stdout


def test_gate_passes_on_cpu(dry_run):
    out, _ = dry_run
    check = json.loads((out / "cupti_check.json").read_text())
    assert check["matmul_cpu_ops"] >= 10 and check["kernels"] == 0


def test_index_lists_the_pairs_with_their_opts(dry_run):
    out, stdout = dry_run
    index = json.loads((out / "index.json").read_text())
    assert index["dry_run"] is True
    opts = {p["name"]: p["whatif"]["opt"] for p in index["pairs"]}
    # fp16 autocast is skipped on the CPU, and said so
    assert opts == {"cpu/transformer/batch-size": "batch-size:factor=2",
                    "cpu/linear-stack/int8": "quantize:dtype=int8"}
    assert "cpu/transformer/amp-fp16: skipped" in stdout
    for p in index["pairs"]:
        assert p["base_step_ms"] > 0 and p["optimized_step_ms"] > 0


def test_archives_hold_steady_step_traces(dry_run):
    out, _ = dry_run
    with tarfile.open(out / "pairs_cpu_transformer.tar.gz") as tar:
        names = set(tar.getnames())
    for setting in ("base", "batch-size"):
        assert f"cpu/transformer/{setting}/trace.json.gz" in names
        assert f"cpu/transformer/{setting}/run.json" in names
    with tarfile.open(out / "pairs_cpu_linear-stack.tar.gz") as tar:
        run = json.load(tar.extractfile("cpu/linear-stack/quantize-int8/run.json"))
    assert run["complete"] and run["profiled_steps"] == 1


def test_unknown_argument_is_refused(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_corpus.sh"), "--bogus"],
                          env={**os.environ, "OUT": str(tmp_path)}, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown argument --bogus" in proc.stderr
