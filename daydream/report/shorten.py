"""Width of names in tables and charts: long names are shortened in the middle, never cut at the end.

A kernel name's start says what it is (`void cudnn::detail::dgrad_engine<...`) and its end often
tells two instantiations apart (`..., 3, true>`), so the middle is what goes. The full name stays in
`--json` and in chart hover text. Escaping of markup and control characters is a separate concern.
"""
from __future__ import annotations

ELLIPSIS = "…"
NAME_WIDTH = 60  # characters of a kernel/op name in terminal tables and chart labels


def shorten_middle(name: str, width: int = NAME_WIDTH) -> str:
    """`name` if it fits in `width` characters, else its start and end around one ellipsis."""
    if width < 3:
        raise ValueError(f"width must be at least 3, got {width}")
    if len(name) <= width:
        return name
    tail = (width - 1) // 3
    return name[:width - 1 - tail] + ELLIPSIS + name[len(name) - tail:]


def distinct_labels(names: list[str], width: int = NAME_WIDTH) -> list[str]:
    """`shorten_middle` of each name, widened for the names whose short forms would collide, so
    distinct names keep distinct labels (a chart keyed by label would merge them otherwise)."""
    labels = [shorten_middle(n, width) for n in names]
    w = width
    while len(set(labels)) < len(set(names)) and w < max(map(len, names), default=0):
        w += 10
        seen: dict[str, set] = {}
        for n, lab in zip(names, labels):
            seen.setdefault(lab, set()).add(n)
        labels = [shorten_middle(n, w) if len(seen[lab]) > 1 else lab for n, lab in zip(names, labels)]
    return labels
