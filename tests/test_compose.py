"""Optimizations compose in any order: every ordered pair predicts, or refuses for a reason listed
in PAIR_REFUSALS. Any other error, or a listed pair that no longer refuses, fails.
(Each optimization alone on every trace: tests/test_every_opt.py.)"""
from __future__ import annotations

import itertools
import math

import pytest

from conftest import REPO, shared, single_graph_opts
from daydream.errors import DaydreamError
from daydream.trace import load
from daydream.whatif import whatif

OPTS = single_graph_opts()  # gpu's default target is the H100

# (optimizations in order) -> (message regex, why the refusal is right)
PAIR_REFUSALS = {
    ("fsdp", "ddp"): ("collective kernels without a recorded world size",
                      "ddp over an already sharded run: fsdp's collectives have no recorded group to rescale"),
}
CPU_REFUSALS = {
    ("cuda-graphs",): ("no GPU work", "CPU run: nothing to capture in a CUDA graph"),
    ("gpu",): ("no GPU work", "CPU run: no GPU work to move"),
}


@pytest.fixture(scope="module")
def gpu_trace():
    return load(shared("hta/minitoy_train_mi250.json.gz"))


@pytest.fixture(scope="module")
def cpu_run():
    path = REPO / "traces" / "pairs" / "cpu" / "transformer" / "base"
    if not path.exists():
        pytest.skip("CPU pair corpus not present")
    return load(path)


def _check(trace, opts, refusals):
    expected = refusals.get(tuple(opts))
    if expected is not None:
        with pytest.raises(DaydreamError, match=expected[0]):
            whatif(trace, opts)
        return
    result = whatif(trace, opts)
    assert math.isfinite(result.predicted_ms) and result.predicted_ms > 0
    assert result.replay_ms == pytest.approx(trace.measured_ms)


@pytest.mark.parametrize("pair", list(itertools.permutations(OPTS, 2)), ids=lambda p: "+".join(p))
def test_every_ordered_pair_on_a_gpu_training_trace(gpu_trace, pair):
    _check(gpu_trace, list(pair), PAIR_REFUSALS)


@pytest.mark.parametrize("opts", [[o] for o in OPTS] + [
    ["amp", "fsdp:world_size=8"], ["ddp", "activation-checkpointing"], ["activation-checkpointing", "fsdp"],
    ["fused-optimizer", "ddp"], ["batch-size", "dataloader"], ["amp", "ddp", "activation-checkpointing",
                                                              "fused-optimizer"]], ids=lambda o: "+".join(o))
def test_compositions_on_a_cpu_run(cpu_run, opts):
    _check(cpu_run, opts, CPU_REFUSALS)
