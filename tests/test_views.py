"""The views of `analyze` (operators, kernels, idle, launches, communication), `diff` and `suggest`.

Figures are checked against independent computations on the raw trace JSON (stdlib json, plain
Python), not against daydream's own tables.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest
from click.testing import CliRunner

from conftest import REPO, shared
from daydream.errors import DaydreamError
from daydream.cli import main
from daydream.graph import build_graph

V100_0 = "kineto/resnet50_v100_num_workers_0.json.gz"
V100_4 = "kineto/resnet50_v100_num_workers_4.json.gz"
NCCL = "hta/nccl_2rank_a100_rank0.json.gz"
BERT = "tracelens/gaunernst_bert-small-uncased_h100.json.gz"


@pytest.fixture(scope="module")
def v100():
    import daydream
    from daydream.opts.context import Context
    from daydream.sim import simulate
    from daydream.views import views
    tr = daydream.load(shared(V100_0))
    tl = simulate(build_graph(tr))
    return tr, tl, views(tr, tl, Context.of(tr).device)


def _raw(rel):
    with gzip.open(shared(rel)) as f:
        return json.load(f)["traceEvents"]


def _us_to_ns(v) -> int:
    return int(round(float(v) * 1000))


def test_views_keys_follow_the_contract(v100):
    tr, tl, v = v100
    for key in ("operators", "kernels", "idle", "launches", "overlap_pct", "communication", "modules"):
        assert key in v
    assert {"name", "count", "total_ms", "self_ms", "gpu_ms"} <= set(v["operators"][0])
    assert {"name", "count", "total_ms", "mean_ms", "min_ms", "max_ms", "tensor_core"} <= set(v["kernels"][0])
    assert {"host_bound_ms", "kernel_bound_ms", "other_ms", "streams", "per_step"} <= set(v["idle"])
    assert {"p50", "p90", "p99"} <= set(v["launches"]["delay_us"])
    assert v["overlap_pct"] is None  # one GPU, no collectives: nothing to overlap
    assert v["modules"] == []  # the 2021 V100 trace has no nn.Module annotations


def _window_kernels(events, start_ns, end_ns):
    """Per kernel name: (total ns, count) of kernels launched by runtime calls inside [start, end)."""
    launched = {e["args"]["correlation"] for e in events
                if e.get("ph") == "X" and e.get("cat") in ("Runtime", "cuda_runtime")
                and start_ns <= _us_to_ns(e["ts"]) < end_ns and "correlation" in e.get("args", {})}
    out = defaultdict(lambda: [0, 0])
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in ("Kernel", "kernel", "Memcpy", "Memset", "gpu_memcpy", "gpu_memset") \
                and e.get("args", {}).get("correlation") in launched:
            out[e["name"]][0] += _us_to_ns(e["dur"])
            out[e["name"]][1] += 1
    return out


def test_kernel_view_matches_the_raw_trace(v100):
    tr, tl, v = v100
    w = tr.window
    raw = _window_kernels(_raw(V100_0), w.start, w.end)
    by_name = {k["name"]: k for k in v["kernels"]}
    assert set(by_name) == set(raw)
    for name, (ns, count) in raw.items():
        assert by_name[name]["count"] == count, name
        assert by_name[name]["total_ms"] == pytest.approx(ns / 1e6, abs=2e-6), name
    top = v["kernels"][0]
    assert top["name"].startswith("void cudnn::detail::dgrad_engine") and top["count"] == 162
    assert top["min_ms"] <= top["mean_ms"] <= top["max_ms"]
    assert top["tensor_core"] is False  # fp32 cuDNN dgrad on V100: no HMMA in the name
    assert 0 < top["occupancy_pct"] <= 100


def test_operator_counts_and_gpu_time(v100):
    tr, tl, v = v100
    w = tr.window
    events = _raw(V100_0)
    count = sum(1 for e in events if e.get("ph") == "X" and e.get("name") == "aten::cudnn_convolution"
                and w.start <= _us_to_ns(e["ts"]) < w.end)
    conv = next(o for o in v["operators"] if o["name"] == "aten::cudnn_convolution")
    assert conv["count"] == count == 318
    assert conv["self_ms"] <= conv["total_ms"]
    # the GPU column charges each kernel to one operator: it never exceeds the GPU work of the window
    gpu_total = sum(k["total_ms"] for k in v["kernels"])
    assert sum(o["gpu_ms"] for o in v["operators"]) <= gpu_total + 1e-6
    assert sum(o["gpu_ms"] for o in v["operators"]) > 0.95 * gpu_total


def test_idle_time_adds_up_per_step(v100):
    tr, tl, v = v100
    idle = v["idle"]
    assert idle["busy_ms"] + idle["idle_ms"] == pytest.approx(tr.measured_ms, abs=1e-5)
    parts = idle["host_bound_ms"] + idle["kernel_bound_ms"] + idle["launch_gap_ms"] + idle["other_ms"]
    assert parts == pytest.approx(idle["idle_ms"], abs=1e-4)
    # num_workers=0: the GPU waits for the host loading data, most of its idle time is host-bound
    assert idle["host_bound_ms"] > 0.9 * idle["idle_ms"]
    per_step = sum(s["host_bound_ms"] for s in idle["per_step"]) / tr.steps
    assert per_step == pytest.approx(idle["host_bound_ms"], rel=1e-3)


def _union(intervals):
    total, reach = 0, None
    for s, e in sorted(intervals):
        if reach is None or s > reach:
            total += e - s
            reach = e
        elif e > reach:
            total += e - reach
            reach = e
    return total


def test_communication_overlap_matches_an_interval_sweep():
    import daydream
    from daydream.sim import simulate
    from daydream.views import communication
    tr = daydream.load(shared(NCCL))
    comm = communication(tr, simulate(build_graph(tr)))
    w = tr.window
    kernels = [e for e in _raw(NCCL) if e.get("ph") == "X" and e.get("cat") == "kernel"]
    clip = lambda e: (max(_us_to_ns(e["ts"]), w.start), min(_us_to_ns(e["ts"] + e["dur"]), w.end))
    c = [clip(e) for e in kernels if e["name"].startswith("nccl")]
    k = [clip(e) for e in kernels if not e["name"].startswith("nccl")]
    c, k = [i for i in c if i[1] > i[0]], [i for i in k if i[1] > i[0]]
    overlap = _union(c) + _union(k) - _union(c + k)
    assert comm["overlap_pct"] == pytest.approx(100 * overlap / _union(c), abs=1e-3)
    assert comm["comm_ms"] == pytest.approx(_union(c) / tr.steps / 1e6, abs=1e-5)
    assert comm["exposed_ms"] == pytest.approx((_union(c) - overlap) / tr.steps / 1e6, abs=1e-5)


def test_analyze_reads_whole_in_an_80_column_pipe():
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", "from daydream.cli import main; main()", "analyze",
                           str(shared(V100_0)), "--top", "5"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index(next(l for l in lines if l.startswith("operators")))
    for line in lines[start:]:
        assert len(line) <= 80, line
    out = "\n".join(lines[start:])
    assert "…" in out  # long kernel names abbreviated in the middle
    # numbers are never cut: the dgrad kernel's ms/step and mean appear whole
    assert "13.459" in out and "0.498" in out


@pytest.mark.parametrize("command", ["diff", "suggest"])
def test_diff_and_suggest_read_whole_in_an_80_column_pipe(command):
    bert_mi300 = str(shared("tracelens/gaunernst_bert-small-uncased_mi300.json.gz"))
    args = [str(shared(BERT)), bert_mi300] if command == "diff" else [bert_mi300]
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", "from daydream.cli import main; main()", command, *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout
    if command == "diff":
        assert " → attn_fwd" in proc.stdout  # a pair keeps its arrow when abbreviated
    else:
        assert "1  cuda-graphs" in proc.stdout and "skipped:" in proc.stdout


def test_diff_of_the_v100_pair_names_data_loading_first():
    r = CliRunner().invoke(main, ["diff", str(shared(V100_0)), str(shared(V100_4)), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["largest"]["name"] == "data" and d["phases"][0]["name"] == "data"
    assert d["step_delta_ms"] == pytest.approx(141.090343 - 177.592145, abs=1e-3)
    # critical-path contributions add up to the step delta
    assert sum(p["delta_ms"] for p in d["phases"]) == pytest.approx(d["replay_delta_ms"], abs=1e-3)
    assert sum(o["delta_ms"] for o in d["operators"]) == pytest.approx(d["replay_delta_ms"], abs=1e-3)
    top = d["operators"][0]
    assert top["name"].startswith("enumerate(DataLoader)") and top["status"] == "removed"
    assert {"added", "removed", "faster", "slower", "same"} >= {k["status"] for k in d["kernels"]}
    # no Python stacks in these traces: the host speed comes from CPU operators; on one machine the
    # 4-worker run's operators are slower (the workers' interference, docs/optimizations/dataloader.md)
    host = d["host_speed"]
    assert host["from"] == "operators" and host["functions"] >= 10 and 0.9 < host["speed"] < 0.99


def test_diff_reads_the_host_speed_of_two_machines_off_their_python(monkeypatch):
    """The H100 and MI300X machines run the same bert-small Python at 1.063x (median over the
    functions both record; docs/validation.md); `gpu:target` + that `host:speed` is how the pair is
    predicted across hosts. A trace against itself is exactly 1."""
    from daydream.diff import host_speed
    from daydream.trace import load
    h100, mi300 = load(shared(BERT)), load(shared("tracelens/gaunernst_bert-small-uncased_mi300.json.gz"))
    found = host_speed(h100, mi300)
    assert found["from"] == "python" and found["speed"] == pytest.approx(1.063, abs=1e-3)
    assert found["functions"] >= 10 and found["quartiles"][0] < found["speed"] < found["quartiles"][1]
    assert host_speed(mi300, h100)["speed"] == pytest.approx(1 / 1.063, rel=0.05)
    assert host_speed(h100, h100)["speed"] == 1.0
    from daydream import diff as diff_module
    monkeypatch.setattr(diff_module, "HOST_MIN_FUNCTIONS", 10 ** 6)
    assert host_speed(h100, mi300) is None  # too few of either: no figure
    monkeypatch.undo()
    out = CliRunner().invoke(main, ["diff", str(shared(BERT)),
                                    str(shared("tracelens/gaunernst_bert-small-uncased_mi300.json.gz"))]).output
    assert "--opt host:speed=1.063" in " ".join(out.split())


def test_diff_pairs_kernels_of_two_gpus_by_position():
    r = CliRunner().invoke(main, ["diff", str(shared(BERT)),
                                  str(shared("tracelens/gaunernst_bert-small-uncased_mi300.json.gz")), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    attention = next(k for k in d["kernels"] if k.get("other_name") == "attn_fwd")
    assert attention["matched"] == "position" and "flash_fwd_kernel" in attention["base_name"]
    assert attention["base_count"] == attention["other_count"] == 4
    assert d["step_delta_ms"] == pytest.approx(4.136 - 4.495, abs=2e-3)


def test_diff_of_a_whatif_export_against_its_trace(tmp_path):
    trace = str(shared(BERT))
    replay, pred = tmp_path / "replay.json", tmp_path / "pred.json.gz"
    assert CliRunner().invoke(main, ["whatif", trace, "--export-trace", str(replay)]).exit_code == 0
    r = CliRunner().invoke(main, ["whatif", trace, "--opt", "cuda-graphs", "--export-trace", str(pred), "--json"])
    assert r.exit_code == 0, r.output
    predicted = json.loads(r.stdout)["predicted_ms"]
    r = CliRunner().invoke(main, ["diff", str(replay), trace, "--json"])
    assert r.exit_code == 0, r.output
    same = json.loads(r.output)
    assert abs(same["step_delta_ms"]) < 1e-3  # the unchanged replay reads back as the measured trace
    assert all(abs(p["delta_ms"]) < 1e-3 for p in same["phases"])
    r = CliRunner().invoke(main, ["diff", str(pred), trace, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["base_ms"] == pytest.approx(predicted, rel=1e-3)
    assert d["base_device"] == d["other_device"]


def test_suggest_ranks_simulates_and_says_why():
    r = CliRunner().invoke(main, ["suggest", str(shared(BERT)), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    ms = [x["predicted_ms"] for x in s["suggestions"]]
    assert ms == sorted(ms) and s["suggestions"]
    best = s["suggestions"][0]
    assert best["optimizations"][0]["name"] == "cuda-graphs"  # a forward pass bound by launching kernels
    assert best["speedup"] > 1 and best["why"].startswith("saves") and "waits mostly on" in best["why"]
    assert all("memory_peak_bytes" in x for x in s["suggestions"])
    skipped = {k["name"]: k["why"] for k in s["skipped"]}
    # refusals listed with their reasons: this is a bf16 inference pass without a DataLoader
    assert "already computes in bf16" in skipped["amp"]
    assert "no data-loading work" in skipped["dataloader"]
    assert "no Optimizer.step" in skipped["fused-optimizer"]
    assert set(skipped) >= {"ddp", "fsdp", "gpu", "batch-size"}
    r = CliRunner().invoke(main, ["suggest", str(shared(BERT)), "--json", "--top", "1"])
    assert len(json.loads(r.output)["suggestions"]) == 1


@pytest.mark.parametrize("args, message", [
    (["diff", "missing.json", "missing2.json"], "no such file"),
    (["suggest", "missing.json"], "no such file"),
    (["suggest", "x.json", "--top", "0"], "0"),
])
def test_bad_input_is_one_line(args, message):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2
    assert message in r.output.lower() and "Traceback" not in r.output


def test_diff_report_may_not_overwrite_an_input(tmp_path):
    trace = tmp_path / "t.html"  # an input that happens to carry the report's suffix
    trace.write_bytes(shared(BERT).read_bytes())
    r = CliRunner().invoke(main, ["diff", str(trace), str(shared(BERT)), "--report", str(trace)])
    assert r.exit_code == 2 and "is one of the inputs" in r.output
    assert trace.read_bytes() == shared(BERT).read_bytes()


@pytest.fixture(scope="module")
def v100_suggestions():
    r = CliRunner().invoke(main, ["suggest", str(shared(V100_0)), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _measured_gain_ms() -> tuple[float, float]:
    """(num_workers=0 step, its measured gain from num_workers=4), from the two shipped traces."""
    import daydream
    base, other = daydream.load(shared(V100_0)).measured_ms, daydream.load(shared(V100_4)).measured_ms
    return base, base - other


def test_cuda_graphs_does_not_shrink_data_loading(v100_suggestions):
    """A replayed graph removes the captured region's host work; the num_workers=0 loading (decode,
    transforms, collate on the main thread) is outside it: the same work, only overlapped with the
    GPU's replay, and `why` must say so rather than "shrinks data"."""
    import daydream
    from daydream.opts.context import Context
    from daydream.opts.params import parse_opt
    from daydream.suggest import phase_work
    from daydream.whatif import apply_optimizations
    tr = daydream.load(shared(V100_0))
    graph = build_graph(tr)
    changed = apply_optimizations(graph, [parse_opt("cuda-graphs")], Context.of(tr))
    before, after = phase_work(graph), phase_work(changed)
    assert after["data"] == pytest.approx(before["data"], rel=1e-9) and before["data"] > 60
    assert after["forward"] < before["forward"] / 2  # its host work is gone, its kernels stay
    why = next(x["why"] for x in v100_suggestions["suggestions"] if x["name"] == "cuda-graphs")
    assert f"same {before['data']:.1f} ms of work, now overlapped with other work" in why
    assert "waits more on backward" in why and "GPU conv kernels" in why


