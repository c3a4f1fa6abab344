"""Validate the structural what-ifs (dataloader, fused-optimizer, activation-checkpointing) against
measured pairs.

For each pair (a base trace, the same workload with one change, and the `--opt` that models the
change) it runs daydream.validate and prints: pair, opt, base measured, optimized measured,
predicted, error % (CONTRACT.md: 100 * |predicted - optimized measured| / optimized measured,
all `measured_ms` per step of the profiled traces), and, for the CPU corpus, the error against
the pair's interleaved wall-clock medians of index.json: the predicted speedup applied to the
base median, median_pred = base_step_ms x predicted_ms / base measured_ms, against
optimized_step_ms.

Pairs: ResNet-50 on a V100 with DataLoader num_workers 0 -> 4 (../shared/traces/kineto), and
every pair of the CPU corpus traces/pairs/index.json whose `whatif.opt` is one of dataloader,
fused-optimizer, activation-checkpointing. The CPU corpus was recorded on this host when
index.json's platform is this host's: its dataloader pairs then get `cores=os.cpu_count()`.

    python benchmarks/validate_structure.py [--json OUT.json] [--write-docs]
    python benchmarks/validate_structure.py --measure-handoff    # the HANDOFF_NS constant
    python benchmarks/validate_structure.py --measure-recompute  # RECOMPUTE_CPU_FACTOR
    python benchmarks/validate_structure.py --measure-interference  # WORKER_INTERFERENCE (V100 pair)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "traces"
PAIRS = REPO / "traces" / "pairs"
MINE = ("dataloader", "fused-optimizer", "activation-checkpointing")
GPU_PAIRS = [("resnet50 V100 num_workers 0->4", "kineto/resnet50_v100_num_workers_0.json.gz",
              "kineto/resnet50_v100_num_workers_4.json.gz", "dataloader:workers=4"),
             ("resnet50 V100 num_workers 4->0", "kineto/resnet50_v100_num_workers_4.json.gz",
              "kineto/resnet50_v100_num_workers_0.json.gz", "dataloader:workers=0")]


def pairs() -> list[dict]:
    out = [dict(name=n, base=SHARED / b, optimized=SHARED / o, opt=opt, medians=None)
           for n, b, o, opt in GPU_PAIRS if (SHARED / b).exists()]
    index = PAIRS / "index.json"
    if index.exists():
        doc = json.loads(index.read_text())
        here = (doc.get("versions") or {}).get("platform") == platform.platform()
        for p in doc.get("pairs", []):
            opt = (p.get("whatif") or {}).get("opt", "")
            if opt.split(":")[0] not in MINE:
                continue
            if here and opt.startswith("dataloader") and "cores=" not in opt:
                opt += f",cores={os.cpu_count()}"
            out.append(dict(name=p["name"], base=PAIRS / p["base"], optimized=PAIRS / p["optimized"], opt=opt,
                            medians=(p.get("base_step_ms"), p.get("optimized_step_ms"))))
    return out


def measure_handoff(batches: int = 20) -> float:
    """Median main-thread time of next() on a multi-process DataLoader whose batch is already
    queued (32 x 3 x 224 x 224 fp32, 2 workers): the hand-off the dataloader model charges."""
    import statistics
    import time

    import torch
    from torch.utils.data import DataLoader, Dataset

    class Images(Dataset):
        def __len__(self):
            return 10**6

        def __getitem__(self, i):
            return torch.zeros(3, 224, 224), i % 1000

    it = iter(DataLoader(Images(), batch_size=32, num_workers=2, prefetch_factor=2))
    next(it)
    times = []
    for _ in range(batches):
        time.sleep(0.5)  # the workers refill the queue: next() only takes a ready batch
        t0 = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e9


def _checkpoint_medians(blocks, x0, steps: int, warmup: int) -> tuple[float, float, float, float]:
    """(forward, backward) seconds of `blocks` run plainly, then checkpointed (torch.utils.checkpoint,
    non-reentrant): medians of `steps` alternating plain/checkpointed steps after `warmup` rounds."""
    import time

    from torch.utils.checkpoint import checkpoint

    def step(ck):
        x = x0
        t0 = time.perf_counter()
        for b in blocks:
            x = checkpoint(b, x, use_reentrant=False) if ck else b(x)
        loss = x.sum()
        t1 = time.perf_counter()
        loss.backward()
        return t1 - t0, time.perf_counter() - t1
    times = {False: [], True: []}
    for i in range(steps + warmup):
        for ck in (False, True):
            r = step(ck)
            if i >= warmup:
                times[ck].append(r)
    f, b = (statistics.median(v[k] for v in times[False]) for k in (0, 1))
    fc, bc = (statistics.median(v[k] for v in times[True]) for k in (0, 1))
    return f, b, fc, bc


def measure_recompute(steps: int = 30) -> list[tuple[str, float]]:
    """Backward time that checkpointing every block adds, in plain forwards of the blocks
    (torch.utils.checkpoint, non-reentrant, 1 thread): RECOMPUTE_CPU_FACTOR's measurement."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    models = {
        "4 x TransformerEncoderLayer(64, 4, 128), 8 x 32 tokens":
            ([torch.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True) for _ in range(4)],
             torch.randn(8, 32, 64)),
        "6 x Conv-BN-ReLU(16 ch), 8 x 16 x 32 x 32":
            ([torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16),
                                  torch.nn.ReLU()) for _ in range(6)], torch.randn(8, 16, 32, 32)),
    }
    out = []
    for name, (blocks, x0) in models.items():
        fwd, bwd, _, bwd_ck = _checkpoint_medians(blocks, x0, steps, warmup=5)
        out.append((name, (bwd_ck - bwd) / fwd))
    return out


