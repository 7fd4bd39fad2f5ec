#!/usr/bin/env python3
"""Regenerates the PyTorch reference figures in test/fixtures/reference/ (see its README.md).

Run by hand from the repository root with Debian bookworm's python3-torch (1.13.1, which reports
1.13.0a0) on OpenBLAS (libopenblas0-pthread), CPU only; CI and the tests never run it:

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/reference/make_reference.py [--data DIR] [--out DIR]

(--data defaults to test/fixtures/cifar10, --out to test/fixtures/reference.) The BLAS matters for
the last bit: with Debian's reference BLAS (libblas3) alone, matrix products round differently.

Every file is written with fixed seeds and one thread, so a rerun gives the same bytes.
  functional_losses.json       F.* losses and activations, float64, values and vector-Jacobian products
  tiny_mlp.json                a 12-8-8-3 MLP: logits, loss and gradients over 3 SGD steps, float64
  softmax_regression.json      the tutorial's softmax regression (and its double-softmax bug), 1001 updates
  cross_entropy_tutorial.json  nn.CrossEntropyLoss on the tutorial's logits, float64 and float32
  cifar_trajectory/            25 SGD steps of a 3072-32-10 MLP on the CIFAR-10 files in --data, float32
Numbers are float64 written with Python's repr (json.dumps), so they round-trip exactly.
"""
import argparse
import hashlib
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

GENERATOR = 'scripts/reference/make_reference.py'
F64 = torch.float64
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))


def lists(t):
    """A tensor as nested Python lists of floats/ints (float32 values widened exactly to float64)."""
    return t.detach().tolist()


def write_json(path, obj, newline=True):
    with open(path, 'w') as f:
        f.write(json.dumps(obj, indent=1) + ('\n' if newline else ''))


# ---------------------------------------------------------------------------------------------
# functional_losses.json
# ---------------------------------------------------------------------------------------------

