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
from daydream.profile.model import QUIET_SPREAD, profile_model

INDEX_SCHEMA = "daydream.pairs/1"

# setting -> (keyword arguments of its base run, those of the optimized run relative to that base,
# the what-if it tests). The quantize pairs: int8 dynamic quantization of every nn.Linear (fbgemm),
# for inference (forward in eval mode, no autograd) and for a training-like step whose Linear forwards
# run int8 on weights requantized every step and whose backward and optimizer stay fp32
# (tbd_suite.variants). The sparse-attention pairs: dense SDPA against block-gathered block-sparse
# attention at half and a quarter of the key blocks, with and without the token-reorder permutation
# (needs a sequence of square-grid tokens in whole blocks: `--models dit --size small-256`).
def _sparse(density: float, reorder: bool) -> tuple:
    return ({}, lambda base: {"sparse": {"density": density, "block": SPARSE_BLOCK, "reorder": reorder}},
            f"sparse-attention:density={density:g},block={SPARSE_BLOCK},reorder={str(reorder).lower()}")


SPARSE_BLOCK = 32
SETTINGS = {
    "amp": ({}, lambda base: {"amp": "bf16"}, "amp:dtype=bf16"),
    "fused-optimizer": ({}, lambda base: {"fused": True}, "fused-optimizer"),
    "dataloader": ({}, lambda base: {"workers": 2}, "dataloader:workers=2"),
    "activation-checkpointing": ({}, lambda base: {"checkpointing": True}, "activation-checkpointing"),
    "batch-size": ({}, lambda base: {"batch_size": 2 * base}, "batch-size:factor=2"),
    "quantize-inference": ({"inference": True}, lambda base: {"quantize": True}, "quantize:dtype=int8"),
    "quantize": ({}, lambda base: {"quantize": True}, "quantize:dtype=int8"),
    "sparse-attention-50": _sparse(0.5, False),
    "sparse-attention-50-reorder": _sparse(0.5, True),
    "sparse-attention-25": _sparse(0.25, False),
    "sparse-attention-25-reorder": _sparse(0.25, True),
}
DEFAULT_SETTINGS = ("amp", "fused-optimizer", "dataloader", "activation-checkpointing", "batch-size")
DEFAULT_MODELS = ("resnet50", "bert", "llama", "vit", "transformer")


def _fusable(name: str) -> bool:
    import torch

    import tbd_suite
    from tbd_suite.common import FUSABLE_OPTIMIZERS
    workload = tbd_suite.get(name)
    probe = workload.make_optimizer([torch.nn.Parameter(torch.zeros(1))], False)
    return isinstance(probe, FUSABLE_OPTIMIZERS)


def interleaved_repetitions(name: str, base: dict, optimized: dict, repetitions: int, rep_steps: int,
                            warmup: int) -> tuple[list[float], list[float]]:
    """Per-repetition median step times (ms) of the base (A) and optimized (B) configurations, built
    side by side in one process and run in alternating blocks A B A B ... of `rep_steps` steady steps
    each, after `warmup` steps of both. Load from other processes on a shared machine then falls on
    both alike, and the repetitions show how much a median moves from block to block."""
    import statistics

    import tbd_suite
    from daydream.profile.model import _timed_step
    from daydream.profile.model import _block_sparse
    a, b = (tbd_suite.get(name).build(**{**kw, "sparse": _block_sparse(kw.get("sparse"))})
            for kw in (base, optimized))
    try:
        for _ in range(warmup):
            a.step()
            b.step()
        reps_a, reps_b = [], []
        for _ in range(repetitions):
            reps_a.append(statistics.median(_timed_step(a) for _ in range(rep_steps)))
            reps_b.append(statistics.median(_timed_step(b) for _ in range(rep_steps)))
    finally:
        a.close()
        b.close()
    return reps_a, reps_b


