"""The hardware table: lookups, trace deviceProperties, fallbacks and launch costs measured
from the shared traces."""
import functools
import gzip
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from daydream import hardware as hw
from daydream.errors import DaydreamError

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "hardware.md"


@functools.lru_cache(maxsize=None)
def _trace(rel):
    with gzip.open(TRACES / rel, "rt") as f:
        return json.load(f)


@pytest.mark.parametrize("name,expected", [
    ("H100", "H100-SXM5-80GB"), ("NVIDIA H100 80GB HBM3", "H100-SXM5-80GB"),
    ("h100 pcie", "H100-PCIe-80GB"), ("Tesla V100-SXM2-32GB", "V100-SXM2-32GB"),
    ("Tesla V100-SXM2-16GB", "V100-SXM2-16GB"), ("Tesla V100-PCIE-32GB", "V100-PCIe-32GB"),
    ("Tesla V100-DGXS-32GB", "V100-SXM2-32GB"), ("V100", "V100-SXM2-32GB"),
    ("AMD Instinct MI300X", "MI300X"), ("MI300", "MI300X"), ("AMD Instinct MI300X VF", "MI300X"),
    ("2080 Ti", "RTX 2080 Ti"), ("NVIDIA GeForce RTX 2080 Ti", "RTX 2080 Ti"),
    ("A100", "A100-SXM4-80GB"), ("A100-SXM4-40GB", "A100-SXM4-40GB"),
    ("NVIDIA A100 80GB PCIe", "A100-SXM4-80GB"), ("a100 40gb", "A100-SXM4-40GB"),
    ("Tesla T4", "T4"), ("t4", "T4"), ("NVIDIA H200", "H200-SXM-141GB"), ("B200", "B200"),
    ("MI250X", "MI250X"), ("mi250", "MI250"), ("MI210", "MI250-GCD"), ("gfx942", "MI300X"),
    ("cpu", "cpu"), ("CPU", "cpu"),
])
def test_lookup_aliases(name, expected):
    assert hw.lookup(name).name == expected


def test_lookup_cpu_core_count_scales_peak():
    assert hw.lookup("cpu:64").peak("fp32") == pytest.approx(2 * hw.lookup("cpu").peak("fp32"))
    assert hw.lookup("cpu").peak("fp32") == 32 * 2.5e9 * 32


@pytest.mark.parametrize("name", ["GTX 480", "", "MI100", "TPU v4"])
def test_unknown_device_lists_known_names(name):
    with pytest.raises(DaydreamError) as err:
        hw.lookup(name)
    message = str(err.value)
    assert "known devices" in message and "H100-SXM5-80GB" in message and "\n" not in message


def test_names_match_table():
    assert hw.names() == list(hw.DEVICES)
    assert {"V100-SXM2-32GB", "V100-PCIe-32GB", "T4", "RTX 2080 Ti", "A100-SXM4-40GB",
            "A100-SXM4-80GB", "H100-SXM5-80GB", "H200-SXM-141GB", "B200", "MI250X", "MI250",
            "MI300X", "cpu"} <= set(hw.names())


def test_table_values_are_complete_and_consistent():
    for d in hw.DEVICES.values():
        assert set(d.peak_flops) == set(hw.DTYPES)
        assert d.peak("fp32") > 0 and d.mem_bw > 0 and d.mem_bytes > 0 and d.sm_count > 0
        assert d.intra_bw > 0 and d.pcie_bw > 0 and d.inter_bw > 0
        assert d.launch_cpu_s >= 0 and d.launch_gpu_s >= 0
        # tensor-core parts: half precision is much faster than fp32
        if d.vendor != "cpu":
            assert d.peak("fp16") >= 3 * d.peak_flops["fp32"]
    v100, a100, h100 = hw.lookup("V100"), hw.lookup("A100"), hw.lookup("H100")
    assert v100.peak_flops["bf16"] == 0 and v100.peak("bf16") == v100.peak_flops["fp32"]
    assert a100.peak_flops["fp8"] == 0 and a100.peak("fp8") == a100.peak_flops["fp16"]
    assert h100.peak("bf16") == pytest.approx(989.4e12)
    assert h100.mem_bw == pytest.approx(3.35e12)
    assert hw.lookup("MI250-GCD").peak("fp16") == pytest.approx(hw.lookup("MI250").peak("fp16") / 2)


