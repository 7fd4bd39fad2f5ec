/**
 * A run fails at its start, never after training: the real `gradhub` binary with outputs that
 * cannot be written, impossible sizes and non-finite --init-from weights. Each ends with its code
 * before any data is read (--data names a folder that does not exist: its error would come first
 * otherwise), creates no run folder and leaves no temp or probe file behind.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { modelSpec, paramsToSafetensors } from '@gradhub/core';
import { runCli, tempDir, SAMPLE } from '../../../test/helpers.js';

/** Every path under `dir`, recursively (what a failed start must not have changed). */
function tree(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

/** A folder holding a file `afile` and an empty folder `adir`; `missing` is a --data that does not exist. */
function place(): { dir: string; afile: string; adir: string; missing: string; run: string } {
  const dir = tempDir('start');
  fs.writeFileSync(path.join(dir, 'afile'), 'x');
  fs.mkdirSync(path.join(dir, 'adir'));
  return { dir, afile: path.join(dir, 'afile'), adir: path.join(dir, 'adir'), missing: path.join(dir, 'no-data'), run: path.join(dir, 'run') };
}

describe('outputs that cannot be written end the run at its start', () => {
  const cases: [string, (p: ReturnType<typeof place>) => string[], RegExp][] = [
    ['--export names a folder', (p) => ['--export', p.adir], /--export .*adir: is a folder, not a file/],
    ['--export / (the temp file would go to /)', () => ['--export', '/'], /--export \/: is a folder, not a file/],
    ['--export under a file', (p) => ['--export', path.join(p.afile, 'model.safetensors')], /--export .*afile is a file, so no folder can be made under it/],
    ['--metrics in a folder nobody can write in', () => ['--metrics', '/proc/gradhub-metrics.jsonl'], /--metrics \/proc\/gradhub-metrics.jsonl: cannot write in \/proc \(E[A-Z]+\)/],
    ['--export names a device (an atomic write would replace it)', () => ['--export', '/dev/null', '--force'], /--export \/dev\/null: is not a regular file/],
    ['--report names a folder', (p) => ['--report', p.adir], /--report .*adir: is a folder, not a file/],
    ['--checkpoint-dir names a file', (p) => ['--checkpoint-dir', p.afile], /--checkpoint-dir .*afile: is a file, not a folder/],
    ['--checkpoint-dir under a file', (p) => ['--checkpoint-dir', path.join(p.afile, 'ck')], /afile is a file, so no folder can be made under it/],
    ['--run-dir under a file', (p) => ['--run-dir', path.join(p.afile, 'run')], /--run-dir .*afile is a file/],
  ];
  for (const command of ['train', 'coordinator'] as const) {
    for (const [what, args, message] of cases) {
      it(`${command}: ${what}`, async () => {
        const p = place();
        const before = tree(p.dir);
        const extra = command === 'coordinator' ? ['--port', '0', '--host', '127.0.0.1'] : [];
        const given = args(p);
        const runDir = given.includes('--run-dir') ? [] : ['--run-dir', p.run];
        const r = await runCli([command, '--data', p.missing, '--no-download', ...runDir, ...given, ...extra]);
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr).toMatch(/^gradhub: E_OUTPUT_UNWRITABLE: /);
        expect(r.stderr).toMatch(message);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(tree(p.dir)).toEqual(before); // no run folder, no probe or temp file
        expect(fs.readdirSync('/').filter((n) => n.endsWith('.tmp'))).toEqual([]);
      });
    }
  }

  it('a missing folder on the way is fine: it is created when the run starts (here the data is checked next)', async () => {
    const p = place();
    const r = await runCli(['train', '--data', p.missing, '--no-download', '--run-dir', p.run,
      '--export', path.join(p.dir, 'new', 'deeper', 'model.safetensors'), '--checkpoint-dir', path.join(p.dir, 'ck', 'here')]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^gradhub: E_DATA_MISSING: /);
    expect(tree(p.dir)).toEqual(['adir', 'afile']);
  });

  it('--metrics may be a device it appends to (/dev/null): the check passes (here the data is checked next)', async () => {
    const p = place();
    const r = await runCli(['train', '--data', p.missing, '--no-download', '--run-dir', p.run, '--metrics', '/dev/null']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^gradhub: E_DATA_MISSING: /);
  });
});