def speedup_interval(reps_a: list[float], reps_b: list[float], level: float = 0.95) -> dict:
    """The measured effect of a pair and its confidence interval from paired repetitions.

    Repetition i gives the ratio r_i = a_i / b_i of two medians measured back to back, so slow
    spells of the host cancel within a pair of blocks. The effect is the geometric mean of the r_i,
    the interval the Student t interval of the mean of ln r_i (n - 1 degrees of freedom):
        speedup = exp(m),  CI = exp(m -/+ t_{(1+level)/2, n-1} * s / sqrt(n))
    with m and s the mean and sample standard deviation of ln r_i. The effect is outside the noise
    band when the interval excludes 1 (no change)."""
    import math

    from scipy.stats import t as student_t
    logs = [math.log(a / b) for a, b in zip(reps_a, reps_b)]
    n = len(logs)
    m = sum(logs) / n
    s = math.sqrt(sum((x - m) ** 2 for x in logs) / (n - 1)) if n > 1 else float("inf")
    half = float(student_t.ppf((1 + level) / 2, n - 1)) * s / math.sqrt(n) if n > 1 else float("inf")
    lo, hi = math.exp(m - half), math.exp(m + half)
    return {"measured_speedup": round(math.exp(m), 4), "speedup_ci": [round(lo, 4), round(hi, 4)],
            "ci_level": level, "outside_noise": bool(lo > 1 or hi < 1)}


def _spread(reps: list[float]) -> dict:
    """Block-to-block spread of one configuration's repetition medians."""
    import statistics
    med = statistics.median(reps)
    return {"median_ms": round(med, 4), "min_ms": round(min(reps), 4), "max_ms": round(max(reps), 4),
            "range_pct": round(100 * (max(reps) - min(reps)) / med, 2)}


def _write_index(out: Path, index: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".json", dir=out)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(index, option=orjson.OPT_INDENT_2))
    os.replace(tmp, out / "index.json")


