"""Writing outputs: a temporary file in the destination's directory, then a rename, so nothing
daydream writes is ever left half-written (CONTRACT.md).

Only regular files are ever written or replaced: an existing FIFO, device node, socket or
directory at the output path is refused (a rename would swap the node for a file), and so is an
output path that is one of the command's inputs. A symbolic link to a regular file is followed:
its target is replaced, the link stays. A replaced file keeps its permission bits.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from daydream.errors import DaydreamError

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))
# File names read as Kineto/Chrome traces (daydream/trace/reader.py).
TRACE_SUFFIXES = (".json", ".json.gz", ".pt.trace.json", ".pt.trace.json.gz")
# What a run directory holds that daydream reads (trace, run.json, memory timeline).
_RUN_FILES = ("trace.json.gz", "run.json", "memory.json.gz")


def check_destination(path: str | Path, inputs=()) -> None:
    """Refuse (one line) an output path that exists and is not a regular file, or that is (or,
    inside an input directory, would be read as) one of `inputs`."""
    p = Path(path)
    if os.path.lexists(p):
        try:
            mode = os.stat(p).st_mode
        except OSError:
            raise DaydreamError(f"{p}: a symbolic link to nothing; give the path of a regular file") from None
        for test, kind in _KINDS:
            if test(mode):
                raise DaydreamError(f"{p}: exists and is {kind}, not a regular file; daydream writes only "
                                    "regular files, give another path")
    for source in inputs:
        if source is not None and _is_input(p, Path(source)):
            raise DaydreamError(f"{p}: is one of the inputs of this command ({source}); writing there would "
                                "replace it, give another path")


def _is_input(out: Path, source: Path) -> bool:
    if out.exists() and source.exists() and os.path.samefile(out, source):
        return True
    if source.is_dir() and out.parent.resolve() == source.resolve():
        if (source / "trace.json.gz").exists():
            return out.name in _RUN_FILES
        return out.name.endswith(TRACE_SUFFIXES)  # the next read of the directory would take it as a rank
    return False


def write_atomic(path: str | Path, data: bytes, what: str = "there") -> None:
    """Write `data` to `path` atomically. A new file gets the permissions a plain open() would
    give; a replaced one keeps its own.

    An OSError becomes a one-line DaydreamError ("PATH: cannot write WHAT (reason)")."""
    path = Path(path)
    check_destination(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    except OSError as exc:
        raise DaydreamError(f"{path}: cannot write {what} ({exc.strerror})") from None
    parent = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise DaydreamError(f"{path}: cannot write {what} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DaydreamError(f"{path}: cannot write {what} ({exc.strerror})") from None
        raise
