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

from daydream import diff, hardware
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


def predict(base, device, host: float = 1.0) -> tuple:
    opts = [f"gpu:target={device}"] + ([f"host:speed={host:.4f}"] if host != 1.0 else [])
    w = whatif(load(SHARED / base), opts)
    return w, w.predicted_ms


def host_speed(base, target) -> float:
    """How much faster the target trace's host runs the same Python (daydream.diff.host_speed,
    docs/optimizations/host.md); 1 where the two traces share too few functions."""
    found = diff.host_speed(load(SHARED / base), load(SHARED / target))
    return found["speed"] if found else 1.0


def other_pair(label: str, device: str):
    """The same direction of the other model's pair: recorded on the same two machines."""
    return next((b, t) for lab, b, t, d in PAIRS if d == device and lab.split()[0] != label.split()[0])


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
        speed = host_speed(*other_pair(label, device))
        _, predicted_host = predict(base, device, speed)
        with fitted_tables(loo[key]):
            _, predicted_loo_host = predict(base, device, speed)
        measured = load(SHARED / target)
        m = measured.measured_ms
        out.append({"pair": label, "opt": f"gpu:target={device}", "base_ms": w.measured_ms,
                    "measured_ms": m, "predicted_ms": predicted, "error_pct": 100 * (predicted - m) / m,
                    "predicted_loo_ms": predicted_loo, "error_loo_pct": 100 * (predicted_loo - m) / m,
                    "host_speed": speed, "own_host_speed": host_speed(base, target),
                    "predicted_host_ms": predicted_host, "error_host_pct": 100 * (predicted_host - m) / m,
                    "predicted_loo_host_ms": predicted_loo_host,
                    "error_loo_host_pct": 100 * (predicted_loo_host - m) / m,
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
    text += ("\nThe same directions with the target's host as well (`--opt gpu:target=T --opt host:speed=S`, "
             "docs/optimizations/host.md), S measured on the *other* model's traces of the same two machines "
             "(median ratio of the Python functions both record; the pair's own S in brackets, not used):\n\n"
             "| pair | host S (own) | predicted ms (in-sample) | error % | predicted ms (pair left out of the fit) "
             "| error % |\n|---|---:|---:|---:|---:|---:|\n")
    text += "".join(f"| {r['pair']} | {r['host_speed']:.3f} ({r['own_host_speed']:.3f}) | {r['predicted_host_ms']:.3f} | "
                    f"{r['error_host_pct']:+.1f} | {r['predicted_loo_host_ms']:.3f} | {r['error_loo_host_pct']:+.1f} |\n"
                    for r in results)
    text += "\n"
    for label, key in (("with the host, in-sample", "error_host_pct"),
                       ("with the host, leave-one-pair-out", "error_loo_host_pct")):
        errs = [abs(r[key]) for r in results]
        text += (f"{label}: median |error| {statistics.median(errs):.1f}%, worst {max(errs):.1f}% "
                 f"over {len(errs)} directions.\n")
    text += "\n"
    text += ("Per kernel class, GPU ms per step inside the window, predicted (in-sample tables) / measured "
             "on the target (error %):\n\n| pair | " + " | ".join(CLASSES) + " |\n|---|"
             + "---:|" * len(CLASSES) + "\n")
    for r in results:
        cells = []
        for c in CLASSES:
            p, m = r["pred"][c], r["meas"][c]
            cells.append("-" if p == m == 0 else
                         f"{p:.2f} / {m:.2f}" + (f" ({100 * (p - m) / m:+.0f}%)" if m > 0 else ""))
        text += f"| {r['pair']} | " + " | ".join(cells) + " |\n"
    return text


NOTES = """\
**What is fitted, and on what; in-sample vs out of sample.** The kernel floors, the memory lines
(fixed cost + achievable bandwidth of memory-bound kernels), the GEMM/conv/attention
efficiencies and the launch-call costs (`hardware.KERNEL_FLOOR_S`, `MEMORY_LINE`,
`CLASS_EFFICIENCY`, `LAUNCH_CALL_S`) are fitted by `python benchmarks/fit_gpu_efficiency.py` on
the shared H100 and MI300X traces: bert-small and Qwen1.5-0.5B on both devices plus the MI300X
ResNet-18 DDP training trace, i.e. largely on the pairs validated here, so the "in-sample"
column is not a prediction. The "pair left out" column refits every table without the two traces
of the pair being predicted (`fit_gpu_efficiency.py --leave-one-pair-out` prints those fits) and
predicts with them. Without Qwen the H100 has no data left for its efficiencies: its memory line
needs 20 single-kernel elementwise ops (bert-small has 19), its attention calls are all fixed cost,
and its GEMM efficiency (0.30) rests on 41 us of bert-small GEMMs; the MI300X keeps ResNet-18. So
the Qwen out-of-sample rows (-6.3% / +9.5%) are what this model can honestly claim on a model it
was not fitted on; the in-sample +1.0% / -1.2% is a fit. No rule keys on a model or file name: a
kernel's treatment depends on its class, its op's shapes and dtype, and the two devices.

**bert-small is host-bound, and the hosts differ.** Its step is 4.1-4.5 ms of which the GPU is busy
0.3-0.4 ms. CPU self time in the window, H100 machine vs MI300X machine: Python 2.30 vs 1.99 ms
(+16%, the same 2656 Python calls), aten dispatch 1.73 vs 1.67 ms (+4%), runtime calls 0.375 vs
0.320 ms (launch calls 4.93 vs 3.91 us median). The step difference (0.36 ms, 8.7%) is Python and
dispatch speed of two different host CPUs, which `gpu:target` alone keeps ("same host assumed"): a
what-if that changes the GPU cannot know the user's next host. `host:speed=S`
(docs/optimizations/host.md) moves the host too. The two machines are the same for both models
(the H100 traces were recorded 2.6 h apart, the MI300X ones 10 h apart, same images), and both
pairs say the MI300X machine runs the same Python faster: the median ratio over the Python
functions both windows record (matched by name, objects' addresses left out) is 1.063 on bert-small
and 1.096 on Qwen1.5-0.5B (aten ops: 1.105 and 1.087). Taking S from the *other* model's pair (so a pair's own step times never set its
own S) the four directions land within 1.0% (second table): the GPU model explains the rest of
the step, and the 8.5% / 7.8% of the first table is the host. That is how a user would use it:
time any job on both machines once, read S off the two traces, predict the others. Without such
a measurement `gpu:target` keeps the host and reports the first table's figures. The runtime-call
share alone cannot close the gap: the shared traces do not support a CUDA vs HIP launch constant
(4.93 vs 3.91 us in the bert-small pair, 3.33 vs 4.52 us in the Qwen pair, docs/hardware.md);
launch calls are scaled by the median over each device's traces (H100 4.13, MI300X 3.91 us: x0.95
towards the MI300X), and even each trace's own launch cost explains 0.055 ms of the 0.36 ms.

**Attention on bert-small is fixed cost, not efficiency.** One call is 40.7 MFLOP and 0.58 MB
(0.1-0.2 us at either device's roofline, memory-bound), measured 9.1 us (FlashAttention-2
`flash_fwd_kernel`, H100) and 27.3 us (Triton `attn_fwd`, MI300X): the difference is the two
kernels' fixed cost (prologue, tile loads, a grid of a few blocks), not throughput. Published
attention TFLOP/s (e.g. the FlashAttention-2 paper's benchmarks, sequence lengths 512-16k) are
measured where the work dominates, so they cannot price a 9 us call, and the only data on an
attention kernel's fixed cost per device are these two traces, i.e. the pair itself. So no
per-device attention fixed cost was added: the model scales the part above the kernel floor as
work (about 7.9 us a call predicted on the MI300X against 27.3 us measured) and the per-class row
shows the miss: -72% / +283% on 0.04-0.11 ms of GPU time that overlaps host work, so it does not
reach the step. On Qwen (20.5 GFLOP a call) the fitted attention efficiencies hold: 114 us on the
H100 and 164 us on the MI300X, within 1% in-sample. The other classes on Qwen are within 3%
except reduction (+-13%) and copy (+-13%), whose kernels mix host copies and device transposes.
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
