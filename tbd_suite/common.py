"""What every suite workload shares: seeded synthetic data behind a real DataLoader, the optimizer
choice (foreach or fused), autocast, activation checkpointing, and the training step itself.

A workload subclass says what its paper says (model, loss, optimizer, sizes); this module makes the
step look the same for all of them, so that traces of different models differ only where the models
differ.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import record_function
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader, Dataset

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# Optimizers that take `fused=True` in this torch (CPU and CUDA); the others run `foreach=True` only.
FUSABLE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


class SyntheticDataset(Dataset):
    """`length` samples; sample i comes from a generator seeded with (seed, i), so every DataLoader
    worker makes the same sample for the same index and two runs with one seed see the same data."""

    def __init__(self, sampler, length: int, seed: int):
        self.sampler, self.length, self.seed = sampler, length, seed

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return self.sampler(gen)


def run_blocks(blocks, x, checkpointing: bool, *extra):
    """Apply `blocks` in order; with checkpointing each block's activations are dropped in forward
    and recomputed in backward (torch.utils.checkpoint, non-reentrant)."""
    for block in blocks:
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, *extra, use_reentrant=False)
        else:
            x = block(x, *extra)
    return x


def make_optimizer(cls, params, fused: bool, **kwargs):
    """The paper's optimizer, multi-tensor (`foreach`) by default or one fused kernel with `fused`."""
    if cls in FUSABLE_OPTIMIZERS:
        kwargs["fused" if fused else "foreach"] = True
    elif fused:
        raise ValueError(f"{cls.__name__} has no fused implementation in torch {torch.__version__}")
    else:
        kwargs["foreach"] = True
    return cls(params, **kwargs)


def _to_device(batch, device, non_blocking):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device, non_blocking) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch


@dataclass
class Settings:
    size: str
    batch_size: int
    device: str
    amp: str | None          # None, "bf16" or "fp16"
    fused: bool
    checkpointing: bool
    workers: int
    seed: int
    quantize: bool = False
    inference: bool = False
    sparse: object = None


class Workload:
    """One TBD model. `build(...)` makes model, data and optimizer; `step()` runs one training step.

    Subclasses set `name`, `paper`, `optimizer`, `loss`, `sizes` (size -> config dict, each with a
    `batch` default) and implement `make_model(cfg)`, `make_sampler(cfg)`, `make_optimizer(params,
    fused)` and `compute_loss(batch)`; workloads with several optimizers override `train_step`.
    """

    name = ""
    paper = ""
    optimizer_name = ""
    loss_name = ""
    sizes: dict[str, dict] = {}
    samples_per_epoch = 16  # batches in the synthetic dataset before the loader cycles

    # --- building -----------------------------------------------------------------------------
    def build(self, size: str = "small", batch_size: int | None = None, device: str = "cpu",
              amp: bool | str | None = None, fused: bool = False, checkpointing: bool = False,
              workers: int = 0, seed: int = 0, quantize: bool = False, inference: bool = False,
              sparse=None) -> "Workload":
        """`quantize`: int8 dynamic quantization of every nn.Linear; `inference`: each step is a
        forward pass and the loss in eval mode without autograd, no backward or optimizer;
        `sparse`: a tbd_suite.variants.BlockSparse pattern for the self-attention (both in
        tbd_suite.variants, for the quantize and sparse-attention pairs of `daydream capture`)."""
        if size not in self.sizes:
            raise ValueError(f"tbd:{self.name} has no size {size!r}; sizes: {', '.join(self.sizes)}")
        cfg = dict(self.sizes[size])
        batch_size = int(batch_size or cfg["batch"])
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if amp is True:
            amp = "bf16"
        if amp and amp not in AMP_DTYPES:
            raise ValueError(f"amp dtype must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
        self.settings = Settings(size, batch_size, str(device), amp or None, bool(fused),
                                 bool(checkpointing), int(workers), int(seed), bool(quantize), bool(inference), sparse)
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.model = self.make_model(cfg).to(self.device)
        self.model.checkpointing = bool(checkpointing)
        if sparse is not None:
            for module in self.model.modules():
                if hasattr(module, "block_sparse"):
                    module.block_sparse = sparse
        self.model.train(not inference)
        if quantize:
            from tbd_suite.variants import quantize_linears
            quantize_linears(self.model, training=not inference)
        self.optimizers = self.make_optimizers(fused)
        self.scheduler = self.make_scheduler(self.optimizers[0])
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None
        dataset = SyntheticDataset(self.make_sampler(cfg), batch_size * self.samples_per_epoch, seed)
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=True,
                                 num_workers=int(workers), persistent_workers=int(workers) > 0,
                                 pin_memory=self.device.type == "cuda")
        self._batches = iter(self.loader)
        return self

    def make_optimizers(self, fused: bool) -> list:
        return [self.make_optimizer(self.model.parameters(), fused)]

    def make_scheduler(self, optimizer):
        return None

    @property
    def parameters_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # --- stepping -----------------------------------------------------------------------------
    def next_batch(self):
        """The next batch from the DataLoader (cycling over epochs), moved to the device."""
        with record_function("daydream:data"):
            try:
                batch = next(self._batches)
            except StopIteration:
                self._batches = iter(self.loader)
                batch = next(self._batches)
            return _to_device(batch, self.device, non_blocking=True)

    def autocast(self):
        if not self.settings.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.settings.amp])

    def backward_and_step(self, loss, optimizer, clip: float | None = None):
        """Backward, optional gradient clipping, optimizer step, zero grads (GradScaler under fp16)."""
        with record_function("daydream:backward"):
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        with record_function("daydream:optimizer"):
            if clip is not None:
                if self.scaler:
                    self.scaler.unscale_(optimizer)
                params = [p for g in optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
            if self.scaler:
                self.scaler.step(optimizer)
                self.scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def train_step(self):
        batch = self.next_batch()
        with self.autocast(), record_function("daydream:forward"):
            loss = self.compute_loss(batch)
        self.backward_and_step(loss, self.optimizers[0], self.clip_norm)
        return loss

    clip_norm: float | None = None

    def step(self) -> torch.Tensor:
        """One full training step: data, forward, loss, backward, optimizer step. Returns the loss
        (detached, not synchronised: reading it is the caller's choice)."""
        if self.settings.inference:
            batch = self.next_batch()
            with torch.inference_mode(), self.autocast(), record_function("daydream:forward"):
                return self.compute_loss(batch)
        loss = self.train_step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()

    def close(self):
        """Stop DataLoader workers."""
        self._batches = None
        self.loader = None

    # --- to implement ----------------------------------------------------------------------------
    def make_model(self, cfg) -> nn.Module:
        raise NotImplementedError

    def make_sampler(self, cfg):
        raise NotImplementedError

    def make_optimizer(self, params, fused: bool):
        raise NotImplementedError

    def compute_loss(self, batch) -> torch.Tensor:
        raise NotImplementedError
