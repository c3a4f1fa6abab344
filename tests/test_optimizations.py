"""Optimization records: every built-in is complete and documented, and a new optimization is one
module with its record (registered from user code or declared as an entry point)."""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest
from click.testing import CliRunner

import daydream
from conftest import REPO, shared
from daydream.cli import main
from daydream.errors import DaydreamError
from daydream.opts import params
from daydream.opts.params import SPECS, Optimization, Param, optimizations, unchanged_memory

# Modules of daydream/opts/ that are not optimizations (helpers start with '_').
NOT_OPTIMIZATIONS = {"params", "context"}
TRACE = "tracelens/gaunernst_bert-small-uncased_h100.json.gz"  # small, with [memory] events

TOY = '''
"""toy-slow-kernels:factor=F -- every kernel takes F times as long; activations F times the bytes."""
import numpy as np

from daydream.opts.params import Optimization, Param
from daydream.transform import primitives as P


def apply(graph, params, ctx):
    kernels = np.flatnonzero(P.select(graph, kind="kernel"))
    P.scale(graph, kernels, params["factor"])
    ctx.notes.append(f"toy: {len(kernels)} kernels x{params['factor']}")


def memory(st, factor):
    st.scale(("activation",), factor)
    st.notes.append(f"toy: activations x{factor}")


OPTIMIZATION = Optimization(
    name="toy-slow-kernels",
    summary="every kernel slower by a factor (a test's toy)",
    params={"factor": Param(2.0, "kernel time multiplier", float, 1.0, 10.0)},
    apply=apply,
    memory=memory,
    doc="docs/extending.md",
)
'''


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    """The toy optimization as a user would write it: one module holding apply, memory and record."""
    (tmp_path / "toy_slow_kernels.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(params, "_REGISTERED", {})  # registrations stay inside this test
    yield importlib.import_module("toy_slow_kernels")
    sys.modules.pop("toy_slow_kernels", None)


def test_every_opts_module_has_a_complete_documented_record():
    modules = [m.name for m in pkgutil.iter_modules([str(REPO / "daydream" / "opts")]) if not m.name.startswith("_")]
    records = optimizations()
    assert len(records) == len(modules) - 2  # params and context hold no optimization
    index = (REPO / "docs" / "optimizations.md").read_text()
    for name in modules:
        module = importlib.import_module(f"daydream.opts.{name}")
        record = getattr(module, "OPTIMIZATION", None)
        if name in NOT_OPTIMIZATIONS:
            assert record is None
            continue
        assert isinstance(record, Optimization), f"daydream/opts/{name}.py has no OPTIMIZATION record"
        assert record.name.replace("-", "_") == name and records[record.name] is record
        assert record.summary and record.apply is module.apply
        assert callable(record.memory_model()), record.memory
        assert all(isinstance(p, Param) and p.help for p in record.params.values())
        assert record.doc == f"docs/optimizations/{record.name}.md" and (REPO / record.doc).is_file()
        assert f"(optimizations/{record.name}.md)" in index, f"docs/optimizations.md lacks {record.name}'s row"
        assert SPECS[record.name] is record


def test_a_record_lacking_a_part_is_refused():
    good = dict(name="x", summary="s", params={}, apply=lambda g, p, c: None, memory=unchanged_memory("x"),
                doc="docs/x.md")
    Optimization(**good)
    for part, bad in [("summary", ""), ("doc", ""), ("apply", None), ("memory", None), ("memory", "no_colon"),
                      ("params", {"k": 3}), ("name", "Bad Name")]:
        with pytest.raises(DaydreamError, match="record lacks|name"):
            Optimization(**{**good, part: bad})


def test_registered_toy_optimization_runs_in_whatif_and_memory(toy_module):
    trace = shared(TRACE)
    daydream.register(toy_module.OPTIMIZATION)
    assert "toy-slow-kernels" in SPECS and "toy-slow-kernels" in [o["name"] for o in _opts_json()]
    result = daydream.predict(str(trace), ["toy-slow-kernels:factor=3"])
    assert result.predicted_ms > result.replay_ms and any(n.startswith("toy:") for n in result.notes)
    out = CliRunner().invoke(main, ["memory", str(trace), "--opt", "toy-slow-kernels", "--json"])
    assert out.exit_code == 0, out.output
    mem = json.loads(out.stdout)
    assert "toy: activations x2.0" in mem["model"]
    out = CliRunner().invoke(main, ["whatif", str(trace), "--opt", "toy-slow-kernels:factor=11"])
    assert out.exit_code == 2 and "out of range" in out.stderr


def test_register_refuses_a_known_name_unless_replacing(toy_module):
    amp = SPECS["amp"]
    with pytest.raises(DaydreamError, match="already known"):
        daydream.register(Optimization("amp", "mine", {}, amp.apply, amp.memory, "docs/x.md"))
    mine = daydream.register(Optimization("amp", "mine", {}, amp.apply, amp.memory, "docs/x.md"), replace=True)
    assert SPECS["amp"] is mine


def test_entry_point_optimizations_are_found(toy_module, monkeypatch):
    ep = EntryPoint("toy", "toy_slow_kernels:OPTIMIZATION", "daydream.optimizations")
    monkeypatch.setattr(params, "entry_points", lambda group: [ep] if group == "daydream.optimizations" else [])
    assert SPECS["toy-slow-kernels"] is toy_module.OPTIMIZATION


def test_a_broken_entry_point_is_one_line(monkeypatch):
    monkeypatch.setattr(params, "_REGISTERED", {})
    ep = EntryPoint("gone", "no_such_module_here:OPTIMIZATION", "daydream.optimizations")
    monkeypatch.setattr(params, "entry_points", lambda group: [ep])
    out = CliRunner().invoke(main, ["opts"])
    assert out.exit_code == 2 and "daydream.optimizations:gone" in out.stderr and "ModuleNotFoundError" in out.stderr


def _opts_json():
    out = CliRunner().invoke(main, ["opts", "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)["optimizations"]
