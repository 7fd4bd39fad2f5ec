/**
 * `gradhub train --workers 0` end to end, as a user runs it: against PyTorch's CIFAR-10
 * trajectory, reproducibility, checkpoints and resume, and clear errors for bad input.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeSafetensors } from '@gradhub/core';
import { runCli, startCli, sha256, tempDir, readJsonl, ROOT, SAMPLE, REFERENCE, SMALL_RUN } from './helpers.js';

const traj = JSON.parse(fs.readFileSync(path.join(REFERENCE, 'cifar_trajectory/visible.json'), 'utf8'));

describe('gradhub train --workers 0', () => {
  it("follows PyTorch's loss curve on the CIFAR-10 sample and ends at its weights", async () => {
    const dir = tempDir('traj');
    const c = traj.config;
    const r = await runCli([
      'train', '--workers', '0', '--data', SAMPLE, '--no-download', '--model', c.model_sizes.join(','),
      '--batch-size', String(c.batch_size), '--steps', String(c.steps), '--no-shuffle',
      '--lr', String(c.optimizer.lr), '--momentum', String(c.optimizer.momentum), '--weight-decay', String(c.optimizer.weight_decay),
      '--init-from', path.join(REFERENCE, 'cifar_trajectory/visible_init.safetensors'),
      '--metrics', path.join(dir, 'm.jsonl'), '--export', path.join(dir, 'final.safetensors'),
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const steps = readJsonl<{ kind: string; step: number; loss: number; accuracy: number }>(path.join(dir, 'm.jsonl')).filter((l) => l.kind === 'step');
    expect(steps.map((s) => s.step)).toEqual(Array.from({ length: c.steps }, (_, i) => i + 1));
    steps.forEach((s, i) => {
      expect(Math.abs(s.loss - traj.losses[i]) / traj.losses[i], `loss of step ${i + 1}`).toBeLessThan(1e-5);
      expect(s.accuracy).toBe(traj.train_correct[i] / c.batch_size);
    });
    const evals = readJsonl<{ kind: string; test_loss: number; test_accuracy: number }>(path.join(dir, 'm.jsonl')).filter((l) => l.kind === 'epoch');
    expect(evals.length).toBe(1);
    expect(Math.abs(evals[0].test_loss - traj.final_test.loss)).toBeLessThan(1e-5);
    expect(evals[0].test_accuracy).toBe(traj.final_test.accuracy);
    const ours = decodeSafetensors(fs.readFileSync(path.join(dir, 'final.safetensors')), 'final');
    const theirs = decodeSafetensors(fs.readFileSync(path.join(REFERENCE, 'cifar_trajectory/visible_final.safetensors')), 'ref');
    expect([...ours.keys()]).toEqual(traj.tensors.map((t: { name: string }) => t.name));
    for (const [name, t] of theirs) {
      const o = ours.get(name)!;
      expect(o.shape).toEqual(t.shape);
      let maxDiff = 0;
      for (let i = 0; i < t.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(o.data[i] - t.data[i]));
      expect(maxDiff, name).toBeLessThan(1e-4);
    }
  });

  it('gives byte-identical weights for two runs with the same seed, and other weights for another seed', async () => {
    const dir = tempDir('repro');
    const args = (seed: string, out: string) => ['train', '--workers', '0', ...SMALL_RUN, '--seed', seed, '--steps', '6', '--export', path.join(dir, out)];
    const [a, b, c] = await Promise.all([runCli(args('5', 'a.st')), runCli(args('5', 'b.st')), runCli(args('6', 'c.st'))]);
    for (const r of [a, b, c]) expect(r.code, r.stderr).toBe(0);
    expect(sha256(path.join(dir, 'a.st'))).toBe(sha256(path.join(dir, 'b.st')));
    expect(sha256(path.join(dir, 'a.st'))).not.toBe(sha256(path.join(dir, 'c.st')));
  });

  it('resumes after SIGKILL from its checkpoint and ends byte-identical, without writing replayed metrics twice', async () => {
    const dir = tempDir('resume');
    const common = ['train', '--workers', '0', ...SMALL_RUN, '--epochs', '6', '--checkpoint-every', '5'];
    const full = await runCli([...common, '--export', path.join(dir, 'full.st')]);
    expect(full.code, full.stderr).toBe(0);

    const ck = path.join(dir, 'ck');
    const metrics = path.join(dir, 'm.jsonl');
    const args = [...common, '--checkpoint-dir', ck, '--metrics', metrics, '--export', path.join(dir, 'resumed.st')];
    const victim = startCli(args);
    // Kill it once a checkpoint exists and it has gone on past it.
    await new Promise<void>((resolve, reject) => {
      const poll = setInterval(() => {
        const lines = fs.existsSync(metrics) ? readJsonl<{ step: number }>(metrics) : [];
        const hasCk = fs.existsSync(ck) && fs.readdirSync(ck).some((f) => f.endsWith('.msgpack'));
        if (hasCk && lines.some((l) => l.step >= 7)) {
          clearInterval(poll);
          victim.kill('SIGKILL');
          resolve();
        }
        if (victim.exitCode !== null) {
          clearInterval(poll);
          reject(new Error(`finished before it could be killed: ${victim.output().stderr}`));
        }
      }, 5);
    });
    await new Promise((r) => victim.on('exit', r));
    const resumed = await runCli([...args, '--resume']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(sha256(path.join(dir, 'resumed.st'))).toBe(sha256(path.join(dir, 'full.st')));
    const steps = readJsonl<{ kind: string; step: number }>(metrics).filter((l) => l.kind === 'step').map((l) => l.step);
    expect(steps).toEqual(Array.from({ length: steps.length }, (_, i) => i + 1));
    expect(steps.length).toBe(192); // 6 epochs of 1280/40
  });

  it('explains a missing dataset instead of crashing', async () => {
    const r = await runCli(['train', '--workers', '0', '--data', tempDir('empty'), '--no-download', '--model', '3072,8,10', '--steps', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/E_DATA_MISSING/);
    expect(r.stderr).toMatch(/--data/);
  });

  it('refuses contradicting or malformed flags with a usage error', async () => {
    for (const bad of [['--nesterov'], ['--model', '3072,x,10'], ['--batch-size', '0'], ['--resume'], ['--bogus']]) {
      const r = await runCli(['train', '--workers', '0', '--data', SAMPLE, ...bad]);
      expect(r.code, bad.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/E_USAGE/);
    }
  });

  it('refuses --init-from weights of another shape, naming the tensor', async () => {
    const r = await runCli(['train', '--workers', '0', '--data', SAMPLE, '--no-download', '--model', '3072,16,10', '--steps', '1',
      '--init-from', path.join(REFERENCE, 'cifar_trajectory/visible_init.safetensors')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/E_MODEL_MISMATCH/);
    expect(r.stderr).toMatch(/layers\.0\.weight/);
  });
});

describe('the gradhub command as README.md runs it', () => {
  it('is installed as node_modules/.bin/gradhub and executable (npx gradhub)', async () => {
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(path.join(ROOT, 'node_modules/.bin/gradhub'), ['--help'], { encoding: 'utf8' });
    expect(out).toMatch(/gradhub train/);
    expect(out).toMatch(/gradhub coordinator/);
    expect(out).toMatch(/gradhub worker/);
  });
});
