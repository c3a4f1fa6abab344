"""The what-if report of the real V100 ResNet-50 trace, rendered by headless Chromium.

Chromium loads the file with the network cut off (`file://`, no proxy), runs plotly.js under a
virtual time budget and dumps the resulting DOM; console messages (JavaScript errors included)
go to its stderr log as `CONSOLE` lines.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import shared
from daydream.cli import main

CHROMIUM = Path("/usr/bin/chromium")
FIGURES = ("phases", "timelines", "critical_path", "kernels", "layers")


def render(page: Path, profile: Path) -> tuple[str, str]:
    """DOM after load and Chromium's log."""
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # any network request fails
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--window-size=1400,3000",
         "--virtual-time-budget=30000", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (Debian package `chromium`); "
                                                  "the report's rendering is not checked")
def test_whatif_report_renders_offline_without_errors(tmp_path):
    out = tmp_path / "r.html"
    r = CliRunner().invoke(main, ["whatif", str(shared("kineto/resnet50_v100_num_workers_0.json.gz")),
                                  "--opt", "amp", "--report", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert out.stat().st_size < 15e6
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*['\"]?https?://", page, re.I)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*['\"]?https?://", page, re.I)

    dom, log = render(out, tmp_path / "profile")
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert not console, "the page logged:\n" + "\n".join(console)
    # Every figure drew: plotly put its container and SVG layers in each figure's div.
    for div in FIGURES:
        m = re.search(rf'<div id="{div}"[^>]*>(.*?)</div>\s*<script', dom, re.S)
        assert m and "plot-container" in m.group(1) and "main-svg" in m.group(1), f"figure {div} did not draw"
    # The timeline drew bars (plotly renders each bar as a <path> inside g.point).
    timeline = re.search(r'<div id="timelines".*?</div>\s*<script', dom, re.S).group(0)
    assert timeline.count('class="point"') > 1000
    assert "predicted: amp" in dom and "critical path" in dom


VIEW_FIGURES = {  # report -> the figures it draws
    "analyze": FIGURES + ("operators", "idle"),
    "diff": ("phases",),
    "suggest": ("suggestions",),
}
VIEW_SECTIONS = {  # report -> section ids that hold tables or summaries
    "analyze": ("operators", "kernels_view", "idle", "launches"),
    "diff": ("phases", "operators", "kernels"),
    "suggest": ("suggestions", "skipped"),
}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (Debian package `chromium`); "
                                                  "the report's rendering is not checked")
@pytest.mark.parametrize("report", ["analyze", "diff", "suggest"])
def test_view_reports_render_offline_without_errors(tmp_path, report):
    v100 = str(shared("kineto/resnet50_v100_num_workers_0.json.gz"))
    args = {"analyze": ["analyze", v100],
            "diff": ["diff", v100, str(shared("kineto/resnet50_v100_num_workers_4.json.gz"))],
            "suggest": ["suggest", str(shared("tracelens/gaunernst_bert-small-uncased_h100.json.gz"))]}[report]
    out = tmp_path / "r.html"
    r = CliRunner().invoke(main, args + ["--report", str(out)])
    assert r.exit_code == 0, r.output
    dom, log = render(out, tmp_path / "profile")
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert not console, "the page logged:\n" + "\n".join(console)
    for div in VIEW_FIGURES[report]:
        m = re.search(rf'<div id="{div}"[^>]*>(.*?)</div>\s*<script', dom, re.S)
        assert m and "plot-container" in m.group(1) and "main-svg" in m.group(1), f"figure {div} did not draw"
    for section in VIEW_SECTIONS[report]:
        assert re.search(rf'<h2 id="?view-{section}"?>', dom), f"section {section} missing"
    if report == "analyze":
        assert "aten::cudnn_convolution" in dom and "host-bound" in dom and "launch→start" in dom
    if report == "diff":
        assert "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__" in dom
    if report == "suggest":
        assert "cuda-graphs" in dom and "already computes in bf16" in dom
