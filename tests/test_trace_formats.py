"""The trace-format protocol: a format is `name`, `claims(path)` and `read(path) -> EventColumns`;
Kineto JSON is the fallback, and a new format registered before it is all `load` needs."""
from __future__ import annotations

import csv
import types
from pathlib import Path

import numpy as np
import pytest

from daydream.graph import build_graph
from daydream.sim import simulate
from daydream.trace import formats, load
from daydream.trace.events import KERNEL, KIND_NAMES
from daydream.trace.formats import EventColumns, KinetoJSON, TraceFormat, columns_of
from daydream.trace.reader import RawTrace
from conftest import shared


class StepCSV:
    """A toy format: one CPU op and the kernel it launches per row (step, op_us, kernel_us)."""
    name = "step-csv"

    @staticmethod
    def claims(path: Path) -> bool:
        return path.suffix == ".csv"

    @staticmethod
    def read(path: Path) -> EventColumns:
        events, ts = [], 0.0
        with open(path, newline="") as f:
            for i, row in enumerate(csv.DictReader(f)):
                op, kern = float(row["op_us"]), float(row["kernel_us"])
                events += [
                    {"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{row['step']}", "pid": 1,
                     "tid": 1, "ts": ts, "dur": op + 10, "args": {}},
                    {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1,
                     "ts": ts + 1, "dur": op, "args": {"correlation": i + 1}},
                    {"ph": "X", "cat": "kernel", "name": "toy_kernel", "pid": 0, "tid": 7, "ts": ts + op + 2,
                     "dur": kern, "args": {"correlation": i + 1, "device": 0, "stream": 7}},
                ]
                ts += op + kern + 20
        return columns_of([RawTrace(str(path), 0, {}, events)])


@pytest.fixture
def step_csv(monkeypatch, tmp_path):
    monkeypatch.setattr(formats, "FORMATS", list(formats.FORMATS))
    formats.register_format(StepCSV())
    path = tmp_path / "run.csv"
    path.write_text("step,op_us,kernel_us\n1,5,100\n2,5,100\n3,5,100\n")
    return path


def test_kineto_is_a_trace_format_and_the_fallback():
    assert isinstance(KinetoJSON(), TraceFormat) and formats.FORMATS[-1].name == "kineto"
    assert not isinstance(object(), TraceFormat)


def test_a_registered_format_is_all_load_needs(step_csv):
    trace = load(step_csv)
    assert trace.steps == 3
    kinds = trace.column("kind")
    assert (kinds == KERNEL).sum() == 3 and set(np.unique(kinds)) <= set(range(len(KIND_NAMES)))
    assert simulate(build_graph(trace)).per_step_ms == pytest.approx(trace.measured_ms)


def test_kineto_files_still_load_with_another_format_registered(step_csv):
    trace = load(shared("hta/simple_add_a100.json.gz"))
    assert trace.path.endswith("simple_add_a100.json.gz") and len(trace.column("ts")) > 0


def test_a_module_is_a_format(tmp_path, monkeypatch):
    module = types.ModuleType("my_format")
    module.name, module.claims, module.read = "my-format", StepCSV.claims, StepCSV.read
    monkeypatch.setattr(formats, "FORMATS", list(formats.FORMATS))
    formats.register_format(module)
    path = tmp_path / "m.csv"
    path.write_text("step,op_us,kernel_us\n1,5,100\n")
    assert formats.format_for(path) is module and load(path).steps == 1


def test_register_format_refuses_what_is_not_one():
    with pytest.raises(TypeError):
        formats.register_format(object())
