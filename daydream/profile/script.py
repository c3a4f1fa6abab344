"""`daydream profile -- python train.py ...`: profile an unmodified training script.

The script runs in a child process whose PYTHONPATH starts with a directory holding a generated
`sitecustomize.py`; Python imports it at start-up, and it arranges for `daydream.profile.hook` to
hook every optimizer step once `torch.optim` is imported (torch itself is not imported early). The
child's stdin, stdout, stderr and exit status pass through.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

import orjson

from daydream.errors import DaydreamError
from daydream.profile import rundir

_SITECUSTOMIZE = '''\
"""Written by `daydream profile`: hooks optimizer steps once torch.optim is imported."""
import importlib.abc
import importlib.machinery
import importlib.util
import sys

_HERE = {here!r}


class _DaydreamWatch(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "torch.optim":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            try:
                from daydream.profile import hook
                hook.install()
            except Exception as exc:
                print(f"daydream: could not hook optimizer steps: {{exc}}", file=sys.stderr)
        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _DaydreamWatch())

# Run the sitecustomize this one shadows, if there is one.
_others = [p for p in sys.path if p != _HERE]
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _others)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
'''


def default_out(label: str) -> Path:
    return Path("runs") / f"{label}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _poll(proc: subprocess.Popen, status: Path, bar) -> int:
    """Wait for the child, showing its phase (written by the hook to `status`) on `bar`."""
    task = bar.add_task("starting the script", total=None)
    while True:
        try:
            return proc.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            pass
        try:
            phase, done, total = status.read_text().split("\t")
            total = int(total) or None
            bar.update(task, description=phase, completed=int(done), total=total)
        except (OSError, ValueError):
            continue


def profile_script(command: list[str], steps: int = 5, warmup: int = 3, out_dir: str | Path | None = None,
                   with_stack: bool = True, stdout=None, time_steps: int = 10,
                   progress: bool = False) -> tuple[int, dict | None]:
    """Run `command` with the optimizer-step profiler; return (exit status, run.json or None when
    nothing was recorded). `stdout` redirects the script's stdout (None: inherited). `time_steps`
    plain steps after profiling give plain_step_ms; `progress` shows the phase on stderr (a terminal)."""
    if not command:
        raise DaydreamError("nothing to run: give --model tbd:NAME or a command after `--`")
    if steps < 1 or warmup < 0 or time_steps < 0:
        raise DaydreamError(f"--steps must be >= 1, --warmup and --time-steps >= 0 (got {steps}, {warmup}, "
                            f"{time_steps})")
    out = Path(out_dir) if out_dir else default_out(Path(command[-1]).stem or "script")
    rundir.check_target(out)
    run_id = uuid.uuid4().hex
    package_root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory(prefix="daydream-profile-") as tmp:
        (Path(tmp) / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(here=tmp))
        status = Path(tmp) / "status"
        env = dict(os.environ)
        path = [tmp] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] + [package_root]
        env.update({
            "PYTHONPATH": os.pathsep.join(path),
            "DAYDREAM_PROFILE_OUT": str(out.resolve()),
            "DAYDREAM_PROFILE_STEPS": str(steps),
            "DAYDREAM_PROFILE_WARMUP": str(warmup),
            "DAYDREAM_PROFILE_TIME_STEPS": str(time_steps),
            "DAYDREAM_PROFILE_WITH_STACK": "1" if with_stack else "0",
            "DAYDREAM_PROFILE_CLAIM": os.path.join(tmp, "claimed"),
            "DAYDREAM_PROFILE_STATUS": str(status),
            "DAYDREAM_PROFILE_RUN_ID": run_id,
            "DAYDREAM_PROFILE_COMMAND": json.dumps(rundir.redact_argv(list(command))),
        })
        try:
            proc = subprocess.Popen(list(command), env=env, stdout=stdout)
        except FileNotFoundError:
            raise DaydreamError(f"cannot run {command[0]!r}: no such program") from None
        except PermissionError:
            raise DaydreamError(f"cannot run {command[0]!r}: permission denied") from None
        with _progress(progress) as bar:
            try:
                code = _poll(proc, status, bar) if bar else proc.wait()
            except KeyboardInterrupt:  # the child got the same SIGINT; let it finish writing
                code = proc.wait()
    run_json = out / "run.json"
    if run_json.exists():
        info = orjson.loads(run_json.read_bytes())
        if info.get("run_id") == run_id:
            return code, {**info, "run_dir": str(out)}
    # A multi-rank launch (torchrun): one run directory per rank, OUT/rank<N> (see profile/hook.py).
    ranks = sorted((p for p in out.glob("rank*/run.json")), key=lambda p: int(p.parent.name[4:] or 0)) \
        if out.is_dir() else []
    infos = [orjson.loads(p.read_bytes()) for p in ranks]
    infos = [i for i in infos if i.get("run_id") == run_id]
    if infos:
        return code, {**infos[0], "run_dir": str(out), "ranks": len(infos),
                      "rank_dirs": [str(p.parent) for p in ranks]}
    return code, None


def no_run_message(command: list[str], code: int, warmup: int, steps: int, time_steps: int) -> str:
    """Why no run directory was written, in one line: the script was killed by a signal, it
    failed (a non-zero exit status: its own error is above, on its stderr), or it ended well but
    made too few optimizer steps. The command line is shown as run.json records it (secrets
    removed) and printable (control characters escaped)."""
    from daydream.names import printable
    shown = printable(" ".join(rundir.redact_argv(command)))
    if code < 0:
        try:
            name = f" ({signal.Signals(-code).name})"
        except ValueError:
            name = ""
        return f"no run directory written: {shown} was killed by signal {-code}{name}"
    if code > 0:
        return (f"no run directory written: {shown} exited with status {code} before profiling finished "
                f"(its own error is above; profiling needs {max(warmup, 1)} warm-up + 1 + {steps} profiled "
                "steps)")
    return (f"no run directory written: {shown} made too few optimizer steps "
            f"(profiling needs {max(warmup, 1)} warm-up + 1 + {steps} profiled steps, then up to "
            f"{time_steps} timed plain steps)")


def _progress(enabled: bool):
    """A transient spinner with the script's phase on stderr; nothing when stderr is not a terminal."""
    import contextlib
    import sys
    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    return Progress(SpinnerColumn(), TextColumn("daydream profile: {task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True), transient=True)
