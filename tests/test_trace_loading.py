"""Every shared trace loads, with the contract's analysis window; every input form reads."""
from __future__ import annotations

import gzip
import io
import json
import tarfile

import numpy as np
import pytest

from conftest import SHARED, shared, shared_traces
from daydream.errors import DaydreamError
from daydream.trace import load

# Per-step times the shared traces' README quotes (computed as measured_ms in CONTRACT.md).
README_MS = {
    "kineto/resnet50_v100_num_workers_0.json.gz": 177.6,
    "kineto/resnet50_v100_num_workers_4.json.gz": 141.1,
    "tracelens/gaunernst_bert-small-uncased_h100.json.gz": 4.50,
    "tracelens/gaunernst_bert-small-uncased_mi300.json.gz": 4.14,
    "tracelens/Qwen_Qwen1.5-0.5B-Chat_h100.json.gz": 49.4,
    "tracelens/Qwen_Qwen1.5-0.5B-Chat_mi300.json.gz": 46.9,
}


@pytest.mark.parametrize("path", shared_traces(), ids=lambda p: p.name)
def test_every_shared_trace_loads(path):
    trace = load(path)
    assert len(trace.events) > 0
    assert trace.measured_ms > 0
    assert trace.window.end > trace.window.start


@pytest.mark.parametrize("rel,expected", sorted(README_MS.items()))
def test_measured_matches_readme(rel, expected):
    assert load(shared(rel)).measured_ms == pytest.approx(expected, abs=0.051)


def test_no_step_means_whole_trace_window():
    trace = load(shared("hta/alexnet_a100.json.gz"))
    assert trace.steps == 0
    ev = trace.events
    assert trace.window.start == ev["ts"].min()


def test_step_annotation_picks_another_marker():
    trace = load(shared("param/linear_2080ti.json.gz"), step_annotation="Optimizer.step#SGD.step")
    assert trace.steps > 10
    with pytest.raises(DaydreamError, match="no event named"):
        load(shared("param/linear_2080ti.json.gz"), step_annotation="NoSuchMarker")


def test_multi_rank_archive_loads_every_rank():
    trace = load(shared("param/dlrm_ddp_8rank_v100.tar.gz"))
    assert trace.ranks == list(range(8))
    assert set(trace.events["rank"].unique()) == set(range(8))


def test_directory_of_rank_files(tmp_path):
    src = shared("hta/cuda_event_sync_a100.json.gz")
    doc = json.loads(gzip.decompress(src.read_bytes()))
    for rank in (0, 1):
        d = dict(doc, distributedInfo={"rank": rank, "world_size": 2})
        (tmp_path / f"rank{rank}.json").write_text(json.dumps(d))
    trace = load(tmp_path)
    assert trace.ranks == [0, 1]
    assert len(trace.events) == 2 * len(load(src).events)


def test_run_directory(tmp_path):
    src = shared("hta/cuda_event_sync_a100.json.gz")
    (tmp_path / "trace.json.gz").write_bytes(src.read_bytes())
    (tmp_path / "run.json").write_text(json.dumps({"batch_size": 8}))
    trace = load(tmp_path)
    assert trace.run_dir == tmp_path
    assert trace.measured_ms == pytest.approx(load(src).measured_ms)


def test_bare_event_list_and_plain_json(tmp_path, kineto):
    kineto.step(1, 0, 100)
    kineto.op("aten::mm", 10, 50)
    p = tmp_path / "list.json"
    p.write_text(json.dumps(kineto.events))
    assert load(p).measured_ms == pytest.approx(0.1)


def test_credentials_are_not_kept(tmp_path, kineto):
    kineto.step(1, 0, 100)
    doc = kineto.doc()
    doc["HF_TOKEN"] = "hf_secret"
    doc["metadata"] = {"AWS_SECRET_ACCESS_KEY": "x", "job": "ok"}
    p = tmp_path / "t.json"
    p.write_text(json.dumps(doc))
    meta = load(p).meta[0]
    assert "HF_TOKEN" not in meta
    assert meta["metadata"] == {"job": "ok"}


def test_2021_and_current_formats_agree_on_kinds():
    old = load(shared("kineto/resnet50_v100_num_workers_0.json.gz"))
    new = load(shared("hta/ns_resolution_a100.json.gz"))
    for trace in (old, new):
        kinds = set(trace.kinds().unique())
        assert {"cpu_op", "runtime", "kernel"} <= kinds


def test_tar_archive_in_memory(tmp_path):
    src = shared("hta/triton_example.json.gz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("job/rank_0.json.gz")
        data = src.read_bytes()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    p = tmp_path / "job.tar.gz"
    p.write_bytes(buf.getvalue())
    assert load(p).ranks == [0]


def test_shared_folder_is_present():
    assert SHARED.exists(), "tests expect ../shared/traces beside the repository"


def test_untimed_cuda_records_are_dropped_with_a_warning():
    """A real H100 trace whose CUPTI records all carry ts=0, dur=0 (CPU ops are timed)."""
    from conftest import REPO
    trace = load(REPO / "tests" / "data" / "h100_zero_gpu_timestamps.json.gz")
    assert trace.warnings and "zero timestamps" in trace.warnings[0]
    assert not trace.has_gpu
    assert trace.events["ts"].min() > 10**15
    assert 10 < trace.measured_ms < 1000


def test_top_level_api():
    import daydream
    trace = daydream.load(shared("hta/cuda_event_sync_a100.json.gz"))
    assert daydream.simulate(daydream.build_graph(trace)).per_step_ms == pytest.approx(trace.measured_ms)
    assert daydream.predict(trace).replay_ms == pytest.approx(trace.measured_ms)
    assert daydream.predict(trace, []).speedup == pytest.approx(1.0)
    assert daydream.analyze(trace)["steps"] == trace.steps


def _scan(raw_events):
    from daydream.trace import events as E
    from daydream.trace import fast
    table = E.EventTable()
    return fast.scan(raw_events, table.names, lambda v: E._int_id(v, table._odd), table._kind_of,
                     lambda v: E._as_int(v, None))


def test_fast_and_generic_paths_agree():
    from daydream.trace import from_raw
    from daydream.trace.reader import RawTrace
    src = shared("tracelens/gaunernst_bert-small-uncased_h100.json.gz")
    doc = json.loads(gzip.decompress(src.read_bytes()))
    events = doc.pop("traceEvents")
    generic = from_raw([RawTrace("g", 0, doc, events)], "g")
    typed = load(src)
    cols = ["rank", "kind", "pid", "tid", "device", "stream", "ts", "dur", "corr", "ext", "seq"]
    assert (generic.events[cols].to_numpy() == typed.events[cols].to_numpy()).all()
    assert list(generic.name_of(generic.events["name"])) == list(typed.name_of(typed.events["name"]))
    row = int(np.flatnonzero(typed.events["kind"].to_numpy() == 0)[5])
    assert typed.args_of(row) == generic.args_of(row)


def test_events_without_args_stay_on_the_fast_path():
    import msgspec
    from daydream.trace import fast
    evs = fast.RawEvents(msgspec.Raw(
        b'[{"ph":"X","cat":"cpu_op","name":"a","pid":1,"tid":1,"ts":1,"dur":2},'
        b'{"ph":"X","cat":"cpu_op","name":"b","pid":1,"tid":1,"ts":1,"dur":2,"args":null},'
        b'{"ph":"X","cat":"cpu_op","name":"c","pid":1,"tid":1,"ts":1,"dur":2,"args":{"correlation":5}}]'))
    cols = _scan(evs)[0]
    assert cols["corr"].tolist() == [-1, -1, 5]
