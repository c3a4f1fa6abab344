"""Names, parameters and defaults of every optimization, shared by the time and memory what-ifs.

`--opt NAME[:key=value,...]` is parsed here, so `whatif`, `memory` and `validate` accept exactly the
same spellings and reject the same mistakes (unknown name, unknown key, value out of range).
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
class OptSpec:
    name: str
    help: str
    params: dict[str, Param] = field(default_factory=dict)

    def defaults(self) -> dict:
        return {k: p.default for k, p in self.params.items()}


SPECS: dict[str, OptSpec] = {s.name: s for s in [
    OptSpec("amp", "automatic mixed precision: tensor-core GEMMs/convs, half the bytes of memory-bound kernels, cast kernels added", {
        "dtype": Param("bf16", "16-bit type", str, choices=("fp16", "bf16")),
    }),
    OptSpec("fused-optimizer", "one fused kernel per parameter group instead of per-tensor optimizer kernels", {}),
    OptSpec("dataloader", "background workers and prefetching hide data loading behind compute", {
        "workers": Param(4, "DataLoader num_workers", int, 0, 256),
        "prefetch": Param(2, "batches prefetched per worker", int, 1, 64),
        "cores": Param(0, "CPU cores of the host (0: run.json's cpu_count; unrecorded: no core contention)",
                       int, 0, 65536),
        "load_ms": Param(0.0, "one batch's loading time in ms where the trace's workers were not profiled "
                              "(0: estimated from the batch's bytes; docs/optimizations/dataloader.md)",
                       float, 0, 1e7),
    }),
    OptSpec("ddp", "data parallel: ring all-reduce of gradients in buckets, overlapped with backward", {
        "world_size": Param(8, "number of GPUs", int, 1, 65536),
        "bucket_mb": Param(25.0, "gradient bucket size in MB", float, 0.1, 10240),
        "interconnect": Param("nvlink", "link between GPUs", str, choices=("nvlink", "pcie", "infiniband")),
    }),
    OptSpec("fsdp", "fully sharded data parallel (ZeRO-3): all-gather before use, reduce-scatter of gradients, sharded optimizer step", {
        "world_size": Param(8, "number of GPUs", int, 1, 65536),
        "prefetch": Param(True, "prefetch the next unit's all-gather", bool),
        "interconnect": Param("nvlink", "link between GPUs", str, choices=("nvlink", "pcie", "infiniband")),
        "units": Param(0, "FSDP units (0: about sqrt(forward ops), cut at module changes)", int, 0, 100000),
    }),
    OptSpec("quantize", "low-bit GEMMs with quantize/dequantize kernels", {
        "dtype": Param("int8", "GEMM input type", str, choices=("int8", "fp8", "int4")),
    }),
    OptSpec("sparse-attention", "block-sparse attention after token reordering (PAROAttention)", {
        "density": Param(0.5, "fraction of attention blocks computed", float, 0.01, 1.0),
        "block": Param(64, "block size in tokens", int, 8, 1024),
        "reorder": Param(True, "include the token-reorder permutation cost", bool),
    }),
    OptSpec("activation-checkpointing", "drop activations in forward, recompute the forward of chosen layers during backward", {
        "fraction": Param(1.0, "fraction of forward compute that is recomputed", float, 0.0, 1.0),
        "segments": Param(0, "checkpointed segments (0: about sqrt(forward ops), cut at module changes)", int, 0, 100000),
    }),
    OptSpec("cuda-graphs", "capture the step in a CUDA graph: per-kernel launch overhead removed", {}),
    OptSpec("gpu", "move the run to another device of the hardware table", {
        "target": Param("H100", "device name from `daydream opts` hardware list", str),
    }),
    OptSpec("batch-size", "scale the batch: per-sample work scales, per-step work does not", {
        "factor": Param(2.0, "new batch size / recorded batch size", float, 0.01, 1024),
    }),
]}


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
    spec = SPECS.get(name)
    if spec is None:
        raise DaydreamError(f"unknown optimization {name!r}; known: {', '.join(SPECS)} (see `daydream opts`)")
    params = spec.defaults()
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in spec.params:
            known = ", ".join(spec.params) or "none"
            raise DaydreamError(f"--opt {name}: unknown parameter {key!r} (parameters: {known})")
        params[key] = spec.params[key].parse(name, key, value)
    return OptChoice(name, params)
