"""Names from a trace (kernels, ops, modules, devices, paths, scenario names) shown to a person.

A name is data, never markup: it must not start a rich style, move the terminal's cursor, or
become a link in an HTML/plotly label. Every place that shows a name goes through one of:

- `printable(name)`: plain text for the terminal: control characters (C0, DEL, C1, and the
  bidirectional overrides that reorder what is shown) written as Python-style escapes (`\\x1b`),
  and anything past `MAX_CHARS` cut off with a note of how much was cut.
- `escape_markup(name)`: `printable`, then escaped for rich markup (`[bold]` stays text).
- `html_label(name)`: `printable`, then escaped for HTML and plotly's pseudo-HTML labels
  (`<a href=...>` stays text).

`without_addresses(name)` is what two traces' names are matched by (diff): a Python stack frame
names its object by address (`<built-in method run_backward of torch._C._EngineBase object at
0x7fa0ff5a70e0>`), which differs in every process.

`--json` output carries names unchanged and whole.
"""
from __future__ import annotations

import html
import re

# Longest name shown in full in human output and reports: twice the longest name in the shared
# traces (5,123 characters, hta/alexnet_a100; templated kernels reach 3,000), so no real name is
# cut, while a 100 MB name does not make a 100 MB report.
MAX_CHARS = 10_000
# Notes and warnings are sentences of ours that may quote a name: a little longer, still bounded.
NOTE_CHARS = 20_000
# How much of a name the classifiers (kernel class, phase, dtype, collective) read: every rule
# looks for a library or op word, which real names carry well inside their first 16 K characters.
# Regex passes cost ~0.25 s per MB of name, so a 100 MB name read whole took minutes.
CLASSIFY_CHARS = 16_384

_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x2028, 0x2029]
_SHORT = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_ESCAPES = {c: _SHORT.get(c, f"\\x{c:02x}") for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({c: f"\\u{c:04x}" for c in _BIDI})


def printable(name, limit: int | None = MAX_CHARS) -> str:
    """`name` as text that is safe to write to a terminal: control characters escaped, cut at `limit`."""
    text = name if isinstance(name, str) else str(name)
    cut = ""
    if limit is not None and len(text) > limit:
        cut = f"… ({len(text) - limit:,} more characters)"
        text = text[:limit]
    return text.translate(_ESCAPES) + cut


_MARKUP_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def escape_markup(name, limit: int | None = MAX_CHARS) -> str:
    """`name` for a rich markup string or table cell: printed as is, never parsed as a style.
    (rich.markup.escape's rule, written out: this module sits below the terminal layer.)"""
    text = _MARKUP_TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", printable(name, limit))
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def html_label(name, limit: int | None = MAX_CHARS) -> str:
    """`name` for HTML text and plotly labels (axis ticks, legends, titles, hover text)."""
    return html.escape(printable(name, limit), quote=True)


def one_line(message: str, limit: int = 2_000) -> str:
    """An error message as one printable line: control characters (newlines included) escaped,
    and the middle of an overlong message cut so that its start and its advice both show."""
    text = printable(message, None)
    if len(text) <= limit:
        return text
    tail = limit // 3
    return f"{text[:limit - tail]} … {text[-tail:]}"


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def without_addresses(name: str) -> str:
    """`name` with its object addresses (` at 0x7fa0ff5a70e0`) written as ` at 0x…`."""
    return _ADDRESS.sub(" at 0x…", name) if " at 0x" in name else name
