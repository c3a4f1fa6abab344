"""Named what-if scenarios: several optimization sets predicted from one trace, side by side.

A scenario is a list of `--opt` strings applied in order. On the command line:

    --scenario "amp"                                  one optimization
    --scenario "amp;fsdp:world_size=8"                two, separated by ';'
    --scenario "big=ddp:world_size=8,bucket_mb=50;amp"    named `big`

`;` separates optimizations. A comma also works between optimizations, because an item after a
comma that contains `=` but no `:` continues the parameters of the optimization before it
(`ddp:world_size=8,bucket_mb=25`) while any other item starts a new one (`amp,fsdp:world_size=8`).
`NAME=` in front names the scenario (NAME may not contain `:`, `;`, `,` or `=`); unnamed scenarios
are named by their text. A file (`--scenarios FILE`, TOML, or YAML where PyYAML is installed) maps
names to lists of `--opt` strings, at the top level or under a `scenarios` table:

    [scenarios]
    amp = ["amp"]
    "amp+fsdp" = ["amp", "fsdp:world_size=8"]

`compare` builds the graph and the replay once and predicts every scenario from them.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from daydream.errors import DaydreamError
from daydream.opts.params import OptChoice, parse_opt
from daydream.trace import Trace
from daydream.whatif import WhatIf, predict_each

_NAMED = re.compile(r"^\s*([^:;,=]+?)\s*=(.*)$")


@dataclass
class Scenario:
    name: str
    opts: list[OptChoice]

    def as_json(self) -> dict:
        return {"name": self.name, "optimizations": [o.as_json() for o in self.opts]}


def split_opts(text: str) -> list[str]:
    """`amp;ddp:world_size=8,bucket_mb=25,fsdp` -> ['amp', 'ddp:world_size=8,bucket_mb=25', 'fsdp']."""
    out: list[str] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        first = len(out)  # parameters continue only an optimization of the same ';' part
        for item in filter(None, (i.strip() for i in part.split(","))):
            if "=" in item and ":" not in item:
                if len(out) == first or ":" not in out[-1]:
                    raise DaydreamError(f"scenario {text!r}: parameter {item!r} follows no optimization "
                                        "with parameters; write NAME:key=value")
                out[-1] += "," + item
            else:
                out.append(item)
    return out


def parse_scenario(text: str) -> Scenario:
    """Parse one `--scenario` value (see the module docstring)."""
    m = _NAMED.match(text)
    name, body = (m.group(1), m.group(2)) if m else (None, text)
    items = split_opts(body)
    opts = [parse_opt(i) for i in items]
    return Scenario(name or "; ".join(items) or "replay", opts)


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Scenarios from a TOML or YAML file mapping names to lists of `--opt` strings."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DaydreamError(f"{p}: cannot read the scenarios file ({exc.strerror})") from None
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise DaydreamError(f"{p}: reading YAML needs PyYAML (pip install pyyaml); or write TOML") from None
            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise DaydreamError(f"{p}: not valid {'YAML' if p.suffix.lower() in ('.yaml', '.yml') else 'TOML'} "
                            f"({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # yaml.YAMLError without importing yaml at module level
        raise DaydreamError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict) and isinstance(data.get("scenarios"), dict):
        data = data["scenarios"]
    if not isinstance(data, dict) or not data:
        raise DaydreamError(f"{p}: expected a table of scenarios, name = [\"opt\", ...]")
    out = []
    for name, opts in data.items():
        if isinstance(opts, str):
            opts = split_opts(opts)
        if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
            raise DaydreamError(f"{p}: scenario {name!r} must be a list of --opt strings")
        out.append(Scenario(str(name), [parse_opt(o) for o in opts]))
    return out


def unique_names(scenarios: list[Scenario]) -> list[Scenario]:
    """Fail on two scenarios with one name: the table and report would mix them up."""
    seen = set()
    for s in scenarios:
        if s.name in seen:
            raise DaydreamError(f"two scenarios are named {s.name!r}; name them apart with NAME=...")
        seen.add(s.name)
    return scenarios


def compare(trace: Trace | str, scenarios: list[Scenario], progress=None) -> list[WhatIf]:
    """Predict every scenario from one graph and one replay; results in the scenarios' order."""
    return predict_each(trace, [s.opts for s in scenarios], progress, labels=[s.name for s in scenarios])


def scenario_json(scenario: Scenario, result: WhatIf) -> dict:
    """One entry of `whatif --json`'s `scenarios` list."""
    j = result.to_json()
    return {"name": scenario.name, "optimizations": j["optimizations"], "predicted_ms": j["predicted_ms"],
            "speedup": j["speedup"], "breakdown": j["breakdown"]["predicted"], "notes": j["notes"]}
