// Loopback cluster: the real server, membership, scheduler, reducer and executor on 127.0.0.1,
// with real Node workers (in-process) and hand-driven bad clients. The executor's answer must be
// bit for bit the answer of one engine on the whole batch, whatever happens to the workers.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { gradhub } from '@gradhub/proto';
import { isGradhubError, modelSpec, streamParts, wasmSimdSupported } from '@gradhub/core';
import { startNodeWorker, type ClientEvent, type NodeWorkerHandle, type NodeWorkerOptions } from '@gradhub/worker';
import { startCluster, type Cluster, type ClusterOptions } from '../src/cluster.js';
import { PACK_BELOW_BYTES_PER_S } from '../src/membership.js';
import type { StepInput, StepSums } from '../src/executor.js';
import type { WorkerRow } from '../src/status.js';
import { LoopbackHarness, RawClient, SIZES, SPEC, bits, cifarBatch, paramsFor, reference, testLogger } from './cluster-helpers.js';

const BATCH = 24;
const CHUNK = 4;
const TOKEN = 'secret';
const logger = testLogger();

const h = new LoopbackHarness({
  host: '127.0.0.1', port: 0, token: TOKEN, sizes: SIZES, chunk: CHUNK, normalize: false, maxBatch: BATCH, logger,
  heartbeatIntervalMs: 200, heartbeatTimeoutMs: 3000, speculateAfterMs: null,
}, TOKEN);
afterEach(() => h.cleanup());
const start = (over: Partial<ClusterOptions> = {}): Promise<Cluster> => h.start(over);
const worker = (over: Partial<NodeWorkerOptions> = {}): NodeWorkerHandle => h.worker(over);

/** A status sink that records what it is told (RunStatus's shape). */
function fakeStatus() {
  const sink = {
    counters: {} as Record<string, number>,
    rows: new Map<string, WorkerRow>(),
    gone: [] as string[],
    count(name: string, by = 1) {
      sink.counters[name] = (sink.counters[name] ?? 0) + by;
    },
    upsertWorker(row: WorkerRow) {
      sink.rows.set(row.id, row);
    },
    removeWorker(id: string) {
      sink.gone.push(id);
    },
  };
  return sink;
}

const rawClient = (token: string | null = TOKEN): RawClient => h.rawClient(token);

function input(step: number, batch = BATCH, mode: 'train' | 'eval' = 'train', offset = step * 100): StepInput {
  const { pixels, labels } = cifarBatch(offset, batch);
  return { mode, step, version: step - 1, params: paramsFor(SPEC, step - 1), pixels, labels, batch };
}

/** Run one request and check it against one engine on the whole batch. */
async function runAndCheck(c: Cluster, inp: StepInput): Promise<StepSums> {
  const got = await c.executor.run(inp);
  const want = reference(SPEC, inp.params, inp.pixels, inp.labels, inp.batch, CHUNK, inp.mode === 'train');
  expect(got.lossSum).toBe(want.lossSum);
  expect(got.denomSum).toBe(want.denomSum);
  expect(got.correct).toBe(want.correct);
  if (inp.mode === 'train') expect(bits(got.grad)!.equals(bits(want.grad)!)).toBe(true);
  else expect(got.grad).toBeNull();
  const t = got.timing!;
  for (const v of [t.broadcastMs, t.computeMs, t.uploadMs, t.reduceMs]) expect(v).toBeGreaterThanOrEqual(0);
  return got;
}

