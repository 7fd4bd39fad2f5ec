#!/usr/bin/env python3
"""PyTorch 1.13 figures for the losses and optimizer options added after functional_losses.json.

Writes test/fixtures/reference/losses_extra.json with
  cases      F.binary_cross_entropy (BCELoss: probabilities in, each log clamped at -100) with
             reduction mean/sum/none, elementwise and broadcast `weight`, inputs at 0 and 1; and
             F.cross_entropy / F.nll_loss where an ignored row (target == ignore_index) holds
             non-finite values: PyTorch's input gradient is NaN on such a row of logits
             (log_softmax's backward, exp(NaN) * 0), 0 on a row of log-probabilities (nll_loss).
             Same fields as functional_losses.json: name, fn, kwargs, inputs, output,
             grad_output, grads (vector-Jacobian products with grad_output).
  sgd        torch.optim.SGD steps on float32 parameters, with and without maximize=True:
             p0, then per step the gradient sum `gsum` and denominator `denom` (the gradient is
             gsum / denom, a float32 division, as gradhub's optimizer takes it) and the parameters
             and momentum buffer after the step.

Conventions as functional_losses.json: float64 numbers written with Python's repr (float32 values
are exact in float64), nested lists row-major; non-finite numbers, which JSON cannot hold, are
the strings "NaN", "Infinity" and "-Infinity".

Run by hand from the repository root with Debian's python3-torch (1.13), e.g.
    /usr/bin/python3 scripts/reference/losses_extra.py
Deterministic (fixed seeds, one thread): rerunning gives the same file.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "reference", "losses_extra.json")


def enc(v):
    """Nested lists of floats/ints with non-finite floats as strings."""
    if isinstance(v, list):
        return [enc(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def tl(t):
    return enc(t.tolist())


def loss_case(name, fn, inputs, kwargs, grad_wrt=("input",), note=None):
    """Runs fn(**inputs, **kwargs) in float64 with a VJP: grad_output 1 for scalars, random for 'none'."""
    leaves = {k: v.clone().requires_grad_(k in grad_wrt) for k, v in inputs.items()}
    out = fn(**leaves, **kwargs)
    if out.dim() == 0:
        go = torch.ones((), dtype=torch.float64)
    else:
        go = torch.empty_like(out).uniform_(-1, 1, generator=GEN)
    grads = torch.autograd.grad(out, [leaves[k] for k in grad_wrt], go)
    case = {
        "name": name,
        "fn": fn.__name__ if fn.__module__ != "torch.nn.functional" else "F." + fn.__name__,
        "kwargs": {k: (tl(v) if torch.is_tensor(v) else v) for k, v in kwargs.items()},
        "inputs": {k: tl(v) for k, v in inputs.items()},
        "output": tl(out.detach()),
        "grad_output": tl(go),
        "grads": {k: tl(g) for k, g in zip(grad_wrt, grads)},
    }
    if note:
        case["note"] = note
    return case


def bce_cases():
    n, c = 7, 5
    x = torch.sigmoid(torch.randn(n, c, dtype=torch.float64, generator=GEN) * 2)
    soft = torch.rand(n, c, dtype=torch.float64, generator=GEN)
    hard = (torch.rand(n, c, dtype=torch.float64, generator=GEN) > 0.5).to(torch.float64)
    w = torch.rand(n, c, dtype=torch.float64, generator=GEN) * 2
    wc = torch.rand(c, dtype=torch.float64, generator=GEN) * 2
    # Inputs at and near the ends: log(0) and log1p(-1) clamp at -100; the gradient divides by max((1-x)x, 1e-12).
    edge = torch.tensor([[0.0, 1.0, 1e-50, 1 - 1e-16, 0.5],
                         [1.0, 0.0, 1e-300, 0.999999, 1e-8]], dtype=torch.float64)
    edge_t = torch.tensor([[0.0, 1.0, 0.3, 0.7, 0.5],
                           [0.25, 0.0, 1.0, 0.0, 0.9]], dtype=torch.float64)
    bce = F.binary_cross_entropy
    return [
        loss_case("bce_mean", bce, {"input": x, "target": soft}, {"reduction": "mean"}),
        loss_case("bce_sum", bce, {"input": x, "target": soft}, {"reduction": "sum"}),
        loss_case("bce_none", bce, {"input": x, "target": soft}, {"reduction": "none"}),
        loss_case("bce_hard_targets_mean", bce, {"input": x, "target": hard}, {"reduction": "mean"}),
        loss_case("bce_weight_mean", bce, {"input": x, "target": soft}, {"reduction": "mean", "weight": w}),
        loss_case("bce_weight_none", bce, {"input": x, "target": soft}, {"reduction": "none", "weight": w}),
        loss_case("bce_weight_per_class_sum", bce, {"input": x, "target": soft}, {"reduction": "sum", "weight": wc},
                  note="weight (C) broadcast over the rows"),
        loss_case("bce_edges_none", bce, {"input": edge, "target": edge_t}, {"reduction": "none"},
                  note="inputs 0, 1 and tiny: each log clamped at -100"),
        loss_case("bce_edges_mean", bce, {"input": edge, "target": edge_t}, {"reduction": "mean"}),
    ]


def ignored_nonfinite_cases():
    nan, inf = float("nan"), float("inf")
    x = torch.randn(6, 4, dtype=torch.float64, generator=GEN)
    x[0, 1] = nan        # ignored row holding a NaN: gradient NaN
    x[1, 2] = inf        # ignored row holding +inf: gradient NaN
    x[2, 0] = -inf       # ignored row holding one -inf: log_softmax finite elsewhere, gradient 0
    x[4, :] = -inf       # ignored row of -inf only: NaN
    t = torch.tensor([-100, -100, -100, 3, -100, 1])
    t2 = torch.tensor([2, 2, 2, 0, 2, 1])
    w = torch.tensor([0.5, 1.5, 2.0, 0.25], dtype=torch.float64)
    logp = F.log_softmax(torch.randn(6, 4, dtype=torch.float64, generator=GEN), dim=1)
    logp[0, 1] = nan
    logp[1, 2] = inf
    ce, nll = F.cross_entropy, F.nll_loss
    return [
        loss_case("ce_ignored_nonfinite_mean", ce, {"input": x, "target": t}, {"reduction": "mean"},
                  note="rows 0, 1, 2, 4 ignored: gradient NaN on rows 0, 1, 4 (non-finite log_softmax), 0 on row 2"),
        loss_case("ce_ignored_nonfinite_none", ce, {"input": x, "target": t}, {"reduction": "none"}),
        loss_case("ce_ignored_nonfinite_weight_ignore2_sum", ce, {"input": x, "target": t2},
                  {"reduction": "sum", "weight": w, "ignore_index": 2}),
        loss_case("ce_ignored_nonfinite_label_smoothing_mean", ce, {"input": x, "target": t},
                  {"reduction": "mean", "label_smoothing": 0.1}),
        loss_case("nll_ignored_nonfinite_mean", nll, {"input": logp, "target": t}, {"reduction": "mean"},
                  note="nll_loss on log-probabilities: an ignored row's gradient is 0 whatever it holds"),
    ]


def sgd_cases():
    out = []
    n = 37  # vectorised chunks and a scalar tail in PyTorch's kernels
    configs = [
        ("plain", dict(lr=0.1)),
        ("weight_decay", dict(lr=0.05, weight_decay=0.01)),
        ("momentum_dampening_weight_decay", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
        ("nesterov_weight_decay", dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.001)),
    ]
    for cname, cfg in configs:
        for maximize in (False, True):
            g = torch.Generator().manual_seed(len(out) + 7)
            p0 = torch.randn(n, generator=g).to(torch.float32)
            p = torch.nn.Parameter(p0.clone())
            opt = torch.optim.SGD([p], maximize=maximize, **cfg)
            steps = []
            for s in range(3):
                gsum = (torch.randn(n, generator=g) * 30).to(torch.float32)
                denom = [7, 64, 13][s]
                p.grad = gsum / torch.tensor(float(denom), dtype=torch.float32)
                opt.step()
                buf = opt.state[p].get("momentum_buffer")
                steps.append({
                    "gsum": tl(gsum.double()), "denom": denom,
                    "params": tl(p.detach().double()),
                    "momentum_buffer": None if buf is None else tl(buf.double()),
                })
            out.append({
                "name": f"sgd_{cname}{'_maximize' if maximize else ''}",
                "options": dict(dict(momentum=0, dampening=0, weight_decay=0, nesterov=False), **cfg, maximize=maximize),
                "p0": tl(p0.double()),
                "steps": steps,
            })
    return out


def main():
    global GEN
    torch.set_num_threads(1)
    GEN = torch.Generator().manual_seed(4321)
    doc = {
        "generator": "scripts/reference/losses_extra.py",
        "torch": torch.__version__,
        "description": "BCELoss, ignored rows with non-finite inputs, SGD maximize; float64 (Python repr), "
                       "non-finite as strings; grads = VJP with grad_output",
        "cases": bce_cases() + ignored_nonfinite_cases(),
        "sgd": sgd_cases(),
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")


if __name__ == "__main__":
    main()
