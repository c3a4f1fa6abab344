"""Issue 10's smaller items: parameter tensors counted once, the CPU capacity line, memory refusing
what whatif refuses, --report saying where it wrote."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from conftest import REPO, shared
from daydream.cli import main
from daydream.memory import _load, memory
from daydream.memory.report import figure
from daydream.memory.timeline import COL, CREATE, DESTROY, PREEXISTING, live_parameter_tensors

CPU_RUN = REPO / "traces" / "pairs" / "cpu" / "resnet50" / "base"


def test_parameters_counted_once_however_often_allocated():
    # 3 parameters built 5 times over (each old copy freed), plus a transient filed as a parameter
    p = COL["parameter"]
    rows = []
    for _ in range(5):
        rows += [(CREATE, 400), (CREATE, 40), (CREATE, 4000)]
        rows += [(DESTROY, -400), (DESTROY, -40), (DESTROY, -4000)]
    rows = rows[:-3] + [(CREATE, 64), (DESTROY, -64)]
    action, delta = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    got = live_parameter_tensors(action, delta, np.full(len(rows), p))
    assert sorted(got.tolist()) == [40, 400, 4000]
    assert live_parameter_tensors(np.array([PREEXISTING]), np.array([8]), np.array([p])).tolist() == [8]


def test_recorded_run_parameter_tensors_match_its_parameter_count():
    tl = _load(str(CPU_RUN))[0]
    run = json.loads((CPU_RUN / "run.json").read_text())
    assert int(tl.param_tensors.sum()) == 4 * run["parameters"]  # fp32: the model's own parameters
    assert len(tl.param_tensors) == 53  # 8 transients the step files under `parameter` left out


def test_cpu_capacity_line_not_drawn_over_a_small_curve():
    report = memory(str(CPU_RUN))
    shapes = figure(report).layout.shapes
    assert not shapes  # 256 GiB is the table's generic host, the curve is ~MiB
    gpu = memory(str(shared("kineto/resnet50_v100_num_workers_0.json.gz")))
    assert len(figure(gpu).layout.shapes) == 1


def test_memory_refuses_gpu_only_optimizations_on_a_cpu_trace_like_whatif():
    for opt in ("cuda-graphs", "gpu"):
        mem = CliRunner().invoke(main, ["memory", str(CPU_RUN), "--opt", opt])
        wif = CliRunner().invoke(main, ["whatif", str(CPU_RUN), "--opt", opt])
        assert mem.exit_code == wif.exit_code == 2
        assert "no GPU work" in mem.output and mem.output.strip().splitlines()[-1] == wif.output.strip().splitlines()[-1]


def test_report_says_where_it_wrote(tmp_path):
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["analyze", str(CPU_RUN), "--report", str(out), "--json"])
    assert res.exit_code == 0 and out.exists()
    json.loads(res.stdout)  # stdout holds only the JSON
    assert f"report written to {out}" in res.stderr