def functional_losses():
    g = torch.Generator().manual_seed(1234)
    # Every input first, in this order; then one grad_output per non-scalar case, in case order.
    x = torch.randn(7, 5, generator=g, dtype=F64) * 2                  # logits (7, 5)
    t = torch.randint(0, 5, (7,), generator=g)                          # class indices (7)
    w = torch.rand(5, generator=g, dtype=F64) * 1.5 + 0.25              # class weights (5)
    q = torch.softmax(torch.randn(7, 5, generator=g, dtype=F64), 1)     # probability targets (7, 5)
    xk = torch.randn(7, 5, 3, generator=g, dtype=F64)                   # K-dim logits (N, C, d1)
    tk = torch.randint(0, 5, (7, 3), generator=g)                       # K-dim targets (N, d1)
    z = torch.randn(7, 5, generator=g, dtype=F64) * 2                   # BCE logits (7, 5)
    y01 = (torch.rand(7, 5, generator=g, dtype=F64) > 0.5).to(F64)      # 0/1 targets (7, 5)
    ysoft = torch.rand(7, 5, generator=g, dtype=F64)                    # soft BCE targets (7, 5)
    pw = torch.rand(5, generator=g, dtype=F64) * 3 + 0.5                # pos_weight (5)
    ew = torch.rand(7, 5, generator=g, dtype=F64) + 0.5                 # elementwise BCE weight (7, 5)
    t_ign = t.clone()
    t_ign[1] = -100
    t_ign[4] = -100
    ext = torch.tensor([
        [1e4, -1e4, 0.0, 5.0, -5.0],
        [-1e4, -1e4, -1e4, -1e4, -1e4],
        [1e4, 1e4, -1e4, 0.0, 1e4],
        [3000.0, -2000.0, 1e4, 9999.0, -1e4],
        [0.0, 0.0, 0.0, 0.0, 1e4],
    ], dtype=F64)
    t_ext = torch.tensor([1, 3, 0, 3, 0])
    y_ext = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]] * 5, dtype=F64)
    logp = F.log_softmax(x, dim=1)

    notes = {
        'ce_weight_mean': 'mean = sum_i w[t_i]*l_i / sum_i w[t_i]',
        'ce_ignore_default_mean': 'targets -100 ignored: loss 0 and grad 0 for those rows; mean divides by the count of non-ignored rows',
        'ce_ignore2_weight_mean': 'mean denominator = sum of w[t_i] over non-ignored i',
        'ce_label_smoothing_mean': 'l_i = (1-eps)*(-log p_i[t_i]) + eps/C * sum_c(-log p_i[c])',
        'ce_label_smoothing_weight_mean': 'torch semantics: nll part weighted by w[t_i] and divided by sum_i w[t_i]; smoothing part is '
                                          'sum_i sum_c w[c]*(-log p_i[c]) / C, also divided by sum_i w[t_i]',
        'ce_soft_targets_mean': 'probability targets: l_i = -sum_c q_ic log p_ic; mean divides by N (batch size)',
        'ce_soft_targets_weight_mean': 'probability targets with weights: l_i = -sum_c w_c q_ic log p_ic; mean divides by N (NOT by a weight sum)',
        'ce_soft_targets_label_smoothing_mean': 'q is replaced by q*(1-eps) + eps/C',
        'ce_kdim_mean': 'input (N,C,d1), target (N,d1)',
        'ce_extreme_mean': 'logits of magnitude 1e4: a naive exp() overflows; log-sum-exp with max subtraction is needed',
        'ce_extreme_none': 'logits of magnitude 1e4: a naive exp() overflows; log-sum-exp with max subtraction is needed',
        'ce_extreme_float32_mean': 'same as ce_extreme_mean but computed in float32',
        'bce_logits_pos_weight_mean': 'l = -[pw*y*log(sigmoid(x)) + (1-y)*log(1-sigmoid(x))], pos_weight broadcast over the last dim (classes)',
        'bce_logits_extreme_mean': 'logits +-1e4: must use max(x,0) - x*y + log1p(exp(-|x|))',
        'multilabel_soft_margin_mean': 'per sample: -mean_c [y log sigmoid(x) + (1-y) log sigmoid(-x)]; then reduction over samples',
        'multilabel_soft_margin_weight_mean': 'class weight multiplies each class term before the mean over classes',
    }

    # (name, fn name, torch function, tensor inputs, kwargs, names of the inputs to differentiate)
    specs = []

    def add(name, fn, inputs, kwargs, wrt=('input',), fn_name=None, cast32=False):
        specs.append((name, fn_name or 'F.' + fn.__name__, fn, inputs, kwargs, wrt, cast32))

    ce = F.cross_entropy
    for r in ('mean', 'sum', 'none'):
        add(f'ce_{r}', ce, {'input': x, 'target': t}, {'reduction': r})
    for r in ('mean', 'sum', 'none'):
        add(f'ce_weight_{r}', ce, {'input': x, 'target': t}, {'weight': w, 'reduction': r})
    for r in ('mean', 'sum', 'none'):
        add(f'ce_ignore_default_{r}', ce, {'input': x, 'target': t_ign}, {'reduction': r})
    for r in ('mean', 'sum', 'none'):
        add(f'ce_ignore2_weight_{r}', ce, {'input': x, 'target': t}, {'weight': w, 'ignore_index': 2, 'reduction': r})
    for r in ('mean', 'sum', 'none'):
        add(f'ce_label_smoothing_{r}', ce, {'input': x, 'target': t}, {'label_smoothing': 0.1, 'reduction': r})
    add('ce_label_smoothing_weight_mean', ce, {'input': x, 'target': t}, {'weight': w, 'label_smoothing': 0.2, 'reduction': 'mean'})
    add('ce_label_smoothing_ignore_mean', ce, {'input': x, 'target': t_ign}, {'label_smoothing': 0.1, 'reduction': 'mean'})
    for r in ('mean', 'sum', 'none'):
        add(f'ce_soft_targets_{r}', ce, {'input': x, 'target': q}, {'reduction': r}, wrt=('input', 'target'))
    add('ce_soft_targets_weight_mean', ce, {'input': x, 'target': q}, {'weight': w, 'reduction': 'mean'})
    add('ce_soft_targets_label_smoothing_mean', ce, {'input': x, 'target': q}, {'label_smoothing': 0.1, 'reduction': 'mean'})
    add('ce_kdim_mean', ce, {'input': xk, 'target': tk}, {'reduction': 'mean'})
    add('ce_extreme_mean', ce, {'input': ext, 'target': t_ext}, {'reduction': 'mean'})
    add('ce_extreme_none', ce, {'input': ext, 'target': t_ext}, {'reduction': 'none'})
    add('ce_extreme_float32_mean', ce, {'input': ext, 'target': t_ext}, {'reduction': 'mean'},
        fn_name='F.cross_entropy (input cast to float32)', cast32=True)
    add('log_softmax_dim1', F.log_softmax, {'input': x}, {'dim': 1})
    add('softmax_dim1', F.softmax, {'input': x}, {'dim': 1})
    add('log_softmax_dim0', F.log_softmax, {'input': x}, {'dim': 0})
    add('softmax_dim0', F.softmax, {'input': x}, {'dim': 0})
    add('log_softmax_extreme', F.log_softmax, {'input': ext}, {'dim': 1})
    add('softmax_extreme', F.softmax, {'input': ext}, {'dim': 1})
    for r in ('mean', 'sum', 'none'):
        add(f'nll_{r}', F.nll_loss, {'input': logp, 'target': t}, {'reduction': r})
    add('nll_weight_ignore_mean', F.nll_loss, {'input': logp, 'target': t}, {'weight': w, 'ignore_index': 2, 'reduction': 'mean'})
    bce = F.binary_cross_entropy_with_logits
    for r in ('mean', 'sum', 'none'):
        add(f'bce_logits_{r}', bce, {'input': z, 'target': y01}, {'reduction': r})
    add('bce_logits_pos_weight_mean', bce, {'input': z, 'target': y01}, {'pos_weight': pw, 'reduction': 'mean'})
    add('bce_logits_pos_weight_weight_soft_none', bce, {'input': z, 'target': ysoft}, {'pos_weight': pw, 'weight': ew, 'reduction': 'none'},
        wrt=('input', 'target'))
    add('bce_logits_extreme_mean', bce, {'input': ext, 'target': y_ext}, {'reduction': 'mean'})
    msm = F.multilabel_soft_margin_loss
    for r in ('mean', 'sum', 'none'):
        add(f'multilabel_soft_margin_{r}', msm, {'input': z, 'target': y01}, {'reduction': r})
    add('multilabel_soft_margin_weight_mean', msm, {'input': z, 'target': y01}, {'weight': w, 'reduction': 'mean'})

    cases = []
    for name, fn_name, fn, inputs, kwargs, wrt, cast32 in specs:
        leaves = {k: (v.detach().clone().requires_grad_(k in wrt)) for k, v in inputs.items()}
        args = {k: (v.to(torch.float32) if cast32 and k == 'input' else v) for k, v in leaves.items()}
        out = fn(args['input'], *[args[k] for k in args if k != 'input'], **kwargs)
        if out.dim() == 0:
            go = 1.0
            out.backward()
        else:
            go_t = torch.randn(*out.shape, generator=g, dtype=F64)
            go = lists(go_t)
            out.backward(go_t.to(out.dtype))
        case = {
            'name': name,
            'fn': fn_name,
            'kwargs': {k: (lists(v) if torch.is_tensor(v) else v) for k, v in kwargs.items()},
            'inputs': {k: lists(v) for k, v in inputs.items()},
            'output': lists(out),
            'grad_output': go,
            'grads': {k: lists(leaves[k].grad) for k in wrt},
        }
        if name in notes:
            case['note'] = notes[name]
        cases.append(case)
    return {
        'generator': GENERATOR,
        'torch': torch.__version__,
        'seed': 1234,
        'shape': [7, 5],
        'description': 'F.* loss/activation cases in float64; grads = VJP with grad_output (see README)',
        'cases': cases,
    }


