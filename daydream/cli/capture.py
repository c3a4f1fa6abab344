"""`daydream capture` (also `python -m tbd_suite.capture`): record the labelled run pairs used to
validate what-if predictions (daydream.profile.capture does the recording)."""
from __future__ import annotations

import click
import orjson

from daydream.cli import OneLineErrors, main
from daydream.errors import DaydreamError
from daydream.profile.capture import DEFAULT_SETTINGS, SETTINGS, capture_pairs


class _Command(OneLineErrors, click.Command):
    """Bad input -> one line on stderr, exit 2, also when run as `python -m tbd_suite.capture`."""


@click.command("capture", cls=_Command)
@click.option("--models", default="resnet50,bert,llama,vit,transformer", show_default=True,
              help="comma-separated TBD model names")
@click.option("--settings", default=",".join(DEFAULT_SETTINGS), show_default=True,
              help="comma-separated settings, each one pair per model; also " + ", ".join(
                  s for s in SETTINGS if s not in DEFAULT_SETTINGS) + " (sparse-attention-*: --models dit "
                  "--size small-256)")
@click.option("--device", "devices", default=None,
              help="comma-separated devices (default: cpu, plus cuda when present)")
@click.option("--size", type=click.Choice(["small", "small-256", "paper"]), default="small", show_default=True,
              help="workload size (small-256: tbd:dit only, 256 tokens)")
@click.option("--steps", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--time-steps", type=click.IntRange(min=1), default=8, show_default=True,
              help="plain (unprofiled) steps timed per profiled run (run.json's step time)")
@click.option("--repetitions", type=click.IntRange(min=2), default=8, show_default=True,
              help="CPU pairs: alternating blocks A B A B ... per configuration; the pair's effect and "
                   "its 95% interval come from the per-block medians")
@click.option("--rep-steps", type=click.IntRange(min=1), default=10, show_default=True,
              help="steady steps per block (after --warmup steps of both configurations)")
@click.option("--profile-tries", type=click.IntRange(min=1), default=10, show_default=True,
              help="record each run's profiled window up to this many times, keeping the one whose steps "
                   "spread least (stops at max/min <= 1.2): a step preempted by another process is not the "
                   "workload's")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="torch CPU threads (0: torch's default); 1 keeps CPU timings steady on shared machines")
@click.option("--stack/--no-stack", default=False, show_default=True,
              help="Python stacks in the traces (large); the memory timeline is recorded either way")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="directory to write (default: a new runs/pairs-TIME; the shipped corpus is traces/pairs)")
@click.option("--append", is_flag=True,
              help="keep the pairs of an existing OUT/index.json (same recording settings), replacing re-recorded ones")
@click.option("--json", "as_json", is_flag=True, help="print index.json as one JSON object")
def capture_command(models, settings, devices, size, steps, warmup, time_steps, repetitions, rep_steps, profile_tries,
                    threads, stack, out, append, as_json):
    """Record run pairs that differ in one setting, with index.json naming each pair's what-if."""
    if devices is None:
        import torch
        devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    devices = [d.strip() for d in devices.split(",") if d.strip()]
    bad = [d for d in devices if d not in ("cpu", "cuda")]
    if bad:
        raise DaydreamError(f"unknown device(s) {', '.join(bad)}; use cpu and/or cuda")
    index = capture_pairs(models=[m.strip() for m in models.split(",") if m.strip()],
                          settings=[s.strip() for s in settings.split(",") if s.strip()], devices=devices,
                          out_dir=out, size=size, steps=steps, warmup=warmup, time_steps=time_steps,
                          threads=threads or None, repetitions=repetitions, rep_steps=rep_steps, append=append,
                          profile_tries=profile_tries,
                          with_stack=stack, progress=not as_json,
                          log=(lambda *_: None) if as_json else (lambda msg: click.echo(msg, err=True)))
    if as_json:
        click.echo(orjson.dumps(index).decode())


main.add_command(capture_command, "capture")
