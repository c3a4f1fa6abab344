import os, sys, time, torch, torch.distributed as dist
from torch.profiler import profile, ProfilerActivity, schedule
def main():
    dist.init_process_group("gloo")
    r = dist.get_rank()
    torch.manual_seed(0); torch.set_num_threads(1)
    model = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(6)])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    x = torch.randn(64, 512)
    slow = float(os.environ.get("SLOW_RANK_MS", "0")) if r == int(os.environ.get("SLOW_RANK", "-1")) else 0
    with profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=2, active=4, repeat=1), record_shapes=True, with_modules=True) as prof:
        for i in range(6):
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
