"""The same train step in PyTorch, for `npm run bench` to print side by side (Debian's python3-torch).

MLP 3072-2048-2048-10 (nn.ModuleList of nn.Linear, ReLU between), CrossEntropyLoss (mean), SGD
(lr 1e-3, momentum 0.9), float32, torch.set_num_threads(threads). Prints one JSON line:
{"batch":B,"threads":T,"samples_per_s":...,"gflops":...,"step_ms":...} with FLOPs = 6 x params x B.
Usage: /usr/bin/python3 pytorch_step.py BATCH THREADS REPS
"""
import json
import sys
import time

import torch
import torch.nn as nn

from pytorch_mlp import MLP

batch, threads, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)


model = MLP()
opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
x = torch.rand(batch, 3072)
y = torch.randint(0, 10, (batch,))
params = sum(p.numel() for p in model.parameters())
times = []
for r in range(reps + 1):
    t0 = time.perf_counter()
    loss = loss_fn(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    t = time.perf_counter() - t0
    if r > 0:
        times.append(t)
times.sort()
step = times[len(times) // 2]
print(json.dumps({"batch": batch, "threads": threads, "samples_per_s": batch / step,
                  "gflops": 6 * params * batch / step / 1e9, "step_ms": step * 1000}))
