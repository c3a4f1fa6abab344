"""Output readable anywhere: no name a user types and no number cut at 80 columns in a pipe; long
kernel names shortened in the middle but kept distinct; added lanes named."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from conftest import REPO, shared
from daydream.opts.params import SPECS
from daydream.report.frames import kernel_table, resource_labels
from daydream.report.html import grouped_figure
from daydream.report.shorten import distinct_labels, shorten_middle
from daydream.trace import load
from daydream.whatif import whatif


def _cli(*args) -> str:
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", "from daydream.cli import main; main()", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_shorten_middle_keeps_both_ends():
    name = "void at::native::vectorized_elementwise_kernel<4, at::native::AddFunctor<float>, Array<char*, 3>>"
    short = shorten_middle(name, 40)
    assert len(short) == 40 and short.startswith("void at::native::vec") and short.endswith("3>>")
    assert shorten_middle("volta_sgemm_64x64_nt", 40) == "volta_sgemm_64x64_nt"


def test_distinct_labels_never_merge_names():
    names = ["void k<4, " + "x" * 80 + f"Functor{i}" + "y" * 80 + ">" for i in range(3)] + ["short"]
    labels = distinct_labels(names, 40)
    assert len(set(labels)) == 4 and labels[-1] == "short"


def test_opts_in_a_pipe_at_80_columns_shows_every_name_whole():
    out = _cli("opts")
    assert "…" not in out
    for spec in SPECS.values():
        assert spec.name in out
        for key, p in spec.params.items():
            assert f"{key}={p.default}" in out
    assert "H100-SXM5-80GB" in out and "V100-SXM2-32GB" in out  # the hardware table


def test_analyze_in_a_pipe_at_80_columns_cuts_no_number():
    import json
    path = str(shared("kineto/resnet50_v100_num_workers_0.json.gz"))
    data = json.loads(_cli("analyze", path, "--json"))
    out = _cli("analyze", path)
    for k in data["top_kernels"]:
        assert f"{k['total_ms']:.3f}" in out
    assert "….." not in out and not any(line.rstrip().endswith("…│") for line in out.splitlines())


def test_top_kernels_chart_has_one_bar_per_distinct_kernel():
    tr = load(shared("kineto/resnet50_v100_num_workers_0.json.gz"))
    table = kernel_table(whatif(tr).base).sort_values(ascending=False)[:15].to_frame("replay")
    fig = grouped_figure("top kernels", table, "ms")
    assert len(set(fig.data[0].y)) == len(table) == 15
    assert np.allclose(fig.data[0].x, table["replay"].round(4))


def test_added_lanes_have_names_not_negative_ids():
    tr = load(shared("kineto/resnet50_v100_num_workers_0.json.gz"))
    labels = resource_labels(whatif(tr, ["fsdp"]).predicted)
    assert not [lab for lab in labels if " -" in lab], labels
    assert any("fsdp" in lab for lab in labels)


def test_memory_with_a_prediction_at_80_columns_cuts_nothing():
    """Six number columns are wider than 80: the table gets wider, no category or share is cut."""
    out = _cli("memory", str(REPO / "traces" / "pairs" / "cpu" / "resnet50" / "base"),
               "--opt", "activation-checkpointing", "--opt", "amp")
    assert "…" not in out
    for category in ("parameter", "optimizer_state", "autograd_detail", "total"):
        assert f"│ {category}" in out
