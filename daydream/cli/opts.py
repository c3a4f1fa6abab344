"""`daydream opts`: the optimizations, their parameters and defaults, and the hardware table."""
from __future__ import annotations

from rich.table import Table

from daydream import hardware
from daydream.cli import main
from daydream.cli._common import stdout_console, emit_json, json_option
from daydream.opts.params import SPECS
from daydream.cli._common import print_whole

_TFLOP_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")


def _param_range(p) -> str:
    if p.choices:
        return "one of: " + ", ".join(map(str, p.choices))
    if p.low is not None or p.high is not None:
        return f"{p.low:g} to {p.high:g}" if p.kind is not bool else ""
    return ""


def _device_json(d: hardware.Device) -> dict:
    return {"name": d.name, "family": d.family, "vendor": d.vendor, "arch": d.arch,
            "peak_tflops": {k: v / 1e12 for k, v in d.peak_flops.items() if v},
            "mem_bw_gbps": d.mem_bw / 1e9, "mem_gib": d.mem_bytes / 2 ** 30, "sms": d.sm_count,
            "intra_link": d.intra_link, "intra_bw_gbps": d.intra_bw / 1e9,
            "inter_link": d.inter_link, "inter_bw_gbps": d.inter_bw / 1e9, "aliases": list(d.aliases)}


@main.command("opts")
@json_option
def list_opts(as_json):
    """List the optimizations, their parameters and defaults, and the hardware table (gpu:target=NAME)."""
    devices = [hardware.DEVICES[n] for n in hardware.names()]
    if as_json:
        emit_json({"optimizations": [
            {"name": s.name, "help": s.summary, "checked_against": dict(s.checked_against),
             "params": [{"name": k, "default": p.default, "help": p.help, "type": p.kind.__name__,
                         "low": p.low, "high": p.high, "choices": list(p.choices)}
                        for k, p in s.params.items()]} for s in SPECS.values()],
            "hardware": [_device_json(d) for d in devices]})
        return
    out = stdout_console()
    # Names and key=value spellings are what a user types: never wrapped or cut (no_wrap columns,
    # which print_whole keeps as wide as their widest cell); only the prose column wraps, at spaces.
    table = Table(title="optimizations (--opt NAME[:key=value,...])")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("key=default", no_wrap=True)
    table.add_column("what it models", overflow="fold", ratio=1)
    for s in SPECS.values():
        items = list(s.params.items())
        checked = ", ".join(sorted(s.checked_against)).upper() or "no device yet"
        table.add_row(s.name, "" if items else "-", f"{s.summary} (checked against measured pairs on: {checked})", end_section=not items)
        for i, (k, p) in enumerate(items):
            extra = _param_range(p)
            table.add_row("", f"{k}={p.default}", p.help + (f" ({extra})" if extra else ""),
                          end_section=i == len(items) - 1)
    print_whole(out, table)
    hw = Table(title="hardware (gpu:target=NAME; peak dense TFLOP/s, memory and links)")
    hw.add_column("name", style="bold", no_wrap=True)
    for dt in ("fp32", "bf16", "fp16", "int8"):
        hw.add_column(dt, justify="right", no_wrap=True)
    hw.add_column("GB/s", justify="right", no_wrap=True)
    hw.add_column("GiB", justify="right", no_wrap=True)
    hw.add_column("GPU link", overflow="fold")
    for d in devices:
        hw.add_row(d.name, *(f"{d.peak_flops.get(dt, 0) / 1e12:g}" if d.peak_flops.get(dt) else "-"
                             for dt in ("fp32", "bf16", "fp16", "int8")),
                   f"{d.mem_bw / 1e9:g}", f"{d.mem_bytes / 2 ** 30:g}", d.intra_link)
    print_whole(out, hw)
