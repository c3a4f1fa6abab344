"""HTML reports (timeline downsampling, page content) and whatif scenarios (syntax, CLI, JSON)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import KinetoBuilder, shared
from daydream.cli import main
from daydream.errors import DaydreamError
from daydream.graph import build_graph
from daydream.graph.schema import T_IDLE, T_KERNEL
from daydream.report.html import timeline_bars, whatif_page
from daydream.scenarios import compare, load_scenarios, parse_scenario, split_opts
from daydream.trace import load


def run_cli(*args):
    """The CLI in-process (a subprocess costs seconds of imports per call)."""
    r = CliRunner().invoke(main, [str(a) for a in args])
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    r.returncode = r.exit_code
    return r


def small_trace(path):
    """One 1 ms step: 50 back-to-back 1 us kernels at 100-150 us, one 300 us kernel at 400 us."""
    b = KinetoBuilder()
    b.step(1, 0, 1000)
    b.op("aten::mm", 10, 900)
    for i in range(50):
        b.launch(20 + 3 * i, 2, 100 + i, 1, name="k_small")
    b.launch(200, 5, 400, 300, name="ampere_sgemm_big")
    return b.write(path / "t.json")


# ---------------------------------------------------------------- downsampling


def _stream_bars(graph, max_bars):
    t = graph.tasks
    rows = np.where(t["kind"].to_numpy() == T_KERNEL, t["resource"].to_numpy(), -1)
    return timeline_bars(graph, t["obs_start"].to_numpy(), t["obs_end"].to_numpy(), (0, 1_000_000), max_bars,
                         rows=rows)


def test_bars_keep_every_task_when_they_fit(tmp_path):
    graph = build_graph(load(small_trace(tmp_path)))
    bars = _stream_bars(graph, 51)
    # Resolution 1 ms / 4000 = 0.25 us: the 1 us kernels are wider than a pixel, so none merge.
    assert len(bars) == 51 and (bars["count"] == 1).all()
    assert bars["start"].iloc[0] == pytest.approx(0.100) and bars["end"].iloc[-1] == pytest.approx(0.700)


def test_bars_merge_tiny_neighbours_under_a_cap(tmp_path):
    graph = build_graph(load(small_trace(tmp_path)))
    bars = _stream_bars(graph, 10)
    # 51 bars > 10: the resolution doubles 0.25 -> 0.5 -> 1 -> 2 us; then the 1 us kernels are
    # tiny and touch, so they become one fully busy bar; the 300 us kernel stays alone.
    assert bars["count"].tolist() == [50, 1]
    assert bars["start"].tolist() == pytest.approx([0.100, 0.400])
    assert bars["end"].tolist() == pytest.approx([0.150, 0.700])
    assert bars["busy"].tolist() == pytest.approx([1.0, 1.0])
    assert "50 tasks merged" in bars["text"].iloc[0] and "k_small" in bars["text"].iloc[0]
    assert bars["text"].iloc[1].startswith("ampere_sgemm_big")


def test_bars_of_a_real_trace_cover_every_task_under_the_cap():
    tr = load(shared("kineto/resnet50_v100_num_workers_0.json.gz"))
    graph = build_graph(tr)
    t = graph.tasks
    s, e = t["obs_start"].to_numpy(), t["obs_end"].to_numpy()
    w = (int(s[t["in_window"]].min()), int(e[t["in_window"]].max()))
    bars = timeline_bars(graph, s, e, w, 3000)
    assert 1000 < len(bars) <= 3000 < len(t)
    visible = (t["kind"].to_numpy() != T_IDLE) & (np.clip(e, *w) > np.clip(s, *w))
    assert bars["count"].sum() == visible.sum()
    # Merged bars only hold short tasks: every bar longer than the final resolution that merges
    # several tasks is a run of tasks each shorter than it.
    assert (bars["end"] >= bars["start"]).all() and bars["busy"].between(0, 1).all()
    assert bars["end"].max() <= (w[1] - w[0]) / 1e6 + 1e-9


# ---------------------------------------------------------------- scenario syntax


def test_scenario_syntax():
    assert split_opts("amp;fsdp:world_size=8") == ["amp", "fsdp:world_size=8"]
    assert split_opts("amp,fsdp:world_size=8") == ["amp", "fsdp:world_size=8"]
    assert split_opts("ddp:world_size=8,bucket_mb=25,amp") == ["ddp:world_size=8,bucket_mb=25", "amp"]
    s = parse_scenario("big=ddp:world_size=4,bucket_mb=50;amp")
    assert s.name == "big"
    assert [(o.name, o.params.get("world_size"), o.params.get("bucket_mb")) for o in s.opts] == [
        ("ddp", 4, 50.0), ("amp", None, None)]
    assert parse_scenario("amp; dataloader:workers=2").name == "amp; dataloader:workers=2"
    assert parse_scenario("none=").opts == []


@pytest.mark.parametrize("text, needle", [
    ("ddp:world_size=8;bucket_mb=25", "follows no optimization"),
    ("amp,bucket_mb=2", "follows no optimization"),
    ("warp", "unknown optimization"),
    ("ddp:world_size=0", "out of range"),
])
def test_bad_scenarios(text, needle):
    with pytest.raises(DaydreamError, match=needle):
        parse_scenario(text)


def test_scenarios_file(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[scenarios]\nfast = ["amp", "dataloader:workers=8"]\n"just amp" = "amp"\n')
    got = load_scenarios(p)
    assert [s.name for s in got] == ["fast", "just amp"]
    assert [o.name for o in got[0].opts] == ["amp", "dataloader"] and got[0].opts[1].params["workers"] == 8
    y = tmp_path / "s.yaml"
    y.write_text("fast:\n  - amp\n  - dataloader:workers=8\n")
    pytest.importorskip("yaml")
    assert [o.name for o in load_scenarios(y)[0].opts] == ["amp", "dataloader"]
    bad = tmp_path / "bad.toml"
    bad.write_text("fast = [1, 2]\n")
    with pytest.raises(DaydreamError, match="list of --opt strings"):
        load_scenarios(bad)
    bad.write_text("fast = [\n")
    with pytest.raises(DaydreamError, match="not valid TOML"):
        load_scenarios(bad)


# ---------------------------------------------------------------- report page and CLI


def test_page_is_offline_and_holds_every_section(tmp_path):
    tr = load(small_trace(tmp_path))
    results = compare(tr, [parse_scenario("replay="), parse_scenario("again=")])
    page = whatif_page(results, ["replay", "again"])
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js is inline
    assert page.count("<script") == 1 + 5  # plotly.js once, then one per figure
    for div in ("phases", "timelines", "critical_path", "kernels", "layers"):
        assert f'id="{div}"' in page
    assert "predicted: again" in page and "ampere_sgemm_big" in page


def test_whatif_scenarios_json_and_report(tmp_path):
    trace = small_trace(tmp_path)
    out = tmp_path / "r.html"
    proc = run_cli("whatif", trace, "--scenario", "a=", "--scenario", "b=", "--json", "--report", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in ("trace", "device", "steps", "measured_ms", "replay_ms", "predicted_ms", "speedup",
                "optimizations", "breakdown"):
        assert key in data
    assert [s["name"] for s in data["scenarios"]] == ["a", "b"]
    assert data["scenarios"][0]["predicted_ms"] == data["predicted_ms"] == pytest.approx(1.0)
    assert set(data["scenarios"][1]) >= {"name", "optimizations", "predicted_ms", "speedup", "breakdown"}
    assert out.stat().st_size > 1_000_000 and out.read_text().rstrip().endswith("</html>")
    assert not list(tmp_path.glob(".r.html*"))  # no temporary file left behind


def test_whatif_single_opt_json_has_one_scenario(tmp_path):
    proc = run_cli("whatif", small_trace(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["optimizations"] == [] and [s["name"] for s in data["scenarios"]] == ["replay"]


@pytest.mark.parametrize("extra, needle", [
    (["--scenario", "a=", "--scenario", "b=", "--export-trace", "OUT/x.json"], "one scenario"),
    (["--scenario", "a=", "--scenario", "a="], "two scenarios are named 'a'"),
    (["--scenario", "warp"], "unknown optimization"),
    (["--scenarios", "OUT/none.toml"], "cannot read the scenarios file"),
    (["--report", "OUT/missing/r.html"], "does not exist"),
])
def test_whatif_bad_scenarios_exit_2_and_write_nothing(tmp_path, extra, needle):
    trace = small_trace(tmp_path)
    before = set(tmp_path.iterdir())
    proc = run_cli("whatif", trace, *[a.replace("OUT", str(tmp_path)) for a in extra])
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
    assert set(tmp_path.iterdir()) == before


def test_analyze_report_on_a_multi_rank_trace(tmp_path):
    out = tmp_path / "a.html"
    proc = run_cli("analyze", shared("param/dlrm_ddp_8rank_v100.tar.gz"), "--report", out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["measured_ms"] > 0
    page = out.read_text()
    assert 'id="timelines"' in page and "rank 7 GPU 7 stream" in page  # every rank's streams get a lane


def test_analyze_report_of_a_cpu_only_trace(tmp_path):
    b = KinetoBuilder()
    b.step(1, 0, 1000)
    b.op("aten::conv2d", 10, 500)
    b.op("aten::relu", 600, 300)
    out = tmp_path / "a.html"
    proc = run_cli("analyze", b.write(tmp_path / "cpu.json"), "--report", out)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "Top CPU tasks" in page and "aten::conv2d" in page and "GPU 0 stream" not in page


def test_frames(tmp_path):
    from daydream.report.frames import kernels_frame, layers_frame, scenarios_frame, tasks_frame
    tr = load(small_trace(tmp_path))
    results = compare(tr, [parse_scenario("replay=")])
    tasks = tasks_frame(results[0].predicted)
    kernels = tasks[tasks["kind"] == "kernel"]
    assert len(kernels) == 51 and kernels["dur_ms"].sum() == pytest.approx(0.350)
    assert tasks["on_critical_path"].any()
    k = kernels_frame(results[0].predicted)
    assert k["name"].tolist() == ["ampere_sgemm_big", "k_small"]
    assert k["ms_per_step"].tolist() == pytest.approx([0.300, 0.050])
    assert layers_frame(results[0].predicted).columns.tolist() == ["operator", "ms_per_step"]
    s = scenarios_frame(results, ["replay"])
    assert s.loc["replay", "predicted_ms"] == pytest.approx(1.0) and s.loc["replay", "speedup"] == 1.0
