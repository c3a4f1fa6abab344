"""2-rank DDP over gloo on CPU: a 6-layer 512-wide MLP, 2 warm-up and ACTIVE (default 4) profiled steps.

Run with torchrun (`benchmarks/straggler_validation.py` drives it). Environment: OUT (where
rank<r>.json goes), SLOW_RANK and SLOW_RANK_MS (that rank burns that many ms per step in extra
matmuls before its forward), BATCH (rows per step, default 64), PIN_CORES=1 (rank r runs on core r mod cores: the two ranks never
share a core), ACTIVE (profiled steps). One thread per rank (torch and OMP/MKL), so that a rank's
compute does not depend on how many cores the machine has free.
"""
import os, time
import torch, torch.distributed as dist
from torch.profiler import profile, ProfilerActivity, schedule


def main():
    dist.init_process_group("gloo")
    r = dist.get_rank()
    if os.environ.get("PIN_CORES") == "1" and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[r % len(cores)]})
    torch.manual_seed(0); torch.set_num_threads(1)
    model = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(6)])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    x = torch.randn(int(os.environ.get("BATCH", "64")), 512)
    slow = float(os.environ.get("SLOW_RANK_MS", "0")) if r == int(os.environ.get("SLOW_RANK", "-1")) else 0
    active = int(os.environ.get("ACTIVE", "4"))
    with profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=2, active=active, repeat=1),
                 record_shapes=True, with_modules=True) as prof:
        for i in range(2 + active):
            if slow:
                y = x
                t = time.perf_counter()
                while time.perf_counter() - t < slow / 1e3:
                    y = y @ torch.eye(512)
            loss = ddp(x).pow(2).mean(); opt.zero_grad(); loss.backward(); opt.step()
            prof.step()
    prof.export_chrome_trace(f"{os.environ['OUT']}/rank{r}.json")
    dist.destroy_process_group()


main()
