"""Where a job's ranks live, and loading one rank at a time (in this process or on a Dask worker).

A multi-rank TRACE (CONTRACT.md: a directory or `.tar.gz` holding one trace per rank) is listed as
`RankSource`s, each naming one file or one archive member; `load_rank` reads just that one, so a
worker never holds another rank's events. Ranks come from each file's `distributedInfo.rank`, else
from `rank<N>` in its name, else from file order; if two files claim one rank, file order wins for
every file (as `daydream.trace.reader` does for a whole directory).

An archive's members lie in one gzip stream that cannot be entered in the middle, so reading
member r alone inflates everything before it: reading every rank that way costs ranks^2/2 members
(633 s for 1,024 DLRM ranks). `streamed` instead reads an archive once, front to back, and hands
each rank its member's bytes (`RankSource.data`) as they come: linear in the archive (24 s).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator
from pathlib import Path

from daydream.errors import DaydreamError
from daydream.trace import Trace, attach_run_dir, from_raw
from daydream.trace.reader import RawTrace, archive_members, open_bytes, read_member, read_path

_SUFFIXES = (".json", ".json.gz", ".pt.trace.json", ".pt.trace.json.gz")


@dataclass(frozen=True)
class RankSource:
    """One rank's trace: a file, or `member` of the archive `path`; `index` is its file order;
    `data`, where given, the member's bytes, already read from the archive (see `streamed`)."""
    path: str
    member: str | None
    index: int
    data: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.path}:{self.member}" if self.member else self.path


def rank_sources(path: str | Path) -> list[RankSource]:
    """The per-rank files of a TRACE (one entry for a single-file trace or a run directory)."""
    p = Path(path)
    if not p.exists():
        raise DaydreamError(f"{p}: no such file or directory")
    if p.is_dir():
        if (p / "trace.json.gz").exists():
            return [RankSource(str(p), None, 0)]
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(_SUFFIXES))
        if not files:  # a multi-rank `daydream profile` run: one run directory per rank
            files = sorted((d / "trace.json.gz" for d in p.iterdir() if (d / "trace.json.gz").is_file()),
                           key=lambda f: f.parent.name)
        if not files:
            raise DaydreamError(f"{p}: directory holds no trace files (*.json, *.json.gz)")
        return [RankSource(str(f), None, i) for i, f in enumerate(files)]
    if p.name.endswith((".tar.gz", ".tgz", ".tar")):
        # one forward pass, within the input limits, hard links listed (daydream/trace/reader.py)
        names = sorted(n for n, _, _ in archive_members(p, read=lambda n: False))
        if not names:
            raise DaydreamError(f"{p}: archive holds no trace files (*.json, *.json.gz)")
        return [RankSource(str(p), m, i) for i, m in enumerate(names)]
    return [RankSource(str(p), None, 0)]


def read_rank(src: RankSource) -> RawTrace:
    """Parse one rank's file (its rank from metadata or name; see the module docstring)."""
    if src.member is None:
        raws = read_path(src.path)
        if len(raws) != 1:
            raise DaydreamError(f"{src.path}: expected one rank's trace, found {len(raws)}")
        raw = raws[0]
        if not Path(src.path).is_dir():
            raw.rank = _claimed(raw.meta, Path(src.path).name, src.index)
        return raw
    data = src.data if src.data is not None else read_member(src.path, src.member)  # forward to it, no seek back
    raw = open_bytes(data, src.label)
    raw.rank = _claimed(raw.meta, Path(src.member).name, src.index)
    return raw


def streamed(items: Iterable[tuple[int, RankSource]]) -> Iterator[tuple[int, RankSource]]:
    """The (key, source) pairs of `items`, an archive member's source carrying its bytes: each
    archive is read once, front to back, and its ranks come in archive order as their bytes are
    inflated (one member held at a time by this generator); files come first, as they are."""
    by_archive: dict[str, dict[str, list]] = {}
    for key, src in items:
        if src.member is None or src.data is not None:
            yield key, src
        else:
            by_archive.setdefault(src.path, {}).setdefault(src.member, []).append((key, src))
    for path, wanted in by_archive.items():
        for name, data, target in archive_members(path, read=lambda n: n in wanted, hold=False):
            for key, src in wanted.pop(name, ()):
                yield key, replace(src, data=data if data is not None else read_member(path, target))
        if wanted:
            raise DaydreamError(f"{path}: no trace member {next(iter(wanted))!r} in the archive")


def _claimed(meta: dict, name: str, index: int) -> int:
    info = meta.get("distributedInfo")
    if isinstance(info, dict) and isinstance(info.get("rank"), int):
        return info["rank"]
    m = re.search(r"rank[_-]?(\d+)", name)
    return int(m.group(1)) if m else index


def load_rank(src: RankSource, rank: int | None = None, step_annotation: str | None = None) -> Trace:
    """One rank as a `Trace` of its own; `rank` overrides the rank the file claims."""
    raw = read_rank(src)
    if rank is not None:
        raw.rank = rank
    trace = from_raw([raw], src.label, step_annotation)
    run_dir = Path(src.path) if Path(src.path).is_dir() else Path(src.path).parent
    if src.member is None and (run_dir / "run.json").is_file() and (run_dir / "trace.json.gz").is_file():
        # a rank of a multi-rank `daydream profile` run: its run.json goes with it, as
        # `daydream.trace.load` gives it to a single run directory
        attach_run_dir(trace, run_dir)
    return trace


__all__ = ["RankSource", "rank_sources", "read_rank", "load_rank", "streamed"]
