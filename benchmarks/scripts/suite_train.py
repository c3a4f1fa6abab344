"""A TBD suite model as a plain training script, for `daydream profile -- python suite_train.py NAME`
(benchmarks/profile_overhead.py): build the workload, then step it.

    python suite_train.py NAME [--steps N] [--batch-size B] [--threads T] [--report-time]
"""
import argparse
import time

import torch

import tbd_suite


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-time", action="store_true", help="print the loop's wall-clock ms at the end")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    workload = tbd_suite.get(args.name).build("small", batch_size=args.batch_size, device="cpu")
    # daydream's step is one optimizer step (prof.step() runs in the optimizer's step post-hook); a loop
    # step may hold several (wgan: 5 critic + 1 generator), so the timing reports how many ran
    optimizer_steps = [0]
    if args.report_time:
        from torch.optim.optimizer import register_optimizer_step_post_hook
        register_optimizer_step_post_hook(
            lambda *_: optimizer_steps.__setitem__(0, optimizer_steps[0] + 1))
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(args.steps):
        workload.step()
    elapsed, cpu = 1e3 * (time.perf_counter() - t0), 1e3 * (time.thread_time() - c0)
    workload.close()
    if args.report_time:
        print(f"loop_ms {elapsed:.3f} cpu_ms {cpu:.3f} steps {args.steps} optimizer_steps {optimizer_steps[0]}")


if __name__ == "__main__":
    main()