def test_v100_dataloader_suggestion_against_the_measured_workers_4_trace(v100_suggestions):
    """The dataloader line's gain against the gain measured between the two shipped traces. In-sample:
    WORKER_INTERFERENCE was measured on this pair (docs/optimizations/dataloader.md)."""
    base, gain = _measured_gain_ms()
    assert v100_suggestions["replay_ms"] == pytest.approx(base, rel=1e-6)
    loader = next(x for x in v100_suggestions["suggestions"] if x["name"] == "dataloader")
    assert loader["gain_ms"] == pytest.approx(gain, rel=0.10)
    assert "data loading 57.8 → 0.0 ms (its work 69.3 → 0.1 ms)" in loader["why"]


def test_v100_suggest_ranks_the_checked_dataloader_first(v100_suggestions):
    """Ranked checked-first: dataloader, checked against the V100 num_workers pair, leads; CUDA graphs
    (no measured pair on a GPU) follow, each group by predicted step time. By predicted time alone
    CUDA graphs lead: the main thread's loading overlaps the GPU's replay of the step."""
    s = v100_suggestions
    assert s["ranking"] == "checked" and s["device_class"] == "gpu"
    assert s["suggestions"][0]["name"] == "dataloader"
    assert "V100" in s["suggestions"][0]["checked_against"]
    flags = [x["checked_against"] is not None for x in s["suggestions"]]
    assert flags == sorted(flags, reverse=True)  # checked lines first
    for group in (True, False):  # each group by predicted step time
        times = [x["predicted_ms"] for x, f in zip(s["suggestions"], flags) if f is group]
        assert times == sorted(times)
    cuda = next(x for x in s["suggestions"] if x["name"] == "cuda-graphs")
    assert cuda["checked_against"] is None and cuda["predicted_ms"] < s["suggestions"][0]["predicted_ms"]
    from daydream.suggest import suggest
    from daydream.trace import load
    by_time = suggest(load(shared(V100_0)), rank="predicted")
    names = [x["name"] for x in by_time["suggestions"]]
    assert by_time["ranking"] == "predicted" and names.index("cuda-graphs") < names.index("dataloader")
    assert [x["predicted_ms"] for x in by_time["suggestions"]] == sorted(x["predicted_ms"] for x in by_time["suggestions"])
    with pytest.raises(DaydreamError, match="rank 'fastest' is not one of checked, predicted"):
        suggest(load(shared(V100_0)), rank="fastest")


