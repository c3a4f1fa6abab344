"""Fingerprint of every prediction: `whatif --json` on each shared trace x each optimization.

One line per (trace, optimization) with replay_ms and predicted_ms (or the error message), then the
same for `memory --json` (predicted peak and its categories) on the shared traces and the run
directories under traces/pairs*/, then a SHA-256 over all lines. A refactor that must not change behaviour prints the same total hash
before and after:

    python3 benchmarks/prediction_hashes.py [TRACES_DIR]      # default ../shared/traces

Runs `daydream whatif TRACE --opt NAME --json` in-process (click's runner), default parameters.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from click.testing import CliRunner

from daydream.cli import main
from daydream.opts.params import SPECS


def traces(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.json.gz")) + sorted(root.glob("*/*.tar.gz"))


def _has_memory_events(trace: Path) -> bool:
    """Only traces recorded with profile_memory=True have a memory timeline to predict from."""
    import gzip
    import tarfile
    if trace.name.endswith(".tar.gz"):
        with tarfile.open(trace) as tar:
            return any(b"[memory]" in tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
    with gzip.open(trace) as f:
        return b"[memory]" in f.read()


def line(runner: CliRunner, trace: Path, opt: str | None) -> str:
    args = ["whatif", str(trace), "--json"] + (["--opt", opt] if opt else [])
    res = runner.invoke(main, args)
    if res.exit_code == 0:
        data = json.loads(res.stdout)
        value = f"replay_ms={data['replay_ms']!r} predicted_ms={data['predicted_ms']!r}"
    else:
        err = (res.stderr or res.stdout or repr(res.exception)).strip().splitlines()
        value = f"exit {res.exit_code}: {err[-1] if err else repr(res.exception)}"
    return f"{trace.parent.name}/{trace.name}\t{opt or 'replay'}\t{value}"


def memory_line(runner: CliRunner, trace: Path, opt: str) -> str:
    res = runner.invoke(main, ["memory", str(trace), "--json", "--opt", opt])
    if res.exit_code == 0:
        data = json.loads(res.stdout)
        value = (f"peak={data['predicted_peak_bytes']!r} {json.dumps(data['predicted'], sort_keys=True)} "
                 f"notes={data['notes']!r} model={data.get('model')!r}")
    else:
        err = (res.stderr or res.stdout or repr(res.exception)).strip().splitlines()
        value = f"exit {res.exit_code}: {err[-1] if err else repr(res.exception)}"
    return f"memory {trace.parent.name}/{trace.name}\t{opt}\t{value}"


def run(root: Path) -> None:
    runner = CliRunner()
    total = hashlib.sha256()

    def emit(text: str) -> None:
        print(text, flush=True)
        total.update(text.encode() + b"\n")

    for trace in traces(root):
        for opt in [None, *sorted(SPECS)]:
            emit(line(runner, trace, opt))
    repo = Path(__file__).resolve().parents[1]
    run_dirs = sorted(p.parent for p in repo.glob("traces/pairs*/*/*/base/memory.json.gz"))
    for trace in traces(root) + run_dirs:
        if trace.suffix == ".gz" and not _has_memory_events(trace):
            continue
        for opt in sorted(SPECS):
            emit(memory_line(runner, trace, opt))
    print(f"total sha256 {total.hexdigest()}")


if __name__ == "__main__":
    run(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1].parent / "shared" / "traces"))
