"""`daydream profile --model tbd:NAME --ranks N`: a TBD suite model trained data-parallel on N ranks.

The model runs as a script under torchrun (`python -m torch.distributed.run --standalone
--nproc_per_node N -m daydream.profile.ranks NAME ...`), profiled by the same optimizer-step hook
as `daydream profile -- torchrun ...` (daydream/profile/script.py, hook.py): every rank writes its own
run directory OUT/rank<R>, and `daydream analyze OUT` reads them as one job. Each rank builds the
workload with the same seed, wraps its model in DistributedDataParallel (gloo on CPU, NCCL on
CUDA: one GPU per rank, LOCAL_RANK) and steps it; each rank draws the same synthetic batches (the
per-rank batch is --batch-size, as in DDP where the global batch is N times it).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from daydream.errors import DaydreamError


def profile_model_ranks(name: str, ranks: int, device: str = "cpu", batch_size: int | None = None, steps: int = 5,
                        warmup: int = 3, time_steps: int = 10, amp: bool | str = False, out_dir=None,
                        size: str = "small", workers: int = 0, fused: bool = False, checkpointing: bool = False,
                        with_stack: bool = True, stdout=None, progress: bool = True) -> tuple[int, dict | None]:
    """Record one run directory per rank under `out_dir` (see the module docstring); returns
    (torchrun's exit status, the run's summary as `profile_script` gives it, or None)."""
    import tbd_suite
    from daydream.profile.script import default_out, profile_script
    try:
        key = tbd_suite.get(name).name  # an unknown model is refused here, before N processes start
    except KeyError as exc:
        raise DaydreamError(exc.args[0]) from None
    if ranks < 2:
        raise DaydreamError(f"--ranks must be at least 2 for a multi-rank job (got {ranks})")
    if device == "cuda":
        import torch
        if torch.cuda.device_count() < ranks:
            raise DaydreamError(f"--ranks {ranks} on cuda needs {ranks} GPUs; this machine has "
                                f"{torch.cuda.device_count()}")
    # The hook stops profiling after max(warmup, 1) + 1 + steps profiled steps and time_steps plain ones.
    total = max(warmup, 1) + 1 + steps + time_steps + 1
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
               "-m", "daydream.profile.ranks", key, "--steps", str(total), "--device", device, "--size", size,
               "--workers", str(workers)]
    command += ["--batch-size", str(batch_size)] if batch_size else []
    command += ["--amp", str(amp)] if amp else []
    command += ["--fused"] if fused else []
    command += ["--checkpointing"] if checkpointing else []
    out = Path(out_dir) if out_dir else default_out(f"{key}-{ranks}ranks")
    return profile_script(command, steps=steps, warmup=warmup, out_dir=out, with_stack=with_stack, stdout=stdout,
                          time_steps=time_steps, progress=progress)


class _Replicated:
    """DistributedDataParallel around a suite model, whose workloads may read the model's own
    attributes (e.g. `checkpointing`) through it."""

    @staticmethod
    def wrap(model, device_ids):
        from torch.nn.parallel import DistributedDataParallel

        class DDP(DistributedDataParallel):
            def __getattr__(self, attr):
                try:
                    return super().__getattr__(attr)
                except AttributeError:
                    return getattr(self.module, attr)

        return DDP(model, device_ids=device_ids)


def main(argv=None) -> None:
    """One rank of the job (under torchrun)."""
    ap = argparse.ArgumentParser(prog="daydream.profile.ranks")
    ap.add_argument("name")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", default="small")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--amp", default=None)
    ap.add_argument("--fused", action="store_true")
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args(argv)
    import torch
    import torch.distributed as dist
    import tbd_suite
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.set_device(local)
    else:  # the ranks share the machine's cores; one rank's threads never outnumber its share
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    dist.init_process_group("nccl" if cuda else "gloo")
    workload = tbd_suite.get(args.name).build(size=args.size, batch_size=args.batch_size,
                                              device=f"cuda:{local}" if cuda else "cpu", amp=args.amp,
                                              fused=args.fused, checkpointing=args.checkpointing,
                                              workers=args.workers, seed=0)
    workload.model = _Replicated.wrap(workload.model, [local] if cuda else None)
    for _ in range(args.steps):
        workload.step()
    workload.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
