/**
 * The lr flags as a user runs them: `gradhub train` with a schedule writes each update's lr in
 * the metrics (the values of core's lrSchedule), refuses contradicting lr flags with E_USAGE, and
 * a resume that changes the lr settings is refused unless `--allow-changed lr` says so. Data: a
 * small synthetic set in the CIFAR-10 binary format, written into the test's temp dir.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { lrSchedule } from '@gradhub/core';
import { runCli, tempDir, readJsonl } from './helpers.js';

/** data_batch_1.bin (count records) and test_batch.bin (20) of 1 label byte + 3072 pixel bytes. */
function syntheticCifar(dir: string, count: number): void {
  const write = (file: string, n: number, salt: number): void => {
    const b = Buffer.alloc(n * 3073);
    for (let r = 0; r < n; r++) {
      b[r * 3073] = (r * 3 + salt) % 10;
      for (let i = 1; i < 3073; i++) b[r * 3073 + i] = ((r + salt) * 2654435761 + i * 40503) >>> 24;
    }
    fs.writeFileSync(path.join(dir, file), b);
  };
  write('data_batch_1.bin', count, 1);
  write('test_batch.bin', 20, 2);
}

describe('gradhub train --lr-schedule', () => {
  it('refuses unknown schedules and flags that do not go with the schedule, naming them', async () => {
    const cases: [string[], RegExp][] = [
      [['--lr-schedule', 'linear'], /--lr-schedule must be one of constant, step, cosine, got "linear"/],
      [['--lr-step-size', '3'], /--lr-step-size needs --lr-schedule step/],
      [['--lr-schedule', 'cosine', '--lr-gamma', '0.5'], /--lr-gamma needs --lr-schedule step \(the schedule is cosine\)/],
      [['--lr-schedule', 'step'], /--lr-schedule step needs --lr-step-size/],
      [['--lr-schedule', 'step', '--lr-step-size', '2', '--lr-min', '0.1'], /--lr-min needs --lr-schedule cosine/],
      [['--warmup-start-factor', '0.5'], /--warmup-start-factor needs --warmup-steps/],
      [['--warmup-steps', '3', '--warmup-start-factor', '0'], /--warmup-start-factor must be in \(0, 1\]/],
      [['--allow-changed', 'lr'], /--allow-changed only applies with --resume/],
      [['--resume', '--checkpoint-dir', 'x', '--allow-changed', 'momentum'], /--allow-changed accepts "lr"/],
    ];
    for (const [flags, message] of cases) {
      const r = await runCli(['train', '--workers', '0', '--data', 'nowhere', '--no-download', ...flags]);
      expect(r.code, flags.join(' ')).toBe(2);
      expect(r.stderr, flags.join(' ')).toMatch(/E_USAGE/);
      expect(r.stderr, flags.join(' ')).toMatch(message);
    }
  });

  it("writes each update's lr; a resume with other lr settings is refused unless --allow-changed lr", async () => {
    const dir = tempDir('lr-cli');
    syntheticCifar(dir, 40);
    const metrics = path.join(dir, 'm.jsonl');
    const ck = path.join(dir, 'ck');
    const common = ['train', '--workers', '0', '--data', dir, '--no-download', '--model', '3072,16,10', '--batch-size', '10', '--chunk', '4',
      '--momentum', '0.9', '--metrics', metrics, '--checkpoint-dir', ck, '--checkpoint-every', '3'];
    const schedule = ['--lr-schedule', 'step', '--lr-step-size', '2', '--lr-gamma', '0.5', '--warmup-steps', '2', '--warmup-start-factor', '0.25'];
    const first = await runCli([...common, '--lr', '0.05', ...schedule, '--steps', '6']);
    expect(first.code, first.stderr).toBe(0);
    const lrOf = lrSchedule({ lr: 0.05, lrSchedule: 'step', lrStepSize: 2, lrGamma: 0.5, warmupSteps: 2, warmupStartFactor: 0.25 }, { totalSteps: 6 });
    const lrs = (): number[] => readJsonl<{ kind: string; lr: number }>(metrics).filter((l) => l.kind === 'step').map((l) => l.lr);
    expect(lrs()).toEqual([1, 2, 3, 4, 5, 6].map(lrOf));
    expect(lrs().slice(0, 3)).toEqual([0.0125, 0.03125, 0.05]); // warm-up, then the milestone: the lr itself

    const changed = [...common, '--resume', '--lr', '0.1', ...schedule, '--steps', '8'];
    const refused = await runCli(changed);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/E_RESUME_MISMATCH/);
    expect(refused.stderr).toMatch(/lr \(checkpoint 0\.05, now 0\.1\)/);

    const allowed = await runCli([...changed, '--allow-changed', 'lr']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout + allowed.stderr).toMatch(/--allow-changed: lr differ from the checkpoint.s; the new values apply from step 7/);
    const newLr = lrSchedule({ lr: 0.1, lrSchedule: 'step', lrStepSize: 2, lrGamma: 0.5, warmupSteps: 2, warmupStartFactor: 0.25 }, { totalSteps: 8 });
    expect(lrs()).toEqual([...[1, 2, 3, 4, 5, 6].map(lrOf), newLr(7), newLr(8)]);
  });

  it('lists the lr flags in `gradhub help train`', async () => {
    const r = await runCli(['help', 'train']);
    for (const flag of ['--lr-schedule NAME', '--lr-step-size N', '--lr-gamma X', '--lr-min X', '--warmup-steps N', '--warmup-start-factor X', '--allow-changed WHAT']) {
      expect(r.stdout).toContain(flag);
    }
  });
});
