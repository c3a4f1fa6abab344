"""Every TBD suite model builds and trains on CPU in its small configuration."""
from __future__ import annotations

import math

import pytest
import torch

import tbd_suite

NAMES = ["resnet50", "inception_v3", "seq2seq", "transformer", "detection", "deepspeech2", "wgan", "a3c",
         "bert", "llama", "vit", "dit"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_registry_names_are_the_suite():
    assert tbd_suite.names() == NAMES
    with pytest.raises(KeyError, match="unknown TBD model"):
        tbd_suite.get("tbd:nope")


@pytest.mark.parametrize("name", NAMES)
def test_small_training_step_updates_parameters(name):
    workload = tbd_suite.get(f"tbd:{name}").build("small", batch_size=2, device="cpu", seed=1)
    before = [p.detach().clone() for p in workload.model.parameters()]
    loss = workload.step()
    assert loss.dim() == 0 and math.isfinite(float(loss))
    changed = sum(not torch.equal(a, p) for a, p in zip(before, workload.model.parameters()))
    assert changed > 0, "the optimizer step changed no parameter"
    assert workload.settings.batch_size == 2
    assert workload.optimizer_name and workload.paper and workload.loss_name
    assert "paper" in workload.sizes


@pytest.mark.parametrize("name", ["resnet50", "bert", "llama", "seq2seq", "wgan"])
def test_amp_fused_checkpointing_variants_run(name):
    workload = tbd_suite.get(name).build("small", batch_size=2, amp=True, checkpointing=True,
                                         fused=True)
    assert math.isfinite(float(workload.step()))
    assert workload.model.checkpointing
    assert all(opt.defaults.get("fused") for opt in workload.optimizers)


def test_checkpointing_computes_the_same_loss_and_gradients():
    runs = []
    for ckpt in (False, True):
        workload = tbd_suite.get("vit").build("small", batch_size=2, checkpointing=ckpt, seed=3)
        batch = workload.next_batch()
        loss = workload.compute_loss(batch)
        loss.backward()
        runs.append((loss.detach(), [p.grad.clone() for p in workload.model.parameters()]))
    torch.testing.assert_close(runs[0][0], runs[1][0])
    for a, b in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(a, b)


def test_synthetic_data_is_seeded_and_worker_independent():
    a = tbd_suite.get("bert").build("small", batch_size=2, seed=5)
    b = tbd_suite.get("bert").build("small", batch_size=2, seed=5, workers=1)
    c = tbd_suite.get("bert").build("small", batch_size=2, seed=6)
    xa, xb, xc = a.next_batch(), b.next_batch(), c.next_batch()
    b.close()
    for u, v in zip(xa, xb):
        assert torch.equal(u, v)
    assert not torch.equal(xa[0], xc[0])
    labels = xa[2]
    assert (labels != -100).any() and (labels == -100).any()


def test_bad_build_arguments_are_refused():
    with pytest.raises(ValueError, match="no size"):
        tbd_suite.get("vit").build("huge")
    with pytest.raises(ValueError, match="amp dtype"):
        tbd_suite.get("vit").build("small", amp="fp8")
    with pytest.raises(ValueError, match="no fused"):
        tbd_suite.get("a3c").build("small", fused=True)
