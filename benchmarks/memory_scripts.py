"""Memory amp on users' own scripts: the fp32 run's predicted peak under `--opt amp` against the
peak the same script records under `torch.autocast("cpu", torch.bfloat16)` (docs/memory.md).

    python benchmarks/memory_scripts.py            # the scripts, profiled here
    python benchmarks/memory_scripts.py --corpus   # the committed CPU pairs (traces/pairs/cpu)

Each script is profiled twice with `daydream profile` (its memory timeline shares the trace's
clock, so autocast's fp32-policy ops are found: daydream/memory/autocast.py), once as written and
once with `--amp`; `daydream.memory.memory(fp32_run, ["amp"])` predicts the second from the
first. Memory is deterministic for a script, so one run each. Scripts (benchmarks/scripts/): a
GPT-style LM (2048-token vocabulary) eager and `torch.compile`d, an LSTM language model with tied
embeddings, a CNN fine-tuned with a frozen backbone and a CPU augmentation pipeline. Prints the
predicted and measured peaks, the error, and the prediction without the fp32 spans (every
activation halved), side by side. First, batch-size:factor=2 on a U-Net whose batches come from
a DataLoader worker, against the same script at twice the batch, with and without the lifetime
relabelling of what torch leaves unlabelled.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "benchmarks" / "scripts"
CASES = (("gpt_lm", "gpt_lm.py", []), ("gpt_lm compiled", "gpt_lm.py", ["--compile"]),
         ("lstm_lm", "lstm_lm.py", []), ("frozen_backbone", "frozen_backbone.py", []))
MIB = 2 ** 20
# batch-size:factor=2 from the first run against the second; the U-Net's batches come from a
# DataLoader worker (torch's memory profiler labels none of its activations: docs/memory.md)
BATCH_CASES = (("unet_seg, 1 worker", "unet_seg.py", ["--steps", "30", "--workers", "1", "--batch", "8"],
                ["--steps", "30", "--workers", "1", "--batch", "16"]),)


@contextlib.contextmanager
def rows_read_with(fp32_spans: bool = True, phases: bool = True):
    """daydream.memory reading memory rows without autocast's fp32 spans or without the steps'
    phases (the lifetime relabelling): what a prediction is worth without each."""
    import daydream.memory as memory_module
    keep = memory_module.from_raw_rows
    memory_module.from_raw_rows = lambda rows, source, spans=None, steps=None: \
        keep(rows, source, spans if fp32_spans else None, steps if phases else None)
    try:
        yield
    finally:
        memory_module.from_raw_rows = keep


class ScriptFailed(Exception):
    """The script itself failed under `daydream profile` (its last error line)."""


def profile(out: Path, script: str, args: list[str]) -> Path:
    cmd = [sys.executable, "-c", "from daydream.cli import main; main()", "profile", "--out", str(out), "--json", "--",
           sys.executable, str(SCRIPTS / script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out.parent, timeout=600)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if "Error" in line]
        raise ScriptFailed((errors or proc.stderr.strip().splitlines() or ["?"])[-1][:160])
    return out


def corpus() -> None:
    """Each committed CPU pair with a memory profile: BASE's predicted peak under the pair's --opt
    against the changed run's measured peak. Those runs were recorded without the trace's clock on
    their memory rows, so amp halves every activation there (no fp32 spans)."""
    from daydream.memory import memory
    root = REPO / "traces" / "pairs" / "cpu"
    print("| model | --opt | predicted MiB | measured MiB | error % |\n|---|---|---:|---:|---:|")
    for model in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for opt in ("amp", "batch-size", "activation-checkpointing"):
            if (root / model / opt / "memory.json.gz").exists():
                predicted = memory(root / model / "base", [opt]).predicted.peak_bytes
                measured = memory(root / model / opt).measured.peak_bytes
                print(f"| {model} | `{opt}` | {predicted / MIB:.2f} | {measured / MIB:.2f} | "
                      f"{100 * (predicted - measured) / measured:+.1f} |")


def main():
    if "--corpus" in sys.argv[1:]:
        return corpus()
    from daydream.memory import memory
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, script, args in CASES:
            base = profile(Path(tmp) / f"{label.replace(' ', '_')}_fp32", script, args)
            try:
                amp = profile(Path(tmp) / f"{label.replace(' ', '_')}_amp", script, [*args, "--amp"])
            except ScriptFailed as exc:  # e.g. torch's autocast LSTM on a CPU without bf16 oneDNN
                rows.append((label, memory(base).measured.peak_bytes, None, None, str(exc)))
                print(f"{label}: the --amp run failed here: {exc}", file=sys.stderr)
                continue
            report = memory(base, ["amp"])
            measured = memory(amp).measured.peak_bytes
            with rows_read_with(fp32_spans=False):  # the same prediction with every activation halved
                halved = memory(base, ["amp"]).predicted.peak_bytes
            rows.append((label, report.measured.peak_bytes, measured, report.predicted.peak_bytes, halved))
            print(f"{label}: done", file=sys.stderr)
    batch_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, script, args, doubled in BATCH_CASES:
            base = profile(Path(tmp) / "batch_base", script, args)
            big = profile(Path(tmp) / "batch_x2", script, doubled)
            report = memory(base, ["batch-size:factor=2"])
            with rows_read_with(phases=False):  # torch's labels alone, without the lifetime relabelling
                unlabelled = memory(base, ["batch-size:factor=2"]).predicted.peak_bytes
            batch_rows.append((label, report.measured.peak_bytes, memory(big).measured.peak_bytes,
                               report.predicted.peak_bytes, unlabelled))
            print(f"{label}: done", file=sys.stderr)
    print("| script | batch B peak MiB | 2B measured MiB | predicted MiB | error % | torch's labels alone MiB | error % |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, base, measured, predicted, unlabelled in batch_rows:
        print(f"| {label} | {base / MIB:.1f} | {measured / MIB:.1f} | {predicted / MIB:.1f} | "
              f"{100 * (predicted - measured) / measured:+.1f} | {unlabelled / MIB:.1f} | "
              f"{100 * (unlabelled - measured) / measured:+.1f} |")
    print()
    print("| script | fp32 peak MiB | amp measured MiB | predicted MiB | error % | all halved MiB | error % |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, base, measured, predicted, halved in rows:
        if measured is None:
            print(f"| {label} | {base / MIB:.1f} | the `--amp` run failed on this CPU: {halved} | | | | |")
            continue
        print(f"| {label} | {base / MIB:.1f} | {measured / MIB:.1f} | {predicted / MIB:.1f} | "
              f"{100 * (predicted - measured) / measured:+.1f} | {halved / MIB:.1f} | "
              f"{100 * (halved - measured) / measured:+.1f} |")


if __name__ == "__main__":
    main()
