// Audits on a trusted worker (remote-audit.ts), over loopback: the real server, membership,
// executor and parameter distribution, a real in-process trusted Node worker (the operator's
// token) and hand-driven clients. The trusted worker keeps the version before each new one while
// a volunteer is here (Keep), recomputes audit Work on it, and its sums and digests are those of
// one engine holding that version; anything that goes wrong sends the audit back to the caller
// (null), and an AuditResult nobody asked for is a fault.
import { afterEach, describe, expect, it } from 'vitest';
import { gradhub } from '@gradhub/proto';
import { streamParts, xxh64Hex } from '@gradhub/core';
import type { AuditJob } from '../src/audit.js';
import type { Cluster, ClusterOptions } from '../src/cluster.js';
import type { StepInput } from '../src/executor.js';
import { LoopbackHarness, SIZES, SPEC, cifarBatch, paramsFor, reference, testLogger } from './cluster-helpers.js';

const BATCH = 24;
const CHUNK = 4;
const TOKEN = 'join-token';
const TRUSTED = 'operator-token';
const logger = testLogger();
const PARTS = streamParts(SPEC).map(({ offset, length }) => ({ offset, length }));

const h = new LoopbackHarness({
  host: '127.0.0.1', port: 0, token: TOKEN, trustedToken: TRUSTED, sizes: SIZES, chunk: CHUNK, normalize: false, maxBatch: BATCH, logger,
  heartbeatIntervalMs: 200, heartbeatTimeoutMs: 3000, speculateAfterMs: null,
}, TOKEN);
afterEach(() => h.cleanup());

function counting() {
  const counters: Record<string, number> = {};
  return {
    counters,
    status: { count: (n: string, by = 1) => { counters[n] = (counters[n] ?? 0) + by; }, upsertWorker() {}, removeWorker() {} },
  };
}

function input(step: number): StepInput {
  const { pixels, labels } = cifarBatch(step * 100, BATCH);
  return { mode: 'train', step, version: step - 1, params: paramsFor(SPEC, step - 1), pixels, labels, batch: BATCH };
}

/** Run step 1 on version 0 and stream version 1 out part by part (as the trainer does). */
async function stepOne(c: Cluster): Promise<StepInput> {
  const inp = input(1);
  const next = paramsFor(SPEC, 1);
  await c.executor.run(inp, { onRootPart: (i) => c.executor.publish!(1, next, i) });
  return inp;
}

const jobOf = (inp: StepInput, version: number): AuditJob => ({
  step: inp.step, mode: 'train', params: paramsFor(SPEC, version), version, pixels: inp.pixels, labels: inp.labels, batch: inp.batch, nodes: [],
});

/** A hand-driven client that joins with `token`, offering audits. */
async function rawJoin(token: string): Promise<ReturnType<typeof h.rawClient>> {
  const r = h.rawClient(token);
  await r.opened;
  r.send({ hello: { protocolVersion: gradhub.ProtocolVersion.CURRENT, token, runtime: gradhub.Runtime.NODE, capabilities: { threads: 1, audits: true } } });
  await r.next('welcome');
  return r;
}

