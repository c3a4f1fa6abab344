"""Cross-GPU validation: the shared H100 <-> MI300X pairs predicted with `gpu:target=...` in both
directions, per-step error and per-kernel-class time (predicted vs measured).

    python benchmarks/gpu_validation.py [--write-docs]

For each pair the base trace is replayed on the target device (`daydream whatif BASE --opt
gpu:target=T`), its step compared with the target trace's measured step (CONTRACT.md
`measured_ms`), and the GPU time inside the analysis window summed per kernel class on both
sides, so the error is explained by class, not only totalled. With --write-docs the tables
replace the `## What-if: cross-GPU` section of docs/validation.md.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
from pathlib import Path

import numpy as np

from daydream import hardware
from daydream.graph.schema import GPU_TASK_TYPES
from daydream.sim import simulate
from daydream.trace import load
from daydream.transform.primitives import kernel_classes
from daydream.whatif import whatif
from daydream.graph import build_graph

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "traces"
sys.path.insert(0, str(REPO / "benchmarks"))
import fit_gpu_efficiency as fitting  # noqa: E402

# (label, base trace, target trace, target device), both directions of every shared pair
PAIRS = (
    ("bert-small H100->MI300X", "tracelens/gaunernst_bert-small-uncased_h100.json.gz",
     "tracelens/gaunernst_bert-small-uncased_mi300.json.gz", "MI300X"),
    ("bert-small MI300X->H100", "tracelens/gaunernst_bert-small-uncased_mi300.json.gz",
     "tracelens/gaunernst_bert-small-uncased_h100.json.gz", "H100"),
    ("Qwen1.5-0.5B H100->MI300X", "tracelens/Qwen_Qwen1.5-0.5B-Chat_h100.json.gz",
     "tracelens/Qwen_Qwen1.5-0.5B-Chat_mi300.json.gz", "MI300X"),
    ("Qwen1.5-0.5B MI300X->H100", "tracelens/Qwen_Qwen1.5-0.5B-Chat_mi300.json.gz",
     "tracelens/Qwen_Qwen1.5-0.5B-Chat_h100.json.gz", "H100"),
)
CLASSES = ("gemm", "attention", "normalization", "elementwise", "reduction", "copy", "other")


def class_ms(timeline) -> dict[str, float]:
    """GPU time (ms, per step) inside the analysis window, per kernel class (conv and optimizer
    counted with gemm and elementwise; communication with other): the window's own GPU work and
    work queued before the profiler started (no launch in the trace) that ran inside it."""
    graph = timeline.graph
    t = graph.tasks
    w0, w1 = timeline.window()
    queued = (t["launch"].to_numpy() < 0) & (timeline.start >= w0) & (timeline.start < w1)
    sel = np.isin(t["kind"].to_numpy(), GPU_TASK_TYPES) & (t["in_window"].to_numpy() | queued)
    cls = kernel_classes(graph)[sel]
    cls = np.where(cls == "conv", "gemm", np.where(cls == "optimizer", "elementwise",
                   np.where(cls == "communication", "other", cls)))
    dur = t["dur"].to_numpy()[sel] / 1e6 / max(graph.steps, 1)
    return {c: float(dur[cls == c].sum()) for c in CLASSES}


@contextlib.contextmanager
def fitted_tables(tables: dict):
    """The cross-GPU tables of daydream.hardware replaced by `tables` (fit_gpu_efficiency.tables)
    for the duration: a family the fit has no value for is absent, as it would be in the table."""
    saved = {name: getattr(hardware, name) for name in tables}
    try:
        for name, value in tables.items():
            setattr(hardware, name, {**value, **({"H200": value["H100"]} if "H100" in value else {})})
        yield
    finally:
        for name, value in saved.items():
            setattr(hardware, name, value)


def predict(base, device) -> tuple:
    w = whatif(load(SHARED / base), [f"gpu:target={device}"])
    return w, w.predicted_ms


def run():
    """Each direction predicted with the tables as committed (in-sample: fitted on every shared
    trace) and with the tables fitted without that pair's two traces (leave-one-pair-out)."""
    paths = [SHARED / t for t in fitting.TRACES]
    loo = {key: fitting.tables(f) for key, f in fitting.leave_one_pair_out(paths, fitting.PAIRS).items()}
    out = []
    for label, base, target, device in PAIRS:
        w, predicted = predict(base, device)
        key = next(k for k in fitting.PAIRS if k in label)
        with fitted_tables(loo[key]):
            _, predicted_loo = predict(base, device)
        measured = load(SHARED / target)
        m = measured.measured_ms
        out.append({"pair": label, "opt": f"gpu:target={device}", "base_ms": w.measured_ms,
                    "measured_ms": m, "predicted_ms": predicted, "error_pct": 100 * (predicted - m) / m,
                    "predicted_loo_ms": predicted_loo, "error_loo_pct": 100 * (predicted_loo - m) / m,
                    "pred": class_ms(w.predicted), "meas": class_ms(simulate(build_graph(measured)))})
    return out