# ---------------------------------------------------------------------------------------------
# tiny_mlp.json
# ---------------------------------------------------------------------------------------------

class TinyMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 8)
        self.fc2 = nn.Linear(8, 8)
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x):
        a1 = self.fc1(x)
        a2 = self.fc2(F.relu(a1))
        return self.fc3(F.relu(a2)), (a1, a2)


def tiny_mlp():
    torch.manual_seed(7)
    model = TinyMlp().double()    # PyTorch's default init in float32, widened exactly
    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(99), dtype=F64)
    y = torch.tensor([0, 2, 1, 2, 0, 1])
    lr = 0.1
    params = lambda: {k: lists(v) for k, v in model.named_parameters()}
    init = params()
    with torch.no_grad():
        # the pre-activation nearest a ReLU kink, at the initial params
        min_pre = min(p.abs().min().item() for p in model(x)[1])
    steps = []
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for k in range(3):
        opt.zero_grad()
        logits, _ = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        steps.append({'step': k, 'logits': lists(logits), 'loss': loss.item(),
                      'grads': {n: lists(p.grad) for n, p in model.named_parameters()}})
        opt.step()
    with torch.no_grad():
        logits, _ = model(x)
        final_loss = F.cross_entropy(logits, y).item()
    return {
        'generator': GENERATOR,
        'torch': torch.__version__,
        'architecture': '12 -> Linear 8 -> ReLU -> Linear 8 -> ReLU -> Linear 3; F.cross_entropy mean',
        'layout': 'weight[out][in], y = x @ W^T + b',
        'dtype': 'float64',
        'lr': lr,
        'optimizer': 'SGD (no momentum, no weight decay)',
        'init_params': init,
        'x': lists(x),
        'y': lists(y),
        'min_abs_preactivation': min_pre,
        'steps': steps,
        'params_after_3_steps': params(),
        'loss_after_3_steps': final_loss,
        'note': 'steps[0] holds the loss and gradients at the initial params; steps[k] those after k SGD updates',
    }


