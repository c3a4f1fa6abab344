"""Numpy columns inside, pandas on request (daydream/table.py): one table, whichever form it is in."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from conftest import shared
from daydream.graph import build_graph
from daydream.sim import simulate
from daydream.table import column, n_rows, stored
from daydream.trace import load

TRACE = shared("hta/cuda_event_sync_multi_stream_a100.json.gz")


def test_tables_stay_columns_until_read_then_the_dataframe_is_the_table():
    graph = build_graph(load(TRACE))
    assert isinstance(stored(graph, "tasks"), dict)
    before = simulate(graph).per_step_ms
    frame = graph.tasks  # first read builds the DataFrame
    assert not isinstance(stored(graph, "tasks"), dict) and stored(graph, "tasks") is frame
    assert n_rows(graph, "tasks") == len(frame)
    frame["dur"] = frame["dur"] * 2  # a write through pandas is what the simulator reads next
    assert column(graph, "tasks", "dur").tolist() == frame["dur"].tolist()
    assert simulate(graph).per_step_ms > before


def test_copies_are_independent_in_either_form():
    graph = build_graph(load(TRACE))
    as_columns = graph.copy()
    graph.tasks  # the original now holds a DataFrame, the copy still columns
    as_frame = graph.copy()
    for copy in (as_columns, as_frame):
        copy.tasks.loc[0, "dur"] = 123_456
        assert graph.column("dur")[0] != 123_456


def test_replay_never_imports_pandas():
    code = ("import sys, daydream\n"
            f"tl = daydream.simulate(daydream.build_graph(daydream.load({str(TRACE)!r})))\n"
            "print(tl.per_step_ms, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ms, imported = out.stdout.split()
    assert float(ms) > 0 and imported == "False"


def test_whatif_json_never_imports_pandas():
    code = ("import sys\nfrom daydream.cli import main\n"
            f"sys.argv = ['daydream', 'whatif', {str(TRACE)!r}, '--json']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('PANDAS', 'pandas' in sys.modules, 'rich' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "PANDAS False False" in out.stderr
    assert '"replay_ms"' in out.stdout


def test_trace_events_column_matches_the_dataframe():
    trace = load(TRACE)
    ts = trace.column("ts").copy()
    assert np.array_equal(trace.events["ts"].to_numpy(), ts)
    assert np.array_equal(trace.column("ts"), ts)  # after the DataFrame exists, read through it