def tables(results) -> str:
    head = ("| pair | --opt | base ms | target measured ms | predicted ms (in-sample) | error % | "
            "predicted ms (pair left out of the fit) | error % |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(f"| {r['pair']} | `{r['opt']}` | {r['base_ms']:.3f} | {r['measured_ms']:.3f} | "
                   f"{r['predicted_ms']:.3f} | {r['error_pct']:+.1f} | {r['predicted_loo_ms']:.3f} | "
                   f"{r['error_loo_pct']:+.1f} |\n" for r in results)
    text = head + body + "\n"
    for label, key in (("in-sample", "error_pct"), ("leave-one-pair-out", "error_loo_pct")):
        errs = [abs(r[key]) for r in results]
        text += (f"{label}: median |error| {statistics.median(errs):.1f}%, worst {max(errs):.1f}% "
                 f"over {len(errs)} directions.\n")
    text += "\n"
    text += ("Per kernel class, GPU ms per step inside the window, predicted (in-sample tables) / measured "
             "on the target (error %):\n\n| pair | " + " | ".join(CLASSES) + " |\n|---|" + "---:|" * len(CLASSES) + "\n")
    for r in results:
        cells = []
        for c in CLASSES:
            p, m = r["pred"][c], r["meas"][c]
            cells.append("-" if p == m == 0 else
                         f"{p:.2f} / {m:.2f}" + (f" ({100 * (p - m) / m:+.0f}%)" if m > 0 else ""))
        text += f"| {r['pair']} | " + " | ".join(cells) + " |\n"
    return text


NOTES = """\
**What is fitted, and on what.** The kernel floors, the memory lines (fixed cost + achievable
bandwidth of memory-bound kernels) and the GEMM/conv/attention efficiencies of
`hardware.KERNEL_FLOOR_S`, `MEMORY_LINE` and `CLASS_EFFICIENCY` are fitted by
`python benchmarks/fit_gpu_efficiency.py` on the shared H100 and MI300X traces: bert-small and
Qwen1.5-0.5B on both devices plus the MI300X ResNet-18 DDP training trace, i.e. largely on the
pairs validated here, so the Qwen rows are **in-sample**. Leave-one-pair-out: without the bert
pair the fit is the same to three digits (bert's kernels are 0.3 ms of the 0.2 s fitted on), so
the bert rows are out-of-sample in effect. Without the Qwen pair the MI300X memory line barely
moves (6.13 us + B / (0.857 x 5.3 TB/s) from ResNet-18 and bert, against 6.26 us and 0.857 with
Qwen), but the H100 has no data left (bert-small's kernels are 2-9 us, all fixed cost): the H100
efficiencies come from the Qwen trace alone, and a Qwen prediction without them falls back to the
spec ratios (before this model: H100 -> MI300X -4.2%, MI300X -> H100 +17.9%). No rule keys on a
model or file name: a kernel's treatment depends on its class, its op's shapes and dtype, and the
two devices.

**bert-small is host-bound.** Its step is 4.1-4.5 ms of which the GPU is busy 0.3-0.4 ms; the
rest is Python and dispatch on two different hosts (CPU work inside the window: 4.04 ms on the
H100 machine, 3.67 ms on the MI300X one; launch calls 4.5-5.5 us vs 3.8-3.9 us). `gpu:target`
keeps the host (`same host assumed`), so both bert rows carry the hosts' 9% difference whatever
the GPU model says; the per-class rows show the GPU side: GEMMs within 6%, attention off by 3-4x
(FlashAttention 2 on the H100, 9 us a call, against a Triton `attn_fwd` on ROCm, 27 us: different
kernels, not a device ratio), the memory-bound classes 20-45% (kernels of 2-5 us, all fixed
cost). On Qwen the classes are within 3% except reduction (+-13%) and copy (+-13%), whose
kernels mix host copies and device transposes.
"""


def write_docs(text: str) -> None:
    doc = REPO / "docs" / "validation.md"
    old = doc.read_text()
    section = ("## What-if: cross-GPU\n\nProduced by `python benchmarks/gpu_validation.py --write-docs`: "
               "each shared H100 <-> MI300X pair predicted in both directions with `gpu:target=...` "
               "(model: `daydream/opts/gpu.py`, tables: `daydream/hardware.py`, docs/hardware.md).\n\n"
               + text + "\n" + NOTES)
    if "## What-if: cross-GPU" in old:
        new = re.sub(r"## What-if: cross-GPU\n.*?(?=\n## |\Z)", section.rstrip("\n") + "\n", old, flags=re.S)
    else:
        new = old.replace("\n## What-if: structure", "\n" + section + "\n## What-if: structure", 1)
    doc.write_text(new)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    text = tables(run())
    print(text)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
