"""Traces that do not say which GPU they ran on (no `deviceProperties`: older Kineto, the Chrome
array form `[...]`, sampled traces): analyze and replay work, what-ifs that need no hardware facts
work, the others infer the device from kernel names, take --device NAME, or refuse in one line."""
from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from conftest import single_graph_opts, shared
from daydream import hardware
from daydream.analysis import analyze
from daydream.cli import main
from daydream.errors import DaydreamError
from daydream.trace import load
from daydream.whatif import whatif

OPTS = single_graph_opts()
# On cuda_event_sync_a100, whose 4 kernel names name no architecture, these need no device facts.
NO_FACTS = {"activation-checkpointing", "dataloader", "fused-optimizer", "network:bandwidth=10", "host:speed=1.25"}


def _strip(src, tmp_path, form: str):
    """The shared trace without deviceProperties: the Kineto object, or the bare event array."""
    with gzip.open(src) as f:
        doc = json.load(f)
    doc.pop("deviceProperties")
    path = tmp_path / f"{src.name.split('.')[0]}_{form}.json"
    path.write_text(json.dumps(doc if form == "object" else doc["traceEvents"]))
    return path


def _outcome(trace, opt):
    try:
        return round(whatif(trace, [opt]).predicted_ms, 6)
    except DaydreamError as e:
        return str(e).split(": ", 1)[-1]  # without the trace path


@pytest.fixture
def no_assumed_device():
    yield
    hardware.assume_device(None)


@pytest.mark.parametrize("form", ["object", "array"])
@pytest.mark.parametrize("rel, inferred", [("hta/minitoy_train_mi250.json.gz", "MI250-GCD"),
                                           ("tracelens/gaunernst_bert-small-uncased_h100.json.gz", "H100-SXM5-80GB"),
                                           ("hta/cuda_event_sync_a100.json.gz", None)])
def test_analyze_and_replay_without_device_properties(tmp_path, rel, inferred, form):
    original = load(shared(rel))
    stripped = load(_strip(shared(rel), tmp_path, form))
    assert stripped.device_properties == [] and stripped.device == "unknown GPU"
    assert stripped.measured_ms == original.measured_ms
    assert whatif(stripped).replay_ms == whatif(original).replay_ms
    result = analyze(stripped)
    assert result["measured_ms"] == analyze(original)["measured_ms"]
    if inferred:
        assert result["device_model"] == f"{inferred} (inferred)"
        assert any("kernel names built for" in w for w in result["warnings"])
    else:
        assert result["device_model"] is None and "flops_utilization_pct" not in result
        assert any("pass --device NAME" in w for w in result["warnings"])


@pytest.mark.parametrize("rel", ["hta/minitoy_train_mi250.json.gz",
                                 "tracelens/gaunernst_bert-small-uncased_h100.json.gz"])
def test_inferred_device_predicts_as_the_recorded_one(tmp_path, rel):
    """Kernel names give the table entry deviceProperties gives: every optimization, same figure."""
    original, stripped = load(shared(rel)), load(_strip(shared(rel), tmp_path, "array"))
    assert {o: _outcome(stripped, o) for o in OPTS} == {o: _outcome(original, o) for o in OPTS}


def test_no_hint_refuses_only_what_needs_the_device_and_device_option_fixes_it(tmp_path, no_assumed_device):
    src = shared("hta/cuda_event_sync_a100.json.gz")
    original, stripped = load(src), load(_strip(src, tmp_path, "array"))
    expected = {o: _outcome(original, o) for o in OPTS}
    got = {o: _outcome(stripped, o) for o in OPTS}
    for opt in OPTS:
        if opt in NO_FACTS:
            assert got[opt] == expected[opt], opt
        else:
            assert "does not say which GPU it ran on" in got[opt] and "pass --device NAME" in got[opt], opt
    hardware.assume_device("A100-SXM4-40GB")  # what the recorded deviceProperties name
    assert {o: _outcome(stripped, o) for o in OPTS} == expected


