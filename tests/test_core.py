"""The compiled core (daydream/_core.c): same answers as the generic path, and no crash on any input."""
from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daydream import _core
from daydream.graph import build_graph
from daydream.trace import fast, from_raw
from daydream.trace import events as E
from daydream.trace.reader import RawTrace, open_bytes

# Valid JSON that real traces do contain somewhere: string thread ids, digit-string and hex-string
# args, float ids, escaped names, missing durations, null args, a skipped category, metadata,
# memory counters and fwdbwd flows, keys in any order, whitespace everywhere.
ODD_BUT_VALID = [
    {"ph": "M", "name": "thread_name", "pid": 7, "tid": 7, "args": {"name": "main"}},
    {"ph": "X", "cat": "cpu_op", "name": "aten::mm \"quoted\" \u00e9", "pid": 7, "tid": 7, "ts": 10.5, "dur": 20,
     "args": {"External id": 3, "Sequence number": "12", "Fwd thread id": 1.0}},
    {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 7, "tid": 7, "ts": 12, "dur": 2.25,
     "args": {"correlation": 99, "stream": "0x0", "external id": 4}},
    {"dur": 3, "ts": 15.125, "tid": "stream 7", "pid": 0, "name": "k\\n", "cat": "Kernel",
     "args": {"correlation": 99, "device": 0, "stream": "7"}, "ph": "X"},
    {"ph": "X", "cat": "Kernel", "name": "k2", "pid": 0, "tid": 7, "ts": 19, "args": None},
    {"ph": "X", "cat": "Trace", "name": "PyTorch Profiler (0)", "pid": "Spans", "tid": "PyTorch Profiler", "ts": 1,
     "dur": 100},
    {"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#1", "pid": 7, "tid": 7, "ts": 10, "dur": 30},
    {"ph": "i", "name": "[memory]", "pid": 7, "tid": 7, "ts": 11, "s": "t",
     "args": {"Bytes": 512, "Total Allocated": 512, "Total Reserved": 2048, "Device Type": 1, "Device Id": 0,
              "Addr": 123}},
    {"ph": "s", "cat": "fwdbwd", "name": "fwdbwd", "id": 5, "pid": 7, "tid": 7, "ts": 10.5},
    {"ph": "f", "cat": "ac2g", "name": "ac2g", "id": 99, "pid": 7, "tid": 7, "ts": 12, "bp": "e"},
    {"ph": "X", "cat": "python_function", "name": "<built-in>", "pid": 7, "tid": 7.0, "ts": 10, "dur": 30,
     "args": {"Python id": 1, "nested": {"device": "not me"}, "list": [1, {"stream": 2}]}},
]


def _both_paths(events: list):
    doc = {"schemaVersion": 1, "traceEvents": events}
    data = json.dumps(doc, indent=1).encode()
    fast_raw = open_bytes(data, "fast")
    assert isinstance(fast_raw.events, fast.RawEvents)
    generic = from_raw([RawTrace("g", 0, {}, json.loads(data)["traceEvents"])], "g")
    return from_raw([fast_raw], "fast"), generic


def test_scanner_accepts_odd_but_valid_events():
    table = E.EventTable()
    decoded = fast.decode(json.dumps({"traceEvents": ODD_BUT_VALID}).encode())
    assert fast.scan(decoded[1], table.names, lambda v: E._int_id(v, table._odd), table._kind_of,
                     lambda v: E._as_int(v, None)) is not None


def test_scanner_and_generic_path_agree():
    typed, generic = _both_paths(ODD_BUT_VALID)
    cols = ["rank", "kind", "pid", "tid", "device", "stream", "ts", "dur", "corr", "ext", "seq", "fwd_tid"]
    assert typed.events[cols].to_numpy().tolist() == generic.events[cols].to_numpy().tolist()
    assert list(typed.name_of(typed.events["name"])) == list(generic.name_of(generic.events["name"]))
    for row in range(len(typed.events)):
        assert typed.args_of(row) == generic.args_of(row)
    assert typed.memory_events.to_numpy().tolist() == generic.memory_events.to_numpy().tolist()
    assert typed.flows.to_numpy().tolist() == generic.flows.to_numpy().tolist()
    assert typed.thread_names == generic.thread_names
    # the hex-string stream of the runtime call is not an integer; the kernel's "7" is
    kernel = typed.events[typed.name_of(typed.events["name"]) == "k\\n"]
    assert kernel["stream"].tolist() == [7]