def measure_checkpoint_per_op(steps: int = 40) -> dict[str, tuple[float, float]]:
    """Per module kind, the (forward, backward) ns that non-reentrant checkpointing adds per op: 5
    checkpointed blocks of 10 modules of one kind on small tensors, forward against plain,
    backward beyond one recomputed forward (CHECKPOINT_NS in activation_checkpointing.py)."""
    import torch

    torch.set_num_threads(1)
    image, seq = torch.randn(8, 16, 8, 8, requires_grad=True), torch.randn(8, 32, 64, requires_grad=True)
    kinds = {"BatchNorm2d": (lambda: torch.nn.BatchNorm2d(16), image), "Conv2d": (lambda: torch.nn.Conv2d(16, 16, 1), image),
             "ReLU": (torch.nn.ReLU, image), "GELU": (torch.nn.GELU, image), "Linear": (lambda: torch.nn.Linear(64, 64), seq),
             "LayerNorm": (lambda: torch.nn.LayerNorm(64), seq), "Softmax": (lambda: torch.nn.Softmax(-1), seq)}
    out = {}
    for kind, (make, x0) in kinds.items():
        blocks = [torch.nn.Sequential(*[make() for _ in range(10)]) for _ in range(5)]
        f, b, fc, bc = _checkpoint_medians(blocks, x0, steps, warmup=8)
        out[kind] = (1e9 * (fc - f) / 50, 1e9 * (bc - b - f) / 50)
    return out


def run_rows(progress: bool = True) -> list[dict]:
    from daydream.validate import validate
    rows = []
    for p in pairs():
        r = validate(str(p["base"]), str(p["optimized"]), [p["opt"]])
        row = {"pair": p["name"], "opt": p["opt"], **{k: r[k] for k in (
            "base_measured_ms", "optimized_measured_ms", "predicted_ms", "error_pct", "notes")}}
        base_med, opt_med = p["medians"] or (None, None)
        if base_med and opt_med:
            pred_med = base_med * r["predicted_ms"] / r["base_measured_ms"]
            row.update(base_median_ms=base_med, optimized_median_ms=opt_med, predicted_median_ms=round(pred_med, 4),
                       median_error_pct=round(100 * abs(pred_med - opt_med) / opt_med, 2))
        rows.append(row)
        if progress:
            print(_line(row), flush=True)
    return rows


HEADER = (f"{'pair':40s} {'opt':30s} {'base':>8s} {'optim.':>8s} {'pred.':>8s} {'err %':>6s} "
          f"{'base med':>9s} {'opt med':>8s} {'pred med':>9s} {'err %':>6s}")


def _line(r: dict) -> str:
    med = (f"{r['base_median_ms']:9.2f} {r['optimized_median_ms']:8.2f} {r['predicted_median_ms']:9.2f} "
           f"{r['median_error_pct']:6.1f}" if "median_error_pct" in r else f"{'-':>9s} {'-':>8s} {'-':>9s} {'-':>6s}")
    return (f"{r['pair']:40s} {r['opt']:30s} {r['base_measured_ms']:8.2f} {r['optimized_measured_ms']:8.2f} "
            f"{r['predicted_ms']:8.2f} {r['error_pct']:6.1f} {med}")