def default_pairs_dir() -> Path:
    """runs/pairs-TIME: a new directory, never the shipped corpus in traces/pairs (which its tests
    check against its own index.json); pass --out traces/pairs to refresh that on purpose."""
    return Path("runs") / f"pairs-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def capture_pairs(models=DEFAULT_MODELS, settings=DEFAULT_SETTINGS, devices=("cpu",), out_dir=None,
                  size="small", steps=3, warmup=2, time_steps=8, threads: int | None = 1, with_stack=False,
                  interleave: tuple = ("cpu",), repetitions=8, rep_steps=10, profile_tries=10, append=False,
                  progress=True,
                  log=print) -> dict:
    """Record base and optimized runs into OUT/DEVICE/MODEL/SETTING (MODEL-SIZE for sizes other
    than small) and write OUT/index.json (rewritten after every pair, so an interrupted capture keeps
    what it finished; with `append` the pairs and runs of an existing OUT/index.json are kept unless
    re-recorded). On the devices in `interleave` each pair is also timed in alternating blocks in one
    process (`interleaved_repetitions`), and its speedup and interval (`speedup_interval`) are the
    ones the pair reports."""
    import tbd_suite
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise DaydreamError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    for name in models:
        if name.removeprefix("tbd:") not in tbd_suite.REGISTRY:
            raise DaydreamError(f"unknown TBD model {name!r}; known: {', '.join(tbd_suite.names())}")
        sizes = tbd_suite.get(name).sizes
        if size not in sizes:
            raise DaydreamError(f"tbd:{name.removeprefix('tbd:')} has no size {size!r}; sizes: {', '.join(sizes)}")
    sparse = [s for s in settings if s.startswith("sparse-attention")]
    if sparse and (size != "small-256" or any(m.removeprefix("tbd:") != "dit" for m in models)):
        raise DaydreamError(f"{', '.join(sparse)}: block-sparse attention needs square-grid tokens in whole "
                            f"{SPARSE_BLOCK}-token blocks, which only --models dit --size small-256 has (256 tokens)")
    if repetitions < 2 or rep_steps < 1:
        raise DaydreamError(f"--repetitions must be >= 2 and --rep-steps >= 1 (got {repetitions}, {rep_steps})")
    out = Path(out_dir) if out_dir else default_pairs_dir()
    recording = {"steps": steps, "warmup": warmup, "time_steps": time_steps, "threads": threads,
                 "profile_tries": profile_tries, "quiet_spread": QUIET_SPREAD,
                 "repetitions": repetitions, "rep_steps": rep_steps, "with_stack": with_stack}
    index = {"schema": INDEX_SCHEMA, "size": size, **recording,
             "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "versions": rundir.versions(), "devices": {}, "runs": {}, "pairs": []}
    if append and (out / "index.json").exists():
        old = orjson.loads((out / "index.json").read_bytes())
        differ = [k for k in ("schema", *recording) if old.get(k) != index.get(k)]
        if differ:
            raise DaydreamError(f"--append: {out}/index.json was recorded with other {', '.join(differ)}; "
                                "record into a new directory")
        index.update(devices=old["devices"], runs=old["runs"], pairs=old["pairs"],
                     created=old["created"], appended=[*old.get("appended", []), index["created"]])
    out.mkdir(parents=True, exist_ok=True)
    log(f"writing the pairs to {out}")
    common = dict(size=size, steps=steps, warmup=warmup, time_steps=time_steps, threads=threads,
                  with_stack=with_stack, progress=progress, profile_tries=profile_tries)
    for device in devices:
        for model in models:
            name = model.removeprefix("tbd:")
            folder = f"{device}/{name}" + ("" if size == "small" else f"-{size}")
            bases: dict = {}  # base-run keyword arguments -> (run.json, its directory)

            def base_run(kwargs: dict):
                key = orjson.dumps(kwargs, option=orjson.OPT_SORT_KEYS)
                if key not in bases:
                    rel = f"{folder}/base" + "".join(f"-{k}" for k, v in sorted(kwargs.items()) if v)
                    info = profile_model(name, device=device, out_dir=out / rel, **common, **kwargs)
                    index["devices"][device] = info["device_name"]
                    index["runs"][rel] = _run_entry(info, size)
                    log(f"{rel}: {info['plain_step_ms_median']:.1f} ms/step")
                    bases[key] = info, rel
                return bases[key]

            for setting in settings:
                if setting == "fused-optimizer" and not _fusable(name):
                    log(f"{folder}/{setting}: skipped (optimizer has no fused implementation)")
                    continue
                base_kwargs, changes, opt = SETTINGS[setting]
                base, base_rel = base_run(base_kwargs)
                changes = changes(base["batch_size"])
                rel = f"{folder}/{setting}"
                run = profile_model(name, device=device, out_dir=out / rel, **common, **base_kwargs, **changes)
                index["runs"][rel] = _run_entry(run, size)
                base_ms, opt_ms = base["plain_step_ms_median"], run["plain_step_ms_median"]
                pair = {"name": rel, "model": f"tbd:{name}", "device": device, "size": size,
                        "setting": setting, "base_settings": base_kwargs, "changes": changes, "base": base_rel,
                        "optimized": rel, "whatif": {"opt": opt}, "timing": "separate runs"}
                if device in interleave:
                    build = dict(size=size, device=device, batch_size=base["batch_size"], **base_kwargs)
                    reps_a, reps_b = interleaved_repetitions(name, build, {**build, **changes}, repetitions,
                                                             rep_steps, warmup)
                    effect = speedup_interval(reps_a, reps_b)
                    base_ms, opt_ms = _spread(reps_a)["median_ms"], _spread(reps_b)["median_ms"]
                    pair.update(timing=f"interleaved: {repetitions} repetitions A B A B ..., each the median "
                                       f"of {rep_steps} steady steps", base_rep_ms=[round(x, 4) for x in reps_a],
                                optimized_rep_ms=[round(x, 4) for x in reps_b], base_spread=_spread(reps_a),
                                optimized_spread=_spread(reps_b), base_step_ms=base_ms, optimized_step_ms=opt_ms,
                                **effect)
                else:
                    pair.update(base_step_ms=round(base_ms, 4), optimized_step_ms=round(opt_ms, 4),
                                measured_speedup=round(base_ms / opt_ms, 4))
                index["pairs"] = [p for p in index["pairs"] if p["name"] != rel] + [pair]
                log(f"{rel}: {base_ms:.1f} -> {opt_ms:.1f} ms/step ({opt})")
                _write_index(out, index)
    _write_index(out, index)
    return index


def _run_entry(info: dict, size: str) -> dict:
    keys = ("model", "device", "batch_size", "amp", "plain_step_ms", "plain_step_ms_median", "profiled_step_ms",
            "profiler_overhead_pct", "profiled_steps")
    return {**{k: info[k] for k in keys}, "size": size, "profile_windows": info["profile_windows"], "settings": {k: info["settings"][k] for k in
                                                                     ("workers", "fused", "checkpointing", "quantize",
                                                                      "inference", "sparse")}}
