// Rounds over loopback: the real server, membership, scheduler, reducer and executor with real Node
// workers (in-process) and a hand-driven bad client. A round's pseudo-gradient sum must be bit for
// bit the in-process executor's, whatever the split of its replicas; bad round results get what bad
// synchronous results get (docs/design.md "Rounds", "Invariant 7").
import { afterEach, describe, expect, it } from 'vitest';
import { gradhub } from '@gradhub/proto';
import { createOracleBackend } from '@gradhub/core';
import type { NodeWorkerHandle } from '@gradhub/worker';
import type { Cluster, ClusterOptions } from '../src/cluster.js';
import { createInProcessExecutor } from '../src/in-process-executor.js';
import type { StepInput, StepSums } from '../src/executor.js';
import { LoopbackHarness, RawClient, SIZES, SPEC, bits, cifarBatch, paramsFor, testLogger } from './cluster-helpers.js';

const BATCH = 12;
const CHUNK = 4;
const H = 2;
const M = 3;
const TOKEN = 'secret';
const logger = testLogger();

const h = new LoopbackHarness({
  host: '127.0.0.1', port: 0, token: TOKEN, sizes: SIZES, chunk: CHUNK, normalize: false, maxBatch: BATCH, maxWorkSamples: BATCH * H * M, logger,
  heartbeatIntervalMs: 200, heartbeatTimeoutMs: 3000, speculateAfterMs: null,
}, TOKEN);
afterEach(() => h.cleanup());
const start = (over: Partial<ClusterOptions> = {}): Promise<Cluster> => h.start(over);
const worker = (): NodeWorkerHandle => h.worker();

/** Round `r` (1-based) of M replicas x H inner batches, one of them short (an epoch's end). */
function roundInput(r: number): StepInput {
  const innerBatches = Uint32Array.from({ length: M * H }, (_, i) => (i === 3 ? 7 : BATCH));
  const offsets = new Uint32Array(M + 1);
  for (let m = 0; m < M; m++) offsets[m + 1] = offsets[m] + innerBatches[m * H] + innerBatches[m * H + 1];
  const batch = offsets[M];
  const { pixels, labels } = cifarBatch(r * 200, batch);
  return {
    mode: 'round', step: r, version: r - 1, params: paramsFor(SPEC, r - 1), pixels, labels, batch,
    round: { localSteps: H, replicas: M, sgd: { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 1e-3, nesterov: false }, innerBatches, offsets },
  };
}

/** The in-process executor's answer: the definition every split must give. */
async function reference(inp: StepInput): Promise<StepSums & { grad: Float32Array }> {
  const e = createInProcessExecutor({ spec: SPEC, backend: createOracleBackend(), maxBatch: BATCH, chunk: CHUNK, normalize: false });
  const s = await e.run(inp);
  return { ...s, grad: s.grad!.slice() };
}

async function expectReference(got: StepSums, inp: StepInput): Promise<void> {
  const want = await reference(inp);
  expect(got.lossSum).toBe(want.lossSum);
  expect(got.denomSum).toBe(want.denomSum);
  expect(got.correct).toBe(want.correct);
  expect(bits(got.grad)!.equals(bits(want.grad)!)).toBe(true);
}

const rawClient = (): RawClient => h.rawClient();

/** Two real workers and a raw client that receives replicas of round 1; returns its Work. */
async function withFake(): Promise<{ c: Cluster; fake: RawClient; run: Promise<StepSums>; inp: StepInput; work: gradhub.IWork }> {
  const c = await start();
  const fake = rawClient();
  await fake.join();
  worker();
  worker();
  await c.executor.waitForWorkers(3);
  const inp = roundInput(1);
  const run = c.executor.run(inp);
  await fake.next('params');
  const work = (await fake.next('work')).work!;
  return { c, fake, run, inp, work };
}

function resultFor(work: gradhub.IWork, over: Partial<gradhub.IResult> = {}, grad = new Uint8Array(4 * SPEC.paramCount)): gradhub.IEnvelope {
  const n = work.nodes![0];
  return {
    result: {
      seq: work.seq, step: work.step, version: work.version, node: { lo: n.lo, hi: n.hi },
      part: { offset: 0, length: SPEC.paramCount }, grad, lossSum: 1, denomSum: n.sampleCount, correct: 0, ...over,
    },
  };
}

describe('rounds over loopback', () => {
  it('gives the in-process bits with 1 worker (all replicas in turn) and with 3 (one each), round after round', async () => {
    const c = await start();
    worker();
    await c.executor.waitForWorkers(1);
    await expectReference(await c.executor.run(roundInput(1)), roundInput(1));
    worker();
    worker();
    await c.executor.waitForWorkers(3);
    await expectReference(await c.executor.run(roundInput(2)), roundInput(2));
    await expectReference(await c.executor.run(roundInput(3)), roundInput(3));
  });

  it('sends ROUND work: whole replicas as tree nodes, their inner batches and the inner SGD', async () => {
    const { fake, run, inp, work } = await withFake();
    expect(work.mode).toBe(gradhub.Mode.ROUND);
    expect(work.round).toMatchObject({ localSteps: H, lr: 0.05, momentum: 0.9, weightDecay: 1e-3, nesterov: false });
    const replicas = work.nodes!.reduce((a, n) => a + (n.hi! - n.lo!), 0);
    expect(work.round!.innerBatches).toHaveLength(replicas * H);
    const samples = work.nodes!.reduce((a, n) => a + n.sampleCount!, 0);
    expect(work.round!.innerBatches!.reduce((a, b) => a + b, 0)).toBe(samples);
    expect(work.labels).toHaveLength(samples);
    fake.close();
    await expectReference(await run, inp);
  });

  it('kicks a worker whose pseudo-gradient has the wrong byte count, and recomputes its replicas elsewhere', async () => {
    const { c, fake, run, inp, work } = await withFake();
    fake.send(resultFor(work, {}, new Uint8Array(100)));
    expect((await fake.next('error')).error!.code).toBe(gradhub.ErrorCode.BAD_GRADIENT_LENGTH);
    await expectReference(await run, inp);
    expect(c.executor.stats.kicked).toBe(1);
  });

  it('kicks a worker that answers for another round (parameter version) or for replicas it was not given', async () => {
    const first = await withFake();
    first.fake.send(resultFor(first.work, { version: 7 }));
    expect((await first.fake.next('error')).error!.code).toBe(gradhub.ErrorCode.WRONG_PARAM_VERSION);
    await expectReference(await first.run, first.inp);
    await h.cluster!.close();
    const second = await withFake();
    second.fake.send(resultFor(second.work, { node: { lo: 0, hi: M } }));
    expect((await second.fake.next('error')).error!.code).toBe(gradhub.ErrorCode.UNKNOWN_NODE);
    await expectReference(await second.run, second.inp);
  });

  it('recomputes a non-finite pseudo-gradient on another worker, as a non-finite gradient', async () => {
    const { c, fake, run, inp, work } = await withFake();
    const nan = new Float32Array(SPEC.paramCount);
    nan[3] = Number.NaN;
    fake.send(resultFor(work, {}, new Uint8Array(nan.buffer)));
    await expectReference(await run, inp);
    expect(c.executor.stats.recomputed).toBe(1);
    expect(c.executor.stats.kicked).toBe(0);
  });
});
