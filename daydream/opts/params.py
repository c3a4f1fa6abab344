"""The optimization records (name, summary, parameters, time and memory models, doc page), found in
the modules of daydream/opts/ and registered by users, shared by the time and memory what-ifs.

`--opt NAME[:key=value,...]` is parsed here, so `whatif`, `memory` and `validate` accept exactly the
same spellings and reject the same mistakes (unknown name, unknown key, value out of range).
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from daydream.errors import DaydreamError


@dataclass(frozen=True)
class Param:
    default: object
    help: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def parse(self, opt: str, key: str, text: str):
        try:
            if self.kind is bool:
                if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                value = text.lower() in ("1", "true", "yes", "on")
            else:
                value = self.kind(text)
        except ValueError:
            raise DaydreamError(
                f"--opt {opt}: {key}={text!r} is not a {self.kind.__name__}; see `daydream opts`") from None
        if self.choices and value not in self.choices:
            raise DaydreamError(
                f"--opt {opt}: {key}={text!r} is not one of {', '.join(map(str, self.choices))}")
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            raise DaydreamError(
                f"--opt {opt}: {key}={text} is out of range [{self.low}, {self.high}]; see `daydream opts`")
        return value


@dataclass(frozen=True)
class Optimization:
    """Everything daydream needs to know about one optimization, in one place.

    Each module under daydream/opts/ that models an optimization ends with its record,
    `OPTIMIZATION = Optimization(...)`, and is found there by name; user code adds its own with
    `daydream.register(...)` or a `daydream.optimizations` entry point (docs/extending.md).
    `apply(graph, params, ctx)` transforms a TaskGraph copy in place (the time model);
    `memory(state, **params)` transforms a `daydream.memory.predict.State` (the memory model),
    given as the function or as "module:function" where it lives elsewhere; `doc` is the page
    that states the model's formula and constants (docs/optimizations/NAME.md for built-ins).
    `checked_against` names, per device class ("cpu", "gpu"), the measured pairs (the job run with
    and without the optimization) its predictions were checked against in docs/validation.md; a
    class it lacks has no such pair yet, and `daydream suggest` ranks the model's figures there after
    the checked ones. `checked_params` names parameters whose other values take another path
    through the model (amp's dtype: bf16 was measured on CPU, fp16 is priced from the hardware
    table) with the values the pairs used; a setting outside them is not checked.
    """
    name: str
    summary: str
    params: dict[str, Param]
    apply: Callable
    memory: Callable | str
    doc: str
    checked_against: dict[str, str] = field(default_factory=dict)
    checked_params: dict[str, tuple] = field(default_factory=dict)

    def __post_init__(self):
        if not _NAME.fullmatch(self.name or ""):
            raise DaydreamError(f"optimization name {self.name!r}: lower-case letters, digits and '-' only")
        missing = [part for part in ("summary", "doc") if not getattr(self, part)]
        missing += [part for part in ("apply",) if not callable(self.apply)]
        if not (callable(self.memory) or isinstance(self.memory, str) and ":" in self.memory):
            missing.append("memory")
        if not isinstance(self.params, dict) or not all(isinstance(p, Param) for p in self.params.values()):
            missing.append("params")
        if missing:
            raise DaydreamError(f"optimization {self.name!r}: record lacks {', '.join(missing)}")

    def defaults(self) -> dict:
        return {k: p.default for k, p in self.params.items()}

    def memory_model(self) -> Callable:
        """The memory model as a function (a "module:function" reference is imported here)."""
        if callable(self.memory):
            return self.memory
        module, _, attr = self.memory.partition(":")
        return getattr(importlib.import_module(module), attr)


def unchanged_memory(why: str) -> Callable:
    """The memory model of an optimization that leaves device memory as it is: it says why."""
    def model(st, **params):
        st.notes.append(why)
    return model


_NAME = re.compile(r"[a-z][a-z0-9-]*")
_REGISTERED: dict[str, Optimization] = {}  # from daydream.register and entry points


def _module_record(module_name: str) -> Optimization | None:
    module = importlib.import_module(f"daydream.opts.{module_name}")
    return getattr(module, "OPTIMIZATION", None)


@cache
def _builtin_modules() -> tuple[str, ...]:
    """daydream/opts/ modules; those starting with '_' are helpers, `params` and `context` hold no model."""
    return tuple(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                 if not m.name.startswith("_") and m.name not in ("params", "context"))


def _entry_points() -> None:
    """Optimizations that installed packages declare under the `daydream.optimizations` group."""
    for ep in entry_points(group="daydream.optimizations"):
        if ep.name not in _REGISTERED:
            try:
                record = ep.load()
            except Exception as exc:  # the installed package's own bug, reported on one line
                raise DaydreamError(f"entry point daydream.optimizations:{ep.name} ({ep.value}) failed to "
                                    f"load: {type(exc).__name__}: {exc}") from None
            if not isinstance(record, Optimization):
                raise DaydreamError(f"entry point daydream.optimizations:{ep.name} is not an Optimization "
                                    f"(got {type(record).__name__})")
            _REGISTERED[record.name] = record


def optimizations() -> dict[str, Optimization]:
    """Every optimization: the built-ins in name order, then installed and registered ones."""
    out = {}
    for module_name in sorted(_builtin_modules()):
        record = _module_record(module_name)
        if record is not None:
            out[record.name] = record
    _entry_points()
    out.update(_REGISTERED)
    return out


def optimization(name: str) -> Optimization:
    """The record of optimization `name`; imports only its own module when it is a built-in."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if _NAME.fullmatch(name) and name.replace("-", "_") in _builtin_modules():
        record = _module_record(name.replace("-", "_"))
        if record is not None and record.name == name:
            return record
    known = optimizations()
    if name not in known:
        raise DaydreamError(f"unknown optimization {name!r}; known: {', '.join(known)} (see `daydream opts`)")
    return known[name]