# deviceProperties of every shared trace -> the device it was recorded on
EXPECTED = {
    "hta/alexnet_a100.json.gz": "A100-SXM4-40GB",
    "hta/simple_add_a100.json.gz": "A100-SXM4-40GB",
    "hta/cuda_event_sync_a100.json.gz": "A100-SXM4-40GB",
    "hta/cuda_event_sync_multi_stream_a100.json.gz": "A100-SXM4-40GB",
    "hta/nccl_2rank_a100_rank0.json.gz": "A100-SXM4-40GB",
    "hta/triton_example.json.gz": "A100-SXM4-40GB",
    # named _a100 but its deviceProperties say Tesla V100-SXM2-32GB
    "hta/ns_resolution_a100.json.gz": "V100-SXM2-32GB",
    "hta/cpu_only_rank34.json.gz": "cpu",
    "kineto/resnet50_v100_num_workers_0.json.gz": "V100-SXM2-32GB",
    "kineto/resnet50_v100_num_workers_4.json.gz": "V100-SXM2-32GB",
    "param/resnet_2080ti.json.gz": "RTX 2080 Ti",
    "param/linear_2080ti.json.gz": "RTX 2080 Ti",
    "tracelens/Qwen_Qwen1.5-0.5B-Chat_h100.json.gz": "H100-SXM5-80GB",
    "tracelens/gaunernst_bert-small-uncased_h100.json.gz": "H100-SXM5-80GB",
    "tracelens/Qwen_Qwen1.5-0.5B-Chat_mi300.json.gz": "MI300X",
    "tracelens/gaunernst_bert-small-uncased_mi300.json.gz": "MI300X",
    "tracelens/ddp_resnet18_train_mi300.json.gz": "MI300X",
}


def test_every_shared_trace_is_covered():
    on_disk = {str(p.relative_to(TRACES)) for p in TRACES.glob("*/*.json.gz")}
    assert on_disk - {"hta/minitoy_train_mi250.json.gz"} == set(EXPECTED)


@pytest.mark.parametrize("rel,expected", sorted(EXPECTED.items()))
def test_device_properties_of_shared_traces(rel, expected):
    props = _trace(rel)["deviceProperties"]
    assert hw.from_device_properties(props).name == expected
    # the repr() form Kineto sometimes writes parses the same way
    assert hw.from_device_properties(repr(props)).name == expected


def test_mi250_trace_falls_back_on_gcd():
    # 'AMD Radeon Graphics', computeMajor 9 like an H100: must not be taken for NVIDIA
    props = _trace("hta/minitoy_train_mi250.json.gz")["deviceProperties"]
    assert props[0]["name"] == "AMD Radeon Graphics" and props[0]["computeMajor"] == 9
    device = hw.from_device_properties(props)
    assert device.family == "MI250" and device.vendor == "amd"
    assert "MI250-GCD" in device.name and device.sm_count == 104
    assert device.mem_bytes == props[0]["totalGlobalMem"]


def test_dlrm_archive_ranks_are_v100():
    with tarfile.open(TRACES / "param" / "dlrm_ddp_8rank_v100.tar.gz") as tf:
        member = next(m for m in tf.getmembers() if m.isfile())
        props = json.load(tf.extractfile(member))["deviceProperties"]
    assert hw.from_device_properties(props, device_id=0).name == "V100-SXM2-32GB"