SECTION = "## What-if: structure (fused optimizer, data loading, checkpointing, DDP/FSDP)"


def section(rows: list[dict]) -> str:
    lines = [SECTION, "",
             "Each pair: a base run, the same workload with one change, and the `--opt` that models the change "
             "(`daydream validate BASE OPTIMIZED --opt ...`). Produced by `python benchmarks/validate_structure.py "
             "--write-docs`. *base / optimized / predicted* are per-step times of the profiled traces (CONTRACT.md "
             "`measured_ms`); *error %* = 100 x |predicted - optimized| / optimized. The CPU corpus "
             "(`traces/pairs`, torch 2.13, 1 thread, a shared 2-core host) also has interleaved wall-clock medians "
             "without the profiler; *median error %* applies the predicted speedup to the base median "
             "(base median x predicted / base) and compares it with the optimized median.", "",
             "| pair | --opt | base ms | optimized ms | predicted ms | error % | base median ms | optimized median ms "
             "| predicted median ms | median error % |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        med = (f"{r['base_median_ms']:.2f} | {r['optimized_median_ms']:.2f} | {r['predicted_median_ms']:.2f} | "
               f"{r['median_error_pct']:.1f}" if "median_error_pct" in r else "- | - | - | -")
        lines.append(f"| {r['pair']} | `{r['opt']}` | {r['base_measured_ms']:.2f} | {r['optimized_measured_ms']:.2f} | "
                     f"{r['predicted_ms']:.2f} | {r['error_pct']:.1f} | {med} |")
    within = sum(r["error_pct"] <= 10 for r in rows)
    within_med = [r["median_error_pct"] <= 10 for r in rows if "median_error_pct" in r]
    lines += ["", f"{within} of {len(rows)} pairs within 10% of the profiled optimized run; "
                  f"{sum(within_med)} of {len(within_med)} CPU pairs within 10% of the optimized median.", ""]
    return "\n".join(lines) + "\n" + WHY.strip() + "\n"


WHY = """
Why the errors are what they are:

* **CPU rows.** `traces/pairs` was re-recorded on 2026-11-29 on an idle host (interleaved
  repetitions, least disturbed profiled windows); each pair's measured effect with its 95%
  interval, the error against it, and what each model needed are in "CPU pair corpus: measured
  effects with confidence intervals" below. The optimizer-phase figures in the next bullet come
  from the recording of 2026-11-26 (a host without AVX-512-BF16).
* **fused-optimizer.** The model removes the foreach math, the per-parameter `item()` reads and
  the Python between them and keeps the step-count increment (which a fused step runs). On the
  optimizer phase alone it predicts 2.2 ms for ResNet-50 (measured 1.7), 2.1 for BERT (3.8, of
  which 2.1 ms is the noisy step-count add) and 2.7 for the Transformer (3.7).
* **dataloader.** From num_workers=0 the model moves the loading off the main thread and charges
  the hand-off of a queued batch, plus the core contention of 2 workers and 1 main thread on 2
  cores (L/4 a step). The CPU corpus's run.json files carry the hand-off measured on the recording
  host (`run.json["calibration"]["dataloader"]`, `benchmarks/validate_pairs.py
  --calibrate-dataloader`: a real 2-worker DataLoader over zero tensors, 1.33 ms a queued batch +
  0.97 ns/B, main-thread compute stretch 0.000), in place of the 100 us `HANDOFF_NS` of the torch
  1.8 V100 trace: that is most of the 1.4-3.5 ms a step the plain interleaved medians lose. The
  profiled 2-worker windows are slower still (their main-thread ops 20-40% longer, BERT's shorter),
  which the plain medians do not show, so the profiled-time errors here stay larger than the
  median ones. The V100 pair, with no calibration, keeps the constants: 0→4 is 0.01% in-sample
  (`WORKER_INTERFERENCE`, 0.34, was measured on it; 7.8% without that term), 4→0 5.2%.
* **activation-checkpointing.** On a CPU the recompute costs the recomputed blocks' forward plus
  the checkpoint's hooks for what each top-level op saves (normalizations 28 µs, convolutions and
  linears 16 µs, activations 9 µs, views and additions nothing; the checkpointed forward 18, 9, 5
  and 0 µs; `--measure-recompute`). GPU traces keep the factor 1.3 on the host time. On the
  corpus: 1.3-8.4% on all five models.
* **DDP/FSDP.** No multi-rank CPU or GPU pair was recorded, so they are validated by exact
  synthetic timelines and direction tests (tests/test_opts_structure.py), not here.
"""


