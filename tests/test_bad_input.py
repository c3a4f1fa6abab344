"""Bad input: one line on stderr, exit status 2, no traceback, nothing half-written."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import shared
from daydream.errors import DaydreamError
from daydream.graph import build_graph
from daydream.sim import simulate
from daydream.trace.reader import open_bytes
from daydream.trace import from_raw


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args):
    """The CLI in-process (fast); test_error_path_in_a_real_process covers the process boundary."""
    from click.testing import CliRunner
    from daydream.cli import main
    r = CliRunner().invoke(main, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return _Result(r.exit_code, r.stdout, r.stderr)


def test_error_path_in_a_real_process(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("this is not json {")
    proc = subprocess.run([sys.executable, "-c", "from daydream.cli import main; main()", "whatif", str(p)],
                          capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, "not valid JSON")


def assert_one_line_error(proc, needle):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle in lines[0]
    assert proc.stdout == ""


@pytest.fixture
def good_doc():
    return json.loads(gzip.decompress(shared("hta/cuda_event_sync_a100.json.gz").read_bytes()))


def test_missing_file(tmp_path):
    assert_one_line_error(run_cli("analyze", tmp_path / "nope.json"), "no such file")


def test_truncated_gzip(tmp_path):
    data = shared("hta/cuda_event_sync_a100.json.gz").read_bytes()
    p = tmp_path / "t.json.gz"
    p.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli("whatif", p, "--json"), "gzip")


def test_not_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("this is not json {")
    assert_one_line_error(run_cli("analyze", p), "not valid JSON")


def test_json_without_trace_events(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"schemaVersion": 1}))
    assert_one_line_error(run_cli("analyze", p), "traceEvents")


def test_empty_event_list(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"traceEvents": []}))
    assert_one_line_error(run_cli("whatif", p), "no events")


def test_events_missing_fields(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"traceEvents": [{"ph": "X", "name": "a"}, {"cat": "kernel"}, {"ph": "M"}]}))
    assert_one_line_error(run_cli("analyze", p), "no complete events")


def test_kernel_whose_launch_is_absent(tmp_path, kineto):
    kineto.step(1, 0, 100)
    kineto.op("aten::mm", 0, 50)
    kineto.events.append({"ph": "X", "cat": "kernel", "name": "sgemm", "pid": 0, "tid": 7, "ts": 10, "dur": 5,
                          "args": {"device": 0, "stream": 7, "correlation": 999}})
    p = kineto.write(tmp_path / "t.json")
    assert_one_line_error(run_cli("whatif", p), "no launching runtime call")


def test_unknown_opt_and_bad_param(tmp_path):
    p = shared("hta/cuda_event_sync_a100.json.gz")
    assert_one_line_error(run_cli("whatif", p, "--opt", "warp-drive"), "unknown optimization")
    assert_one_line_error(run_cli("whatif", p, "--opt", "ddp:world_size=0"), "out of range")
    assert_one_line_error(run_cli("whatif", p, "--opt", "ddp:flux=3"), "unknown parameter")
    assert_one_line_error(run_cli("whatif", p, "--opt", "ddp:world_size=many"), "is not a int")


def test_export_into_missing_directory_writes_nothing(tmp_path):
    out = tmp_path / "no" / "such" / "dir" / "x.json"
    proc = run_cli("whatif", shared("hta/cuda_event_sync_a100.json.gz"), "--export-trace", out)
    assert_one_line_error(proc, "does not exist")
    assert not out.exists()


def test_export_is_atomic_and_valid(tmp_path):
    out = tmp_path / "pred.json"
    proc = run_cli("whatif", shared("hta/cuda_event_sync_a100.json.gz"), "--json", "--export-trace", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert any(e["ph"] == "X" for e in doc["traceEvents"])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# Mutations of a real trace: the loader and the pipeline either work or raise DaydreamError.
JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
                       | st.text(max_size=8), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                       max_leaves=5)
KEYS = st.sampled_from(["ph", "cat", "name", "pid", "tid", "ts", "dur", "args", "id", "s", "bp"])
ARG_KEYS = st.sampled_from(["correlation", "External id", "device", "stream", "Sequence number",
                            "wait_on_stream", "wait_on_cuda_event_record_corr_id", "Bytes", "Total Allocated"])
MUTATION = st.tuples(st.integers(0, 10_000), st.sampled_from(["drop", "set", "args", "delete_event", "dup"]),
                     KEYS, ARG_KEYS, JSONISH)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(MUTATION, min_size=1, max_size=8))
def test_mutated_real_trace_never_crashes(good_doc, mutations):
    doc = json.loads(json.dumps(good_doc))
    events = doc["traceEvents"]
    for index, what, key, arg_key, value in mutations:
        if not events:
            break
        e = events[index % len(events)]
        if what == "drop":
            e.pop(key, None)
        elif what == "set":
            e[key] = value
        elif what == "args":
            if not isinstance(e.get("args"), dict):
                e["args"] = {}
            e["args"][arg_key] = value
        elif what == "delete_event":
            events.pop(index % len(events))
        else:
            events.append(json.loads(json.dumps(e)))
    try:
        raw = open_bytes(json.dumps(doc, allow_nan=True).encode())
        trace = from_raw([raw], "mutated")
        simulate(build_graph(trace))
    except DaydreamError:
        pass


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3000))
def test_truncated_bytes_never_crash(cut):
    data = shared("hta/cuda_event_sync_a100.json.gz").read_bytes()
    raw_json = gzip.decompress(data)
    for blob in (data[:cut], raw_json[:cut]):
        try:
            from_raw([open_bytes(blob)], "cut")
        except DaydreamError:
            pass


def test_output_under_a_file_is_refused_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_cli("whatif", shared("hta/cuda_event_sync_a100.json.gz"), "--export-trace", blocker / "x.json")
    assert_one_line_error(proc, "is not a directory")


def test_trace_with_no_timed_work(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"traceEvents": [{"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#1",
                                              "pid": 1, "tid": 1, "ts": 5, "dur": 0}]}))
    assert_one_line_error(run_cli("analyze", p), "no timed work")