# ---------------------------------------------------------------------------------------------
# softmax_regression.json
# ---------------------------------------------------------------------------------------------

X_TRAIN = [[1, 2, 1, 1], [2, 1, 3, 2], [3, 1, 3, 4], [4, 1, 5, 5], [1, 7, 5, 5], [1, 2, 5, 6], [1, 6, 6, 6], [1, 7, 7, 7]]
Y_TRAIN = [2, 2, 2, 1, 1, 1, 0, 0]


def softmax_regression():
    def cross_entropy(x, y, W, b):
        return F.cross_entropy(x @ W + b, y)

    def double_softmax(x, y, W, b):
        h = F.softmax(x @ W + b, dim=1)
        return (F.one_hot(y, 3).to(x.dtype) * -torch.log(F.softmax(h, dim=1))).sum(1).mean()

    runs = {}
    for vname, cost_fn in (('cross_entropy', cross_entropy), ('double_softmax', double_softmax)):
        for dname, dtype in (('float32', torch.float32), ('float64', F64)):
            x = torch.tensor(X_TRAIN, dtype=dtype)
            y = torch.tensor(Y_TRAIN)
            W = torch.zeros(4, 3, dtype=dtype, requires_grad=True)
            b = torch.zeros(1, dtype=dtype, requires_grad=True)
            opt = torch.optim.SGD([W, b], lr=0.1)
            at = {}
            for epoch in range(1001):
                cost = cost_fn(x, y, W, b)
                opt.zero_grad()
                cost.backward()
                opt.step()
                if epoch % 100 == 0:
                    at[str(epoch)] = cost.item()
            with torch.no_grad():
                final = cost_fn(x, y, W, b).item()
                pred = (x @ W + b).argmax(1)
            runs[f'{vname}_{dname}'] = {
                'cost_at_epoch': at, 'final_W': lists(W), 'final_b': lists(b),
                'cost_after_final_step': final, 'argmax_predictions_after': lists(pred),
            }
    return {
        'generator': GENERATOR,
        'torch': torch.__version__,
        'x_train': X_TRAIN,
        'y_train': Y_TRAIN,
        'init': 'W = zeros(4,3), b = zeros(1) (one scalar bias broadcast to all 3 classes)',
        'optimizer': 'SGD lr 0.1',
        'loop': 'for epoch in range(1001): cost = f(W,b); zero_grad; backward; step; record cost (computed BEFORE this step) '
                'at epoch % 100 == 0. 1001 updates in all; final_W/final_b are after the last update; cost_after_final_step is f at final params',
        'variants': {
            'cross_entropy': 'F.cross_entropy(x @ W + b, y)',
            'double_softmax': 'h = softmax(x @ W + b, dim=1); cost = (onehot(y) * -log(softmax(h, dim=1))).sum(1).mean()',
        },
        'runs': runs,
    }


