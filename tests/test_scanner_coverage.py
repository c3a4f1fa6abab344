"""Every real trace we have takes the compiled scanner's path (the C scanner was kept on the
measurement in docs/benchmarks.md; the generic path is for odd input only, so a real trace that
fell back to it would silently cost ~4x the time and ~3x the memory)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, SHARED
from daydream.trace import events as E
from daydream.trace import fast
from daydream.trace.reader import read_path

TRACES = sorted(p for p in [*SHARED.glob("*/*"), *(REPO / "traces").rglob("*")]
                if p.name.endswith((".json.gz", ".tar.gz")) and p.name != "memory.json.gz")  # memory profiles are not traces


@pytest.mark.parametrize("path", TRACES, ids=lambda p: "/".join(p.parts[-4:]))
def test_every_real_trace_takes_the_scanner(path: Path):
    ranks = read_path(path)
    assert ranks
    for rank in ranks:
        assert isinstance(rank.events, fast.RawEvents), f"{rank.source}: generic path"
        table = E.EventTable()
        out = fast.scan(rank.events, table.names, lambda v: E._int_id(v, table._odd), table._kind_of,
                        lambda v: E._as_int(v, None))
        assert out is not None, f"{rank.source}: the scanner sent it to the generic path"
        assert len(out[0]["ts"]) > 0
