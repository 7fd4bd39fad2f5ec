#!/usr/bin/env python3
"""PyTorch 1.13's learning-rate schedules, step by step, for test/lr-schedule tests.

Writes test/fixtures/reference/lr_schedules.json: for each case, the lr of every update
k = 1..total (`optimizer.param_groups[0]['lr']` when the k-th `opt.step()` runs, in the loop
`opt.step(); sched.step()`), as float64 written with Python's repr (round-trips exactly).

Run by hand from the repository root, with Debian's python3-torch (1.13; the interpreter that has
it, e.g. /usr/bin/python3):

    /usr/bin/python3 scripts/reference/lr_schedules.py

The schedules are built as gradhub spells them (packages/core/src/lr-schedule.ts):
  constant          no scheduler (warm-up: SequentialLR([LinearLR, ConstantLR(factor=1, total_iters=0)]))
  step              StepLR(step_size, gamma)
  cosine            CosineAnnealingLR(T_max = total - warmup, eta_min)
  warm-up N > 0     SequentialLR([LinearLR(start_factor, end_factor=1, total_iters=N), main], milestones=[N])
Each value comes from the schedulers' own step() (the recursive get_lr forms; SequentialLR's
step(0) at the milestone). The scheduler step after the last update is not taken: it sets no lr
any update uses (and with warm-up == total, CosineAnnealingLR(T_max=0).step(0) divides by zero).

Each case also lists `cos`: [x, math.cos(x)] for every argument the cosine schedule evaluates
(C library cosine, glibc here), so a test can replay the schedule with PyTorch's own cosine values.
Deterministic: rerunning gives the same file.
"""
import json
import math
import os
import warnings

import torch
from torch.optim import SGD
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, SequentialLR, StepLR

warnings.filterwarnings("ignore")  # SequentialLR's step(0) warns about the deprecated epoch argument
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "reference", "lr_schedules.json")

CASES = [
    # name, settings (gradhub's), total updates
    ("constant", dict(lr=0.01, schedule="constant"), 5),
    ("step_3_0.1", dict(lr=0.01, schedule="step", step_size=3, gamma=0.1), 20),
    ("step_size_1", dict(lr=0.1, schedule="step", step_size=1, gamma=0.7), 40),
    ("step_gamma_0.5_lr_0.3", dict(lr=0.3, schedule="step", step_size=7, gamma=0.5), 50),
    ("cosine_100", dict(lr=0.01, schedule="cosine", lr_min=0.0), 100),
    ("cosine_eta_min", dict(lr=0.1, schedule="cosine", lr_min=0.001), 391),
    ("cosine_t_max_1", dict(lr=0.05, schedule="cosine", lr_min=0.01), 1),
    ("cosine_t_max_2", dict(lr=0.05, schedule="cosine", lr_min=0.0), 2),
    ("cosine_t_max_3", dict(lr=0.05, schedule="cosine", lr_min=0.02), 3),
    ("cosine_1564", dict(lr=0.01, schedule="cosine", lr_min=0.0001), 1564),
    ("warmup_constant", dict(lr=0.01, schedule="constant", warmup=5, start_factor=0.1), 12),
    ("warmup_cosine", dict(lr=0.01, schedule="cosine", lr_min=0.0, warmup=10, start_factor=1 / 3), 100),
    ("warmup_cosine_eta_min", dict(lr=0.2, schedule="cosine", lr_min=0.003, warmup=37, start_factor=0.25), 500),
    ("warmup_step", dict(lr=0.01, schedule="step", step_size=4, gamma=0.5, warmup=6, start_factor=0.1), 30),
    ("warmup_equals_total_cosine", dict(lr=0.01, schedule="cosine", lr_min=0.0, warmup=8, start_factor=0.5), 8),
    ("warmup_1_step", dict(lr=0.01, schedule="step", step_size=2, gamma=0.1, warmup=1, start_factor=0.2), 10),
    ("warmup_start_factor_1", dict(lr=0.01, schedule="cosine", lr_min=0.0, warmup=4, start_factor=1.0), 20),
    ("warmup_cosine_t_max_1", dict(lr=0.01, schedule="cosine", lr_min=0.001, warmup=3, start_factor=0.5), 4),
]


def main_scheduler(opt, s, total):
    if s["schedule"] == "step":
        return StepLR(opt, step_size=s["step_size"], gamma=s["gamma"])
    if s["schedule"] == "cosine":
        return CosineAnnealingLR(opt, T_max=total - s.get("warmup", 0), eta_min=s["lr_min"])
    return ConstantLR(opt, factor=1.0, total_iters=0)


def run(s, total):
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = SGD([p], lr=s["lr"])
    n = s.get("warmup", 0)
    if n > 0:
        warm = LinearLR(opt, start_factor=s["start_factor"], end_factor=1.0, total_iters=n)
        sched = SequentialLR(opt, [warm, main_scheduler(opt, s, total)], milestones=[n])
    elif s["schedule"] == "constant":
        sched = None
    else:
        sched = main_scheduler(opt, s, total)
    lrs = []
    for k in range(1, total + 1):
        lr = opt.param_groups[0]["lr"]
        assert type(lr) is float
        lrs.append(lr)
        p.grad = torch.zeros_like(p)
        opt.step()
        if sched is not None and k < total:
            sched.step()
    return lrs


def cos_args(s, total):
    """Every argument CosineAnnealingLR passes to math.cos within the run (Python's float order)."""
    if s["schedule"] != "cosine":
        return []
    t = total - s.get("warmup", 0)
    if t == 0:
        return []
    xs = {math.pi * 0 / t, math.pi / t}
    for e in range(1, t + 1):
        xs.add(math.pi * e / t)
        xs.add(math.pi * (e - 1) / t)
    return sorted(xs)


def main():
    torch.set_num_threads(1)
    cases = []
    for name, s, total in CASES:
        cases.append({
            "name": name,
            "settings": s,
            "total_steps": total,
            "lr": run(s, total),
            "cos": [[x, math.cos(x)] for x in cos_args(s, total)],
        })
    doc = {
        "generator": "scripts/reference/lr_schedules.py",
        "torch": torch.__version__,
        "description": "lr[k-1] = param_groups[0]['lr'] when the k-th opt.step() runs (float64, Python repr); "
                       "cos = [x, math.cos(x)] for the cosine's arguments",
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