# ---------------------------------------------------------------------------------------------
# cross_entropy_tutorial.json
# ---------------------------------------------------------------------------------------------

def cross_entropy_tutorial():
    row1 = [0.8982, 0.805, 0.6393, 0.9983, 0.5731, 0.0469, 0.556, 0.1476, 0.8404, 0.5544]
    row2 = [0.9457, 0.0195, 0.9846, 0.3231, 0.1605, 0.3143, 0.9508, 0.2762, 0.7276, 0.4332]
    cases = []
    for name, logits, target in (('one_row', [row1], [1]), ('two_rows', [row1, row2], [1, 5])):
        case = {'name': name, 'logits': logits, 'target': target, 'reduction': 'mean'}
        for dname, dtype in (('float64', F64), ('float32', torch.float32)):
            x = torch.tensor(logits, dtype=dtype, requires_grad=True)
            loss = nn.CrossEntropyLoss()(x, torch.tensor(target))
            loss.backward()
            case[f'loss_{dname}'] = loss.item()
            case[f'grad_logits_{dname}'] = lists(x.grad)
        # mean(logsumexp(x_i) - x_i[t_i]) in plain Python floats
        terms = [math.log(sum(math.exp(v) for v in row)) - row[ti] for row, ti in zip(logits, target)]
        case['loss_closed_form'] = sum(terms) / len(terms)
        cases.append(case)
    return {
        'generator': GENERATOR,
        'torch': torch.__version__,
        'description': 'nn.CrossEntropyLoss() (mean) on the tutorial logits; gradient w.r.t. logits = (softmax(x) - onehot(t)) / N',
        'cases': cases,
    }


# ---------------------------------------------------------------------------------------------
# cifar_trajectory/: visible.json, visible_init.safetensors, visible_final.safetensors
# ---------------------------------------------------------------------------------------------

RECORD = 3073


def read_cifar(path):
    """(pixels (n, 3072) float32 = byte / 255 in file order, labels (n) int64) of one binary batch file."""
    raw = open(path, 'rb').read()
    assert len(raw) % RECORD == 0, f'{path}: not a whole number of 3073-byte records'
    t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, RECORD)
    return t[:, 1:].to(torch.float32) / torch.tensor(255, dtype=torch.float32), t[:, 0].to(torch.int64)


def safetensors_bytes(tensors, metadata):
    """safetensors as torch's writer lays it out: compact JSON header (__metadata__ first, then the
    tensors in order), space-padded to a multiple of 8, then the float32 data."""
    header = {'__metadata__': metadata}
    offset = 0
    blobs = []
    for name, t in tensors:
        data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + b''.join(blobs)


