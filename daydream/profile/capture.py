"""Labelled run pairs for validating what-if predictions: for each model, one base run and one run
per setting that differs from it in exactly that setting, with index.json naming the pair and the
`--opt` it corresponds to. `daydream validate BASE OPTIMIZED --opt ...` then compares prediction
with measurement."""
from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import orjson

from daydream.errors import DaydreamError
from daydream.profile import rundir
from daydream.profile.model import profile_model

INDEX_SCHEMA = "daydream.pairs/1"

# setting -> (keyword arguments of the optimized run relative to the base, the what-if it tests)
SETTINGS = {
    "amp": (lambda base: {"amp": "bf16"}, "amp:dtype=bf16"),
    "fused-optimizer": (lambda base: {"fused": True}, "fused-optimizer"),
    "dataloader": (lambda base: {"workers": 2}, "dataloader:workers=2"),
    "activation-checkpointing": (lambda base: {"checkpointing": True}, "activation-checkpointing"),
    "batch-size": (lambda base: {"batch_size": 2 * base}, "batch-size:factor=2"),
}
DEFAULT_MODELS = ("resnet50", "bert", "llama", "vit", "transformer")


def _fusable(name: str) -> bool:
    import torch

    import tbd_suite
    from tbd_suite.common import FUSABLE_OPTIMIZERS
    workload = tbd_suite.get(name)
    probe = workload.make_optimizer([torch.nn.Parameter(torch.zeros(1))], False)
    return isinstance(probe, FUSABLE_OPTIMIZERS)


def interleaved_step_ms(name: str, base: dict, optimized: dict, rounds: int, warmup: int) -> tuple[float, float]:
    """Median step times of the base and optimized configurations built side by side in one process
    and stepped alternately (A B A B ...), so that load from other processes on a shared machine falls
    on both alike; the separate runs' own timings cannot promise that."""
    import statistics

    import tbd_suite
    from daydream.profile.model import _timed_step
    a, b = tbd_suite.get(name).build(**base), tbd_suite.get(name).build(**optimized)
    try:
        for _ in range(warmup):
            a.step()
            b.step()
        times_a, times_b = [], []
        for _ in range(rounds):
            times_a.append(_timed_step(a))
            times_b.append(_timed_step(b))
    finally:
        a.close()
        b.close()
    return statistics.median(times_a), statistics.median(times_b)


def _write_index(out: Path, index: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".json", dir=out)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(index, option=orjson.OPT_INDENT_2))
    os.replace(tmp, out / "index.json")


def default_pairs_dir() -> Path:
    """runs/pairs-TIME: a new directory, never the shipped corpus in traces/pairs (which its tests
    check against its own index.json); pass --out traces/pairs to refresh that on purpose."""
    return Path("runs") / f"pairs-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def capture_pairs(models=DEFAULT_MODELS, settings=tuple(SETTINGS), devices=("cpu",), out_dir=None,
                  size="small", steps=3, warmup=2, time_steps=8, threads: int | None = 1, with_stack=False,
                  interleave: tuple = ("cpu",), progress=True, log=print) -> dict:
    """Record base and optimized runs into OUT/DEVICE/MODEL/SETTING and write OUT/index.json
    (rewritten after every pair, so an interrupted capture keeps what it finished). On the devices in
    `interleave` each pair is also timed alternately in one process (`interleaved_step_ms`), and its
    speedup is the one the pair reports."""
    import tbd_suite
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise DaydreamError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    for name in models:
        if name.removeprefix("tbd:") not in tbd_suite.REGISTRY:
            raise DaydreamError(f"unknown TBD model {name!r}; known: {', '.join(tbd_suite.names())}")
    out = Path(out_dir) if out_dir else default_pairs_dir()
    out.mkdir(parents=True, exist_ok=True)
    log(f"writing the pairs to {out}")
    index = {"schema": INDEX_SCHEMA, "size": size, "steps": steps, "warmup": warmup, "time_steps": time_steps,
             "threads": threads,
             "with_stack": with_stack, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "versions": rundir.versions(), "devices": {}, "runs": {}, "pairs": []}
    common = dict(size=size, steps=steps, warmup=warmup, time_steps=time_steps, threads=threads,
                  with_stack=with_stack, progress=progress)
    for device in devices:
        for model in models:
            name = model.removeprefix("tbd:")
            base_rel = f"{device}/{name}/base"
            base = profile_model(name, device=device, out_dir=out / base_rel, **common)
            index["devices"][device] = base["device_name"]
            index["runs"][base_rel] = _run_entry(base)
            log(f"{base_rel}: {base['plain_step_ms_median']:.1f} ms/step")
            for setting in settings:
                if setting == "fused-optimizer" and not _fusable(name):
                    log(f"{device}/{name}/{setting}: skipped (optimizer has no fused implementation)")
                    continue
                changes, opt = SETTINGS[setting]
                changes = changes(base["batch_size"])
                rel = f"{device}/{name}/{setting}"
                run = profile_model(name, device=device, out_dir=out / rel, **{**common, **changes})
                index["runs"][rel] = _run_entry(run)
                base_ms, opt_ms = base["plain_step_ms_median"], run["plain_step_ms_median"]
                pair = {"name": f"{device}/{name}/{setting}", "model": f"tbd:{name}", "device": device,
                        "setting": setting, "changes": changes, "base": base_rel, "optimized": rel,
                        "whatif": {"opt": opt}, "timing": "separate runs"}
                if device in interleave:
                    build = dict(size=size, device=device, batch_size=base["batch_size"])
                    base_ms, opt_ms = interleaved_step_ms(name, build, {**build, **changes}, time_steps, warmup)
                    pair["timing"] = f"interleaved, median of {time_steps} alternating steps"
                pair.update(base_step_ms=round(base_ms, 4), optimized_step_ms=round(opt_ms, 4),
                            measured_speedup=round(base_ms / opt_ms, 4))
                index["pairs"].append(pair)
                log(f"{rel}: {base_ms:.1f} -> {opt_ms:.1f} ms/step ({opt})")
                _write_index(out, index)
    _write_index(out, index)
    return index


def _run_entry(info: dict) -> dict:
    keys = ("model", "device", "batch_size", "amp", "plain_step_ms", "plain_step_ms_median", "profiled_step_ms",
            "profiler_overhead_pct", "profiled_steps")
    return {**{k: info[k] for k in keys}, "settings": {k: info["settings"][k] for k in
                                                       ("workers", "fused", "checkpointing")}}