describe('audits on a trusted worker', () => {
  it('the trusted worker keeps the version before the next one while a volunteer is here, and recomputes nodes on it bit for bit', async () => {
    const { counters, status } = counting();
    const c = await h.start({ status });
    h.worker({ token: TRUSTED });
    h.worker({ token: TOKEN });
    await c.executor.waitForWorkers(2);
    const inp = await stepOne(c);
    // Version 1 streamed out over version 0: the trusted worker kept 0 and holds 1.
    for (const [version, node] of [[0, { lo: 1, hi: 3 }], [1, { lo: 0, hi: 6 }]] as const) {
      const got = await c.executor.remoteAudits.recompute(jobOf(inp, version), node, PARTS);
      const n = (node.hi - node.lo) * CHUNK;
      const want = reference(SPEC, paramsFor(SPEC, version), inp.pixels.subarray(node.lo * CHUNK * 3072), inp.labels.subarray(node.lo * CHUNK), n, CHUNK, true);
      expect(got, `version ${version}`).toMatchObject({ lossSum: want.lossSum, denomSum: want.denomSum, correct: want.correct });
      expect(got!.hashes).toEqual(PARTS.map((p) => xxh64Hex(want.grad!.subarray(p.offset, p.offset + p.length))));
    }
    expect(counters['audits.remote']).toBe(2);
    // A version it neither kept nor holds: the caller recomputes (nothing is sent).
    expect(await c.executor.remoteAudits.recompute(jobOf(inp, 5), { lo: 0, hi: 1 }, PARTS)).toBeNull();
  });

  it('without a volunteer nothing is kept (no copy, no Keep frame): an audit of the previous version falls back to the caller', async () => {
    const c = await h.start();
    const trusted = await rawJoin(TRUSTED);
    h.worker({ token: TRUSTED });
    await c.executor.waitForWorkers(2);
    const run = stepOne(c);
    // The raw trusted client does not answer; its node goes to the real worker once it is closed.
    await trusted.next('work');
    trusted.close();
    const inp = await run;
    expect(trusted.frames.filter((f) => f.body === 'keep')).toEqual([]);
    expect(await c.executor.remoteAudits.recompute(jobOf(inp, 0), { lo: 0, hi: 1 }, PARTS)).toBeNull();
  });

  it('a trusted worker that answers held: false or the wrong number of digests: null (the caller recomputes); the bad answer is BAD_RESULT, and a worker gone keeps nothing', async () => {
    const { counters, status } = counting();
    const c = await h.start({ status });
    const volunteer = h.worker({ token: TOKEN });
    const trusted = await rawJoin(TRUSTED);
    await c.executor.waitForWorkers(2);
    const inp = input(1);
    const run = c.executor.run(inp, { onRootPart: (i) => c.executor.publish!(1, paramsFor(SPEC, 1), i) });
    // The raw trusted client answers its nodes honestly, so that the step ends and version 1 streams to it.
    const work = (await trusted.next('work')).work!;
    for (const n of work.nodes!) {
      const mine = reference(SPEC, inp.params, inp.pixels.subarray(n.sampleStart! * 3072), inp.labels.subarray(n.sampleStart!), n.sampleCount!, CHUNK, true);
      const g = mine.grad!;
      trusted.send({
        result: {
          seq: work.seq, step: work.step, version: work.version, node: { lo: n.lo, hi: n.hi }, part: { offset: 0, length: SPEC.paramCount },
          grad: new Uint8Array(g.buffer, g.byteOffset, g.byteLength), lossSum: mine.lossSum, denomSum: mine.denomSum, correct: mine.correct,
        },
      });
    }
    await run;
    expect((await trusted.next('keep')).keep!.version).toBe(0);
    const ask = (): Promise<unknown> => c.executor.remoteAudits.recompute(jobOf(inp, 0), { lo: 0, hi: 1 }, PARTS);
    // held: false
    let answer = ask();
    let aw = (await trusted.next('work')).work!;
    expect(aw).toMatchObject({ audit: true, version: 0, nodes: [{ lo: 0, hi: 1 }], auditParts: PARTS });
    trusted.send({ auditResult: { seq: aw.seq, node: { lo: 0, hi: 1 }, held: false } });
    expect(await answer).toBeNull();
    // One digest for two parts: BAD_RESULT, and the caller recomputes.
    answer = ask();
    aw = (await trusted.next('work')).work!;
    trusted.send({ auditResult: { seq: aw.seq, node: { lo: 0, hi: 1 }, held: true, digests: [new Uint8Array(8)] } });
    expect(await answer).toBeNull();
    expect((await trusted.next('error')).error!.code).toBe(gradhub.ErrorCode.BAD_RESULT);
    await trusted.closed;
    expect(counters['audits.remote_fallback']).toBe(2);
    expect(counters['rejected.BAD_RESULT']).toBe(1);
    // Gone: nobody keeps version 0 now.
    expect(await ask()).toBeNull();
    volunteer.stop();
  });

  it('an AuditResult from a worker that was sent no audit is UNEXPECTED_MESSAGE: kicked and counted', async () => {
    const { counters, status } = counting();
    const c = await h.start({ status });
    const forger = await rawJoin(TOKEN);
    await c.executor.waitForWorkers(1);
    forger.send({ auditResult: { seq: 1, node: { lo: 0, hi: 1 }, held: true, lossSum: 1, denomSum: 4, correct: 0, digests: [] } });
    expect((await forger.next('error')).error!.code).toBe(gradhub.ErrorCode.UNEXPECTED_MESSAGE);
    await forger.closed;
    expect(counters['rejected.UNEXPECTED_MESSAGE']).toBe(1);
  });
});
