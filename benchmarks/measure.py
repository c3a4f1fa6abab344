"""Wall time and peak RSS of one child process, measured from outside it.

`resource.getrusage(RUSAGE_CHILDREN)` is a running maximum over every child the benchmark ever
reaped, so it cannot tell two children apart. `os.wait4` instead returns the rusage of exactly the
child it reaps (its `ru_maxrss` also covers that child's own reaped descendants, which matters for
tools that fork worker processes). Wall time runs from just before the fork to the reap, so both
tools pay the same process start-up cost.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measurement:
    """One run of one command."""
    wall_s: float
    cpu_s: float  # user + system time of the child; unlike wall time, barely moved by other load
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run_measured(cmd: list[str], timeout_s: float | None = None) -> Measurement:
    """Runs `cmd` to completion (or kills its process group after `timeout_s`) and measures it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        timed_out = threading.Event()

        def _kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout_s, _kill) if timeout_s else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Measurement(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=usage.ru_maxrss / 1024.0,  # Linux reports KiB
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            timed_out=timed_out.is_set(),
        )


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def daydream_command() -> list[str]:
    """The `daydream` console script of the Python running this benchmark.

    The script beside sys.executable is preferred over PATH lookup, since a pyenv shim on PATH
    would add its own start-up time to every daydream run.
    """
    beside = Path(sys.executable).parent / "daydream"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("daydream")
    if found:
        return [found]
    return [sys.executable, "-c", "from daydream.cli import main; main()"]


def hta_python() -> Path:
    """The interpreter of the HTA virtual environment made by setup_hta.sh."""
    return Path(__file__).resolve().parent / ".venv-hta" / "bin" / "python"


def machine_info() -> dict:
    """What the figures were measured on, recorded beside them."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0],
            "platform": sys.platform}


def write_json_atomic(path: Path, text: str) -> None:
    """Writes to a temporary name beside `path`, then renames, so no half-written file remains."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