describe('impossible sizes are usage errors (exit 2), checked before the data', () => {
  const cases: [string, string[], RegExp][] = [
    ['a batch of a billion samples', ['--batch-size', '1000000000'], /--batch-size must be <= 65536, got 1000000000/],
    ['a layer wider than 2^20', ['--model', '3072,2000000,10'], /model size 2000000/],
    ['a model whose parameters do not fit 4 GiB', ['--model', '3072,100000,100000,10'], /--model 3072,100000,100000,10 with --batch-size 64 needs \d+\.\d GiB .* \(4 GiB\)/],
    ['a batch whose activations do not fit 4 GiB', ['--model', '3072,8192,8192,10', '--batch-size', '65536'], /needs \d+\.\d GiB for its parameters, gradients and the batch's activations.*lower --batch-size/],
    ['--chunk 0', ['--chunk', '0'], /--chunk must be >= 1, got 0/],
    ['--chunk above the batch', ['--chunk', '100', '--batch-size', '64'], /--chunk 100 is above --batch-size 64/],
    ['a seed past 2^32', ['--seed', '4294967296'], /--seed must be <= 4294967295/],
    ['a grace no timer holds', ['--stop-grace-ms', '99999999999'], /--stop-grace-ms must be <= 2147483647/],
    ['--log-level loud', ['--log-level', 'loud'], /--log-level must be one of fatal, error, warn, info, debug, trace, silent, got "loud"/],
  ];
  for (const [what, args, message] of cases) {
    for (const command of ['train', 'coordinator'] as const) {
      it(`${command}: ${what}`, async () => {
        const p = place();
        const r = await runCli([command, '--data', p.missing, '--no-download', '--run-dir', p.run, ...args]);
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr).toMatch(/^gradhub: E_USAGE: /);
        expect(r.stderr).toMatch(message);
        expect(tree(p.dir)).toEqual(['adir', 'afile']);
      });
    }
  }

  it('train: a huge --workers; coordinator: a huge --min-workers; worker: --log-level loud', async () => {
    const p = place();
    const train = await runCli(['train', '--data', p.missing, '--workers', '100000']);
    expect(train.code).toBe(2);
    expect(train.stderr).toMatch(/E_USAGE: --workers must be <= 256, got 100000/);
    const coordinator = await runCli(['coordinator', '--data', p.missing, '--min-workers', '1000000']);
    expect(coordinator.code).toBe(2);
    expect(coordinator.stderr).toMatch(/E_USAGE: --min-workers must be <= 65536, got 1000000/);
    const worker = await runCli(['worker', '--url', 'ws://127.0.0.1:9', '--token', 't', '--log-level', 'loud']);
    expect(worker.code).toBe(2);
    expect(worker.stderr).toMatch(/E_USAGE: --log-level must be one of .*got "loud"/);
  });

  it('gradhub help train states the bounds', async () => {
    const r = await runCli(['help', 'train']);
    expect(r.stdout).toMatch(/--batch-size N .*\(default: 64; at most 65536\)/);
    expect(r.stdout).toMatch(/--workers N .*\(default: 0; at most 256\)/);
  });
});

describe('--init-from with weights that are not finite', () => {
  for (const [bad, at, index, name] of [[NaN, 3072 * 24 + 24 + 7 * 24 + 5, '[7, 5]', 'layers.1.weight'], [-Infinity, 3072 * 24 + 3, '[3]', 'layers.0.bias']] as const) {
    it(`is refused before training: ${bad} in ${name}`, async () => {
      const p = place();
      const spec = modelSpec([3072, 24, 10]);
      const params = new Float32Array(spec.paramCount).fill(0.01);
      params[at] = bad;
      params[at + 1] = NaN; // a later one is not the one named
      const file = path.join(p.dir, 'weights.safetensors');
      fs.writeFileSync(file, paramsToSafetensors(spec, params));
      const r = await runCli(['train', '--data', SAMPLE, '--no-download', '--model', '3072,24,10', '--run-dir', p.run, '--init-from', file]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/^gradhub: E_INIT_NOT_FINITE: /);
      expect(r.stderr).toContain(`tensor "${name}" holds ${bad} at ${index}`);
      expect(fs.existsSync(p.run)).toBe(false);
    });
  }
});