def test_analyze_of_a_cpu_trace_says_there_is_no_gpu():
    """A trace without GPU events has no GPU busy figure: the text says so and shows no GPU columns;
    --json keeps the contract's `gpu_busy_pct` key, null, with `has_gpu` false."""
    cpu_run = str(REPO / "traces" / "pairs" / "cpu" / "bert" / "base")
    r = CliRunner().invoke(main, ["analyze", cpu_run, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert "gpu_busy_pct" in d and d["gpu_busy_pct"] is None and d["has_gpu"] is False
    r = CliRunner().invoke(main, ["analyze", cpu_run])
    assert r.exit_code == 0, r.output
    assert "no GPU in the trace" in r.output and "GPU busy" not in r.output
    header = next(line for line in r.output.splitlines() if line.startswith("operator "))
    assert header.split() == ["operator", "count", "cpu", "self"]
    # a GPU trace keeps its figure and columns
    d = json.loads(CliRunner().invoke(main, ["analyze", str(shared(V100_0)), "--json"]).output)
    assert d["has_gpu"] is True and 0 < d["gpu_busy_pct"] <= 100


def test_a_setting_outside_the_measured_pairs_is_not_checked():
    """checked_params: amp was measured in bf16 on CPU and quantize in int8; fp16 amp (priced from the
    hardware table) and fp8 quantize are the model's figures alone. Other parameters (dataloader
    workers) keep the check: the same model, another value."""
    from daydream.opts.params import parse_opt
    from daydream.suggest import checked_against
    assert checked_against([parse_opt("amp")], "cpu") and not checked_against([parse_opt("amp:dtype=fp16")], "cpu")
    assert checked_against([parse_opt("quantize")], "cpu")
    assert not checked_against([parse_opt("quantize:dtype=fp8")], "cpu")
    assert checked_against([parse_opt("dataloader:workers=8")], "gpu")
    assert not checked_against([parse_opt("cuda-graphs")], "gpu") and not checked_against([parse_opt("amp")], "gpu")
    pair = checked_against([parse_opt("amp"), parse_opt("dataloader")], "cpu")
    assert pair.startswith("amp: ") and "; dataloader: " in pair
    assert not checked_against([parse_opt("amp"), parse_opt("cuda-graphs")], "cpu")


def test_suggest_gives_speedups_without_the_profiler_on_a_cpu_run():
    """A CPU run with a profiler cost: every suggestion also has its step time once the profiler's
    cost is out, the same figure whatif gives (predicted_unprofiled_ms)."""
    from conftest import REPO
    from daydream.suggest import suggest
    from daydream.trace import load
    from daydream.whatif import whatif
    trace = load(REPO / "traces" / "pairs" / "cpu" / "resnet50" / "base")
    s = suggest(trace, top=None)
    assert s["unprofiled_ms"] == pytest.approx(whatif(trace).unprofiled_ms)
    by_name = {x["name"]: x for x in s["suggestions"]}
    assert all(x["predicted_unprofiled_ms"] > 0 for x in s["suggestions"])
    amp = by_name["amp"]
    assert amp["predicted_unprofiled_ms"] == pytest.approx(whatif(trace, ["amp"]).predicted_unprofiled_ms)
    assert amp["unprofiled_speedup"] == pytest.approx(s["unprofiled_ms"] / amp["predicted_unprofiled_ms"], rel=1e-5)


def test_diff_of_two_cpu_runs_says_there_are_no_kernels(tmp_path):
    """Two CPU runs have no GPU kernels: the terminal and the report say so instead of an empty table."""
    runs = REPO / "traces" / "pairs" / "cpu" / "llama"
    report = tmp_path / "d.html"
    r = CliRunner().invoke(main, ["diff", str(runs / "base"), str(runs / "fused-optimizer"), "--report", str(report)])
    assert r.exit_code == 0, r.output
    assert "kernels: no GPU kernels in either trace" in r.output and "kernels by contribution" not in r.output
    assert "No GPU kernels in either trace." in report.read_text()


def test_suggest_carries_the_runs_warnings(tmp_path):
    """What every figure of a run carries (here: run.json says the recording stopped early) heads
    suggest's output and is in its JSON; a run without one has an empty list."""
    import json as _json
    import shutil
    from conftest import REPO
    run = tmp_path / "run"
    shutil.copytree(REPO / "traces" / "pairs" / "cpu" / "llama" / "base", run)
    doc = _json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(_json.dumps({**doc, "complete": False}))
    r = CliRunner().invoke(main, ["suggest", str(run), "--top", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert any(w.startswith("incomplete run") for w in _json.loads(r.output)["warnings"])
    r = CliRunner().invoke(main, ["suggest", str(run), "--top", "1"])
    assert "warning: incomplete run" in " ".join(r.output.split())
    r = CliRunner().invoke(main, ["suggest", str(REPO / "traces" / "pairs" / "cpu" / "llama" / "base"), "--top", "1",
                                  "--json"])
    assert _json.loads(r.output)["warnings"] == []


def test_reports_show_the_runs_warnings(tmp_path):
    """analyze's and suggest's HTML reports list what every figure of the run carries."""
    import json as _json
    import shutil
    from conftest import REPO
    run = tmp_path / "run"
    shutil.copytree(REPO / "traces" / "pairs" / "cpu" / "llama" / "base", run)
    doc = _json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(_json.dumps({**doc, "complete": False}))
    for command in ("analyze", "suggest"):
        report = tmp_path / f"{command}.html"
        r = CliRunner().invoke(main, [command, str(run), "--report", str(report)])
        assert r.exit_code == 0, r.output
        assert "<b>warning</b>: incomplete run" in report.read_text(), command


def test_diff_matches_python_frames_whatever_their_objects_address():
    """A Python frame names its object by address, which differs in every process: diff and the
    host speed match `<built-in method run_backward of ... at 0x7fa0...>` across two runs."""
    from daydream.names import without_addresses
    a = "<built-in method run_backward of torch._C._EngineBase object at 0x7fa0ff5a70e0>"
    b = "<built-in method run_backward of torch._C._EngineBase object at 0x7f53bd26f0e0>"
    assert without_addresses(a) == without_addresses(b) != a
    assert without_addresses("aten::mm") == "aten::mm"
    from daydream.diff import _median_durations
    from daydream.trace import load
    from daydream.trace.events import PYTHON
    names = _median_durations(load(shared(BERT)), PYTHON)
    assert names and not any(" at 0x7" in n for n in names)
    assert any(n.endswith("object at 0x…>") for n in names)