@pytest.mark.parametrize("bad", [
    {"ph": "X", "cat": "cpu_op", "name": 5, "pid": 1, "tid": 1, "ts": 1, "dur": 1},        # name not a string
    {"ph": "X", "cat": "cpu_op", "name": "a", "pid": 1, "tid": 1, "ts": "1", "dur": 1},    # ts a string
    {"ph": "X", "cat": "cpu_op", "name": "a", "pid": 1, "tid": 1, "ts": True, "dur": 1},   # ts a boolean
    {"ph": "X", "cat": "cpu_op", "name": "a", "pid": None, "tid": 1, "ts": 1, "dur": 1},   # pid null
    {"ph": "X", "cat": "cpu_op", "name": "a", "pid": 1, "tid": 1, "ts": 1e300, "dur": 1},  # ts out of range
    {"ph": "X", "cat": "cpu_op", "name": "a", "pid": 1, "tid": 1, "ts": 1, "args": [1]},   # args a list
    {"ph": "X", "cat": ["cpu_op"], "name": "a", "pid": 1, "tid": 1, "ts": 1, "dur": 1},    # cat a list
])
def test_odd_events_take_the_generic_path(bad):
    """What the scanner does not accept as ordinary goes to the generic path, which decides."""
    table = E.EventTable()
    events = fast.RawEvents(msgspec.Raw(json.dumps([ODD_BUT_VALID[1], bad]).encode()))
    assert fast.scan(events, table.names, lambda v: E._int_id(v, table._odd), table._kind_of,
                     lambda v: E._as_int(v, None)) is None


_scan_args = lambda: ({}, [], {}, lambda v: 0, {}, lambda c: 0, {}, lambda v: None, lambda b: "", -1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_scanner_survives_any_bytes(data):
    """Garbage in: None (odd) or columns, never a crash; the scanner must not trust its input."""
    out = _core.scan(data, *_scan_args())
    assert out is None or (isinstance(out, tuple) and len(out[0]) % (14 * 8) == 0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(json.dumps(ODD_BUT_VALID)) - 1), st.sampled_from(list(b'{}[]",:0-.e\\ ntf')))
def test_scanner_survives_one_byte_changed(pos, byte):
    data = bytearray(json.dumps(ODD_BUT_VALID).encode())
    data[pos] = byte
    out = _core.scan(bytes(data), *_scan_args())
    assert out is None or isinstance(out, tuple)


def test_replay_and_segment_check_their_arrays():
    z = lambda n: np.zeros(n, np.int64)
    with pytest.raises(ValueError):  # an edge into a node that does not exist
        _core.replay(np.array([0, 1, 1], np.int64), np.array([5], np.int64), z(1), z(2), z(1), z(2), z(2), z(2), -1)
    with pytest.raises(TypeError):  # int32 where int64 is expected
        _core.replay(np.zeros(3, np.int32), z(0), z(0), z(2), z(1), z(2), z(2), z(2), -1)
    with pytest.raises(ValueError):  # a row index beyond the events
        _core.segment(np.array([3], np.int64), np.array([0, 1], np.int64), np.zeros(1, np.int32), z(1), z(1),
                      np.zeros(1, np.int8), np.zeros(1, np.int32), z(1), z(1), np.zeros(1, np.int8),
                      np.zeros(1, np.int8), z(1), (0, 3, 0, 1, 2, -1))


def test_replay_reports_overflow_as_an_error():
    from daydream.errors import DaydreamError
    from daydream.trace import load
    from daydream.sim import simulate
    from conftest import shared
    g = build_graph(load(shared("hta/cuda_event_sync_a100.json.gz")))
    g.tasks.loc[0, "dur"] = np.iinfo(np.int64).max // 2
    g.edges["delay"] = np.iinfo(np.int64).max // 2
    with pytest.raises(DaydreamError, match="overflows"):
        simulate(g)


_B = b'"name":"a","cat":"kernel","pid":1,"tid":2,"ts":1.5,"dur":3'


