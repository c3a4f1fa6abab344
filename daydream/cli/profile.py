"""`daydream profile`: record a run directory from a TBD suite model or an unmodified script."""
from __future__ import annotations

import sys

import click
import orjson

from daydream.cli import main
from daydream.errors import DaydreamError


def _plain_text(info: dict, ms) -> str:
    if info["plain_step_ms"] is None:
        return "- (the run ended before a step could be timed without the profiler)"
    n = len(info["step_ms"]["plain"])
    kinds = {k: v for k, v in (info.get("step_kinds") or {}).items() if isinstance(v, dict)}
    if not kinds:
        return f"{ms(info['plain_step_ms'])} (median of {n} steady-state steps)"
    mix = ", ".join(f"{v['profiled_steps']} at {ms(v['plain_median_ms'])}" for v in kinds.values())
    return (f"{ms(info['plain_step_ms'])} (the profiled steps' mix of {len(kinds)} kinds, each its median "
            f"over {n} steady-state steps: {mix})")


def _print_summary(info: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from daydream.names import escape_markup

    table = Table(title=escape_markup(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()

    def ms(x):
        return "-" if x is None else f"{x:.2f} ms"
    rows = [
        ("run directory", info["run_dir"]),
        ("device", f"{info['device']} ({info['device_name']})"),
        ("profiled steps", f"{info['profiled_steps']} whole steps of {info['steps']}"
                           + ("" if info.get("complete", True) else " [yellow](incomplete run)[/]")),
        ("step without profiler", _plain_text(info, ms)),
        ("step with profiler", ms(info["profiled_step_ms"]) + f" (mean of {len(info['step_ms']['profiled'])})"),
        ("profiler overhead", "-" if info["profiler_overhead_pct"] is None else
         f"{info['profiler_overhead_pct']:+.1f} % (median vs median)"),
        ("memory timeline", info["files"]["memory"] or f"not written ({info.get('memory_error')})"),
    ]
    calibration = info.get("profiler_event_cost") or {}
    if calibration.get("us_per_event"):
        text = ", ".join(f"{k} {v:.2f}" for k, v in calibration["us_per_event"].items()) + " us CPU"
        if calibration.get("wall_per_cpu"):
            text += f" (x {calibration['wall_per_cpu']:.2f} wall/CPU: load from other processes)"
        rows.insert(-1, ("profiler cost per event", text + " in a calibration step; analyze charges this "
                         "run's own (its profiled minus plain steps)" if info.get("device") == "cpu" else text))
    if info.get("batch_size"):
        rows.insert(2, ("batch size", str(info["batch_size"])))
    for k, v in rows:
        table.add_row(k, escape_markup(v))
    console = Console(stderr=False, emoji=False)
    console.print(table)
    from daydream.trace import _allocator_shift
    shift = _allocator_shift(info)
    if shift:
        console.print(f"[yellow]warning:[/] {escape_markup(shift)}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--model", help="TBD suite model, tbd:NAME (see docs/suite.md); omit to profile COMMAND instead")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), help="default: the model's size configuration")
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True, help="profiled steps")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="plain steps before timing and profiling")
@click.option("--time-steps", type=click.IntRange(min=1), default=10, show_default=True,
              help="steady-state steps timed without the profiler (plain_step_ms is their median)")
@click.option("--amp", is_flag=True, help="automatic mixed precision (torch.autocast)")
@click.option("--amp-dtype", type=click.Choice(["bf16", "fp16"]), default="bf16", show_default=True)
@click.option("--size", type=click.Choice(["small", "paper"]), default="small", show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="DataLoader num_workers")
@click.option("--fused", is_flag=True, help="fused optimizer kernels instead of foreach")
@click.option("--checkpointing", is_flag=True, help="activation checkpointing over the model's blocks")
@click.option("--no-stack", is_flag=True, help="trace without Python stacks (smaller; the memory timeline then comes from one extra step)")
@click.option("--ranks", type=click.IntRange(min=1), default=1, show_default=True,
              help="with --model: train it data-parallel (DDP; gloo on CPU) on N ranks under torchrun, one run "
                   "directory per rank in OUT/rank<R>")
@click.option("--out", type=click.Path(file_okay=False), help="run directory to write (default runs/NAME-TIME)")
@click.option("--json", "as_json", is_flag=True, help="print run.json (plus run_dir) as one JSON object")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def profile(model, device, batch_size, steps, warmup, time_steps, amp, amp_dtype, size, workers, fused, checkpointing,
            no_stack, ranks, out, as_json, command):
    """Profile a TBD model (--model tbd:NAME) or an unmodified script (-- python train.py ARGS).

    Writes a run directory: trace.json.gz, run.json and memory.json.gz.
    """
    if model and command:
        raise DaydreamError("give either --model or a command after `--`, not both")
    if ranks > 1 and not model:
        raise DaydreamError("--ranks goes with --model; launch a script on N ranks with "
                            "`daydream profile -- torchrun --nproc_per_node N train.py`")
    if model and ranks > 1:
        from daydream.profile.ranks import profile_model_ranks
        code, info = profile_model_ranks(model, ranks, device=device, batch_size=batch_size, steps=steps,
                                         warmup=warmup, time_steps=time_steps, amp=amp_dtype if amp else False,
                                         out_dir=out, size=size, workers=workers, fused=fused,
                                         checkpointing=checkpointing, with_stack=not no_stack,
                                         stdout=sys.stderr if as_json else None, progress=not as_json)
        return _finish_script(code, info, as_json, ["torchrun", "-m", "daydream.profile.ranks", model], warmup,
                              steps, time_steps, f"daydream profile {model} on {ranks} ranks")
    if model:
        from daydream.profile import profile_model
        info = profile_model(model, device=device, batch_size=batch_size, steps=steps, warmup=warmup,
                             amp=amp_dtype if amp else False, out_dir=out, size=size, workers=workers,
                             fused=fused, checkpointing=checkpointing, with_stack=not no_stack,
                             time_steps=time_steps, progress=not as_json)
        if as_json:
            click.echo(orjson.dumps(info).decode())
        else:
            _print_summary(info, f"daydream profile {info['model']}")
        return
    if not command:
        raise DaydreamError("nothing to profile: give --model tbd:NAME or a command after `--` "
                            "(e.g. daydream profile -- python train.py)")
    from daydream.profile import profile_script
    # Under --json stdout carries exactly one JSON object, so the script's stdout goes to stderr.
    code, info = profile_script(list(command), steps=steps, warmup=warmup, out_dir=out,
                                with_stack=not no_stack, stdout=sys.stderr if as_json else None,
                                time_steps=time_steps, progress=not as_json)
    _finish_script(code, info, as_json, list(command), warmup, steps, time_steps,
                   f"daydream profile {' '.join(info['command'])}" if info else "")


def _finish_script(code, info, as_json, command, warmup, steps, time_steps, title) -> None:
    """Report a profiled child run and exit with its status (as a shell would)."""
    if info is None:
        from daydream.profile.script import no_run_message
        click.echo(f"daydream: {no_run_message(command, code, warmup, steps, time_steps)}", err=True)
    elif as_json:
        click.echo(orjson.dumps({**info, "exit_code": code}).decode())
    else:
        _print_summary(info, title)
        if info.get("ranks"):
            click.echo(f"{info['ranks']} ranks, one run directory each: {', '.join(info['rank_dirs'])}")
    if code < 0:  # killed by signal N: report it the way a shell does
        code = 128 - code
    if code == 0 and info is None:
        code = 2
    sys.exit(code)
