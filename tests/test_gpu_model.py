"""Cross-GPU model (daydream/opts/gpu.py): memory lines, kernel floors, class efficiencies, and
the shared H100 <-> MI300X pairs."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import shared
from daydream import hardware
from daydream.opts import gpu
from daydream.trace import load
from daydream.whatif import whatif

H100, MI300X = hardware.lookup("H100"), hardware.lookup("MI300X")
FLOOR = {d: hardware.KERNEL_FLOOR_S[d.family] * 1e9 for d in (H100, MI300X)}


def _map(d, src, dst):
    return gpu.memory_kernel_durations(np.asarray(d, float), src, dst, FLOOR[src], FLOOR[dst])


def test_memory_line_is_continuous_and_monotone():
    a_h = hardware.MEMORY_LINE["H100"][0] * 1e9
    d = np.linspace(100, 200_000, 5001)
    out = _map(d, H100, MI300X)
    assert np.all(np.diff(out) > 0)
    eps = 1e-6
    for edge in (FLOOR[H100], a_h):
        lo, hi = _map([edge - eps, edge + eps], H100, MI300X)
        assert hi - lo == pytest.approx(0, abs=1e-3)
    # floor -> floor, fixed cost -> fixed cost
    assert _map([FLOOR[H100]], H100, MI300X)[0] == pytest.approx(FLOOR[MI300X])
    assert _map([a_h], H100, MI300X)[0] == pytest.approx(hardware.MEMORY_LINE["MI300X"][0] * 1e9)


def test_memory_line_round_trip_is_identity():
    d = np.array([500.0, 1_600, 3_000, 7_000, 50_000, 2_000_000])
    back = _map(_map(d, H100, MI300X), MI300X, H100)
    assert back == pytest.approx(d, rel=1e-9)


def test_large_memory_kernel_follows_achievable_bandwidth():
    (a_h, e_h), (a_m, e_m) = hardware.MEMORY_LINE["H100"], hardware.MEMORY_LINE["MI300X"]
    d = 1_000_000.0  # 1 ms of streaming on the H100
    expected = a_m * 1e9 + (d - a_h * 1e9) * (e_h * H100.mem_bw) / (e_m * MI300X.mem_bw)
    assert _map([d], H100, MI300X)[0] == pytest.approx(expected)
    assert expected < d  # the MI300X streams faster


def test_class_efficiency_ratio_only_where_both_devices_have_one():
    cls = np.array(["gemm", "attention", "conv", "elementwise", ""], dtype=object)
    r = gpu.class_efficiency_ratio(cls, H100, MI300X)
    eff = hardware.CLASS_EFFICIENCY
    assert r[0] == pytest.approx(eff["H100"]["gemm"] / eff["MI300X"]["gemm"])
    assert r[1] == pytest.approx(eff["H100"]["attention"] / eff["MI300X"]["attention"])
    assert list(r[2:]) == [1.0, 1.0, 1.0]  # no H100 conv fit; memory classes use the memory lines
    a100 = hardware.lookup("A100")
    assert np.all(gpu.class_efficiency_ratio(cls, a100, H100) == 1.0)


@pytest.mark.parametrize("src,dst,target", [("h100", "mi300", "MI300X"), ("mi300", "h100", "H100")])
def test_qwen_pair_within_eight_percent(src, dst, target):
    base = load(shared(f"tracelens/Qwen_Qwen1.5-0.5B-Chat_{src}.json.gz"))
    measured = load(shared(f"tracelens/Qwen_Qwen1.5-0.5B-Chat_{dst}.json.gz")).measured_ms
    predicted = whatif(base, [f"gpu:target={target}"]).predicted_ms
    assert abs(predicted - measured) / measured <= 0.08, (predicted, measured)


def test_committed_cross_gpu_tables_are_the_fit_of_the_shared_traces():
    # the tables in daydream/hardware.py are what benchmarks/fit_gpu_efficiency.py gives on the
    # shared traces (so docs/validation.md's leave-one-pair-out refit is the same procedure)
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fit_gpu_efficiency as fitting
    got = fitting.tables(fitting.fit([shared(t) for t in fitting.TRACES]))
    for family in ("H100", "MI300X"):
        assert got["KERNEL_FLOOR_S"][family] == pytest.approx(hardware.KERNEL_FLOOR_S[family], rel=0.01)
        assert got["MEMORY_LINE"][family] == pytest.approx(hardware.MEMORY_LINE[family], rel=0.01)
        assert got["LAUNCH_CALL_S"][family] == pytest.approx(hardware.LAUNCH_CALL_S[family], rel=0.01)
        assert got["CLASS_EFFICIENCY"][family] == pytest.approx(hardware.CLASS_EFFICIENCY[family], rel=0.01)