def register(record: Optimization, replace: bool = False) -> Optimization:
    """Add a user's optimization to `--opt`, `whatif`, `memory` and `daydream opts` in this process.
    A name that is already known is refused unless `replace=True`."""
    if not isinstance(record, Optimization):
        raise DaydreamError(f"register() takes an Optimization record, not {type(record).__name__}")
    if not replace and record.name in optimizations():
        raise DaydreamError(f"optimization {record.name!r} is already known; pass replace=True to replace it")
    _REGISTERED[record.name] = record
    return record


class _Records(Mapping):
    """`SPECS[name]`: the optimization records by name, read from the modules (nothing kept here)."""

    def __getitem__(self, name):
        try:
            return optimization(name)
        except DaydreamError:
            raise KeyError(name) from None

    def __iter__(self):
        return iter(optimizations())

    def __len__(self):
        return len(optimizations())


SPECS: Mapping[str, Optimization] = _Records()


# Optimizations that need GPU work in the trace, and the refusal every command gives on a CPU trace.
GPU_ONLY = {
    "cuda-graphs": "--opt cuda-graphs: the trace has no GPU work; CUDA graphs need a GPU trace",
    "gpu": "--opt gpu: the trace has no GPU work to move; record it on a GPU",
}


@dataclass(frozen=True)
class OptChoice:
    """One `--opt` as the user gave it, parameters filled with defaults."""
    name: str
    params: dict

    def as_json(self) -> dict:
        return {"name": self.name, "params": dict(self.params)}


def parse_opt(text: str) -> OptChoice:
    """Parse `NAME[:key=value,...]`, e.g. `ddp:world_size=8,bucket_mb=25`."""
    name, _, rest = text.strip().partition(":")
    spec = optimization(name)
    params = spec.defaults()
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in spec.params:
            known = ", ".join(spec.params) or "none"
            raise DaydreamError(f"--opt {name}: unknown parameter {key!r} (parameters: {known})")
        params[key] = spec.params[key].parse(name, key, value)
    return OptChoice(name, params)
