/**
 * The trainer's SGD part by part: an executor that hands the gradient over in stream parts
 * (onRootPart, in any order) must end with the bits of one that returns the whole gradient, for
 * every optimizer case; a non-finite part or an ignored batch ends the run with E_DIVERGED.
 */
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { createWasmBackend, engineFloats, initParams, isGradhubError, modelSpec, streamParts, type Backend } from '@gradhub/core';
import { createInProcessExecutor } from '../src/in-process-executor.js';
import { nullMetrics } from '../src/metrics.js';
import { runTraining, type Samples } from '../src/trainer.js';
import type { Executor, StepHooks, StepInput, StepSums } from '../src/executor.js';
import type { TrainSettings } from '../src/settings.js';

// Layer 0 (3072 x 1400) is two stream parts, layer 1 one.
const SIZES = [3072, 1400, 10];
const SPEC = modelSpec(SIZES);
const logger = pino({ level: 'silent' });
const inProcess = async (): Promise<Executor> => {
  const backend: Backend = await createWasmBackend({ capacityFloats: engineFloats(SPEC, 8) });
  return createInProcessExecutor({ spec: SPEC, backend, maxBatch: 8, chunk: 4, normalize: false });
};

function samples(count: number): Samples {
  const pixels = new Uint8Array(count * 3072);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
  return { count, pixels, labels: Uint8Array.from({ length: count }, (_, i) => (i * 7) % 10) };
}

function settings(over: Partial<TrainSettings> = {}): TrainSettings {
  return {
    sizes: SIZES, batch: 8, chunk: 4, seed: 3, shuffle: true, normalize: false, epochs: 1, steps: 3,
    lr: 0.05, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...over,
  };
}

/** The in-process executor, but handing each part over through onRootPart (in `order`), as the cluster does. */
async function streaming(order: (n: number) => number[], tamper?: (grad: Float32Array) => void): Promise<Executor & { published: number[] }> {
  const inner = await inProcess();
  const parts = streamParts(SPEC);
  const published: number[] = [];
  return {
    published,
    async run(input: StepInput, hooks?: StepHooks): Promise<StepSums> {
      const sums = await inner.run(input);
      if (input.mode !== 'train' || !hooks?.onRootPart) return sums;
      const grad = sums.grad!.slice();
      tamper?.(grad);
      for (const i of order(parts.length)) hooks.onRootPart(i, parts[i], grad.subarray(parts[i].offset, parts[i].offset + parts[i].length), sums);
      return { ...sums, grad: null };
    },
    publish(version, _params, index) {
      published.push(version * 100 + index);
    },
    close: () => inner.close(),
  };
}

async function train(executor: Executor, s: TrainSettings): Promise<Float32Array> {
  const params = new Float32Array(SPEC.paramCount);
  initParams(SPEC, s.seed, params);
  const r = await runTraining({
    settings: s, train: samples(32), test: null, executor, logger, metrics: nullMetrics,
    start: { params, step: 0, sampler: { epoch: 0, position: 0 }, momentumBuffer: null },
  });
  return r.params.slice();
}

describe('trainer: SGD part by part', () => {
  expect(streamParts(SPEC).length).toBe(3);
  const cases: Partial<TrainSettings>[] = [
    {},
    { momentum: 0.9 },
    { momentum: 0.9, dampening: 0.1, weightDecay: 0.01 },
    { momentum: 0.9, nesterov: true, weightDecay: 0.01 },
  ];
  for (const c of cases) {
    it(`parts in any order give the bits of one whole step: ${JSON.stringify(c)}`, async () => {
      const s = settings(c);
      const whole = await train(await inProcess(), s);
      const initial = new Float32Array(SPEC.paramCount);
      initParams(SPEC, s.seed, initial);
      expect(Buffer.from(whole.buffer).equals(Buffer.from(initial.buffer))).toBe(false); // the steps did change the model
      const reversed = await streaming((n) => [...Array(n).keys()].reverse());
      const got = await train(reversed, s);
      expect(Buffer.from(got.buffer).equals(Buffer.from(whole.buffer))).toBe(true);
      // Each updated part of version v + 1 was published as soon as it was updated.
      expect(reversed.published).toEqual([102, 101, 100, 202, 201, 200, 302, 301, 300]);
    });
  }

  it('a non-finite part ends the run with E_DIVERGED, and nothing is published after it', async () => {
    const ex = await streaming((n) => [...Array(n).keys()], (g) => {
      g[SPEC.paramCount - 1] = Number.POSITIVE_INFINITY; // in the last part
    });
    const err = await train(ex, settings()).then(() => null, (e: unknown) => e);
    expect(isGradhubError(err) && err.code).toBe('E_DIVERGED');
    expect((err as Error).message).toMatch(/not finite/);
    expect(ex.published).toEqual([100, 101]);
  });
});
