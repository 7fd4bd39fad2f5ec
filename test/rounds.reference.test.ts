/**
 * Rounds mode (`--replicas M --local-steps H`: exact local SGD with an outer SGD, DiLoCo) end to
 * end through the real CLI, against PyTorch's run of the same loop
 * (test/fixtures/reference/rounds/, written by scripts/reference/rounds.py): each round's mean
 * inner loss and train accuracy, the final weights, and a cluster run byte-identical to
 * --workers 0. In rounds mode `--steps` counts rounds.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeSafetensors } from '@gradhub/core';
import { runCli, sha256, tempDir, readJsonl, SAMPLE, REFERENCE } from './helpers.js';

interface RoundsCase {
  name: string;
  config: {
    replicas: number; local_steps: number; batch_size: number; lr: number; momentum: number; weight_decay: number;
    outer_lr: number; outer_momentum: number; outer_nesterov: boolean; rounds: number;
  };
  rounds: { round: number; loss: number; correct: number; count: number }[];
  files: { init: { path: string }; final: { path: string } };
}

const DIR = path.join(REFERENCE, 'rounds');
const ref = JSON.parse(fs.readFileSync(path.join(DIR, 'rounds.json'), 'utf8')) as {
  model_sizes: number[];
  tensors: { name: string; shape: number[] }[];
  cases: RoundsCase[];
};
const byName = (name: string) => ref.cases.find((c) => c.name === name)!;

/** `gradhub train` for a case, with its metrics file and export in `dir`. */
function trainArgs(c: RoundsCase, workers: number, dir: string): string[] {
  const k = c.config;
  return [
    'train', '--workers', String(workers), '--data', SAMPLE, '--no-download', '--model', ref.model_sizes.join(','),
    '--batch-size', String(k.batch_size), '--steps', String(k.rounds), '--no-shuffle',
    '--lr', String(k.lr), '--momentum', String(k.momentum), '--weight-decay', String(k.weight_decay),
    '--replicas', String(k.replicas), '--local-steps', String(k.local_steps),
    '--outer-lr', String(k.outer_lr), '--outer-momentum', String(k.outer_momentum), ...(k.outer_nesterov ? [] : ['--no-outer-nesterov']),
    '--init-from', path.join(DIR, c.files.init.path),
    '--metrics', path.join(dir, 'm.jsonl'), '--export', path.join(dir, 'final.safetensors'),
  ];
}

describe('gradhub train in rounds mode (--replicas, --local-steps)', () => {
  for (const c of ref.cases) {
    it(`follows PyTorch's rounds (${c.name}: M=${c.config.replicas}, H=${c.config.local_steps}) and ends at its weights`, async () => {
      const dir = tempDir(`rounds-${c.name}`);
      const r = await runCli(trainArgs(c, 0, dir));
      expect(r.code, r.stderr).toBe(0);
      const rounds = readJsonl<{ kind: string; round: number; loss: number; accuracy: number }>(path.join(dir, 'm.jsonl')).filter((l) => l.kind === 'round');
      expect(rounds.map((l) => l.round)).toEqual(c.rounds.map((x) => x.round));
      rounds.forEach((l, i) => {
        const want = c.rounds[i];
        expect(Math.abs(l.loss - want.loss) / want.loss, `loss of round ${want.round}`).toBeLessThan(1e-5);
        expect(l.accuracy, `accuracy of round ${want.round}`).toBe(want.correct / want.count);
      });
      const ours = decodeSafetensors(fs.readFileSync(path.join(dir, 'final.safetensors')), 'final');
      const theirs = decodeSafetensors(fs.readFileSync(path.join(DIR, c.files.final.path)), 'ref');
      expect([...ours.keys()]).toEqual(ref.tensors.map((t) => t.name));
      for (const [name, t] of theirs) {
        const o = ours.get(name)!;
        expect(o.shape, name).toEqual(t.shape);
        let maxDiff = 0;
        for (let i = 0; i < t.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(o.data[i] - t.data[i]));
        expect(maxDiff, name).toBeLessThan(1e-5);
      }
    });
  }

  it('ends byte-identical with --workers 2 and --workers 0 (main case)', async () => {
    const c = byName('main');
    const [d0, d2] = [tempDir('rounds-w0'), tempDir('rounds-w2')];
    const [a, b] = await Promise.all([runCli(trainArgs(c, 0, d0)), runCli(trainArgs(c, 2, d2))]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(readJsonl(path.join(d2, 'm.jsonl')).filter((l) => l.kind === 'round').length).toBe(c.config.rounds);
    expect(sha256(path.join(d2, 'final.safetensors'))).toBe(sha256(path.join(d0, 'final.safetensors')));
  });
});