def test_device_option_on_every_trace_reading_command(tmp_path, no_assumed_device):
    path = str(_strip(shared("hta/cuda_event_sync_a100.json.gz"), tmp_path, "array"))
    run = lambda *args: CliRunner().invoke(main, list(args))
    for cmd in ("analyze", "whatif", "memory", "validate"):
        assert "--device NAME" in run(cmd, "--help").output, cmd
    refused = run("whatif", path, "--opt", "amp")
    assert refused.exit_code == 2 and "pass --device NAME" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    ok = run("whatif", path, "--opt", "amp", "--device", "A100", "--json")
    assert ok.exit_code == 0, ok.output
    assert "--device A100-SXM4-80GB taken" in " ".join(json.loads(ok.stdout)["notes"])
    assert json.loads(run("analyze", path, "--json").stdout)["device_model"] is None
    assert json.loads(run("analyze", path, "--json", "--device", "H100").stdout)["device_model"] == "H100-SXM5-80GB"
    assert json.loads(run("analyze", path, "--json").stdout)["device_model"] is None  # not carried over
    bad = run("analyze", path, "--device", "Z80")
    assert bad.exit_code == 2 and "unknown device 'Z80'" in bad.output
    # The trace's own deviceProperties win; --device is only what a trace does not say.
    said = run("whatif", str(shared("hta/cuda_event_sync_a100.json.gz")), "--device", "H100", "--json")
    assert "--device H100 ignored: the trace says it ran on A100-SXM4-40GB" in json.loads(said.stdout)["notes"]
    assert hardware.assumed_device() is None  # --device held for that command only


@pytest.mark.parametrize("names, device", [
    (["volta_sgemm_128x64_nn"], "V100-SXM2-32GB"),
    (["volta_sgemm_128x64_nn", "sm80_xmma_gemm_f32f32", "ampere_sgemm_64x32"], "A100-SXM4-80GB"),
    (["void cutlass::Kernel<cutlass_80_tensorop_s1688gemm_64x64>"], "A100-SXM4-80GB"),
    (["sm90_xmma_gemm_bf16bf16", "cutlass3x_sm90_tensorop_gemm"], "H100-SXM5-80GB"),
    (["Cijk_Ailk_Bjlk_SB_MT64x16x16_MI16x16x1_ISA90a_IU1_K1"], "MI250-GCD"),
    (["Cijk_Alik_Bljk_BBS_BH_MT64x32x128_ISA942_IU1"], "MI300X"),
    (["turing_fp16_s1688gemm_fp16_128x128"], None),  # Turing: a T4 or an RTX 2080 Ti, 2-3x apart
    (["sm86_xmma_gemm"], None),                        # not in the hardware table
    (["Cijk_Ailk_MT64_ISA908_IU1"], None),             # MI100: not in the hardware table
    (["elementwise_kernel", "triton_poi_fused_add_0", "nonvolta_x", "xsm80_y"], None),
])
def test_device_from_kernel_names(names, device):
    found, why = hardware.infer_from_kernels(names)
    assert (found.name if found else None) == device, why


def test_memory_capacity_from_device_option(tmp_path, kineto, no_assumed_device):
    kineto.step(1, 0, 100)
    kineto.op("aten::mm", 0, 10)
    kineto.launch(1, 4, kernel_ts=6, kernel_dur=30, name="elementwise_kernel")
    for ts, size in ((2, 1 << 20), (50, -(1 << 20))):
        kineto.events.append({"ph": "i", "name": "[memory]", "pid": 1, "tid": 1, "ts": ts, "s": "t",
                              "args": {"Bytes": size, "Total Allocated": max(size, 0), "Total Reserved": 1 << 21,
                                       "Device Type": 1, "Device Id": 0, "Addr": 4096}})
    path = tmp_path / "array.json"
    path.write_text(json.dumps(kineto.events))  # Chrome array form: no deviceProperties
    run = lambda *args: CliRunner().invoke(main, ["memory", str(path), "--json", *args])
    plain = run()
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout)["capacity_bytes"] is None
    assert json.loads(run("--device", "V100-SXM2-32GB").stdout)["capacity_bytes"] == 32 * 2**30