@pytest.mark.parametrize("props,family", [
    ({"name": "NVIDIA Hopper Engineering Sample", "computeMajor": 9, "computeMinor": 0,
      "numSms": 132, "totalGlobalMem": 85 * 2**30, "warpSize": 32}, "H100"),
    ({"name": "Mystery GPU", "computeMajor": 9, "computeMinor": 0, "numSms": 132,
      "totalGlobalMem": 141 * 2**30, "warpSize": 32}, "H200"),
    ({"name": "NVIDIA A10", "computeMajor": 8, "computeMinor": 6, "numSms": 72,
      "totalGlobalMem": 24 * 2**30}, "A100"),
    ({"name": "NVIDIA RTX PRO 6000", "computeMajor": 12, "computeMinor": 0, "numSms": 188},
     "B200"),
    ({"name": "Tesla P100", "computeMajor": 7, "computeMinor": 5, "numSms": 40}, "T4"),
    ({"name": "gfx942:sramecc+:xnack-", "computeMajor": 9, "computeMinor": 4, "numSms": 304,
      "warpSize": 64}, "MI300X"),
    ({"name": "AMD Instinct MI250X", "computeMajor": 9, "computeMinor": 0, "numSms": 110,
      "totalGlobalMem": 64 * 2**30, "warpSize": 64}, "MI250X"),
])
def test_unknown_names_fall_back_on_capability(props, family):
    device = hw.from_device_properties([props])
    assert device.family == family
    if props.get("numSms"):
        assert device.sm_count == props["numSms"]


def test_device_id_picks_the_entry():
    props = [{"id": 0, "name": "Tesla T4", "totalGlobalMem": 15 * 2**30},
             {"id": 1, "name": "NVIDIA H100 80GB HBM3", "totalGlobalMem": 79 * 2**30}]
    assert hw.from_device_properties(props, device_id=1).name == "H100-SXM5-80GB"
    assert hw.from_device_properties(props).name == "T4"


@pytest.mark.parametrize("bad", ["[{'name': 'H100'", "42", [1, 2], {"name": None,
                                                                     "computeMajor": None}])
def test_bad_device_properties(bad):
    with pytest.raises(DaydreamError):
        hw.from_device_properties(bad)


def test_empty_device_properties_is_cpu():
    assert hw.from_device_properties([]).name == "cpu"
    assert hw.from_device_properties("[]").name == "cpu"
    assert hw.from_device_properties(None).name == "cpu"


def _launch_costs(events):
    """(median launch API duration, median launch-end -> kernel-start gap on an idle GPU), us."""
    launches, kernels = {}, []
    for e in events:
        cat, name = e.get("cat"), e.get("name", "")
        if e.get("ph") != "X":
            continue
        if cat in ("cuda_runtime", "cuda_driver", "Runtime") and "LaunchKernel" in name:
            launches[e["args"].get("correlation")] = e
        elif cat in ("kernel", "Kernel"):
            kernels.append(e)
    kernels.sort(key=lambda e: e["ts"])
    busy_until, gaps = {}, []
    for k in kernels:
        dev, launch = k["args"].get("device"), launches.get(k["args"].get("correlation"))
        if launch is not None and busy_until.get(dev, -np.inf) < launch["ts"]:
            gaps.append(k["ts"] - launch["ts"] - launch["dur"])
        busy_until[dev] = max(busy_until.get(dev, -np.inf), k["ts"] + k["dur"])
    return np.median([e["dur"] for e in launches.values()]), np.median(gaps)


@pytest.mark.parametrize("rel,device,check_gpu", [
    ("kineto/resnet50_v100_num_workers_0.json.gz", "V100", True),
    ("hta/nccl_2rank_a100_rank0.json.gz", "A100", True),
    ("tracelens/Qwen_Qwen1.5-0.5B-Chat_h100.json.gz", "H100", True),
    ("tracelens/ddp_resnet18_train_mi300.json.gz", "MI300X", True),
    ("hta/minitoy_train_mi250.json.gz", "MI250", True),
    ("param/resnet_2080ti.json.gz", "2080 Ti", False),
])
def test_launch_costs_are_the_trace_measurements(rel, device, check_gpu):
    api_us, gap_us = _launch_costs(_trace(rel)["traceEvents"])
    d = hw.lookup(device)
    if d.family not in hw.LAUNCH_CALL_S:  # those: the median over several traces (next test)
        assert d.launch_cpu_s * 1e6 == pytest.approx(api_us, rel=0.02)
    if check_gpu:
        assert d.launch_gpu_s * 1e6 == pytest.approx(gap_us, rel=0.02)


