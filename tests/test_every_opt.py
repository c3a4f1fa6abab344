"""Every optimization (`daydream opts`, default parameters) x every trace we have: a prediction, or
a refusal listed in REFUSALS with its reason. Anything else fails: an internal error, a refusal
not in the table, or a table row that no longer refuses.

Traces: every shared trace (/work/shared/traces: training, inference and benchmark traces, the
8-rank DLRM archive), the committed CPU runs recorded by `daydream profile` (traces/pairs/cpu/*/
base) and one run profiled here from a tiny script.
"""
from __future__ import annotations

import functools
import json
import math
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, SHARED
from daydream.errors import DaydreamError
from daydream.opts.params import SPECS
from daydream.trace import load
from daydream.whatif import whatif

OPTS = list(SPECS)
SHARED_TRACES = {str(p.relative_to(SHARED)).removesuffix(".json.gz").removesuffix(".tar.gz"): p
                 for p in sorted(SHARED.glob("*/*")) if p.name.endswith((".json.gz", ".tar.gz"))}
CPU_RUNS = {f"pairs/cpu/{p.parent.name}": p for p in sorted((REPO / "traces" / "pairs" / "cpu").glob("*/base"))}
PROFILED = "profiled/tiny_mlp"
TRACES = [*SHARED_TRACES, *CPU_RUNS, PROFILED]

NO_BACKWARD = ("hta/alexnet_a100|hta/simple_add_a100|hta/triton_example|hta/cuda_event_sync_a100"
               "|hta/cuda_event_sync_multi_stream_a100|hta/cpu_only_rank34|tracelens/.*(bert|Qwen).*")
NO_SHAPES = "param/(linear|resnet)_2080ti"
CPU_ONLY = "hta/cpu_only_rank34|pairs/cpu/.*|" + PROFILED

# (trace id regex, optimization, message regex, why the refusal is right)
REFUSALS = [
    (NO_BACKWARD, "ddp", "no gradients found",
     "inference or benchmark trace: no backward pass, so no gradients to all-reduce"),
    (NO_SHAPES, "ddp", "gradient sizes are not recorded",
     "training trace recorded without record_shapes: gradient bucket sizes unknown"),
    (f"{NO_BACKWARD}|{NO_SHAPES}|param/dlrm_ddp_8rank_v100", "fsdp", "parameter sizes are not recorded",
     "no AccumulateGrad shapes, no DDP all-reduce sizes and no run.json: parameter sizes unknown"),
    (CPU_ONLY, "cuda-graphs", "no GPU work", "CPU-only trace: nothing to capture in a CUDA graph"),
    (CPU_ONLY, "gpu", "no GPU work", "CPU-only trace: no GPU work to move to another device"),
    (".*", "straggler", "needs a multi-rank job",
     "daydream.predict simulates one graph; the coupled job path (whatif on a job, tests/test_job*) runs it"),
    (".*", "world-size", "scales a multi-rank job",
     "daydream.predict simulates one graph; the coupled job path (whatif on a job, tests/test_job*) runs it"),
    (".*", "network", "give bandwidth=GBPS or interconnect",
     "network has no default target: the user names a bandwidth or an interconnect"),
]

TINY_SCRIPT = textwrap.dedent("""
    import torch
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for i in range(6):
        model(torch.randn(8, 16)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
""")


def expected_refusal(trace_id: str, opt: str):
    rows = [r for r in REFUSALS if r[1] == opt and re.fullmatch(r[0], trace_id)]
    assert len(rows) <= 1, f"{trace_id} x {opt}: more than one table row"
    return rows[0] if rows else None


@pytest.fixture(scope="session")
def profiled_run(tmp_path_factory):
    """A run recorded by `daydream profile` from an unmodified script (about 4 s)."""
    work = tmp_path_factory.mktemp("tiny")
    (work / "train.py").write_text(TINY_SCRIPT)
    out = work / "run"
    result = subprocess.run([sys.executable, "-c", "from daydream.cli import main; main()", "profile",
                             "--steps", "3", "--warmup", "1", "--out", str(out), "--json", "--",
                             sys.executable, str(work / "train.py")], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    return out


@functools.cache
def _load(path):
    return load(path)


def _trace(request, trace_id: str):
    if trace_id == PROFILED:
        return _load(request.getfixturevalue("profiled_run"))
    path = SHARED_TRACES.get(trace_id) or CPU_RUNS.get(trace_id)
    if path is None or not path.exists():
        pytest.skip(f"{trace_id} not present")
    return _load(path)


def test_the_list_is_what_daydream_opts_prints():
    from click.testing import CliRunner
    from daydream.cli import main
    result = CliRunner().invoke(main, ["opts", "--json"])
    assert result.exit_code == 0
    assert [o["name"] for o in json.loads(result.stdout)["optimizations"]] == OPTS


def test_every_shared_trace_is_in_the_matrix():
    assert len(SHARED_TRACES) == len([p for p in SHARED.glob("*/*") if p.name.endswith((".json.gz", ".tar.gz"))])


def test_every_table_row_is_used():
    for row in REFUSALS:
        assert any(re.fullmatch(row[0], t) for t in TRACES), row


@pytest.mark.parametrize("opt", OPTS)
@pytest.mark.parametrize("trace_id", TRACES)
def test_prediction_or_listed_refusal(request, trace_id, opt):
    trace = _trace(request, trace_id)
    row = expected_refusal(trace_id, opt)
    if row is not None:
        with pytest.raises(DaydreamError, match=row[2]):
            whatif(trace, [opt])
        return
    result = whatif(trace, [opt])
    assert math.isfinite(result.predicted_ms) and result.predicted_ms > 0
    if trace_id != PROFILED:  # a recorded trace replays exactly (docs/model.md, "Delays")
        assert result.replay_ms == pytest.approx(trace.measured_ms, rel=1e-9)
