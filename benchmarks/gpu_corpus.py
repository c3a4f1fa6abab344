"""The GPU pair corpus (driven by benchmarks/gpu_corpus.sh; see there for the whole procedure).

    python benchmarks/gpu_corpus.py check  --device cuda --out DIR   # CUPTI and timestamp gate
    python benchmarks/gpu_corpus.py record --device cuda --out DIR [--dry-run]

`check` says which libcupti the process maps and profiles 10 timed 4096 x 4096 matmuls (64 x 64
on CPU): it fails (exit 3) when any GPU kernel, memcpy or memset has ts = 0 or dur = 0 (the CUPTI
13.0 timestamp bug, pytorch/pytorch#192021), or when no kernel was recorded at all.

`record` writes OUT/DEVICE/MODEL/SETTING/ run directories (trace.json.gz of the steady steps after
the profiler's wait and warm-up steps, and run.json) and OUT/index.json, rewritten after each pair:
* suite pairs of every model (`daydream capture`'s profile_model): fp32 -> amp bf16, fp32 -> amp
  fp16, per-tensor -> fused Adam(W), checkpointing off -> on, batch B -> 2B, num_workers 0 -> 2;
* cuda-graphs: a whole training step of an MLP captured with torch.cuda.graph vs eager (CUDA only:
  there is no CPU graph capture);
* quantize: the same Linear stack in bf16 vs fp8 (torch._scaled_mm, CUDA sm_89+) or, on CPU,
  fp32 vs int8 dynamic quantization (torch.ao, fbgemm), forward only.
--dry-run makes every size tiny (a CPU test runs the whole path in seconds).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SUITE_SETTINGS = {  # setting -> (profile_model keyword changes, the --opt it validates)
    "amp-bf16": ({"amp": "bf16"}, "amp:dtype=bf16"),
    "amp-fp16": ({"amp": "fp16"}, "amp:dtype=fp16"),
    "fused-optimizer": ({"fused": True}, "fused-optimizer"),
    "activation-checkpointing": ({"checkpointing": True}, "activation-checkpointing"),
    "batch-size": (None, "batch-size:factor=2"),
    "dataloader": ({"workers": 2}, "dataloader:workers=2"),
}
EXIT_BAD_TIMESTAMPS = 3


def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mapped_cupti() -> list[str]:
    """Paths of every libcupti the process has mapped."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    return sorted({ln.split()[-1] for ln in lines if "libcupti" in ln and "/" in ln})


