"""Multi-rank jobs: collectives matched across ranks, the coupled replay, job figures, what-ifs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import KinetoBuilder, shared
from daydream import _core
from daydream.graph.schema import NO_RELEASE
from daydream.job.collectives import collectives_of
from daydream.job.engine import Job, _transformed
from daydream.job import figures
from daydream.job.reduce import REACHED
from daydream.job.sources import RankSource, load_rank
from daydream.opts.params import parse_opt
from daydream.table import column
from daydream.graph import build_graph

DLRM = "param/dlrm_ddp_8rank_v100.tar.gz"


# ---- a small synthetic job ---------------------------------------------------------------------
def _rank(compute_us: list[float], ends_us: list[float], sizes: list[int], skew_us: float = 0.0) -> dict:
    """One rank: per collective, a GEMM of compute_us[i] then an all-reduce kernel on the same stream
    that ends at ends_us[i] (the job's last arrival + transfer); the CPU launches everything at
    once, then waits in cudaDeviceSynchronize. Times shifted by skew_us (another host's clock)."""
    b = KinetoBuilder()
    s = skew_us
    gpu = 20.0
    t = 1.0
    for c, e, n in zip(compute_us, ends_us, sizes):
        b.op("aten::mm", s + t, 4)
        b.launch(s + t + 1, 2, kernel_ts=s + gpu, kernel_dur=c)
        gpu += c
        b.op("nccl:all_reduce", s + t + 5, 4, **{"Input Dims": [[n]], "Input type": ["float"]})
        b.launch(s + t + 6, 2, kernel_ts=s + gpu, kernel_dur=e - gpu,
                 name="ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)")
        gpu = e
        t += 10
    b.runtime("cudaDeviceSynchronize", s + t, gpu - t + 1)
    b.op("aten::item", s + gpu + 1, 5)
    b.step(1, s + 0, gpu + 6)
    return b.doc()


def _job(tmp_path, computes, sizes=None, skews=None, transfer=30.0, drop=None):
    """Write a job whose collective i ends at max over ranks of its arrival + transfer."""
    n = len(computes[0])
    sizes = sizes or [1000 * (i + 1) for i in range(n)]
    ends, gpu = [], [20.0] * len(computes)
    for i in range(n):
        arrive = [g + c[i] for g, c in zip(gpu, computes)]
        e = max(arrive) + transfer
        ends.append(e)
        gpu = [e] * len(computes)
    d = tmp_path / "job"
    d.mkdir()
    for r, c in enumerate(computes):
        keep = [i for i in range(n) if not (drop and drop[0] == r and i == drop[1])]
        comp = [c[i] for i in keep]
        if drop and drop[0] == r:  # a rank that skipped a collective: its GEMMs run back to back there
            comp = [c[i] + (c[i - 1] if i - 1 == drop[1] else 0) for i in keep]
        doc = _rank(comp, [ends[i] for i in keep], [sizes[i] for i in keep], (skews or [0] * len(computes))[r])
        (d / f"rank{r}.json").write_text(json.dumps(doc))
    return d


def test_synthetic_job_waiting_emerges(tmp_path):
    d = _job(tmp_path, [[100, 100, 100], [100, 100, 100], [300, 100, 100]])
    with Job(str(d)) as job:
        assert job.matching.coupled == 3 and not job.matching.notes
        np.testing.assert_allclose(job.replay.per_step_ms, job.measured_ms, rtol=1e-9)
        rows = figures.per_rank(job)
        assert rows[0]["wait_ms"] == pytest.approx(0.2, abs=1e-6)  # ranks 0, 1 wait 200 us for rank 2
        assert rows[2]["wait_ms"] == pytest.approx(0.0, abs=1e-6)
        assert [s["rank"] for s in figures.stragglers(job)] == [2]
        # Rank 2 at the median rank's compute (300 of its 500 us: GEMMs x0.6, 300 -> 180 us): the
        # first all-reduce starts 120 us earlier (at 200 us, not 320); at the second rank 2 (60 us) is
        # no longer last, so the step is 120 us shorter on every rank.
        pred = job.predict([parse_opt("straggler")])
        before, after = job.replay.per_step_ms, pred.coupled.per_step_ms
        np.testing.assert_allclose(after, before - 0.12, atol=1e-9)
        # 1 GB/s instead of NVLink: each transfer (30 us, not the 230 us rank 0 recorded) grows.
        slow = job.predict([parse_opt("network:bandwidth=1")]).coupled.per_step_ms
        assert (slow > before).all() and (slow - before < 3 * 30 * 25 / 1e3).all()


def test_missing_collective_is_a_note(tmp_path):
    d = _job(tmp_path, [[100, 100, 100], [100, 100, 100]], drop=(1, 1))
    with Job(str(d)) as job:
        sizes = [len(m) for m in job.matching.members]
        assert sorted(sizes) == [1, 2, 2]  # the middle one has no peer; the last is still matched
        assert any("disagree across ranks" in n for n in job.matching.notes)
        assert len(job.replay.per_step_ms) == 2


def test_clocks_aligned_across_hosts(tmp_path):
    d = _job(tmp_path, [[100, 100], [300, 100]], skews=[0, 5000])  # rank 1's clock 5 ms ahead
    with Job(str(d)) as job:
        assert any("clocks disagree" in n for n in job.notes)
        assert job.offsets[0] - job.offsets[1] == pytest.approx(5_000_000, abs=2_000)
        np.testing.assert_allclose(job.replay.per_step_ms, job.measured_ms, rtol=1e-9)
        assert figures.per_rank(job)[0]["wait_ms"] == pytest.approx(0.2, abs=1e-6)


# ---- the real 8-rank DLRM job --------------------------------------------------------------------
def _merged_replay(graphs, tasks_of, transfer, matching, parts):
    """Reference: every rank's graph in one DAG, one barrier node per matched collective (start: the
    participants' starts; each participant ends at the barrier + its transfer time), replayed by
    the C walk of daydream.sim. Returns node times and each rank's first task index."""
    src, dst, delay, dur, best, firsts = [], [], [], [], [], []
    n = 0
    for g in graphs:
        e = lambda k: column(g, "edges", k)
        src.append(2 * (e("src") + n) + np.where(e("from_start"), 0, 1))
        dst.append(2 * (e("dst") + n) + e("to_end").astype(np.int64))
        delay.append(e("delay"))
        dur.append(g.column("dur").copy())
        best.append(g.column("release"))
        firsts.append(n)
        n += g.n_tasks
    s, d, w = (np.concatenate(x).astype(np.int64) for x in (src, dst, delay))
    durs = np.concatenate(dur + [np.zeros(len(matching.members), np.int64)])
    ends, bs, bd, bw = [], [], [], []
    for gi, members in enumerate(matching.members):
        for p, i in members:
            t = firsts[p] + tasks_of[p][i]
            x = parts.first[p] + i
            ends.append(2 * t + 1)
            durs[t] = 0  # the barrier decides its end
            bs += [2 * t, 2 * (n + gi) + 1]
            bd += [2 * (n + gi), 2 * t + 1]
            bw += [0, int(transfer[x])]
    keep = ~np.isin(d, ends)  # nothing but the barrier holds a collective's end
    s = np.concatenate([s[keep], bs]); d = np.concatenate([d[keep], bd]); w = np.concatenate([w[keep], bw])
    nodes = 2 * (n + len(matching.members))
    order = np.argsort(s, kind="stable")
    ptr = np.searchsorted(s[order], np.arange(nodes + 1)).astype(np.int64)
    indeg = np.bincount(d, minlength=nodes).astype(np.int64)
    indeg[1::2] += 1
    bst = np.full(nodes, NO_RELEASE, np.int64)
    bst[0::2] = np.concatenate(best + [np.full(len(matching.members), NO_RELEASE, np.int64)])
    time = np.empty(nodes, np.int64)
    dst = np.ascontiguousarray(d[order])
    topo = np.empty(nodes, np.int64)
    assert _core.order(ptr, dst, indeg, topo) == nodes
    _core.replay(ptr, dst, np.ascontiguousarray(w[order]), topo, durs, bst, np.empty(nodes, np.int64), time,
                 NO_RELEASE)
    return time, firsts


def test_dlrm_matched_and_replayed_within_half_percent():
    with Job(str(shared(DLRM))) as job:
        assert len(job.ranks) == 8 and job.matching.coupled == 8
        assert all(len(m) == 8 for m in job.matching.members) and not job.matching.notes
        err = np.abs(job.replay.per_step_ms - job.measured_ms) / job.measured_ms
        assert err.max() <= 0.005
        rows = figures.per_rank(job)
        assert sum(r["wait_ms"] for r in rows) > 40  # ranks started up to 7.5 ms apart: most of it waited
        coll = {r["name"]: r for r in figures.collectives(job)}
        assert coll["all_reduce"]["count"] == 3 and coll["all_to_all"]["count"] == 5
        assert 0 < coll["all_reduce"]["busbw_gbps"] < coll["all_reduce"]["link_peak_gbps"]


def test_reduction_equals_merged_graph_replay():
    """The max-plus reduction + coupled solve is exact: it equals replaying all ranks' (transformed)
    graphs joined through barrier nodes, on a scenario that moves every collective."""
    opts = [parse_opt("straggler:ranks=2+7"), parse_opt("network:bandwidth=2")]
    with Job(str(shared(DLRM))) as job:
        pred = job.predict(opts)
        info = job.info()
        graphs, tasks_of = [], []
        for src, r in zip(job.sources, job.ranks):
            tr = load_rank(src, r)
            g = build_graph(tr)
            c = collectives_of(g)
            changed, _ = _transformed(tr, g, c, opts, info)
            where = {int(e): i for i, e in enumerate(changed.column("event").tolist())}
            graphs.append(changed)
            tasks_of.append([where[int(e)] for e in c.event.tolist()])
        transfer = (job.transfer * np.concatenate([s.coll_scale for s in pred.summaries])).astype(np.int64)
        time, firsts = _merged_replay(graphs, tasks_of, transfer, job.matching, job.parts)
        for p, g in enumerate(graphs):
            sel = np.flatnonzero(g.column("in_window")) + firsts[p]
            assert time[2 * sel].min() + job.offsets[p] == pred.coupled.win_start[p]
            assert time[2 * sel + 1].max() + job.offsets[p] == pred.coupled.win_end[p]
        assert (np.abs(pred.coupled.per_step_ms - job.replay.per_step_ms) > 0.01).any()
        assert (pred.coupled.arrive > REACHED).all()


def test_an_archives_ranks_are_read_in_one_pass_per_job_pass(monkeypatch):
    """Reading rank r of a .tar.gz alone inflates every member before it (N^2/2 for N ranks): a
    job reads the archive once to list it, then once per pass over its ranks."""
    from daydream.job import sources
    from daydream.trace import reader
    passes = []
    real = reader.archive_members

    def counted(*args, **kwargs):
        passes.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(sources, "archive_members", counted)
    monkeypatch.setattr(reader, "archive_members", counted)  # read_member's passes
    with Job(str(shared(DLRM))) as job:
        assert len(job.ranks) == 8 and len(passes) == 2   # listing + loading, not 1 + 8
        job.predict([parse_opt("straggler")])
        assert len(passes) == 3                            # one more pass for the what-if


def test_dask_local_cluster_gives_identical_results():
    pytest.importorskip("dask.distributed")
    path = str(shared(DLRM))
    with Job(path) as serial:
        a = serial.replay
        pa = serial.predict([parse_opt("straggler")]).coupled
    with Job(path, workers=2) as dist:
        b = dist.replay
        pb = dist.predict([parse_opt("straggler")]).coupled
        rows = figures.per_rank(dist)
    for x, y in ((a, b), (pa, pb)):
        np.testing.assert_array_equal(x.arrive, y.arrive)
        np.testing.assert_array_equal(x.end, y.end)
        np.testing.assert_array_equal(x.win_end, y.win_end)
    assert rows == figures.per_rank(serial)


# ---- CPU (gloo) jobs -------------------------------------------------------------------------------
def _gloo_rank(compute_us: float, end_us: float, tail_us: float = 50.0) -> dict:
    """A gloo rank: the main thread computes, enqueues an all-reduce and blocks (a gap of its step)
    until gloo's work thread finishes it at end_us, then runs the optimizer."""
    b = KinetoBuilder(device_name="")
    b.op("aten::mm", 1, compute_us)
    b.op("c10d::allreduce_", 1 + compute_us, 5)
    b.events.append({"ph": "X", "cat": "user_annotation", "name": "gloo:all_reduce", "pid": 1, "tid": 2,
                     "ts": 10 + compute_us, "dur": end_us - (10 + compute_us),
                     "args": {"Input Dims": [[1000]], "Input type": ["float"]}})
    b.op("aten::add_", end_us + tail_us, 10)
    b.step(1, 0, end_us + tail_us + 20)
    doc = b.doc()
    doc["deviceProperties"] = []
    return doc


def test_gloo_job_waits_in_the_main_thread_and_the_straggler_fix_removes_it(tmp_path):
    d = tmp_path / "gloo"
    d.mkdir()
    transfer = 40.0
    computes = [100.0, 400.0]
    end = 10 + max(computes) + transfer
    for r, c in enumerate(computes):
        (d / f"rank{r}.json").write_text(json.dumps(_gloo_rank(c, end)))
    with Job(str(d)) as job:
        assert job.matching.coupled == 1 and job.matching.name == ["all_reduce"]
        np.testing.assert_allclose(job.replay.per_step_ms, job.measured_ms, rtol=1e-9)
        rows = figures.per_rank(job)
        assert rows[0]["wait_ms"] == pytest.approx(0.3, abs=1e-6)  # rank 0 waited 300 us for rank 1
        assert rows[0]["compute_ms"] < rows[1]["compute_ms"]       # its blocked gap is not compute
        cpu = job.info().cpu_ms
        pred = job.predict([parse_opt("straggler:ranks=1")]).coupled
        # Rank 1's CPU work at rank 0's rate: x cpu0/cpu1 = 125/425 (each has 25 us besides its GEMM;
        # the blocked gap is not work), so its 400 us GEMM takes 118 us and it reaches the all-reduce
        # ~290 us earlier; rank 0, blocked in its main thread until the all-reduce ends, finishes
        # exactly as much earlier.
        assert cpu[0] / cpu[1] == pytest.approx(125 / 425, abs=1e-3)
        shift = float(job.replay.last_arrival[0] - pred.last_arrival[0]) / 1e6
        assert 0.28 < shift < 0.30
        assert job.replay.per_step_ms[0] - pred.per_step_ms[0] == pytest.approx(shift, abs=1e-9)


def test_a_thread_that_resumes_late_after_a_gloo_collective_waited_for_it(tmp_path):
    """On a loaded machine the blocked thread gets a core ms after the collective ends: a gap of the
    step annotation ending 3 ms after it is still waiting, not the rank's work."""
    computes, transfer = [100.0, 400.0], 40.0
    end = 10 + max(computes) + transfer
    compute0 = {}
    for tail in (50.0, 3000.0):
        d = tmp_path / f"tail{int(tail)}"
        d.mkdir()
        for r, c in enumerate(computes):
            (d / f"rank{r}.json").write_text(json.dumps(_gloo_rank(c, end, tail_us=tail)))
        with Job(str(d)) as job:
            np.testing.assert_allclose(job.replay.per_step_ms, job.measured_ms, rtol=1e-9)
            compute0[tail] = figures.per_rank(job)[0]["compute_ms"]
    assert compute0[3000.0] == pytest.approx(compute0[50.0], abs=1e-6)  # the 2.95 ms more is waiting


def test_an_op_running_across_a_gloo_collectives_end_is_work(tmp_path):
    """An op (not a gap of an annotation) that ends ms after the collective did was working, not
    waiting: only annotation gaps get the wider window."""
    from daydream.job.collectives import wire_cpu_waits
    end = 10 + 4000.0 + 40.0
    doc = _gloo_rank(100.0, end, tail_us=3000.0)
    doc["traceEvents"].append({"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 1,
                               "ts": end - 1000.0, "dur": 3990.0, "args": {}})
    (tmp_path / "rank0.json").write_text(json.dumps(doc))
    trace = load_rank(RankSource(str(tmp_path / "rank0.json"), None, 0))
    graph = build_graph(trace)
    wire_cpu_waits(graph)
    names = [trace.names[n] for n in graph.column("name")]
    mm = [i for i, n in enumerate(names) if n == "aten::mm" and graph.column("obs_start")[i] > 1e6]
    assert len(mm) == 1 and graph.column("dur")[mm[0]] == 3_990_000  # kept whole: its work


def test_recorded_gloo_pair_replays_and_the_straggler_fix_helps():
    from conftest import REPO
    root = REPO / "traces" / "gloo_ddp_mlp"
    if not root.exists():
        pytest.skip("gloo corpus not present")
    with Job(str(root / "slow")) as job:
        assert job.matching.coupled == 16 and set(job.matching.name) == {"all_reduce"}
        np.testing.assert_allclose(job.replay.per_step_ms, job.measured_ms, rtol=1e-6)
        assert [s["rank"] for s in figures.stragglers(job)] == [1]
        pred = job.predict([parse_opt("straggler:ranks=1")]).coupled.per_step_ms
        slowed = job.measured_ms.max()
    with Job(str(root / "base")) as base:
        unslowed = base.measured_ms.max()
    # Recorded minutes apart on a shared 2-core machine, whose noise alone moves this job's step by
    # 20% and more between runs (docs/validation.md): the fix must move the prediction most of the
    # way from the slowed run to the unslowed one (11.7% off it, against 144% measured slowdown).
    assert abs(pred.max() - unslowed) < 0.3 * (slowed - unslowed)


def test_recorded_batch256_gloo_pair_straggler_fix_within_10pct():
    """The pair of benchmarks/results/straggler_validation.json nearest its medians (base04/slow04):
    compute is four fifths of the step, so the what-if is expected within 10% (2.9% when recorded)."""
    from conftest import REPO
    root = REPO / "traces" / "gloo_ddp_mlp_b256"
    if not root.exists():
        pytest.skip("gloo corpus not present")
    with Job(str(root / "slow")) as job:
        np.testing.assert_allclose(job.replay.per_step_ms, job.measured_ms, rtol=1e-6)
        pred = job.predict([parse_opt("straggler:ranks=1")]).coupled.per_step_ms.max()
    with Job(str(root / "base")) as base:
        unslowed = base.measured_ms.max()
    assert abs(pred - unslowed) / unslowed < 0.10, (pred, unslowed)


def test_multi_rank_run_directory_is_one_job(tmp_path):
    """`daydream profile -- torchrun ...` writes OUT/rank<N>/trace.json.gz: one job of N ranks."""
    import gzip
    from daydream.job.sources import rank_sources
    from daydream.trace import load
    d = _job(tmp_path, [[100, 100], [300, 100]])
    run = tmp_path / "run"
    for r in range(2):
        (run / f"rank{r}").mkdir(parents=True)
        doc = json.loads((d / f"rank{r}.json").read_text())
        doc["distributedInfo"] = {"backend": "gloo", "rank": r, "world_size": 2}
        (run / f"rank{r}" / "trace.json.gz").write_bytes(gzip.compress(json.dumps(doc).encode()))
    assert len(rank_sources(run)) == 2
    assert load(run).ranks == [0, 1]
    with Job(str(run)) as job:
        assert job.ranks == [0, 1] and job.matching.coupled == 2


def test_world_size_rescales_the_job():
    with Job(str(shared(DLRM))) as job:
        same = job.predict([parse_opt("world-size:ranks=8")])
        np.testing.assert_array_equal(same.coupled.per_step_ms, job.replay.per_step_ms)
        big = job.predict([parse_opt("world-size:ranks=32")])
        assert len(big.ranks) == 32 and big.ranks == list(range(32))
        assert set(big.templates[:8].tolist()) == set(range(8)) and big.templates.max() < 8
        # Past one node the collectives cross the fabric (6.25 GB/s for V100 systems, not NVLink's 150).
        assert big.coupled.per_step_ms.max() > job.replay.per_step_ms.max()
        small = job.predict([parse_opt("world-size:ranks=4")])
        assert small.ranks == [0, 1, 2, 3]
        t = job.timeline(int(big.coupled.per_step_ms.argmax()), [parse_opt("world-size:ranks=32")], big)
        assert t.per_step_ms == pytest.approx(big.coupled.per_step_ms.max(), rel=1e-6)


def test_world_size_needs_a_job(tmp_path, kineto):
    from daydream.errors import DaydreamError
    from daydream.whatif import whatif
    kineto.step(1, 0, 100)
    kineto.launch(1, 2, kernel_ts=5, kernel_dur=50)
    with pytest.raises(DaydreamError, match="scales a multi-rank job"):
        whatif(str(kineto.write(tmp_path / "one.json")), ["world-size:ranks=8"])