class Mlp(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def cifar_trajectory(data_dir, out_dir):
    sizes, seed, batch, steps = [3072, 32, 10], 21, 50, 25
    lr, momentum, weight_decay = 0.02, 0.5, 1e-4
    train_file = os.path.join(data_dir, 'data_batch_1.bin')
    test_file = os.path.join(data_dir, 'test_batch.bin')
    train_x, train_y = read_cifar(train_file)
    test_x, test_y = read_cifar(test_file)
    assert len(train_y) >= batch * steps, f'{train_file} has {len(train_y)} records, {batch * steps} needed'
    torch.manual_seed(seed)
    model = Mlp(sizes)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    named = lambda: [(n, p) for n, p in model.named_parameters()]

    def evaluate():
        with torch.no_grad():
            logits = model(test_x)
            loss = loss_fn(logits, test_y).item()
            loss64 = F.cross_entropy(logits.double(), test_y).item()
            correct = int((logits.argmax(1) == test_y).sum())
        return {'loss': loss, 'loss_f64_from_f32_logits': loss64, 'correct': correct, 'count': len(test_y),
                'accuracy': correct / len(test_y)}

    os.makedirs(out_dir, exist_ok=True)
    files = {}

    def save(stage, step):
        path = os.path.join(out_dir, f'visible_{stage}.safetensors')
        data = safetensors_bytes(named(), {'format': 'pt', 'config': 'visible', 'stage': stage, 'step': str(step)})
        with open(path, 'wb') as f:
            f.write(data)
        files[stage] = {'path': os.path.basename(path), 'sha256': hashlib.sha256(data).hexdigest()}

    save('init', 0)
    init_test = evaluate()
    ranges, losses, correct = [], [], []
    for i in range(steps):
        lo, hi = i * batch, (i + 1) * batch
        logits = model(train_x[lo:hi])
        loss = loss_fn(logits, train_y[lo:hi])
        opt.zero_grad()
        loss.backward()
        opt.step()
        ranges.append([lo, hi])
        losses.append(loss.item())
        correct.append(int((logits.argmax(1) == train_y[lo:hi]).sum()))
    final_test = evaluate()
    save('final', steps)
    sha = lambda p: hashlib.sha256(open(p, 'rb').read()).hexdigest()
    visible = {
        'name': 'visible',
        'generator': GENERATOR,
        'torch_version': torch.__version__,
        'config': {
            'name': 'visible',
            'model_sizes': sizes,
            'activation': 'relu between layers, raw logits out',
            'seed': seed,
            'init': 'torch.manual_seed(seed); nn.Linear default init, layer by layer (weight, bias)',
            'batch_size': batch,
            'steps': steps,
            'epochs': None,
            'steps_per_epoch': None,
            'shuffle': False,
            'drop_last': False,
            'loss': "nn.CrossEntropyLoss() (reduction='mean')",
            'optimizer': {
                'type': 'torch.optim.SGD', 'lr': lr, 'momentum': momentum, 'dampening': 0.0, 'weight_decay': weight_decay,
                'nesterov': False, 'param_groups': 'one (weight decay on biases too)',
            },
            'preprocessing': 'x = float32(byte) / float32(255), flattened in file order R,G,B planes (3072); no normalisation',
            'dtype': 'float32',
            'torch_threads': torch.get_num_threads(),
        },
        'data': {
            'train': {'file': 'data_batch_1.bin', 'sha256': sha(train_file), 'records': len(train_y)},
            'test': {'file': 'test_batch.bin', 'sha256': sha(test_file), 'records': len(test_y)},
        },
        'step_semantics': "losses[i] = mean CE of update i (0-based; 'step i+1' if counted from 1) on records batch_ranges[i], "
                          'computed before that update',
        'batch_ranges': ranges,
        'losses': losses,
        'train_correct': correct,
        'init_test': init_test,
        'epoch_test': [],
        'final_test': final_test,
        'tensors': [{'name': n, 'shape': list(p.shape)} for n, p in named()],
        'num_params': sum(p.numel() for _, p in named()),
        'files': files,
    }
    write_json(os.path.join(out_dir, 'visible.json'), visible, newline=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default=os.path.join(ROOT, 'test', 'fixtures', 'cifar10'),
                    help='folder with data_batch_1.bin and test_batch.bin (default: test/fixtures/cifar10)')
    ap.add_argument('--out', default=os.path.join(ROOT, 'test', 'fixtures', 'reference'),
                    help='where to write the files (default: test/fixtures/reference)')
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    write_json(os.path.join(a.out, 'functional_losses.json'), functional_losses())
    write_json(os.path.join(a.out, 'tiny_mlp.json'), tiny_mlp())
    write_json(os.path.join(a.out, 'softmax_regression.json'), softmax_regression())
    write_json(os.path.join(a.out, 'cross_entropy_tutorial.json'), cross_entropy_tutorial())
    cifar_trajectory(a.data, os.path.join(a.out, 'cifar_trajectory'))
    print(f'written: {a.out}')


if __name__ == '__main__':
    main()
