"""`daydream capture` (also `python -m tbd_suite.capture`): record the labelled run pairs used to
validate what-if predictions (daydream.profile.capture does the recording)."""
from __future__ import annotations

import click
import orjson

from daydream.cli import OneLineErrors, main
from daydream.errors import DaydreamError
from daydream.profile.capture import capture_pairs


class _Command(OneLineErrors, click.Command):
    """Bad input -> one line on stderr, exit 2, also when run as `python -m tbd_suite.capture`."""


@click.command("capture", cls=_Command)
@click.option("--models", default="resnet50,bert,llama,vit,transformer", show_default=True,
              help="comma-separated TBD model names")
@click.option("--settings", default="amp,fused-optimizer,dataloader,activation-checkpointing,batch-size",
              show_default=True, help="comma-separated settings, each one pair per model")
@click.option("--device", "devices", default=None,
              help="comma-separated devices (default: cpu, plus cuda when present)")
@click.option("--size", type=click.Choice(["small", "paper"]), default="small", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--time-steps", type=click.IntRange(min=1), default=8, show_default=True,
              help="plain (unprofiled) steps timed per run; pairs compare their medians")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="torch CPU threads (0: torch's default); 1 keeps CPU timings steady on shared machines")
@click.option("--stack/--no-stack", default=False, show_default=True,
              help="Python stacks in the traces (large); the memory timeline is recorded either way")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="directory to write (default: a new runs/pairs-TIME; the shipped corpus is traces/pairs)")
@click.option("--json", "as_json", is_flag=True, help="print index.json as one JSON object")
def capture_command(models, settings, devices, size, steps, warmup, time_steps, threads, stack, out, as_json):
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
                          threads=threads or None,
                          with_stack=stack, progress=not as_json,
                          log=(lambda *_: None) if as_json else (lambda msg: click.echo(msg, err=True)))
    if as_json:
        click.echo(orjson.dumps(index).decode())


main.add_command(capture_command, "capture")
