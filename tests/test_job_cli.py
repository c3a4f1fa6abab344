"""`analyze` and `whatif` on a multi-rank TRACE: the contract's job keys, terminal output, bad input."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import shared
from daydream.cli import main

DLRM = "param/dlrm_ddp_8rank_v100.tar.gz"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_analyze_json_has_the_job_keys():
    r = run("analyze", shared(DLRM), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["ranks"] == 8 and len(d["per_rank"]) == 8
    for row in d["per_rank"]:
        assert set(row) >= {"rank", "measured_ms", "compute_ms", "exposed_comm_ms", "wait_ms"}
        assert abs(row["replay_ms"] - row["measured_ms"]) <= 0.02 * row["measured_ms"]
    assert d["measured_ms"] == max(r["measured_ms"] for r in d["per_rank"])  # the job's: its slowest rank's
    assert isinstance(d["stragglers"], list) and all(isinstance(x, int) for x in d["stragglers"])
    names = {c["name"] for c in d["collectives"]}
    assert names == {"all_reduce", "all_to_all"}
    for c in d["collectives"]:
        assert set(c) >= {"name", "group", "count", "bytes", "total_ms", "busbw_gbps"}
    assert sum(d["breakdown"]["measured"].values()) == pytest.approx(d["measured_ms"], rel=1e-3)


def test_whatif_json_has_ranks_and_per_rank():
    r = run("whatif", shared(DLRM), "--opt", "network:bandwidth=10", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["ranks"] == 8 and len(d["per_rank"]) == 8
    assert set(d["per_rank"][0]) == {"rank", "measured_ms", "replay_ms", "predicted_ms"}
    assert d["predicted_ms"] == max(x["predicted_ms"] for x in d["per_rank"])
    assert d["predicted_ms"] > d["replay_ms"] and d["speedup"] < 1  # slower links, same work
    assert d["optimizations"] == [{"name": "network", "params": {"bandwidth": 10.0, "interconnect": ""}}]


def test_terminal_tables_name_every_rank():
    r = run("analyze", shared(DLRM))
    assert r.exit_code == 0, r.output
    assert "waiting for peers" in r.stdout or "waiting" in r.stdout
    assert "all_reduce" in r.stdout and "straggler" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (("--opt", "straggler:ranks=9"), "not in the job"),          # no such rank
    (("--opt", "straggler:ranks=a"), "write ranks as"),          # not a rank list
    (("--opt", "network"), "give bandwidth=GBPS or interconnect"),  # nothing to change
    (("--opt", "network:interconnect=ethernet"), "is not one of"),  # unknown link
])
def test_bad_job_options_are_one_line_errors(args, needle):
    r = run("whatif", shared(DLRM), *args)
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


def test_straggler_needs_a_job(tmp_path, kineto):
    kineto.step(1, 0, 100)
    kineto.launch(1, 2, kernel_ts=5, kernel_dur=50)
    r = run("whatif", kineto.write(tmp_path / "one.json"), "--opt", "straggler")
    assert r.exit_code == 2 and "needs a multi-rank job" in r.output


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_corrupt_rank_is_one_line_even_from_a_dask_worker(tmp_path, workers):
    import subprocess
    import sys
    from conftest import REPO
    src = REPO / "traces" / "gloo_ddp_mlp" / "base"
    if not src.exists():
        pytest.skip("gloo corpus not present")
    (tmp_path / "rank0.json.gz").write_bytes((src / "rank0.json.gz").read_bytes())
    (tmp_path / "rank1.json.gz").write_bytes((src / "rank1.json.gz").read_bytes()[:20000])  # truncated
    proc = subprocess.run([sys.executable, "-c", "from daydream.cli import main; main()", "analyze", str(tmp_path),
                           "--workers", workers, "--json"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"daydream: error: {tmp_path / 'rank1.json.gz'}: truncated or corrupt gzip (compressed data ended before "
        "the end-of-stream marker); re-copy or re-record the trace"]
