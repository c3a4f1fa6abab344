"""Memory what-if validation on CPU: predict one run's peak from another run plus `--opt`, compare
with what that run measured.

Pairs (each a base run and a changed run of the same model, profiled with torch.profiler's memory
profile, the source `daydream profile` stores in memory.json.gz):
  batch B -> 2B              predicted with  batch-size:factor=2
  checkpointing off -> on    predicted with  activation-checkpointing:fraction=1
  fp32 -> bf16 autocast      predicted with  amp:dtype=bf16

    python benchmarks/memory_validation.py [--write-docs]

With --write-docs the table replaces the `## Memory` section of docs/validation.md.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.checkpoint import checkpoint

from daydream.memory import memory
from daydream.memory.timeline import TORCH_CATEGORIES

ROOT = Path(__file__).resolve().parents[1]


class Blocks(nn.Module):
    """A stack of blocks, each optionally checkpointed (torch.utils.checkpoint, non-reentrant)."""

    def __init__(self, blocks, head):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.checkpointing = False

    def forward(self, x):
        for b in self.blocks:
            x = checkpoint(b, x, use_reentrant=False) if self.checkpointing else b(x)
        return self.head(x)


def mlp(width=256, depth=8, classes=10):
    blocks = [nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.GELU())
              for _ in range(depth)]
    return Blocks(blocks, nn.Linear(width, classes)), lambda b: torch.randn(b, width)


def cnn(channels=32, depth=6, classes=10, size=32):
    blocks = [nn.Sequential(nn.Conv2d(3 if i == 0 else channels, channels, 3, padding=1),
                            nn.BatchNorm2d(channels), nn.ReLU()) for i in range(depth)]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))
    return Blocks(blocks, head), lambda b: torch.randn(b, 3, size, size)


def saved_by_module(model, step) -> dict:
    """Bytes of the tensors autograd saves for the backward, by the leaf module running when saved
    (parameters excluded, each storage counted once), measured over one call of `step`."""
    current, table, seen = [None], {}, set()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    names = {m: n for n, m in model.named_modules()}
    hooks = [m.register_forward_pre_hook(lambda m, _: current.__setitem__(0, names[m]))
             for m in model.modules() if not list(m.children())]

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if current[0] is not None and ptr not in params and ptr not in seen:
            seen.add(ptr)
            table[current[0]] = table.get(current[0], 0) + t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    for h in hooks:
        h.remove()
    return table


def conv_shapes(model, step) -> list:
    """Input, weight and output shapes of every convolution call over one call of `step` (the
    `convolutions` table of the memory document: the amp model sizes CPU im2col buffers from it)."""
    table = []

    def hook(m, inputs, out):
        table.append({"module": names[m], "input": list(inputs[0].shape), "weight": list(m.weight.shape),
                      "output": list(out.shape)})
    names = {m: n for n, m in model.named_modules()}
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    step()
    for h in hooks:
        h.remove()
    return table


def record(build, batch, checkpointing=False, amp=False, steps=1) -> dict:
    """Profile `steps` training steps (after one warm-up) and return a daydream.memory/1 document."""
    torch.manual_seed(0)
    model, sample = build()
    model.checkpointing = checkpointing
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = sample(batch), torch.randint(0, 10, (batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    layers = saved_by_module(model, step)
    convolutions = conv_shapes(model, step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                     with_stack=True) as prof:
            for _ in range(steps):
                step()
        fd, tmp = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        try:
            from torch.profiler._memory_profiler import MemoryProfileTimeline
            MemoryProfileTimeline(prof._memory_profile()).export_memory_timeline_raw(tmp, "cpu")
            import json
            rows = json.loads(Path(tmp).read_text())
        finally:
            os.unlink(tmp)
    return {"schema": "daydream.memory/1", "timeline": rows, "categories": list(TORCH_CATEGORIES),
            "device": "cpu", "layers": layers, "convolutions": convolutions,
            # Whether this CPU's oneDNN has bf16 kernels (else bf16 convolutions fall back to im2col).
            "cpu_bf16_onednn": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}


def _write(doc, directory: Path, name: str) -> Path:
    import gzip
    import orjson
    path = directory / f"{name}.memory.json.gz"
    path.write_bytes(gzip.compress(orjson.dumps(doc)))
    return path


CASES = [
    # (model, label, base kwargs, changed kwargs, --opt)
    ("mlp", "batch 512 -> 1024", dict(batch=512), dict(batch=1024), "batch-size:factor=2"),
    ("mlp", "checkpointing off -> on", dict(batch=1024), dict(batch=1024, checkpointing=True),
     "activation-checkpointing:fraction=1"),
    ("mlp", "fp32 -> bf16 autocast", dict(batch=1024), dict(batch=1024, amp=True), "amp:dtype=bf16"),
    ("cnn", "batch 16 -> 32", dict(batch=16), dict(batch=32), "batch-size:factor=2"),
    ("cnn", "checkpointing off -> on", dict(batch=32), dict(batch=32, checkpointing=True),
     "activation-checkpointing:fraction=1"),
    ("cnn", "fp32 -> bf16 autocast", dict(batch=32), dict(batch=32, amp=True), "amp:dtype=bf16"),
]
BUILDERS = {"mlp": mlp, "cnn": cnn}


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for i, (model, label, base_kw, new_kw, opt) in enumerate(CASES):
            base = _write(record(BUILDERS[model], **base_kw), d, f"{i}-base")
            new = _write(record(BUILDERS[model], **new_kw), d, f"{i}-new")
            rep = memory(base, [opt])
            measured = memory(new).peak_bytes
            predicted = rep.predicted_peak_bytes
            rows.append({"model": model, "change": label, "opt": opt, "base_peak": rep.peak_bytes,
                         "measured_peak": measured, "predicted_peak": predicted,
                         "error_pct": 100 * abs(predicted - measured) / measured})
            print(f"{model:4} {label:26} base {rep.peak_bytes / 2**20:8.2f} MiB  measured {measured / 2**20:8.2f} "
                  f"predicted {predicted / 2**20:8.2f}  error {rows[-1]['error_pct']:5.1f}%", file=sys.stderr)
    return rows


def markdown(rows) -> str:
    lines = ["## Memory", "",
             "Predicted peak (base run + `--opt`) against the measured peak of the changed run, both from "
             "torch.profiler memory profiles on CPU (torch 2.13), Adam, one profiled step after one "
             "warm-up. Produced by `python benchmarks/memory_validation.py --write-docs`. "
             "Goal: within 10%.", "",
             "| model | change | --opt | base peak MiB | measured MiB | predicted MiB | error % |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['change']} | `{r['opt']}` | {r['base_peak'] / 2**20:.2f} | "
                     f"{r['measured_peak'] / 2**20:.2f} | {r['predicted_peak'] / 2**20:.2f} | {r['error_pct']:.1f} |")
    ok = sum(r["error_pct"] <= 10 for r in rows)
    lines += ["", f"{ok} of {len(rows)} pairs within 10%.", ""]
    return "\n".join(lines)


def write_docs(section: str) -> None:
    """Replace (or append) the `## Memory` section of docs/validation.md, leaving other sections."""
    path = ROOT / "docs" / "validation.md"
    text = path.read_text() if path.exists() else "# Validation\n\n"
    pattern = re.compile(r"^## Memory\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    table = markdown(run())
    print(table)
    if args.write_docs:
        write_docs(table)
