/**
 * The lr schedule in training: update k uses the schedule's lr of k (one scheduled run ends with
 * the bits of runs of one update each at that constant lr, resumed from each other's checkpoints),
 * StepReport.lr and the metrics' "lr" say which, and the checkpoint settings record a schedule
 * only when there is one (default runs keep their settings, old checkpoints resume).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { createWasmBackend, engineFloats, initParams, isGradhubError, lrSchedule, modelSpec, type Backend } from '@gradhub/core';
import { createInProcessExecutor } from '../src/in-process-executor.js';
import { openMetricsFile, nullMetrics, type StepLine } from '../src/metrics.js';
import { runTraining, totalSteps, type Samples, type StepReport, type TrainStart } from '../src/trainer.js';
import { checkSettingsMatch, readLatestCheckpoint } from '../src/checkpoint.js';
import { bitSettings, runSettings, LR_SETTING_KEYS, type TrainSettings } from '../src/settings.js';
import type { Executor } from '../src/executor.js';

const SIZES = [3072, 24, 10];
const SPEC = modelSpec(SIZES);
const logger = pino({ level: 'silent' });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-lr-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const inProcess = async (): Promise<Executor> => {
  const backend: Backend = await createWasmBackend({ capacityFloats: engineFloats(SPEC, 8) });
  return createInProcessExecutor({ spec: SPEC, backend, maxBatch: 8, chunk: 4, normalize: false });
};

function samples(count: number): Samples {
  const pixels = new Uint8Array(count * 3072);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
  return { count, pixels, labels: Uint8Array.from({ length: count }, (_, i) => (i * 7) % 10) };
}
const TRAIN = samples(40); // 5 batches of 8 an epoch

function settings(over: Partial<TrainSettings> = {}): TrainSettings {
  return {
    sizes: SIZES, batch: 8, chunk: 4, seed: 3, shuffle: true, normalize: false, epochs: 2, steps: null,
    lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0.01, nesterov: true, ...over,
  };
}

function fresh(s: TrainSettings): TrainStart {
  const params = new Float32Array(SPEC.paramCount);
  initParams(SPEC, s.seed, params);
  return { params, step: 0, sampler: { epoch: 0, position: 0 }, momentumBuffer: null };
}

const bytes = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('an lr schedule in training', () => {
  const scheduled = settings({ lrSchedule: 'cosine', lrMin: 0.001, warmupSteps: 3, warmupStartFactor: 0.2 });
  const total = totalSteps(scheduled, TRAIN.count); // 10
  const lrOf = lrSchedule(scheduled, { totalSteps: total });

  it('update k uses the lr of k: one scheduled run = runs of one update each at that lr, resumed from checkpoints', async () => {
    expect(total).toBe(10);
    const reports: StepReport[] = [];
    const metricsFile = path.join(tmp, 'm.jsonl');
    const metrics = openMetricsFile(metricsFile, { resume: false, run: runSettings(scheduled), startStep: 0 });
    const dir = path.join(tmp, 'whole');
    const whole = await runTraining({
      settings: scheduled, train: TRAIN, test: null, executor: await inProcess(), logger, metrics, start: fresh(scheduled),
      checkpoint: { dir, every: 100, keep: 1 }, onStep: (r) => reports.push(r),
    });
    metrics.close();
    expect(reports.map((r) => r.lr)).toEqual(Array.from({ length: total }, (_, i) => lrOf(i + 1)));
    const lines = fs.readFileSync(metricsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepLine).filter((l) => l.kind === 'step');
    expect(lines.map((l) => l.lr)).toEqual(reports.map((r) => r.lr));
    expect(new Set(reports.map((r) => r.lr)).size).toBeGreaterThan(5); // it does change

    let start = fresh(scheduled);
    const steps = path.join(tmp, 'steps');
    for (let k = 1; k <= total; k++) {
      const one = settings({ lr: lrOf(k), steps: k }); // a constant lr, stopping after update k
      await runTraining({ settings: one, train: TRAIN, test: null, executor: await inProcess(), logger, metrics: nullMetrics, start, checkpoint: { dir: steps, every: 100, keep: 1 } });
      const ck = readLatestCheckpoint(steps)!;
      expect(ck.step).toBe(k);
      start = { params: ck.params, step: ck.step, sampler: ck.sampler, momentumBuffer: ck.optimizer.momentum_buffer };
    }
    expect(bytes(start.params).equals(bytes(whole.params))).toBe(true);
    const constant = await runTraining({ settings: settings(), train: TRAIN, test: null, executor: await inProcess(), logger, metrics: nullMetrics, start: fresh(scheduled) });
    expect(bytes(constant.params).equals(bytes(whole.params))).toBe(false);
  });

  it('the default constant lr leaves the bits and the checkpoint settings as before schedules existed', async () => {
    const before = settings();
    const explicit = settings({ lrSchedule: 'constant', warmupSteps: 0, lrGamma: 0.5, lrMin: 0.3, lrStepSize: 9 });
    expect(bitSettings(explicit)).toEqual(bitSettings(before));
    expect(Object.keys(bitSettings(before)).sort()).toEqual(['batch', 'chunk', 'dampening', 'lr', 'model', 'momentum', 'nesterov', 'normalize', 'seed', 'shuffle', 'weight_decay']);
    const a = await runTraining({ settings: before, train: TRAIN, test: null, executor: await inProcess(), logger, metrics: nullMetrics, start: fresh(before) });
    const b = await runTraining({ settings: explicit, train: TRAIN, test: null, executor: await inProcess(), logger, metrics: nullMetrics, start: fresh(before) });
    expect(bytes(a.params).equals(bytes(b.params))).toBe(true);
  });

  it('records the schedule in the checkpoint settings; a resume that changes it is refused unless the lr keys are allowed to change', () => {
    const saved = bitSettings(scheduled);
    expect(saved).toMatchObject({ lr_schedule: 'cosine', lr_min: 0.001, warmup_steps: 3, warmup_start_factor: 0.2, epochs: 2 });
    expect(bitSettings(settings({ lrSchedule: 'step', lrStepSize: 4 }))).toMatchObject({ lr_schedule: 'step', lr_step_size: 4, lr_gamma: 0.1 });
    const err = (() => {
      try {
        checkSettingsMatch(saved, bitSettings(settings()));
        return null;
      } catch (e) {
        return e;
      }
    })();
    expect(isGradhubError(err) && err.code).toBe('E_RESUME_MISMATCH');
    expect((err as Error).message).toMatch(/lr_schedule \(checkpoint cosine, now \(absent\)\)/);
    expect(() => checkSettingsMatch(saved, bitSettings(settings({ lr: 0.1 })), { ignore: LR_SETTING_KEYS })).not.toThrow();
    // Other settings are still compared.
    expect(() => checkSettingsMatch(saved, bitSettings(settings({ batch: 16 })), { ignore: LR_SETTING_KEYS })).toThrow(/batch/);
    // A cosine schedule's length is its T_max: another --steps changes the bits.
    expect(() => checkSettingsMatch(saved, bitSettings({ ...scheduled, steps: 7 }))).toThrow(/steps/);
  });

  it('a cosine schedule whose warm-up exceeds the run is a usage error', async () => {
    const s = settings({ lrSchedule: 'cosine', warmupSteps: 11 });
    const err = await runTraining({ settings: s, train: TRAIN, test: null, executor: await inProcess(), logger, metrics: nullMetrics, start: fresh(s) }).then(() => null, (e: unknown) => e);
    expect(isGradhubError(err) && err.code).toBe('E_USAGE');
    expect((err as Error).message).toMatch(/--warmup-steps 11 exceeds the run's 10 updates/);
  });
});