describe('cluster executor over loopback', () => {
  it('gives the bits of one engine with 1, 2 and 3 workers, over steps, short batches and eval', async () => {
    const c = await start();
    worker();
    await c.executor.waitForWorkers(1);
    await runAndCheck(c, input(1));
    worker();
    await c.executor.waitForWorkers(2);
    await runAndCheck(c, input(2));
    // The bytes of step 2 as assigned: parameters to the worker of the split (a new version), the
    // pixels, one result per node. The worker that just joined is on probation: a copy of a node,
    // outside the plan.
    const as = c.executor.stats.assigned!;
    expect(as.paramsBytes).toBeGreaterThan(4 * SPEC.paramCount);
    expect(as.paramsBytes).toBeLessThan(2 * 4 * SPEC.paramCount);
    expect(c.executor.stats.probation).toBe(1);
    expect(as.workBytes).toBe(BATCH * 3073);
    expect(as.upBytes).toBe(as.nodes * (4 * SPEC.paramCount + 64));
    expect(as.downBytes).toBe(as.paramsBytes + as.workBytes);
    worker();
    await c.executor.waitForWorkers(3);
    await runAndCheck(c, input(3));
    await runAndCheck(c, input(4, 21)); // last chunk short
    await runAndCheck(c, input(5, 3)); // one chunk, one worker used
    await runAndCheck(c, { ...input(5, BATCH, 'eval', 1000), version: 4, params: paramsFor(SPEC, 4) });
    expect(c.executor.stats.requests).toBe(6);
    expect(c.executor.stats.rejected).toBe(0);
  });

  it('hands each stream part over once its root is complete, and sends the parameters published then ahead of the next Work', async () => {
    const c = await start();
    worker({ backend: 'wasm' }); // compute off the main thread: layers stream during the backward pass
    worker();
    await c.executor.waitForWorkers(2);
    const inp = input(1);
    const want = reference(SPEC, inp.params, inp.pixels, inp.labels, inp.batch, CHUNK, true);
    const next = paramsFor(SPEC, 1);
    const seen: number[] = [];
    const got = await c.executor.run(inp, {
      onRootPart(i, range, grad, sums) {
        seen.push(i);
        expect(range).toEqual(streamParts(SPEC)[i]);
        const w = want.grad!.subarray(range.offset, range.offset + range.length);
        expect(Buffer.from(grad.buffer, grad.byteOffset, grad.byteLength).equals(Buffer.from(w.buffer, w.byteOffset, w.byteLength))).toBe(true);
        expect(sums).toMatchObject({ lossSum: want.lossSum, denomSum: want.denomSum, correct: want.correct });
        c.executor.publish!(1, next, i);
      },
    });
    expect([...seen].sort((a, b) => a - b)).toEqual(streamParts(SPEC).map((_, i) => i));
    expect(got.grad).toBeNull(); // every part went to the hook
    expect(got).toMatchObject({ lossSum: want.lossSum, denomSum: want.denomSum, correct: want.correct });
    // Version 1 went out part by part during step 1: step 2 sends Work only, and gets the same bits.
    await runAndCheck(c, input(2));
    expect(c.executor.stats.assigned!.paramsBytes).toBe(0);
  });

  it('streams a layer bigger than one part in row blocks, both ways, with the same bits', async () => {
    const sizes = [3072, 1400, 10]; // layer 0: 4.3M floats, two stream parts
    const spec = modelSpec(sizes);
    expect(streamParts(spec).filter((p) => p.layer === 0).length).toBeGreaterThan(1);
    // The oracle's answers first: on this model they take seconds of this thread, which would
    // silence the in-process workers' heartbeats if the cluster were running meanwhile.
    const steps = [1, 2].map((step) => {
      const { pixels, labels } = cifarBatch(step * 50, BATCH);
      const params = paramsFor(spec, step - 1);
      return { step, pixels, labels, params, want: reference(spec, params, pixels, labels, BATCH, CHUNK, true) };
    });
    const c = await start({ sizes });
    worker({ backend: 'wasm' });
    worker({ backend: 'wasm' });
    await c.executor.waitForWorkers(2);
    for (const { step, pixels, labels, params, want } of steps) {
      const got = new Float32Array(spec.paramCount);
      const next = paramsFor(spec, step);
      const sums = await c.executor.run({ mode: 'train', step, version: step - 1, params, pixels, labels, batch: BATCH }, {
        onRootPart(i, range, grad) {
          got.set(grad, range.offset);
          c.executor.publish!(step, next, i);
        },
      });
      expect(sums).toMatchObject({ grad: null, lossSum: want.lossSum, denomSum: want.denomSum, correct: want.correct });
      expect(bits(got)!.equals(bits(want.grad)!)).toBe(true);
    }
    expect(c.executor.stats.assigned!.paramsBytes).toBe(0);
  });

  it('gives the same bits whatever the kernel backend of each worker', async () => {
    if (!wasmSimdSupported()) return;
    const c = await start();
    worker({ backend: 'wasm' });
    worker({ backend: 'ts' });
    await c.executor.waitForWorkers(2);
    for (let s = 1; s <= 3; s++) await runAndCheck(c, input(s));
  });

  it('shifts chunks away from a slow worker and keeps the bits', async () => {
    const c = await start();
    const chunksOf = new Map<string, number[]>();
    const track = (name: string) => (e: ClientEvent): void => {
      if (e.type === 'work') chunksOf.set(name, [...(chunksOf.get(name) ?? []), e.nodes.reduce((s, n) => s + n.hi - n.lo, 0)]);
    };
    worker({ onEvent: track('fast1') });
    worker({ onEvent: track('fast2') });
    worker({ slowdownMs: 150, onEvent: track('slow') });
    await c.executor.waitForWorkers(3);
    const first = await runAndCheck(c, input(1));
    expect(first.timing!.computeMs).toBeGreaterThanOrEqual(150); // the slow worker: one node, [4,6)
    for (let s = 2; s <= 4; s++) await runAndCheck(c, input(s));
    const slow = chunksOf.get('slow')!;
    expect(slow[0]).toBe(2); // 6 chunks, 3 unmeasured workers: 2 each
    expect(slow[slow.length - 1]).toBeLessThan(2);
  });

  it('reassigns the nodes of a worker killed mid-step', async () => {
    const c = await start();
    worker();
    worker();
    let victim: NodeWorkerHandle | null = null;
    let killed = false;
    victim = worker({
      slowdownMs: 300,
      onEvent: (e) => {
        if (e.type === 'work' && !killed) {
          killed = true;
          victim!.kill();
        }
      },
    });
    await c.executor.waitForWorkers(3);
    await runAndCheck(c, input(1));
    expect(killed).toBe(true);
    expect(c.executor.stats.reassigned).toBeGreaterThan(0);
    expect(c.executor.workerCount()).toBe(2);
    await runAndCheck(c, input(2));
  });

  it('waits for a worker when the last one is lost, and continues when one joins', async () => {
    const c = await start();
    let killed = false;
    const only: NodeWorkerHandle = worker({
      slowdownMs: 200,
      onEvent: (e) => {
        if (e.type === 'work' && !killed) {
          killed = true;
          only.kill();
          setTimeout(() => worker(), 100);
        }
      },
    });
    await c.executor.waitForWorkers(1);
    await runAndCheck(c, input(1));
    expect(killed).toBe(true);
  });

  it('keeps the bits with a tiny memory budget (reading in tree order)', async () => {
    const c = await start({ memoryBudgetBytes: 1 }); // 2 buffers
    for (let i = 0; i < 3; i++) worker();
    await c.executor.waitForWorkers(3);
    for (let s = 1; s <= 3; s++) await runAndCheck(c, input(s));
    // Results being received count against the budget: held + the one combined never exceed budget + tree depth + 1.
    expect(c.executor.stats.peakHeld).toBeLessThanOrEqual(2 + 3 + 1);
  });

  it('says Bye TRAINING_DONE on close, and workers exit', async () => {
    const c = await start();
    const w = worker();
    await c.executor.waitForWorkers(1);
    await runAndCheck(c, input(1));
    await c.close('done');
    await expect(w.done).resolves.toEqual({ reason: 'done' });
  });

  it('rejects a pending run when closed', async () => {
    const c = await start();
    worker({ slowdownMs: 2000 });
    await c.executor.waitForWorkers(1);
    const p = c.executor.run(input(1));
    await new Promise((r) => setTimeout(r, 100));
    void c.close('shutdown');
    await expect(p).rejects.toSatisfy((e: unknown) => isGradhubError(e, 'E_CLOSED'));
  });

  it('rejects a run waiting for workers when closed', async () => {
    const c = await start();
    const p = c.executor.run(input(1));
    const w = c.executor.waitForWorkers(3);
    await new Promise((r) => setTimeout(r, 50));
    void c.close('shutdown');
    await expect(p).rejects.toSatisfy((e: unknown) => isGradhubError(e, 'E_CLOSED'));
    await expect(w).rejects.toSatisfy((e: unknown) => isGradhubError(e, 'E_CLOSED'));
    await expect(c.executor.run(input(2))).rejects.toSatisfy((e: unknown) => isGradhubError(e, 'E_CLOSED'));
  });

  it('takes upgrades on / and /ws only', async () => {
    const c = await start();
    const a = new RawClient(`${c.url}/ws`, TOKEN);
    h.track(a);
    expect((await a.join()).workerId).toBe(1);
    const b = new RawClient(`${c.url}/elsewhere`, TOKEN);
    h.track(b);
    await expect(b.opened).rejects.toMatchObject({ status: 404 });
  });

  it('takes workers on a Unix socket too: same bits, same token check, and the socket file goes at close', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-test-'));
    try {
      const socketPath = path.join(dir, 'coordinator.sock');
      const c = await start({ socketPath });
      expect(c.socketUrl).toBe(`ws+unix://${socketPath}:/ws`);
      expect(fs.statSync(socketPath).mode & 0o777).toBe(0o600);
      const bad = new RawClient(c.socketUrl!, 'wrong');
      h.track(bad);
      await expect(bad.opened).rejects.toMatchObject({ status: 401 });
      // One worker on the socket, one on TCP: the reduction does not care.
      worker({ url: c.socketUrl! });
      worker();
      await c.executor.waitForWorkers(2, 20_000);
      await runAndCheck(c, input(1));
      expect(c.membership.size).toBe(2);
      const health = await new Promise<string>((resolve, reject) => {
        http.get({ socketPath, path: '/healthz' }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve(body));
        }).on('error', reject);
      });
      expect(JSON.parse(health)).toEqual({ status: 'ok' });
      await c.close('done');
      expect(fs.existsSync(socketPath)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start, naming the path, when the Unix socket cannot be made', async () => {
    await expect(startCluster({ host: '127.0.0.1', port: 0, token: TOKEN, sizes: SIZES, chunk: CHUNK, normalize: false, maxBatch: BATCH, logger, socketPath: '/nonexistent-dir/x.sock' }))
      .rejects.toSatisfy((e: unknown) => isGradhubError(e, 'E_LISTEN') && /nonexistent-dir/.test((e as Error).message));
  });

  it('answers /healthz', async () => {
    const c = await start();
    const res = await fetch(`http://127.0.0.1:${c.server.port}/healthz`);
    expect(res.status).toBe(200);
    // Nothing about the run (no run id, no counts): anyone may ask.
    expect(await res.json()).toEqual({ status: 'ok' });
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(res.headers.get('strict-transport-security')).toBeNull(); // no TLS here
    expect((await fetch(`http://127.0.0.1:${c.server.port}/volunteer/worker.js.map`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${c.server.port}/nope`)).status).toBe(404);
    // The route table: handlers in the order they were added (/healthz first), then 404.
    c.server.use((req, res) => (req.url?.startsWith('/hello') ? (res.end('first'), true) : false));
    c.server.use((req, res) => (req.url?.startsWith('/hello') || req.url === '/static' ? (res.end('second'), true) : false));
    c.server.use((_req, res) => (res.end('shadowed /healthz'), true));
    expect(await (await fetch(`http://127.0.0.1:${c.server.port}/hello?x=1`)).text()).toBe('first');
    expect(await (await fetch(`http://127.0.0.1:${c.server.port}/static`)).text()).toBe('second');
    expect(((await (await fetch(`http://127.0.0.1:${c.server.port}/healthz`)).json()) as { status: string }).status).toBe('ok');
  });
});

describe('node workers and coordinator restarts', () => {
  it('rejoin a restarted coordinator (new incarnation, older parameter version) and give the same bits', async () => {
    const c1 = await start();
    const port = c1.server.port;
    const seen: string[] = [];
    worker({ backoffInitialMs: 20, backoffMaxMs: 100, onEvent: (e) => e.type === 'welcome' && seen.push(e.info.incarnation) });
    worker({ backoffInitialMs: 20, backoffMaxMs: 100 });
    await c1.executor.waitForWorkers(2);
    await runAndCheck(c1, input(5));
    await c1.close('shutdown');
    // The same run resumes from a checkpoint at step 3: versions go back.
    const c2 = await start({ port });
    await c2.executor.waitForWorkers(2, 5000);
    await runAndCheck(c2, input(3));
    expect(new Set(seen).size).toBe(2);
  });

  it('give up after the grace period when the coordinator never returns', async () => {
    const c = await start();
    const w = worker({ graceMs: 400, backoffInitialMs: 20, backoffMaxMs: 100 });
    await c.executor.waitForWorkers(1);
    const t0 = Date.now();
    await c.close('shutdown');
    h.cluster = null;
    await expect(w.done).rejects.toSatisfy((e: unknown) => isGradhubError(e, 'E_COORDINATOR_GONE'));
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('fail with E_AUTH on a wrong token', async () => {
    const c = await start();
    const w = startNodeWorker({ url: c.url, token: 'wrong', logger, backend: 'ts', graceMs: 1000 });
    await expect(w.done).rejects.toSatisfy((e: unknown) => isGradhubError(e, 'E_AUTH'));
  });
});

describe('bad clients', () => {
  it('refuses a wrong or missing token at the upgrade with 401', async () => {
    await start();
    await expect(rawClient('wrong').opened).rejects.toMatchObject({ status: 401 });
    await expect(rawClient(null).opened).rejects.toMatchObject({ status: 401 });
  });

  it('rejects another protocol version, in the Hello or in the envelope', async () => {
    await start();
    const a = rawClient();
    await a.opened;
    a.hello(TOKEN, 99);
    expect((await a.next('reject')).reject!.code).toBe(gradhub.ErrorCode.BAD_VERSION);
    expect((await a.closed).code).toBe(4000 + gradhub.ErrorCode.BAD_VERSION);

    const b = rawClient();
    await b.opened;
    b.sendRaw(gradhub.Envelope.encode({ protocolVersion: 1, hello: { protocolVersion: 1, token: TOKEN } }).finish()); // protocol 1: before Params parts
    expect((await b.next('reject')).reject!.code).toBe(gradhub.ErrorCode.BAD_VERSION);
    expect((await b.closed).code).toBe(4002);
  });

  it('rejects a Hello with the wrong token and a worker that insists on another model', async () => {
    await start();
    const a = rawClient();
    await a.opened;
    a.hello('not-the-token');
    expect((await a.next('reject')).reject!.code).toBe(gradhub.ErrorCode.BAD_TOKEN);
    const b = rawClient();
    await b.opened;
    b.send({ hello: { protocolVersion: gradhub.ProtocolVersion.CURRENT, token: TOKEN, modelSizes: [3072, 8, 10] } });
    expect((await b.next('reject')).reject!.code).toBe(gradhub.ErrorCode.MODEL_MISMATCH);
  });

  it('closes on a malformed frame, a text frame and an oversize frame', async () => {
    const c = await start();
    const a = rawClient();
    await a.join();
    a.sendRaw(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    expect((await a.next('error')).error!.code).toBe(gradhub.ErrorCode.MALFORMED_FRAME);
    expect((await a.closed).code).toBe(4003);

    const b = rawClient();
    await b.join();
    b.ws.send('hello');
    expect((await b.next('error')).error!.code).toBe(gradhub.ErrorCode.MALFORMED_FRAME);

    const d = rawClient();
    await d.join();
    d.sendRaw(new Uint8Array(4 * SPEC.paramCount + 200 * 1024));
    expect((await d.next('error')).error!.code).toBe(gradhub.ErrorCode.OVERSIZE_FRAME);
    expect((await d.closed).code).toBe(4004);

    // A Heartbeat padded with an unknown field past the 64 KiB limit of frames without tensors.
    const e = rawClient();
    await e.join();
    e.send({ heartbeat: { sentMs: 1 } });
    await e.next('heartbeat'); // answered, still alive
    const head = gradhub.Envelope.encode({ protocolVersion: gradhub.ProtocolVersion.CURRENT, heartbeat: {} }).finish();
    const pad = 70 * 1024;
    const big = new Uint8Array(head.length + 4 + pad);
    big.set(head);
    big.set([(15 << 3) | 2, 0x80 | (pad & 0x7f), 0x80 | ((pad >> 7) & 0x7f), pad >> 14], head.length);
    e.sendRaw(big);
    expect((await e.next('error')).error!.code).toBe(gradhub.ErrorCode.OVERSIZE_FRAME);
    expect(c.executor.workerCount()).toBe(0);
  });

  /** Two real workers and one raw client that receives a node of step 1; returns its Work. */
  async function withFake(over: Partial<ClusterOptions> = {}): Promise<{ c: Cluster; fake: RawClient; run: Promise<StepSums>; inp: StepInput; work: gradhub.IWork }> {
    const c = await start(over);
    const fake = rawClient();
    await fake.join();
    worker();
    worker();
    await c.executor.waitForWorkers(3);
    const inp = input(1);
    const run = runAndCheck(c, inp);
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

  it('a node reassigned after the next version began to stream out is computed on its own version', async () => {
    const c = await start();
    const fake = rawClient();
    await fake.join();
    worker();
    await c.executor.waitForWorkers(2);
    const inp = input(1);
    const next = paramsFor(SPEC, 1);
    const parts = streamParts(SPEC);
    expect(parts.length).toBe(2);
    let published = 0;
    const run = c.executor.run(inp, {
      onRootPart(i) {
        c.executor.publish!(1, next, i);
        published++;
      },
    });
    const work = (await fake.next('work')).work!;
    // The fake answers its node's last layer only (correct values), so that layer's root completes
    // and version 1 of it streams out; then it dies, and its node goes to the real worker.
    const last = parts[1];
    for (const n of work.nodes!) {
      const mine = reference(SPEC, inp.params, inp.pixels.subarray(n.sampleStart! * 3072), inp.labels.subarray(n.sampleStart!), n.sampleCount!, CHUNK, true);
      const g = mine.grad!.subarray(last.offset, last.offset + last.length);
      fake.send({
        result: {
          seq: work.seq, step: work.step, version: work.version, node: { lo: n.lo, hi: n.hi }, part: { offset: last.offset, length: last.length },
          grad: new Uint8Array(g.buffer, g.byteOffset, g.byteLength), lossSum: mine.lossSum, denomSum: mine.denomSum, correct: mine.correct,
        },
      });
    }
    let p: gradhub.IParams;
    do p = (await fake.next('params')).params!; while (p.version === 0); // version 0's parts came first
    expect(p).toMatchObject({ version: 1, part: { offset: last.offset, length: last.length } });
    expect(published).toBe(1);
    fake.close();
    const got = await run;
    const want = reference(SPEC, inp.params, inp.pixels, inp.labels, inp.batch, CHUNK, true);
    expect(got).toMatchObject({ lossSum: want.lossSum, denomSum: want.denomSum, correct: want.correct });
    expect(published).toBe(2);
    expect(c.executor.stats.reassigned).toBeGreaterThan(0);
  });

  it('a worker that rejoins holding the current parameters is not sent them again; a false claim is', async () => {
    const c = await start();
    const events: ClientEvent[] = [];
    worker({ backoffInitialMs: 20, backoffMaxMs: 100, onEvent: (e) => events.push(e) });
    await c.executor.waitForWorkers(1);
    await runAndCheck(c, input(1));
    const paramsSeen = (): number => events.filter((e) => e.type === 'params').length;
    expect(paramsSeen()).toBe(1);
    // The connection is lost (the coordinator closes it); the worker reconnects as a new worker.
    const first = c.membership.workers()[0];
    first.kick(gradhub.ErrorCode.INTERNAL, 'test: connection lost');
    for (const t0 = Date.now(); !c.membership.workers().some((w) => w.id !== first.id); ) {
      if (Date.now() - t0 > 5000) throw new Error('the worker did not rejoin');
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(c.membership.workers()[0].held).toMatchObject({ incarnation: c.membership.incarnation, version: 0 });
    // An evaluation on the same version: nothing to send but the Work.
    await runAndCheck(c, { ...input(1, BATCH, 'eval', 500), version: 0 });
    expect(c.executor.stats.assigned!.paramsBytes).toBe(0);
    expect(paramsSeen()).toBe(1);
    // The next version goes out as usual, and the bits hold.
    await runAndCheck(c, input(2));
    expect(paramsSeen()).toBe(2);

    // A raw client claiming parameters it was never sent (wrong checksums) gets them.
    const fake = rawClient();
    await fake.opened;
    const parts = streamParts(SPEC).map(({ offset, length }) => ({ offset, length }));
    fake.send({ hello: { protocolVersion: gradhub.ProtocolVersion.CURRENT, token: TOKEN, capabilities: { threads: 1 }, held: { incarnation: c.membership.incarnation, version: 1, parts, checksums: parts.map(() => new Uint8Array(8)) } } });
    await fake.next('welcome');
    await c.executor.waitForWorkers(2);
    const r = c.executor.run({ ...input(2, BATCH, 'eval', 900), version: 1, params: paramsFor(SPEC, 1) });
    expect((await fake.next('params')).params!.version).toBe(1);
    fake.close();
    await r;
  });

  describe('packed tensors (TensorEncoding.PLANES_DEFLATE)', () => {
    /** A raw client that offers packing, joined to `c`: its Welcome. */
    async function packingClient(): Promise<{ fake: RawClient; welcome: gradhub.IWelcome }> {
      const fake = rawClient();
      await fake.opened;
      fake.send({ hello: { protocolVersion: gradhub.ProtocolVersion.CURRENT, token: TOKEN, runtime: gradhub.Runtime.NODE, capabilities: { threads: 1, encodings: [gradhub.TensorEncoding.PLANES_DEFLATE] } } });
      return { fake, welcome: (await fake.next('welcome')).welcome! };
    }

    it('real workers that pack give the reference sums step after step, in fewer bytes both ways than raw', async () => {
      const bytes: Record<string, { in: number; out: number }> = {};
      for (const pack of ['off', 'on'] as const) {
        const sink = fakeStatus();
        const c = await start({ packTensors: pack, status: sink });
        const a = worker();
        const b = worker();
        await c.executor.waitForWorkers(2);
        for (let step = 1; step <= 4; step++) {
          // Each step's parameters move a little from the last (as SGD moves them): deltas pack.
          const params = Float32Array.from(paramsFor(SPEC, 1), (v, i) => v + step * 1e-5 * Math.sin(i));
          await runAndCheck(c, { ...input(step), version: step, params });
        }
        expect(c.executor.stats.kicked).toBe(0);
        bytes[pack] = { in: sink.counters.bytes_in, out: sink.counters.bytes_out };
        a.stop();
        b.stop();
        await Promise.all([a.done, b.done]);
      }
      // Gradients pack a little (their exponent bytes); parameters after the first version go as
      // XOR deltas, about half. Pixels (Work) are raw either way.
      expect(bytes.on.in).toBeLessThan(0.95 * bytes.off.in);
      expect(bytes.on.out).toBeLessThan(0.9 * bytes.off.out);
    });

    it('a worker offering packing gets it with packTensors on (always) and auto (while its link is slow), not with off', async () => {
      const cases = [['on', gradhub.TensorEncoding.PLANES_DEFLATE, 0], ['auto', gradhub.TensorEncoding.PLANES_DEFLATE, PACK_BELOW_BYTES_PER_S], ['off', gradhub.TensorEncoding.RAW, 0]] as const;
      for (const [pack, want, below] of cases) {
        await start({ packTensors: pack });
        const { fake, welcome } = await packingClient();
        expect(welcome.tensorEncoding ?? gradhub.TensorEncoding.RAW, pack).toBe(want);
        expect(welcome.packBelowBytesPerS ?? 0, pack).toBe(below);
        fake.close();
      }
    });

    it('a session that does not pack: a packed Result is MALFORMED_FRAME, counted, and the step is still exact', async () => {
      const sink = fakeStatus();
      const { fake, run, work } = await withFake({ status: sink, packTensors: 'on' });
      fake.send(resultFor(work, { encoding: gradhub.TensorEncoding.PLANES_DEFLATE }, new Uint8Array(100)));
      expect((await fake.next('error')).error!.code).toBe(gradhub.ErrorCode.MALFORMED_FRAME);
      await run;
      expect(sink.counters['rejected.MALFORMED_FRAME']).toBe(1);
    });

    it('a packing session whose packed Result is not a packed tensor of its part is kicked with BAD_GRADIENT_LENGTH; the step is still exact', async () => {
      const sink = fakeStatus();
      const c = await start({ status: sink, packTensors: 'on' });
      const { fake } = await packingClient();
      worker();
      worker();
      await c.executor.waitForWorkers(3);
      const run = runAndCheck(c, input(1));
      const work = (await fake.next('work')).work!;
      // A 64 MiB deflate bomb where a plane of paramCount bytes belongs, then garbage: both refused.
      const head = new Uint8Array(17);
      head[0] = 0b0001;
      new DataView(head.buffer).setUint32(1, 40, true);
      fake.send(resultFor(work, { encoding: gradhub.TensorEncoding.PLANES_DEFLATE }, Uint8Array.from([...head, ...new Uint8Array(40).fill(0xab)])));
      expect((await fake.next('error')).error!.code).toBe(gradhub.ErrorCode.BAD_GRADIENT_LENGTH);
      await run;
      expect(sink.counters['rejected.BAD_GRADIENT_LENGTH']).toBe(1);
      expect(c.executor.stats.kicked).toBe(0); // refused by the membership before the reducer saw it
    });
  });

  it('kicks a worker whose gradient has the wrong length and reassigns its nodes', async () => {
    const sink = fakeStatus();
    const { c, fake, run, work } = await withFake({ status: sink });
    fake.send(resultFor(work, {}, new Uint8Array(100)));
    expect((await fake.next('error')).error!.code).toBe(gradhub.ErrorCode.BAD_GRADIENT_LENGTH);
    expect((await fake.closed).code).toBe(4005);
    await run;
    expect(c.executor.stats.kicked).toBe(1);
    // The status sink saw the bytes, the rejection and the workers (the fake one gone).
    expect(sink.counters['rejected.BAD_GRADIENT_LENGTH']).toBe(1);
    expect(sink.counters.bytes_in).toBeGreaterThan(2 * 4 * SPEC.paramCount);
    expect(sink.counters.bytes_out).toBeGreaterThan(3 * 4 * SPEC.paramCount);
    expect(sink.gone).toEqual(['1']);
    const rows = [...sink.rows.values()].filter((r) => r.id !== '1');
    expect(rows).toHaveLength(2);
    expect(rows.reduce((s, r) => s + r.samplesDone, 0)).toBe(BATCH);
    expect(rows.every((r) => r.state === 'idle' && r.samplesPerS > 0)).toBe(true);
  });

  it('kicks a worker that answers for a node it was never given', async () => {
    const { fake, run, work } = await withFake();
    fake.send(resultFor(work, { node: { lo: 0, hi: 6 } }));
    expect((await fake.next('error')).error!.code).toBe(gradhub.ErrorCode.UNKNOWN_NODE);
    await run;
  });

  it('kicks a worker that answers for a future request or another parameter version', async () => {
    const { fake, run, work } = await withFake();
    fake.send(resultFor(work, { seq: (work.seq ?? 0) + 5 }));
    expect((await fake.next('error')).error!.code).toBe(gradhub.ErrorCode.FUTURE_STEP);
    await run;
    const { fake: f2, run: r2, work: w2 } = await (async () => {
      await h.cluster!.close();
      return withFake();
    })();
    f2.send(resultFor(w2, { version: 12 }));
    expect((await f2.next('error')).error!.code).toBe(gradhub.ErrorCode.WRONG_PARAM_VERSION);
    await r2;
  });

  it('recomputes a NaN gradient on another worker, without punishing the sender', async () => {
    const { c, fake, run, work } = await withFake();
    const nan = new Float32Array(SPEC.paramCount);
    nan[5] = Number.NaN;
    fake.send(resultFor(work, {}, new Uint8Array(nan.buffer)));
    await run;
    expect(c.executor.stats.recomputed).toBe(1);
    expect(c.executor.stats.nonFinite).toBe(1);
    expect(c.executor.stats.kicked).toBe(0);
    fake.send({ heartbeat: {} });
    await fake.next('heartbeat');
  });

  it('a lone worker answering non-finite again and again cannot end the run: it is dropped with NON_FINITE_GRADIENT', async () => {
    // One fake worker only: its NaN node goes back to it; one worker's answers never make a divergence.
    const sink = fakeStatus();
    const c = await start({ status: sink });
    const fake = rawClient();
    await fake.join();
    await c.executor.waitForWorkers(1);
    const inp = input(1);
    const p = runAndCheck(c, inp);
    p.catch(() => {});
    const nan = new Uint8Array(new Float32Array(SPEC.paramCount).fill(Number.POSITIVE_INFINITY).buffer);
    for (let i = 0; i < 3; i++) {
      const work = (await fake.next('work')).work!;
      expect(work.nodes![0]).toMatchObject({ lo: 0, hi: 6 });
      fake.send(resultFor(work, {}, nan));
    }
    expect((await fake.next('error')).error!.code).toBe(gradhub.ErrorCode.NON_FINITE_GRADIENT);
    expect(sink.counters.results_non_finite).toBe(3);
    expect(c.executor.stats.nonFiniteDrops).toBe(1);
    worker(); // an honest worker finishes the step
    await p;
  });

  it('ends the run with E_DIVERGED when another worker\'s recompute is non-finite too', async () => {
    const c = await start();
    const [a, b] = [rawClient(), rawClient()];
    await a.join();
    await b.join();
    await c.executor.waitForWorkers(2);
    const p = c.executor.run(input(1));
    p.catch(() => {});
    const nan = new Uint8Array(new Float32Array(SPEC.paramCount).fill(Number.NaN).buffer);
    const wa = (await a.next('work')).work!;
    await b.next('work');
    a.send(resultFor(wa, {}, nan));
    const again = (await b.next('work')).work!; // a's node, recomputed on b
    expect(again.nodes![0]).toMatchObject({ lo: wa.nodes![0].lo, hi: wa.nodes![0].hi });
    b.send(resultFor(again, {}, nan));
    await expect(p).rejects.toSatisfy((e: unknown) => isGradhubError(e, 'E_DIVERGED'));
  });

  it('drops a late result for a node that was given to someone else, and counts it', async () => {
    const sink = fakeStatus();
    const { c, fake, run, work } = await withFake({ speculateAfterMs: 200, status: sink });
    await run; // the fake's node was copied to an idle worker, which answered first
    expect(c.executor.stats.speculated).toBeGreaterThanOrEqual(1);
    fake.send(resultFor(work));
    fake.send({ heartbeat: {} });
    await fake.next('heartbeat'); // not kicked
    expect(c.executor.stats.dropped.stale).toBe(1);
    expect(c.executor.stats.kicked).toBe(0);
    expect(sink.counters.late_results).toBe(1);
  });

  it('takes the work of a worker that holds it past its deadline, and drops it at its last strike whatever its heartbeats', async () => {
    const sink = fakeStatus();
    const c = await start({ status: sink, stall: { unmeasuredMs: 2000, slackMs: 500, strikes: 2 } });
    const fake = rawClient();
    await fake.join();
    worker();
    await c.executor.waitForWorkers(2);
    const beat = setInterval(() => fake.send({ heartbeat: {} }), 50); // alive, but never answers
    try {
      await runAndCheck(c, input(1)); // the fake's nodes went to the other worker
      expect(c.executor.stats.stalls).toBeGreaterThanOrEqual(1);
      expect(sink.counters.stalls).toBe(c.executor.stats.stalls);
      expect(c.executor.workerCount()).toBe(2);
      // Never measured, the fake is on probation now: it holds no step up, and its silence past its
      // deadline is a stall too (checked while requests run).
      const errored = fake.next('error', 60_000);
      let dropped = false;
      void errored.then(() => (dropped = true), () => {});
      for (let step = 2; !dropped && step < 2000; step++) await runAndCheck(c, input(step, BATCH, 'train', step % 50));
      expect((await errored).error!.code).toBe(gradhub.ErrorCode.STALLED);
      expect(c.executor.stats.stallDrops).toBe(1);
      expect(c.executor.stats.stalls).toBeGreaterThanOrEqual(2);
      expect(sink.counters['rejected.STALLED']).toBe(1);
    } finally {
      clearInterval(beat);
    }
  });

  it('puts a worker that joins after others were measured on probation: a copy of a node, no share, so its silence holds no step up', async () => {
    const c = await start();
    worker();
    worker();
    await c.executor.waitForWorkers(2);
    await runAndCheck(c, input(1)); // both measured
    const fake = rawClient();
    await fake.join();
    await c.executor.waitForWorkers(3);
    await runAndCheck(c, input(2)); // finishes without the fake's answer
    const copy = (await fake.next('work')).work!;
    expect(copy.nodes).toHaveLength(1);
    expect(c.executor.stats.probation).toBe(1);
    expect(c.executor.stats.stalls).toBe(0);
    // Still waiting for its answer: no second copy.
    await runAndCheck(c, input(3));
    expect(c.executor.stats.probation).toBe(1);
  });

  it('drops a worker that stops answering pings', async () => {
    const c = await start({ heartbeatIntervalMs: 50, heartbeatTimeoutMs: 300 });
    const fake = new RawClient(c.url, TOKEN);
    h.track(fake);
    await fake.join();
    expect(c.executor.workerCount()).toBe(1);
    // Stop reading the socket: no pongs, no frames.
    (fake.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const t0 = Date.now();
    while (c.executor.workerCount() > 0 && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 50));
    expect(c.executor.workerCount()).toBe(0);
  });
});
