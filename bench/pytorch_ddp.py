"""PyTorch DDP (gloo, 2 processes x 1 thread, loopback) on the same model and global batch, for
`npm run bench` to print beside gradhub's 2-worker cluster (Debian's python3-torch).

Prints one JSON line: {"world":W,"global_batch":B,"samples_per_s":...,"step_ms":...}.
Usage: /usr/bin/python3 pytorch_ddp.py GLOBAL_BATCH STEPS
"""
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from pytorch_mlp import MLP

def run(rank, world, batch, steps, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = DDP(MLP())
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    local = batch // world
    x = torch.rand(local, 3072)
    y = torch.randint(0, 10, (local,))
    times = []
    for s in range(steps + 1):
        dist.barrier()
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s > 0:
            times.append(time.perf_counter() - t0)
    if rank == 0:
        times.sort()
        step = times[len(times) // 2]
        out.put({"world": world, "global_batch": batch, "samples_per_s": batch / step, "step_ms": step * 1000})
    dist.destroy_process_group()


if __name__ == "__main__":
    batch, steps = int(sys.argv[1]), int(sys.argv[2])
    port = 29500 + (os.getpid() % 1000)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=run, args=(r, 2, batch, steps, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    result = q.get(timeout=600)
    for p in procs:
        p.join()
    print(json.dumps(result))