def check(device_name: str, out: Path) -> int:
    import torch
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device_name)
    n = 4096 if device.type == "cuda" else 64
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for _ in range(3):
        a @ b
    _sync(device)
    with profile(activities=activities) as prof:
        for _ in range(10):
            a @ b
        _sync(device)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cupti_check_trace.json"
    prof.export_chrome_trace(str(path))
    events = json.loads(path.read_text())["traceEvents"]
    gpu = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    bad = [e for e in gpu if not e.get("ts") or not e.get("dur")]
    kernels = [e for e in gpu if e.get("cat") == "kernel"]
    cpu_ops = [e for e in events if e.get("ph") == "X" and e.get("cat") == "cpu_op" and "mm" in e.get("name", "")]
    report = {"device": device_name, "torch": torch.__version__, "libcupti": mapped_cupti(),
              "cuda_version": torch.version.cuda, "matmul_n": n, "kernels": len(kernels),
              "gpu_events": len(gpu), "gpu_events_with_zero_ts_or_dur": len(bad),
              "matmul_cpu_ops": len(cpu_ops)}
    (out / "cupti_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    if device.type == "cuda":
        if len(kernels) < 10:
            print(f"check failed: {len(kernels)} kernels recorded for 10 matmuls", file=sys.stderr)
            return EXIT_BAD_TIMESTAMPS
        if bad:
            print(f"check failed: {len(bad)} of {len(gpu)} GPU events have ts=0 or dur=0 "
                  f"(CUPTI timestamp bug; mapped: {', '.join(report['libcupti']) or 'no libcupti'})",
                  file=sys.stderr)
            return EXIT_BAD_TIMESTAMPS
    elif len(cpu_ops) < 10 or any(not e.get("dur") for e in cpu_ops):
        print("check failed: the CPU matmuls were not timed", file=sys.stderr)
        return EXIT_BAD_TIMESTAMPS
    return 0


def _profile_loop(step, device, steps: int, time_steps: int, warmup: int, out: Path, info: dict) -> dict:
    """Warm up, time plain steps, profile `steps` steady steps (after the schedule's wait and
    warm-up step), write trace.json.gz and run.json into `out`."""
    from torch.profiler import ProfilerActivity, profile, schedule

    from daydream.profile import rundir

    for _ in range(warmup):
        step()
    _sync(device)
    plain = []
    for _ in range(time_steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        plain.append(1e3 * (time.perf_counter() - t0))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    profiled = []
    with profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=steps, repeat=1),
                 record_shapes=True, with_modules=True) as prof:
        for i in range(steps + 2):
            t0 = time.perf_counter()
            step()
            _sync(device)
            if i >= 2:
                profiled.append(1e3 * (time.perf_counter() - t0))
            prof.step()
    run = {"schema": rundir.RUN_SCHEMA, "kind": "micro", "device": device.type,
           "device_name": rundir.device_name(device), "steps": steps, "warmup": warmup,
           "versions": rundir.versions(), **info, **rundir.summarize_steps(plain, profiled),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
    rundir.check_target(out)
    with rundir.staged(out) as staging:
        run["profiled_steps"] = rundir.export_trace(prof, staging)
        run["files"] = {"trace": "trace.json.gz"}
        run["complete"] = run["profiled_steps"] == steps
        rundir.write_run_json(staging, run)
    return run


def cuda_graph_pair(device, dry: bool, steps: int, time_steps: int, warmup: int, out: Path):
    """A training step of an MLP (forward, MSE loss, backward, SGD) eager vs captured whole in one
    CUDA graph (the PyTorch CUDA-graphs "whole network capture" recipe)."""
    import torch
    width, depth, batch = (64, 2, 8) if dry else (1024, 16, 64)

    def make():
        torch.manual_seed(0)
        layers = []
        for _ in range(depth):
            layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        x = torch.randn(batch, width, device=device)
        y = torch.randn(batch, width, device=device)
        return model, opt, x, y

    model, opt, x, y = make()

    def eager():
        opt.zero_grad(set_to_none=False)
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    base = _profile_loop(eager, device, steps, time_steps, warmup, out / "base",
                         {"model": "mlp", "settings": {"width": width, "depth": depth, "batch": batch,
                                                       "cuda_graph": False}})
    model, opt, x, y = make()
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm up on a side stream before capture, as the recipe says
        for _ in range(3):
            opt.zero_grad(set_to_none=False)
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    graphed = _profile_loop(graph.replay, device, steps, time_steps, warmup, out / "cuda-graphs",
                            {"model": "mlp", "settings": {"width": width, "depth": depth, "batch": batch,
                                                          "cuda_graph": True}})
    return base, graphed


def quantize_pair(device, dry: bool, steps: int, time_steps: int, warmup: int, out: Path):
    """A stack of Linear layers, forward only: bf16 vs fp8 (torch._scaled_mm, per-tensor scales)
    on CUDA; fp32 vs int8 dynamic quantization (torch.ao.quantization.quantize_dynamic) on CPU."""
    import torch
    width, depth, batch = (64, 2, 8) if dry else (8192, 8, 4096) if device.type == "cuda" else (1024, 4, 512)
    torch.manual_seed(0)
    if device.type == "cuda":
        ws = [torch.randn(width, width, device=device, dtype=torch.bfloat16) / width ** 0.5 for _ in range(depth)]
        x = torch.randn(batch, width, device=device, dtype=torch.bfloat16)

        def dense():
            h = x
            for w in ws:
                h = h @ w.t()
            return h

        scale = torch.ones((), device=device)
        ws8 = [w.to(torch.float8_e4m3fn) for w in ws]

        def fp8():
            h = x
            for w in ws8:
                h = torch._scaled_mm(h.to(torch.float8_e4m3fn), w.t(), scale_a=scale, scale_b=scale,
                                     out_dtype=torch.bfloat16)
            return h
        low, label, opt = fp8, "fp8", "quantize:dtype=fp8"
    else:
        model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(depth)]).eval()
        q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        x = torch.randn(batch, width)

        def dense():
            with torch.no_grad():
                return model(x)

        def int8():
            with torch.no_grad():
                return q(x)
        low, label, opt = int8, "int8", "quantize:dtype=int8"
    info = {"model": "linear-stack", "settings": {"width": width, "depth": depth, "batch": batch}}
    base = _profile_loop(dense, device, steps, time_steps, warmup, out / "base", {**info, "dtype": "dense"})
    quant = _profile_loop(low, device, steps, time_steps, warmup, out / f"quantize-{label}", {**info, "dtype": label})
    return base, quant, opt


