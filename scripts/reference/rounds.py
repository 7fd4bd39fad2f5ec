#!/usr/bin/env python3
"""PyTorch reference for gradhub's rounds mode: exact local SGD with an outer optimizer (DiLoCo).

Writes test/fixtures/reference/rounds/ (see test/fixtures/reference/README.md):
  rounds.json                       every case's settings, per-round loss and accuracy, final test figures
  <case>_init.safetensors           the weights before round 1 (what the test passes to --init-from)
  <case>_final.safetensors          the weights after the last round's outer step

Run by hand from the repository root, with Debian bookworm's python3-torch (1.13.1, reports
1.13.0a0) on OpenBLAS, CPU, one thread; the tests only read the files:

    /usr/bin/python3 scripts/reference/rounds.py [--data DIR] [--out DIR]

(--data defaults to test/fixtures/cifar10, --out to test/fixtures/reference/rounds.) Deterministic:
rerunning gives the same bytes.

The loop, M replicas, H local steps, per-replica batch b, float32 throughout:

    outer = SGD(model.parameters(), lr=outer_lr, momentum=outer_momentum, nesterov=outer_nesterov)
    for r in range(rounds):
        theta = copy of the parameters
        for m in range(M):                   # logical replicas, each starts from theta
            local = deepcopy(model)
            inner = SGD(local.parameters(), lr, momentum, weight_decay)     # fresh every round
            for h in range(H):
                x, y = batch[r*M*H + m*H + h]  # the file-order batch stream, no shuffle
                CrossEntropyLoss()(local(x), y).backward(); inner.step(); inner.zero_grad()
            deltas[m] = theta - local        # per tensor, float32
        grad = S(0, M) / M                   # canonical binary tree over m, then one division
        outer.step(); outer.zero_grad()

S(lo, hi) = S(lo, mid) + S(mid, hi) with mid = lo + (largest power of two < hi - lo), and
S(m, m+1) = deltas[m]: the tree of docs/design.md "Invariant 3" over replica indices. Batch i of the
stream is records [p*b, min((p+1)*b, n)) of data_batch_1.bin with p = i mod ceil(n/b) (an epoch's last
batch may be short; neither case here reaches it). A round's loss is
sum_i(loss_i * n_i) / sum_i(n_i) over its M*H inner batches, in float64 from the float32 batch losses,
summed in stream order; its accuracy is the argmax-correct count of those batches' forward passes
(before each inner step) over sum_i(n_i).

Each case is also run in float64 from the same initial weights; the largest difference between the
float32 and float64 final weights (`float64_check`) says how far float32 rounding alone moves the
result, which bounds what a test may demand of another float32 implementation.
"""
import argparse
import copy
import hashlib
import json
import os
import sys

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')  # before torch loads OpenBLAS

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import ROOT, Mlp, read_cifar, safetensors_bytes, write_json  # noqa: E402

GENERATOR = 'scripts/reference/rounds.py'
SIZES, SEED, ROUNDS = [3072, 32, 10], 21, 5

# Names as the CLI flags spell them (--replicas, --local-steps, --batch-size, --lr, --momentum,
# --weight-decay, --outer-lr, --outer-momentum; outer_nesterov false is --no-outer-nesterov).
CASES = [
    {'name': 'main', 'replicas': 2, 'local_steps': 3, 'batch_size': 20, 'lr': 0.05, 'momentum': 0.9,
     'weight_decay': 1e-4, 'outer_lr': 0.7, 'outer_momentum': 0.9, 'outer_nesterov': True},
    {'name': 'plain', 'replicas': 4, 'local_steps': 2, 'batch_size': 16, 'lr': 0.05, 'momentum': 0.0,
     'weight_decay': 0.0, 'outer_lr': 0.7, 'outer_momentum': 0.0, 'outer_nesterov': False},
]