@pytest.mark.parametrize("family", ["H100", "MI300X"])
def test_launch_call_cost_is_the_median_over_the_devices_traces(family):
    import numpy as np
    per_trace = [_launch_costs(_trace(rel)["traceEvents"])[0] for rel in _FLOOR_TRACES[family]]
    assert hw.LAUNCH_CALL_S[family] * 1e6 == pytest.approx(np.median(per_trace), rel=0.01)
    assert hw.lookup(family).launch_cpu_s == hw.LAUNCH_CALL_S[family]


def test_docs_table_lists_every_device():
    text = DOCS.read_text()
    for d in hw.DEVICES.values():
        assert f"| {d.name} |" in text, d.name


@pytest.mark.parametrize("junk", [
    {"name": 7, "computeMajor": "9", "computeMinor": None, "numSms": True},
    {"name": "NVIDIA A100", "totalGlobalMem": 10**400, "numSms": -3},
    {"computeMajor": 10**30, "computeMinor": 0},
    {"name": "", "warpSize": 64, "numSms": "304", "totalGlobalMem": 1.5},
    {"name": "AMD Instinct MI250X", "totalGlobalMem": 10**400},
])
def test_malformed_fields_never_crash(junk):
    # mutated or hand-edited metadata: a device or a DaydreamError, never another exception
    try:
        assert isinstance(hw.from_device_properties([junk]), hw.Device)
    except DaydreamError:
        pass


# --- cross-GPU tables (daydream/opts/gpu.py) --------------------------------------------------
_FLOOR_TRACES = {"H100": ("tracelens/gaunernst_bert-small-uncased_h100.json.gz",
                          "tracelens/Qwen_Qwen1.5-0.5B-Chat_h100.json.gz"),
                 "MI300X": ("tracelens/gaunernst_bert-small-uncased_mi300.json.gz",
                            "tracelens/Qwen_Qwen1.5-0.5B-Chat_mi300.json.gz",
                            "tracelens/ddp_resnet18_train_mi300.json.gz")}


@pytest.mark.parametrize("family", sorted(_FLOOR_TRACES))
def test_kernel_floor_is_the_lowest_fifth_percentile(family):
    import numpy as np

    from conftest import shared
    from daydream.graph.schema import T_KERNEL
    from daydream.graph import build_graph
    from daydream.trace import load
    lows = []
    for rel in _FLOOR_TRACES[family]:
        g = build_graph(load(shared(rel)))
        dur = g.tasks["dur"].to_numpy()[g.tasks["kind"].to_numpy() == T_KERNEL]
        lows.append(np.percentile(dur, 5) / 1e9)
    assert hw.KERNEL_FLOOR_S[family] == pytest.approx(min(lows), rel=0.02)


def test_cross_gpu_tables_are_fractions_of_known_families():
    families = {d.family for d in hw.DEVICES.values()}
    for table in (hw.KERNEL_FLOOR_S, hw.MEMORY_LINE, hw.CLASS_EFFICIENCY):
        assert set(table) <= families
    for fixed, eff in hw.MEMORY_LINE.values():
        assert 0 < eff <= 1 and hw.KERNEL_FLOOR_S["H100"] < fixed < 20e-6
    for per_class in hw.CLASS_EFFICIENCY.values():
        assert all(0 < e <= 1 for e in per_class.values())


def test_cpu_int8_runs_at_four_times_fp32():
    cpu = hw.lookup("cpu")
    assert cpu.peak("int8") == pytest.approx(4 * cpu.peak("fp32"))


def test_every_entry_is_found_by_its_own_name_and_aliases():
    """A device is one entry: its name, aliases and patterns are all the lookup needs."""
    for device in hw.DEVICES.values():
        for name in (device.name, *device.aliases):
            assert hw.lookup(name) is device, name


def test_most_specific_pattern_wins():
    assert hw.lookup("H100 PCIe").name == "H100-PCIe-80GB"  # not the SXM of the shorter pattern
    assert hw.lookup("AMD Instinct MI250X / MI250").name == "MI250X-GCD"  # ROCm's name for the card
    assert hw.from_device_properties([{"name": "NVIDIA H100", "totalGlobalMem": 141 * 2**30}]).name == \
        "H200-SXM-141GB"