def _write_index(out: Path, index: dict) -> None:
    tmp = out / ".index.json.tmp"
    tmp.write_text(json.dumps(index, indent=2))
    os.replace(tmp, out / "index.json")


def _pair(index, out, name, base_dir, opt_dir, opt, base, optimized):
    b, o = base["plain_step_ms_median"], optimized["plain_step_ms_median"]
    index["pairs"].append({"name": name, "base": str(base_dir.relative_to(out)),
                           "optimized": str(opt_dir.relative_to(out)), "whatif": {"opt": opt},
                           "base_step_ms": round(b, 4), "optimized_step_ms": round(o, 4),
                           "measured_speedup": round(b / o, 4), "timing": "separate runs, plain-step medians"})
    _write_index(out, index)
    print(f"{name:45s} {b:9.2f} -> {o:9.2f} ms  x{b / o:.3f}  ({opt})", flush=True)


def record(device_name: str, out: Path, models: list[str], settings: list[str], dry: bool) -> int:
    import torch

    from daydream.profile import rundir
    from daydream.profile.capture import _fusable
    from daydream.profile.model import profile_model

    device = torch.device(device_name)
    size = "small" if dry else "paper"
    steps, warmup, time_steps = (1, 1, 1) if dry else (3, 3, 8)
    out.mkdir(parents=True, exist_ok=True)
    index = {"schema": "daydream.pairs/1", "size": size, "steps": steps, "warmup": warmup,
             "time_steps": time_steps, "dry_run": dry, "versions": rundir.versions(),
             "libcupti": mapped_cupti(), "devices": {}, "pairs": []}
    dev = device.type
    common = dict(device=device_name, size=size, steps=steps, warmup=warmup, time_steps=time_steps,
                  threads=1 if dry else 0, with_stack=False, progress=False, layers=not dry)
    if dry:
        common["batch_size"] = 2
        torch.set_num_threads(1)  # the micro pairs too: a dry run shares a small machine
    for model in models:
        base_dir = out / dev / model / "base"
        base = profile_model(model, out_dir=base_dir, **common)
        index["devices"][dev] = base["device_name"]
        for setting in settings:
            if setting == "fused-optimizer" and not _fusable(model):
                print(f"{dev}/{model}/{setting}: skipped (optimizer has no fused implementation)")
                continue
            if setting == "amp-fp16" and dev == "cpu":
                print(f"{dev}/{model}/{setting}: skipped (fp16 autocast is a GPU setting)")
                continue
            changes, opt = SUITE_SETTINGS[setting]
            changes = changes if changes is not None else {"batch_size": 2 * base["batch_size"]}
            opt_dir = out / dev / model / setting
            run = profile_model(model, out_dir=opt_dir, **{**common, **changes})
            _pair(index, out, f"{dev}/{model}/{setting}", base_dir, opt_dir, opt, base, run)
    # The micro pairs need features a device may lack (graph capture, fp8 GEMMs on sm_89+): a
    # failure is reported and recorded in the index, and the suite pairs above are kept.
    if dev == "cuda":
        root = out / dev / "mlp"
        try:
            b, g = cuda_graph_pair(device, dry, steps, time_steps, warmup, root)
            _pair(index, out, f"{dev}/mlp/cuda-graphs", root / "base", root / "cuda-graphs", "cuda-graphs", b, g)
        except RuntimeError as exc:
            _failed(index, out, f"{dev}/mlp/cuda-graphs", exc)
    root = out / dev / "linear-stack"
    try:
        b, q, opt = quantize_pair(device, dry, steps, time_steps, warmup, root)
        _pair(index, out, f"{dev}/linear-stack/{opt.split('=')[1]}", root / "base",
              root / f"quantize-{opt.split('=')[1]}", opt, b, q)
    except RuntimeError as exc:
        _failed(index, out, f"{dev}/linear-stack/quantize", exc)
    return 0


def _failed(index, out, name, exc):
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    index.setdefault("failed", {})[name] = message
    _write_index(out, index)
    print(f"{name}: not recorded: {message}", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=("check", "record"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", default="resnet50,bert,llama", help="suite models ('' for the micro pairs only)")
    ap.add_argument("--settings", default=",".join(SUITE_SETTINGS))
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    if args.command == "check":
        return check(args.device, args.out)
    settings = [s for s in args.settings.split(",") if s]
    unknown = set(settings) - set(SUITE_SETTINGS)
    if unknown:
        print(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(SUITE_SETTINGS)}", file=sys.stderr)
        return 2
    return record(args.device, args.out, [m for m in args.models.split(",") if m], settings, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