@pytest.mark.parametrize("events", [
    b'[{"p\\u0068":"X",' + _B + b'}]',                                              # escaped key
    b'[{"ph":"X",' + _B + b',"\\u0061rgs":{"correlation":7}}]',
    b'[{"ph":"X",' + _B + b',"args":{"c\\u006frrelation":7}}]',                      # escaped arg key
    b'[{"ph":"\\u0058",' + _B + b'}]',                                              # escaped ph
    b'[{"ph":"s","cat":"fwd\\u0062wd","id":3,"pid":1,"tid":2,"ts":1}]',              # escaped flow category
    b'[{"ph":"X",' + _B + b',"args":{"correlation":7,"device":3},"args":null}]',    # a later null args
    b'[{"ph":"X",' + _B + b',"args":{"External id":null,"external id":5}}]',        # a given null wins
    b'[{"ph":"X","name":"a","cat":"kernel","pid":1,"tid":2,"ts":1.5,"dur":null}]',  # null duration: skipped
    b'[{"ph":"X",' + _B + b',"args":{"correlation":1000000000000000000}}]',         # 19 digits, exact
    b'[{"ph":"s","cat":"fwdbwd","id":1000000000000000001,"pid":1,"tid":2,"ts":1}]',
    b'[{"ph":"X",' + _B + b',"args":{"device":-2305843009213693952}}]',             # an id far out
    b'[{"ph":"M","name":"thread_name","pid":1,"tid":"foo","args":{"name":"T"}},'    # odd thread ids in order
    b'{"ph":"X","name":"a","cat":"cpu_op","pid":1,"tid":"bar","ts":1,"dur":1}]',
    b'[{"ph":"i","name":"[memory]","pid":1,"tid":1,"ts":2.5,"args":{"Bytes":"512","Addr":1.5,"Device Id":null}},'
    b'{"ph":"i","name":"[memory]","pid":1,"tid":1,"ts":3,"args":null},'                   # memory counters
    b'{"ph":"I","name":"[memory]","pid":1,"tid":1,"ts":4,"args":{"Total Allocated":7}},'
    b'{"ph":"i","name":"other instant","pid":1,"tid":1,"ts":5}]',
    b'[{"ph":"i","name":"[memor\\u0079]","pid":1,"tid":1,"ts":2,"args":{"Bytes":1}}]',  # escaped name
    b'[{"ph":"i","name":"[memory]","pid":1,"tid":1,"ts":"2","args":{"Bytes":1}}]',     # a string time
    b'[{"ph":"i","name":"[memory]","pid":1,"tid":1,"ts":2,"args":{"Bytes":5},"args":{"Addr":1}}]',  # 2nd args
], ids=lambda b: b[:48].decode("ascii", "replace"))
def test_scanner_agrees_with_the_generic_path_on_corner_cases(events):
    """Cases a review found the two paths disagreeing on (escapes, nulls, 19-digit ids...)."""
    raw = msgspec.json.decode(b'{"traceEvents":' + events + b'}', type=dict[str, msgspec.Raw])["traceEvents"]
    fast_table, generic_table = E.EventTable(), E.EventTable()
    fast_table.add_rank(0, fast.RawEvents(raw))
    generic_table.add_rank(0, msgspec.json.decode(raw))
    (fe, fm, ff), (ge, gm, gf) = fast_table.finish(), generic_table.finish()
    for a, b in ((fe, ge), (fm, gm), (ff, gf)):
        assert {k: v.tolist() for k, v in a.items() if k != "args_idx"} == \
               {k: v.tolist() for k, v in b.items() if k != "args_idx"}
    assert fast_table.names.values == generic_table.names.values
    assert fast_table.thread_names == generic_table.thread_names
    assert fast_table.skipped == generic_table.skipped
    assert [fast_table.args[i] for i in range(len(fast_table.args))] == \
           [generic_table.args[i] for i in range(len(generic_table.args))]


def test_bytes_that_are_not_utf8_are_a_clear_error(tmp_path):
    from daydream.errors import DaydreamError
    from daydream.trace import load
    for where in (b',"zz":"\xff"', b',"args":{"x":"\xff"}'):
        p = tmp_path / "t.json"
        p.write_bytes(b'{"traceEvents":[{"ph":"X",' + _B + where + b'}]}')
        with pytest.raises(DaydreamError, match="UTF-8|not valid JSON"):
            load(p)


def test_core_rejects_float_arrays():
    z = lambda n: np.zeros(n, np.int64)
    with pytest.raises(TypeError):
        _core.replay(np.zeros(3), z(0), z(0), z(2), z(1), z(2), z(2), z(2), -1)


def test_scanner_times_equal_pythons_on_random_decimals():
    """The scanner's number paths (exact integers, the fast decimal path, strtod) give the same
    nanoseconds as float() -> x1000 -> round, the generic path's arithmetic."""
    rng = np.random.default_rng(7)
    vals = []
    for _ in range(5000):
        whole = int(rng.integers(0, 16))
        frac = int(rng.integers(0, 20 - whole))
        text = str(int(rng.integers(1, 10**whole))) if whole else "0"
        if frac:
            text += "." + str(int(rng.integers(0, 10**min(frac, 18)))).rjust(frac, "0")
        vals.append(text + ("e0" if rng.random() < 0.05 else ""))
    body = b",".join(b'{"ph":"X","cat":"cpu_op","name":"a","pid":1,"tid":1,"ts":%s,"dur":1}' % v.encode()
                     for v in vals)
    table = E.EventTable()
    cols = fast.scan(fast.RawEvents(msgspec.Raw(b"[" + body + b"]")), table.names,
                     lambda v: E._int_id(v, table._odd), table._kind_of, lambda v: E._as_int(v, None))
    want = np.round(np.array([float(v) for v in vals]) * 1000.0).astype(np.int64)
    assert cols[0]["ts"].tolist() == want.tolist()


def test_tensor_broadcasting_is_not_communication():
    """F.mse_loss calls torch.broadcast_tensors, numpy's pad np.broadcast_to (seen in a user's data
    pipeline: its dispatcher counted as communication); a broadcast collective is still communication."""
    from daydream.graph.phases import COMMUNICATION, phase_of_names
    names = ["aten::broadcast_tensors", "torch/functional.py(47): broadcast_tensors", "aten::broadcast_to",
             "numpy/lib/_stride_tricks_impl.py(396): _broadcast_to_dispatcher",
             "numpy/lib/_stride_tricks_impl.py(421): _broadcast_shape", "torch/functional.py(120): broadcast_shapes",
             "numpy/lib/_stride_tricks_impl.py(490): broadcast_arrays",
             "c10d::broadcast_", "record_param_comms", "nccl:broadcast", "gloo:broadcast",
             "torch/nn/parallel/distributed.py(2000): _sync_buffers: _broadcast_coalesced"]
    got = phase_of_names(names)
    assert [bool(p == COMMUNICATION) for p in got] == [False] * 7 + [True] * 5