def batch_range(i, b, n):
    """Records [lo, hi) of stream batch i: file order, every epoch the same (no shuffle)."""
    per_epoch = -(-n // b)
    p = i % per_epoch
    return p * b, min((p + 1) * b, n)


def tree_sum(leaves, lo, hi):
    """S(lo, hi) over leaves[m] (each a list of tensors), mid = lo + largest power of two < hi - lo."""
    if hi - lo == 1:
        return leaves[lo]
    half = 1
    while half * 2 < hi - lo:
        half *= 2
    left, right = tree_sum(leaves, lo, lo + half), tree_sum(leaves, lo + half, hi)
    return [a + b for a, b in zip(left, right)]


def run_rounds(case, init_state, train_x, train_y, dtype):
    """The case's rounds from init_state in dtype: (model, per-round records)."""
    M, H, b = case['replicas'], case['local_steps'], case['batch_size']
    n = len(train_y)
    model = Mlp(SIZES)
    model.load_state_dict(init_state)
    model.to(dtype)
    x_all = train_x.to(dtype)
    loss_fn = nn.CrossEntropyLoss()
    outer = torch.optim.SGD(model.parameters(), lr=case['outer_lr'], momentum=case['outer_momentum'],
                            nesterov=case['outer_nesterov'])
    records = []
    for r in range(ROUNDS):
        theta = [p.detach().clone() for p in model.parameters()]
        deltas, ranges, losses, correct = [], [], [], []
        for m in range(M):
            local = copy.deepcopy(model)
            inner = torch.optim.SGD(local.parameters(), lr=case['lr'], momentum=case['momentum'],
                                    weight_decay=case['weight_decay'])
            for h in range(H):
                lo, hi = batch_range(r * M * H + m * H + h, b, n)
                logits = local(x_all[lo:hi])
                loss = loss_fn(logits, train_y[lo:hi])
                loss.backward()
                inner.step()
                inner.zero_grad(set_to_none=True)
                ranges.append([lo, hi])
                losses.append(loss.item())
                correct.append(int((logits.argmax(1) == train_y[lo:hi]).sum()))
            deltas.append([t - p.detach() for t, p in zip(theta, local.parameters())])
        mean = [s / M for s in tree_sum(deltas, 0, M)]
        for p, g in zip(model.parameters(), mean):
            p.grad = g.clone()
        outer.step()
        outer.zero_grad(set_to_none=True)
        counts = [hi - lo for lo, hi in ranges]
        records.append({
            'round': r + 1,
            'loss': sum(l * c for l, c in zip(losses, counts)) / sum(counts),
            'correct': sum(correct),
            'count': sum(counts),
            'accuracy': sum(correct) / sum(counts),
            'batch_ranges': ranges,
            'batch_losses': losses,
            'batch_correct': correct,
        })
    return model, records


def evaluate(model, x, y):
    with torch.no_grad():
        logits = model(x)
        loss = nn.CrossEntropyLoss()(logits, y).item()
        correct = int((logits.argmax(1) == y).sum())
    return {'loss': loss, 'correct': correct, 'count': len(y), 'accuracy': correct / len(y)}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def make_case(case, train_x, train_y, test_x, test_y, out_dir):
    name = case['name']
    torch.manual_seed(SEED)
    init_model = Mlp(SIZES)
    init_state = copy.deepcopy(init_model.state_dict())
    named = lambda model: list(model.named_parameters())
    model, records = run_rounds(case, init_state, train_x, train_y, torch.float32)
    model64, records64 = run_rounds(case, init_state, train_x, train_y, torch.float64)
    files = {}
    for stage, m, step in (('init', init_model, 0), ('final', model, ROUNDS)):
        data = safetensors_bytes(named(m), {'format': 'pt', 'config': f'rounds_{name}', 'stage': stage, 'round': str(step)})
        path = f'{name}_{stage}.safetensors'
        with open(os.path.join(out_dir, path), 'wb') as f:
            f.write(data)
        files[stage] = {'path': path, 'sha256': sha256(data)}
    diffs = {n: (p.detach().double() - q.detach()).abs().max().item()
             for (n, p), (_, q) in zip(named(model), named(model64))}
    loss_rel = max(abs(a['loss'] - c['loss']) / c['loss'] for a, c in zip(records, records64))
    return {
        'name': name,
        'config': {**{k: v for k, v in case.items() if k != 'name'}, 'rounds': ROUNDS},
        'records_per_round': case['replicas'] * case['local_steps'] * case['batch_size'],
        'rounds': records,
        'final_test': evaluate(model, test_x, test_y),
        'float64_check': {
            'final_max_abs_diff': diffs,
            'round_loss_max_rel_diff': loss_rel,
            'round_correct_equal': [a['correct'] for a in records] == [c['correct'] for c in records64],
        },
        'files': files,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default=os.path.join(ROOT, 'test', 'fixtures', 'cifar10'),
                    help='folder with data_batch_1.bin and test_batch.bin (default: test/fixtures/cifar10)')
    ap.add_argument('--out', default=os.path.join(ROOT, 'test', 'fixtures', 'reference', 'rounds'),
                    help='where to write the files (default: test/fixtures/reference/rounds)')
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    train_file = os.path.join(a.data, 'data_batch_1.bin')
    test_file = os.path.join(a.data, 'test_batch.bin')
    train_x, train_y = read_cifar(train_file)
    test_x, test_y = read_cifar(test_file)
    cases = [make_case(c, train_x, train_y, test_x, test_y, a.out) for c in CASES]
    file_sha = lambda p: sha256(open(p, 'rb').read())
    write_json(os.path.join(a.out, 'rounds.json'), {
        'generator': GENERATOR,
        'torch_version': torch.__version__,
        'torch_threads': torch.get_num_threads(),
        'description': 'rounds mode (local SGD + outer SGD, DiLoCo): per-round loss/accuracy and final weights; '
                       'loop and conventions in the generator docstring',
        'model_sizes': SIZES,
        'activation': 'relu between layers, raw logits out',
        'seed': SEED,
        'init': 'torch.manual_seed(seed); nn.Linear default init, layer by layer (weight, bias); <case>_init.safetensors',
        'loss': "nn.CrossEntropyLoss() (reduction='mean')",
        'inner_optimizer': 'torch.optim.SGD(lr, momentum, weight_decay), dampening 0, no Nesterov; new (no momentum buffer) '
                           'for every replica in every round',
        'outer_optimizer': 'torch.optim.SGD(lr=outer_lr, momentum=outer_momentum, nesterov=outer_nesterov), kept across rounds; '
                           'its gradient is S(0, M) / M, S the canonical binary tree over replicas m of theta - local_m',
        'data_order': 'no shuffle; stream batch i = records [p*b, min((p+1)*b, n)), p = i mod ceil(n/b); '
                      'round r (0-based), replica m, local step h takes batch r*M*H + m*H + h',
        'preprocessing': 'x = float32(byte) / float32(255), file order R,G,B planes (3072); no normalisation',
        'dtype': 'float32',
        'round_semantics': 'loss = sum(batch_losses[i] * n_i) / sum(n_i) in float64, stream order; accuracy = correct / count, '
                           'correct from each inner batch\'s logits before its inner step',
        'data': {
            'train': {'file': 'data_batch_1.bin', 'sha256': file_sha(train_file), 'records': len(train_y)},
            'test': {'file': 'test_batch.bin', 'sha256': file_sha(test_file), 'records': len(test_y)},
        },
        'tensors': [{'name': n, 'shape': list(p.shape)} for n, p in Mlp(SIZES).named_parameters()],
        'cases': cases,
    })
    print(f'written: {a.out}')


if __name__ == '__main__':
    main()
