"""Shared test helpers: where the shared traces live, and a builder for small synthetic traces."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "traces"


def shared(rel: str) -> Path:
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"shared trace {rel} not present")
    return p


def shared_traces() -> list[Path]:
    return sorted(p for p in SHARED.glob("*/*") if p.name.endswith((".json.gz", ".tar.gz")))


class KinetoBuilder:
    """Builds a small Kineto trace in the current format (times in microseconds)."""

    def __init__(self, device_name: str = "NVIDIA A100-SXM4-80GB"):
        self.events: list[dict] = []
        self.device_name = device_name
        self._corr = 100

    def step(self, n: int, ts: float, dur: float, tid: int = 1):
        self.events.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{n}", "pid": 1,
                            "tid": tid, "ts": ts, "dur": dur, "args": {}})

    def op(self, name: str, ts: float, dur: float, tid: int = 1, **args):
        self.events.append({"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": tid, "ts": ts,
                            "dur": dur, "args": dict(args)})

    def launch(self, ts: float, dur: float, kernel_ts: float, kernel_dur: float, name: str = "ampere_sgemm_128x64_nn",
               stream: int = 7, tid: int = 1, call: str = "cudaLaunchKernel", kind: str = "kernel") -> int:
        self._corr += 1
        c = self._corr
        self.events.append({"ph": "X", "cat": "cuda_runtime", "name": call, "pid": 1, "tid": tid, "ts": ts,
                            "dur": dur, "args": {"correlation": c}})
        self.events.append({"ph": "X", "cat": kind, "name": name, "pid": 0, "tid": stream, "ts": kernel_ts,
                            "dur": kernel_dur, "args": {"device": 0, "stream": stream, "correlation": c}})
        return c

    def runtime(self, name: str, ts: float, dur: float, tid: int = 1) -> int:
        self._corr += 1
        self.events.append({"ph": "X", "cat": "cuda_runtime", "name": name, "pid": 1, "tid": tid, "ts": ts,
                            "dur": dur, "args": {"correlation": self._corr}})
        return self._corr

    def doc(self) -> dict:
        return {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": self.device_name,
                                                          "totalGlobalMem": 85899345920,
                                                          "computeMajor": 8, "computeMinor": 0, "numSms": 108}],
                "traceEvents": self.events}

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.doc()))
        return path


@pytest.fixture
def kineto():
    return KinetoBuilder()


def single_graph_opts() -> list[str]:
    """Every optimization as an `--opt` spelling that a one-graph what-if can run: `network` given a
    bandwidth (it has no default target), `host` a speed (its default 1 changes nothing), and the
    job-only ones left out (`straggler`, `world-size`
    act on a multi-rank job through the coupled path; tests/test_job*.py)."""
    from daydream.opts.params import SPECS
    given = {"network": "network:bandwidth=10", "host": "host:speed=1.25"}
    return [given.get(n, n) for n in SPECS if n not in ("straggler", "world-size")]
