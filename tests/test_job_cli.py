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


def test_validate_and_diff_on_a_local_cluster_match_in_process():
    """--workers on the other trace-reading commands: a real LocalCluster gives the same JSON."""
    pytest.importorskip("dask.distributed")
    from conftest import REPO
    root = REPO / "traces" / "gloo_ddp_mlp"
    if not root.exists():
        pytest.skip("gloo corpus not present")
    slow, base = root / "slow", root / "base"
    out = {}
    for workers in ("0", "2"):
        r = run("validate", slow, base, "--opt", "straggler:ranks=1", "--json", "--workers", workers)
        assert r.exit_code == 0, r.output
        out[workers] = json.loads(r.output)
    assert out["0"] == out["2"]
    v = out["0"]
    assert v["ranks"] == 2 and [p["rank"] for p in v["per_rank"]] == [0, 1]
    assert v["predicted_ms"] < v["base_measured_ms"]  # the straggler fix shortens the slowed job
    r = run("diff", base, slow, "--json", "--workers", "0")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert (d["base"], d["base_rank"], d["other_rank"]) == (str(base), 0, 1)  # each job's slowest rank
    assert d["step_delta_ms"] > 0  # the slowed job: a longer step


def test_profile_suite_model_on_two_ranks_is_a_job(tmp_path):
    """`daydream profile --model tbd:NAME --ranks 2` records one run directory per rank (gloo DDP on
    CPU); analyze reads them as one job and memory finds the rank with the highest peak."""
    import subprocess
    import sys
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", "from daydream.cli import main; main()", "profile", "--model",
                           "tbd:transformer", "--ranks", "2", "--steps", "2", "--warmup", "1", "--time-steps", "1",
                           "--out", str(out), "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    assert info["ranks"] == 2 and sorted(p.name for p in out.iterdir()) == ["rank0", "rank1"]
    r = run("analyze", out, "--json")
    assert r.exit_code == 0, r.output
    a = json.loads(r.output)
    assert a["ranks"] == 2 and [p["rank"] for p in a["per_rank"]] == [0, 1]
    assert {c["name"] for c in a["collectives"]} >= {"all_reduce"}
    for p in a["per_rank"]:
        assert p["replay_ms"] == pytest.approx(p["measured_ms"], rel=0.02)
    # memory on the job: each rank's run directory read as `memory` reads one, the highest peak shown
    from daydream.memory import memory
    r = run("memory", out, "--json", "--workers", "0")
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    each = {str(k): memory(out / f"rank{k}").as_json() for k in (0, 1)}
    assert m["rank_peaks"] == {k: v["peak_bytes"] for k, v in each.items()}
    top = each[str(m["rank"])]
    assert (m["peak_bytes"], m["at_peak"]) == (top["peak_bytes"], top["at_peak"]) and m["peak_bytes"] == max(
        v["peak_bytes"] for v in each.values())
    assert m["at_peak"]["parameter"] > 0  # memory.json.gz: allocated before profiling began, too
    # each rank carries its run.json (calibrations, plain steps), as a single run directory does: the
    # CPU amp model then prices with the run's measured bf16 speedups, not the hardware table
    from daydream.job.sources import load_rank, rank_sources
    sources = rank_sources(out)
    assert [load_rank(s).run == json.loads((out / f"rank{i}" / "run.json").read_text())
            for i, s in enumerate(sources)] == [True, True]
    r = run("suggest", out, "--json")
    assert r.exit_code == 0, r.output
    amp = next(x for x in json.loads(r.output)["suggestions"] if x["name"] == "amp")
    assert not any("not a `daydream profile` CPU run directory" in n for n in amp["notes"]), amp["notes"]