def write_docs(rows: list[dict], path: Path) -> None:
    """Replace (or append) this script's section of docs/validation.md, leaving the others."""
    text = path.read_text() if path.exists() else "# Validation\n"
    new = section(rows)
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: new + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + new
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def measure_interference() -> tuple[list[float], list[float], float]:
    """dataloader.WORKER_INTERFERENCE from the V100 pair: the main process's non-data CPU work per
    step (dataloader.main_process_work) with num_workers=0 and with 4, and the loading per step
    (the num_workers=0 main thread's data-phase CPU work, one batch per step)."""
    import numpy as np
    from daydream.graph import build_graph
    from daydream.graph.phases import DATA
    from daydream.graph.schema import T_CPU, T_RUNTIME
    from daydream.opts import _structure as S
    from daydream.opts.dataloader import main_process_work
    from daydream.trace import load
    per_step, load_ms = [], 0.0
    for name in ("kineto/resnet50_v100_num_workers_0.json.gz", "kineto/resnet50_v100_num_workers_4.json.gz"):
        graph = build_graph(load(SHARED / name))
        steps = S.task_steps(graph)
        main = S.main_thread(graph, 0)
        work = main_process_work(graph, 0, main, steps)
        dur = graph.tasks["dur"].to_numpy()
        per_step.append((np.bincount(steps[work], weights=dur[work]) / 1e6).tolist())
        if not load_ms:
            t = graph.tasks
            data = ((t["resource"].to_numpy() == main) & (t["phase"].to_numpy() == DATA) & (steps >= 0)
                    & np.isin(t["kind"].to_numpy(), (T_CPU, T_RUNTIME)))
            load_ms = float(dur[data].sum()) / 1e6 / (int(steps.max()) + 1)
    return per_step[0], per_step[1], load_ms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, metavar="OUT.json", help="also write the rows as JSON")
    ap.add_argument("--write-docs", action="store_true", help="replace this section of docs/validation.md")
    ap.add_argument("--measure-handoff", action="store_true", help="measure the DataLoader hand-off and exit")
    ap.add_argument("--measure-recompute", action="store_true", help="measure the CPU recompute factor and exit")
    ap.add_argument("--measure-interference", action="store_true",
                    help="measure the workers' interference with the main process (V100 pair) and exit")
    args = ap.parse_args()
    if args.measure_interference:
        w0, w4, load_ms = measure_interference()
        m0, m4 = sum(w0) / len(w0), sum(w4) / len(w4)
        print("main-process CPU work per step, ms: num_workers=0 " + " ".join(f"{v:.1f}" for v in w0)
              + f" (mean {m0:.1f}); num_workers=4 " + " ".join(f"{v:.1f}" for v in w4) + f" (mean {m4:.1f})")
        print(f"loading {load_ms:.1f} ms/step; WORKER_INTERFERENCE = ({m4:.1f} - {m0:.1f}) / {load_ms:.1f} "
              f"= {(m4 - m0) / load_ms:.3f}")
        return 0
    if args.measure_handoff:
        print(f"DataLoader hand-off: {measure_handoff() / 1e3:.1f} us (median)")
        return 0
    if args.measure_recompute:
        for name, factor in measure_recompute():
            print(f"{name}: backward + {factor:.2f} forwards with checkpointing")
        for kind, (fwd_ns, bwd_ns) in measure_checkpoint_per_op().items():
            print(f"{kind}: checkpointed forward +{fwd_ns / 1e3:.1f} us an op, backward 1 forward "
                  f"+{bwd_ns / 1e3:.1f} us an op (CHECKPOINT_NS)")
        return 0
    print(HEADER)
    rows = run_rows()
    if args.json:
        out = Path(args.json)
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(rows, f, indent=2)
        os.replace(tmp, out)
    if args.write_docs:
        write_docs(rows, REPO / "docs" / "validation.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
