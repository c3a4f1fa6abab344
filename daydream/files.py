"""Writing outputs: a temporary file in the destination's directory, then a rename, so nothing
daydream writes is ever left half-written (CONTRACT.md)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from daydream.errors import DaydreamError


def write_atomic(path: str | Path, data: bytes, what: str = "there") -> None:
    """Write `data` to `path` atomically, with the permissions a plain open() would give.

    An OSError becomes a one-line DaydreamError ("PATH: cannot write WHAT (reason)")."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise DaydreamError(f"{path}: cannot write {what} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DaydreamError(f"{path}: cannot write {what} ({exc.strerror})") from None
        raise
