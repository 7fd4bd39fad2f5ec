import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { gradhub, packFloats, unpackFloats, type ByteCodec } from '@gradhub/proto';
import { nodeByteCodec } from '@gradhub/proto/node';
import { createEngine, createOracleBackend, createReplicaRunner, initParams, streamParts, modelSpec, xxh64, type Engine } from '@gradhub/core';
import { frameLimits, paramCountOf } from '../src/wire.js';
import { CIFAR10_DIR } from '../../../test/fixtures/index.js';
import { createWorkerClient, type ClientEvent, type ClientMemory, type SessionEnd, type WelcomeInfo, type WorkerClient, type WorkerLogger, type ResultHook, type OutgoingResult } from '../src/client.js';
import { pollUntil } from '../../../test/support/poll.js';

const SIZES = [3072, 8, 10];
const SPEC = modelSpec(SIZES);
const CHUNK = 4;
const BATCH = 16;
/** Stream parts in the order a worker sends them: layers last to first, each layer's row blocks in order. */
const SEND_ORDER = streamParts(SPEC).map((p, i) => ({ ...p, i })).sort((a, b) => b.layer - a.layer || a.rowBegin - b.rowBegin);
const LAST_PART = SEND_ORDER[SEND_ORDER.length - 1];
const RECORD = 3073;
const data = new Uint8Array(fs.readFileSync(path.join(CIFAR10_DIR, 'data_batch_1.bin')));

function samples(offset: number, n: number): { pixels: Uint8Array; labels: Uint8Array } {
  const pixels = new Uint8Array(n * 3072);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = data[(offset + i) * RECORD];
    pixels.set(data.subarray((offset + i) * RECORD + 1, (offset + i + 1) * RECORD), i * 3072);
  }
  return { pixels, labels };
}

const silent: WorkerLogger = { child: () => silent, debug() {}, info() {}, warn() {}, error() {} };

const frame = (env: gradhub.IEnvelope): Uint8Array => gradhub.Envelope.encode({ protocolVersion: gradhub.ProtocolVersion.CURRENT, ...env }).finish();

/** A client on a fake socket: what it sends is decoded into `sent`. */
function harness(over: { memory?: ClientMemory; slowdownMs?: number; beforeResult?: ResultHook; codec?: ByteCodec } = {}) {
  const sent: gradhub.Envelope[] = [];
  const closes: number[] = [];
  const events: ClientEvent[] = [];
  const memory = over.memory ?? { incarnation: null, version: -1 };
  const engines: Engine[] = [];
  const client: WorkerClient = createWorkerClient({
    socket: {
      send(parts, done) {
        const bytes = Buffer.concat(parts.map((p) => Buffer.from(p)));
        sent.push(gradhub.Envelope.decode(bytes));
        setImmediate(done);
      },
      close(code) {
        closes.push(code);
      },
    },
    token: 'tok',
    runtime: 'node',
    logger: silent,
    getEngine: (w: WelcomeInfo) => {
      const e = createEngine({ spec: modelSpec(w.sizes), backend: createOracleBackend(), maxBatch: w.maxBatch, chunk: w.chunk, normalize: w.normalize });
      engines.push(e);
      return e;
    },
    capabilities: { threads: 1, simd: false, backend: 'ts' },
    memory,
    slowdownMs: over.slowdownMs,
    beforeResult: over.beforeResult,
    codec: over.codec,
    onEvent: (e) => events.push(e),
  });
  /** Wait until `pred` holds on what was sent. */
  async function until(pred: () => boolean, ms = 3000): Promise<void> {
    await pollUntil(pred, ms, 'what the client sends', { everyMs: 10 });
  }
  const of = (kind: string): gradhub.Envelope[] => sent.filter((e) => e.body === kind);
  /** Results that finish a node: a TRAIN node's last Result is layer 0's last part; an EVAL node has one. */
  const finished = (): gradhub.IResult[] => of('result').map((e) => e.result!).filter((r) => (r.part?.offset ?? 0) === LAST_PART.offset);
  return { client, sent, closes, events, memory, engines, until, of, finished };
}

function welcome(over: Partial<gradhub.IWelcome> = {}): Uint8Array {
  return frame({
    welcome: {
      workerId: 4, runId: 'run', incarnation: 'inc-1', modelSizes: SIZES, chunk: CHUNK, normalize: false, maxBatch: BATCH,
      heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 5000, ...over,
    },
  });
}

function paramsOf(version: number): Float32Array {
  const p = new Float32Array(SPEC.paramCount);
  initParams(SPEC, 3, p);
  p[0] += version;
  return p;
}

function paramsFrame(version: number, p = paramsOf(version), checksum = xxh64(p)): Uint8Array {
  return frame({ params: { version, checksum, data: new Uint8Array(p.buffer) } });
}

/** One Params message per layer, as the coordinator sends them. */
function layerFrames(version: number, p = paramsOf(version)): Uint8Array[] {
  return streamParts(SPEC).map(({ offset, length }) => {
    const slice = p.subarray(offset, offset + length);
    return frame({ params: { version, checksum: xxh64(slice), part: { offset, length }, data: new Uint8Array(slice.buffer, slice.byteOffset, slice.byteLength) } });
  });
}

function work(seq: number, version: number, nodes: { lo: number; hi: number }[], mode = gradhub.Mode.TRAIN, offset = 0): Uint8Array {
  let start = nodes[0].lo * CHUNK;
  const total = nodes.reduce((s, n) => s + (n.hi - n.lo) * CHUNK, 0);
  const { pixels, labels } = samples(offset + start, total);
  const wire = nodes.map((n) => {
    const w = { lo: n.lo, hi: n.hi, sampleStart: start, sampleCount: (n.hi - n.lo) * CHUNK };
    start += w.sampleCount;
    return w;
  });
  return frame({ work: { seq, step: seq, version, mode, nodes: wire, pixels, labels, batch: BATCH } });
}

async function joined(h: ReturnType<typeof harness>): Promise<void> {
  h.client.start();
  h.client.receive(welcome());
  await h.until(() => h.events.some((e) => e.type === 'welcome'));
}

describe('worker client', () => {
  it('says Hello with its token and runtime', () => {
    const h = harness();
    h.client.start();
    const hello = h.of('hello')[0].hello!;
    expect(hello.token).toBe('tok');
    expect(hello.protocolVersion).toBe(gradhub.ProtocolVersion.CURRENT);
    expect(hello.runtime).toBe(gradhub.Runtime.NODE);
    expect(hello.capabilities!.backend).toBe('ts');
  });

  it('computes each node of a Work against the parameters it was sent, one Result per stream part, last layer first', async () => {
    const h = harness();
    await joined(h);
    h.client.receive(paramsFrame(2));
    h.client.receive(work(1, 2, [{ lo: 0, hi: 2 }, { lo: 2, hi: 3 }]));
    const L = SEND_ORDER.length;
    await h.until(() => h.of('result').length === 2 * L && h.events.filter((e) => e.type === 'result').length === 2);
    // Reference: one engine per node on the same samples and parameters.
    const ref = createEngine({ spec: SPEC, backend: createOracleBackend(), maxBatch: BATCH, chunk: CHUNK, normalize: false });
    ref.params.set(paramsOf(2));
    const results = h.of('result').map((e) => e.result!);
    for (const [k, lo, hi] of [[0, 0, 2], [1, 2, 3]] as const) {
      const { pixels, labels } = samples(lo * CHUNK, (hi - lo) * CHUNK);
      const s = ref.computeSums(pixels, labels, (hi - lo) * CHUNK, true);
      const mine = results.slice(k * L, (k + 1) * L);
      mine.forEach((r, j) => {
        const { offset, length } = SEND_ORDER[j];
        expect(r).toMatchObject({ seq: 1, step: 1, version: 2, node: { lo, hi }, part: { offset, length }, lossSum: s.lossSum, denomSum: s.denomSum, correct: s.correct });
        const want = ref.grads.subarray(offset, offset + length);
        expect(Buffer.from(r.grad!).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(true);
      });
      // The 'result' event: the node's samples, its sums and the engine's time on it.
      const ev = h.events.filter((e) => e.type === 'result')[k];
      expect(ev).toMatchObject({ type: 'result', seq: 1, step: 1, node: { lo, hi }, samples: (hi - lo) * CHUNK, train: true, sums: { lossSum: s.lossSum, denomSum: s.denomSum, correct: s.correct } });
      expect(ev.type === 'result' && ev.computeMs >= 0 && Number.isFinite(ev.computeMs)).toBe(true);
    }
    expect(h.memory).toMatchObject({ incarnation: 'inc-1', version: 2 });
  });

  describe('packed tensors', () => {
    const PACKED = gradhub.TensorEncoding.PLANES_DEFLATE;
    /** Part `i` of version `to` packed as the XOR with version `from`. */
    function deltaFrame(i: number, from: Float32Array, to: Float32Array, base: number, version: number): Uint8Array {
      const { offset, length } = streamParts(SPEC)[i];
      const cut = (p: Float32Array): Uint8Array => new Uint8Array(p.buffer, p.byteOffset + 4 * offset, 4 * length);
      const data = packFloats(cut(to), nodeByteCodec, cut(from))!;
      expect(data.byteLength).toBeLessThan(4 * length);
      return frame({ params: { version, checksum: xxh64(to.subarray(offset, offset + length)), part: { offset, length }, data, encoding: PACKED, delta: true, baseVersion: base } });
    }
    const moved = (p: Float32Array): Float32Array => p.map((v, i) => v - 1e-4 * Math.sin(i) * Math.abs(v));

    it('offers packing only with a codec, and with it packs its Results losslessly when the Welcome says so', async () => {
      const plain = harness();
      plain.client.start();
      expect(plain.of('hello')[0].hello!.capabilities!.encodings ?? []).toEqual([]);
      const h = harness({ codec: nodeByteCodec });
      h.client.start();
      expect(h.of('hello')[0].hello!.capabilities!.encodings).toEqual([PACKED]);
      h.client.receive(welcome({ tensorEncoding: PACKED }));
      await h.until(() => h.events.some((e) => e.type === 'welcome'));
      h.client.receive(paramsFrame(2));
      h.client.receive(work(1, 2, [{ lo: 0, hi: 2 }]));
      await h.until(() => h.events.some((e) => e.type === 'result'));
      const ref = createEngine({ spec: SPEC, backend: createOracleBackend(), maxBatch: BATCH, chunk: CHUNK, normalize: false });
      ref.params.set(paramsOf(2));
      const { pixels, labels } = samples(0, 2 * CHUNK);
      ref.computeSums(pixels, labels, 2 * CHUNK, true);
      const results = h.of('result').map((e) => e.result!);
      expect(results.some((r) => r.encoding === PACKED)).toBe(true);
      // 'auto' (pack while the upload measures slow, and before it was measured): this fake socket
      // takes every message at once, and this model's messages are too small to measure, so it packs.
      const auto = harness({ codec: nodeByteCodec });
      auto.client.start();
      auto.client.receive(welcome({ tensorEncoding: PACKED, packBelowBytesPerS: 1e6 }));
      auto.client.receive(paramsFrame(2));
      auto.client.receive(work(1, 2, [{ lo: 0, hi: 2 }]));
      await auto.until(() => auto.events.some((e) => e.type === 'result'));
      expect(auto.of('result').some((e) => e.result!.encoding === PACKED)).toBe(true);
      for (const r of results) {
        const { offset, length } = r.part as { offset: number; length: number };
        const got = new Uint8Array(4 * length);
        if (r.encoding === PACKED) unpackFloats([r.grad!], length, nodeByteCodec, got, false);
        else got.set(r.grad!);
        const want = ref.grads.subarray(offset, offset + length);
        expect(Buffer.from(got).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(true);
      }
    });

    it('turns delta Params back into the new version against the one it holds, part by part', async () => {
      const h = harness({ codec: nodeByteCodec });
      h.client.start();
      h.client.receive(welcome({ tensorEncoding: PACKED }));
      const v1 = paramsOf(1);
      const v2 = moved(v1);
      h.client.receive(paramsFrame(1, v1));
      await h.until(() => h.memory.version === 1);
      streamParts(SPEC).forEach((_, i) => h.client.receive(deltaFrame(i, v1, v2, 1, 2)));
      await h.until(() => h.memory.version === 2);
      expect(Buffer.from(h.engines[0].params.buffer).equals(Buffer.from(v2.buffer))).toBe(true);
    });

    it('refuses a delta against a version it does not hold (BAD_CHECKSUM), and packed Params in a session that does not pack', async () => {
      const h = harness({ codec: nodeByteCodec });
      h.client.start();
      h.client.receive(welcome({ tensorEncoding: PACKED }));
      const v1 = paramsOf(1);
      h.client.receive(paramsFrame(1, v1));
      await h.until(() => h.memory.version === 1);
      h.client.receive(deltaFrame(0, paramsOf(0), moved(v1), 0, 2)); // base 0: it holds 1
      expect(await h.client.ended).toMatchObject({ kind: 'error', code: gradhub.ErrorCode.BAD_CHECKSUM });
      const raw = harness({ codec: nodeByteCodec });
      await joined(raw); // the Welcome does not pack
      raw.client.receive(paramsFrame(1, v1));
      await raw.until(() => raw.memory.version === 1);
      raw.client.receive(deltaFrame(0, v1, moved(v1), 1, 2));
      expect(await raw.client.ended).toMatchObject({ kind: 'error', code: gradhub.ErrorCode.MALFORMED_FRAME });
    });
  });

  it('bounds frames from the coordinator by proto frameLimits of the Welcome\'s model and batch', async () => {
    const limit = frameLimits(paramCountOf(SIZES), BATCH).fromCoordinator;
    expect(paramCountOf(SIZES)).toBe(SPEC.paramCount);
    /** A Work frame of exactly `bytes` bytes (its pixels sized to fit). */
    const workOfBytes = (bytes: number): Uint8Array => {
      const of = (n: number): Uint8Array => frame({ work: { seq: 1, step: 1, version: 0, mode: gradhub.Mode.TRAIN, nodes: [{ lo: 0, hi: 1, sampleStart: 0, sampleCount: 1 }], pixels: new Uint8Array(n), labels: new Uint8Array(1), batch: BATCH } });
      let n = bytes;
      for (let f = of(n); ; f = of(n)) {
        if (f.length === bytes) return f;
        n -= f.length - bytes;
      }
    };
    // At the limit: decoded (and then refused for its content, not its size).
    const at = harness();
    await joined(at);
    const fits = workOfBytes(limit);
    expect(fits.length).toBe(limit);
    at.client.receive(fits);
    expect(await at.client.ended).toMatchObject({ kind: 'error', code: gradhub.ErrorCode.MALFORMED_FRAME });
    // One byte over: refused for its size before it is parsed.
    const over = harness();
    await joined(over);
    const big = workOfBytes(limit + 1);
    expect(big.length).toBe(limit + 1);
    over.client.receive(big);
    expect(await over.client.ended).toMatchObject({ kind: 'error', code: gradhub.ErrorCode.OVERSIZE_FRAME });
  });

  it('holds a version once every layer of it arrived, one Params per layer, and refuses overlapping parts', async () => {
    const h = harness();
    await joined(h);
    const frames = layerFrames(4);
    h.client.receive(work(1, 4, [{ lo: 0, hi: 1 }]));
    await h.until(() => h.of('paramsRequest').length === 1);
    h.client.receive(frames[1]);
    h.client.receive(frames[1]); // sent again: no harm
    await new Promise((r) => setTimeout(r, 30));
    expect(h.memory.version).toBe(-1); // a layer is not the version
    expect(h.of('result')).toHaveLength(0);
    h.client.receive(frames[0]);
    await h.until(() => h.finished().length === 1);
    expect(h.memory.version).toBe(4);
    expect(Buffer.from(h.engines[0].params.buffer, h.engines[0].params.byteOffset, h.engines[0].params.byteLength).equals(Buffer.from(paramsOf(4).buffer))).toBe(true);
    // The first layer of the next version: the client no longer holds version 4.
    h.client.receive(layerFrames(5)[0]);
    await h.until(() => h.memory.version === -1);
    // A part overlapping another of the same version is a coordinator fault.
    const p = paramsOf(5);
    const bad = p.subarray(1, 3);
    h.client.receive(frame({ params: { version: 5, checksum: xxh64(bad), part: { offset: 1, length: 2 }, data: new Uint8Array(bad.buffer, bad.byteOffset, bad.byteLength) } }));
    expect(await h.client.ended).toMatchObject({ kind: 'error', code: gradhub.ErrorCode.MALFORMED_FRAME });
  });

  it('takes Params streamed as header + fragments (copied once, into the engine) and checks them', async () => {
    const h = harness();
    await joined(h);
    const p = paramsOf(5);
    const whole = paramsFrame(5, p);
    const data = new Uint8Array(p.buffer);
    const header = whole.subarray(0, whole.length - data.byteLength); // protobufjs writes `data` (field 3) last
    const pieces = [data.subarray(0, 1001), data.subarray(1001, 50_000), data.subarray(50_000)];
    h.client.receive([header, ...pieces]);
    h.client.receive(work(1, 5, [{ lo: 0, hi: 1 }]));
    await h.until(() => h.finished().length === 1);
    expect(h.memory.version).toBe(5);
    expect(Buffer.from(h.engines[0].params.buffer, h.engines[0].params.byteOffset, h.engines[0].params.byteLength).equals(Buffer.from(data))).toBe(true);
    // A bad checksum in the streamed form is refused like the whole one.
    const bad = harness();
    await joined(bad);
    const badHeader = paramsFrame(1, p, new Uint8Array(8)).subarray(0, header.length);
    bad.client.receive([badHeader, ...pieces]);
    await bad.until(() => bad.of('error').length === 1);
    expect(bad.of('error')[0].error!.code).toBe(gradhub.ErrorCode.BAD_CHECKSUM);
  });

  it('answers EVAL work with sums only', async () => {
    const h = harness();
    await joined(h);
    h.client.receive(paramsFrame(0));
    h.client.receive(work(1, 0, [{ lo: 0, hi: 4 }], gradhub.Mode.EVAL));
    await h.until(() => h.of('result').length === 1 && h.events.some((e) => e.type === 'result'));
    const r = h.of('result')[0].result!;
    expect(r.grad!.length).toBe(0);
    expect(r.part?.length ?? 0).toBe(0);
    expect(r.denomSum).toBe(16);
    expect(h.events.find((e) => e.type === 'result')).toMatchObject({ samples: 16, train: false, sums: { denomSum: 16, lossSum: r.lossSum, correct: r.correct } });
  });

  it('lets the test hook change each Result before it is sent, or drop it (the adversary harness)', async () => {
    const seen: OutgoingResult[] = [];
    const h = harness({
      beforeResult: (r) => {
        seen.push({ ...r, grad: r.grad.slice() }); // a view of the engine's buffer: the next node overwrites it
        if (r.node.lo === 2) return null; // the second node: nothing sent
        return { ...r, computeMs: 1, correct: r.samples, grad: r.grad.map((g) => g * 2) };
      },
    });
    await joined(h);
    h.client.receive(paramsFrame(2));
    h.client.receive(work(1, 2, [{ lo: 0, hi: 2 }, { lo: 2, hi: 3 }]));
    const L = SEND_ORDER.length;
    await h.until(() => h.events.filter((e) => e.type === 'result').length === 2);
    const results = h.of('result').map((e) => e.result!);
    expect(results).toHaveLength(L); // the first node's parts only
    expect(seen).toHaveLength(2 * L);
    results.forEach((r, j) => {
      const orig = seen[j];
      expect(r).toMatchObject({ node: { lo: 0, hi: 2 }, computeMs: 1, correct: 8, lossSum: orig.lossSum, part: orig.part });
      const got = new Float32Array(new Uint8Array(r.grad!).buffer);
      expect(got.length).toBe(orig.grad.length);
      expect(got[0]).toBe(Math.fround(orig.grad[0] * 2));
    });
  });

  it('asks for parameters it lacks and runs the work once they arrive', async () => {
    const h = harness();
    await joined(h);
    h.client.receive(work(1, 5, [{ lo: 0, hi: 1 }]));
    await h.until(() => h.of('paramsRequest').length === 1);
    expect(h.of('paramsRequest')[0].paramsRequest!.version).toBe(5);
    expect(h.of('result')).toHaveLength(0);
    h.client.receive(paramsFrame(5));
    await h.until(() => h.finished().length === 1);
    expect(h.finished()[0].version).toBe(5);
  });

  it('ignores older parameters from the same incarnation, takes them from a new one', async () => {
    const h = harness();
    await joined(h);
    h.client.receive(paramsFrame(7));
    h.client.receive(paramsFrame(3));
    h.client.receive(work(1, 7, [{ lo: 0, hi: 1 }]));
    await h.until(() => h.finished().length === 1);
    expect(h.memory.version).toBe(7);
    expect(h.finished()[0].version).toBe(7);

    // The coordinator restarted from a checkpoint: a new incarnation, an older version.
    const h2 = harness({ memory: { incarnation: 'inc-0', version: 9 } });
    await joined(h2);
    h2.client.receive(paramsFrame(3));
    await h2.until(() => h2.memory.version === 3);
    expect(h2.memory.incarnation).toBe('inc-1');
  });

  it('refuses parameters that do not match their checksum', async () => {
    const h = harness();
    await joined(h);
    h.client.receive(paramsFrame(1, paramsOf(1), new Uint8Array(8)));
    const end = await h.client.ended;
    expect(end).toMatchObject({ kind: 'error', code: gradhub.ErrorCode.BAD_CHECKSUM, fromCoordinator: false });
    expect(h.of('error')[0].error!.code).toBe(gradhub.ErrorCode.BAD_CHECKSUM);
    expect(h.closes).toEqual([4013]);
    expect(h.memory.version).toBe(-1);
  });

  it('skips the rest of a request the coordinator has moved past', async () => {
    const h = harness({ slowdownMs: 30 });
    await joined(h);
    h.client.receive(paramsFrame(1));
    h.client.receive(work(1, 1, [{ lo: 0, hi: 1 }, { lo: 1, hi: 2 }, { lo: 2, hi: 3 }]));
    h.client.receive(work(2, 1, [{ lo: 3, hi: 4 }]));
    await h.until(() => h.finished().some((r) => r.seq === 2));
    expect(h.finished().map((r) => r.seq)).toEqual([2]);
  });

  it('ends the session on Reject, Bye, a coordinator Error, a malformed frame and silence', async () => {
    const a = harness();
    a.client.start();
    a.client.receive(frame({ reject: { code: gradhub.ErrorCode.BAD_VERSION, message: 'old' } }));
    expect(await a.client.ended).toMatchObject({ kind: 'rejected', codeName: 'BAD_VERSION' });

    const b = harness();
    await joined(b);
    b.client.receive(frame({ bye: { reason: gradhub.ByeReason.TRAINING_DONE } }));
    expect(await b.client.ended).toMatchObject({ kind: 'bye', reason: 'done' });

    const c = harness();
    await joined(c);
    c.client.receive(frame({ error: { code: gradhub.ErrorCode.BAD_GRADIENT_LENGTH, message: 'x' } }));
    expect(await c.client.ended).toMatchObject({ kind: 'error', fromCoordinator: true });

    const d = harness();
    await joined(d);
    d.client.receive(new Uint8Array([0xff, 0xff]));
    expect(await d.client.ended).toMatchObject({ kind: 'error', codeName: 'MALFORMED_FRAME', fromCoordinator: false });
    expect(d.closes).toEqual([4003]);

    const e = harness();
    e.client.start();
    e.client.receive(frame({ result: {} }));
    expect(await e.client.ended).toMatchObject({ kind: 'error', codeName: 'UNEXPECTED_MESSAGE' });

    const f = harness();
    f.client.start();
    f.client.receive(welcome({ heartbeatIntervalMs: 20, heartbeatTimeoutMs: 60 }));
    const end: SessionEnd = await f.client.ended;
    expect(end.kind).toBe('timeout');
    expect(f.of('heartbeat').length).toBeGreaterThan(0);
  });

  it('refuses Params before Welcome, and parameters of another model', async () => {
    const h = harness();
    h.client.start();
    h.client.receive(frame({ params: { version: 1, data: new Uint8Array(12) } }));
    expect(await h.client.ended).toMatchObject({ kind: 'error', codeName: 'UNEXPECTED_MESSAGE' });
    const big = harness();
    big.client.start();
    big.client.receive(paramsFrame(1)); // tensor frames are not expected (nor sized) before Welcome
    expect(await big.client.ended).toMatchObject({ kind: 'error', codeName: 'OVERSIZE_FRAME' });
    const g = harness();
    g.client.start();
    g.client.receive(welcome());
    await g.until(() => g.engines.length === 1);
    g.client.receive(frame({ params: { version: 1, data: new Uint8Array(12), checksum: new Uint8Array(8) } }));
    expect(await g.client.ended).toMatchObject({ kind: 'error', codeName: 'MODEL_MISMATCH' });
  });

  it('names the parameters it holds in its next Hello (parts and checksums), and nothing once a newer version is arriving', async () => {
    const h = harness();
    await joined(h);
    expect(h.of('hello')[0].hello!.held).toBeNull(); // nothing yet
    for (const f of layerFrames(3)) h.client.receive(f);
    await h.until(() => h.memory.version === 3);
    const again = harness({ memory: h.memory });
    again.client.start();
    const held = again.of('hello')[0].hello!.held!;
    expect(held).toMatchObject({ incarnation: 'inc-1', version: 3 });
    const p = paramsOf(3);
    expect(held.parts!.map((x) => ({ offset: x.offset, length: x.length }))).toEqual(streamParts(SPEC).map(({ offset, length }) => ({ offset, length })));
    held.checksums!.forEach((c, i) => expect([...c]).toEqual([...xxh64(p.subarray(held.parts![i].offset!, held.parts![i].offset! + held.parts![i].length!))]));
    // A part of a newer version overwrites the engine: nothing left to announce.
    h.client.receive(layerFrames(4)[0]);
    await h.until(() => h.memory.version === -1);
    const third = harness({ memory: h.memory });
    third.client.start();
    expect(third.of('hello')[0].hello!.held).toBeNull();
  });

  it('refuses a Params part outside the model, empty, or whose bytes do not match its length', async () => {
    const bad: gradhub.IParams[] = [
      { version: 1, part: { offset: SPEC.paramCount - 2, length: 3 }, data: new Uint8Array(12) }, // past the end
      { version: 1, part: { offset: 0, length: 0 }, data: new Uint8Array(0) }, // empty
      { version: 1, part: { offset: 0, length: 4 }, data: new Uint8Array(12) }, // 3 floats for 4
    ];
    for (const params of bad) {
      const h = harness();
      await joined(h);
      h.client.receive(frame({ params: { checksum: new Uint8Array(8), ...params } }));
      expect(await h.client.ended).toMatchObject({ kind: 'error', codeName: 'MODEL_MISMATCH' });
      expect(h.memory.version).toBe(-1);
    }
  });
});

describe('worker client as an auditor (Keep, audit Work)', () => {
  const PARTS = streamParts(SPEC).map(({ offset, length }) => ({ offset, length }));
  /** Audit Work: one TRAIN (or EVAL) node [lo, hi) of the batch, against `version`; hash `parts`. */
  function auditWork(seq: number, version: number, lo: number, hi: number, mode = gradhub.Mode.TRAIN, parts = mode === gradhub.Mode.EVAL ? [] : PARTS): Uint8Array {
    const { pixels, labels } = samples(lo * CHUNK, (hi - lo) * CHUNK);
    return frame({ work: { seq, step: 1, version, mode, nodes: [{ lo, hi, sampleStart: lo * CHUNK, sampleCount: (hi - lo) * CHUNK }], pixels, labels, batch: BATCH, audit: true, auditParts: parts } });
  }
  /** What an honest engine holding `version` computes for node [lo, hi): its sums and the xxh64 of each part of its gradient. */
  function expected(version: number, lo: number, hi: number, train = true) {
    const e = createEngine({ spec: SPEC, backend: createOracleBackend(), maxBatch: BATCH, chunk: CHUNK, normalize: false });
    e.params.set(paramsOf(version));
    const { pixels, labels } = samples(lo * CHUNK, (hi - lo) * CHUNK);
    const s = e.computeSums(pixels, labels, (hi - lo) * CHUNK, train);
    return { lossSum: s.lossSum, denomSum: s.denomSum, correct: s.correct, digests: train ? PARTS.map((p) => Buffer.from(xxh64(e.grads.subarray(p.offset, p.offset + p.length)))) : [] };
  }
  const audits = (h: ReturnType<typeof harness>) => h.of('auditResult').map((e) => e.auditResult!);
  const asPlain = (r: gradhub.IAuditResult) => ({ lossSum: r.lossSum, denomSum: r.denomSum, correct: r.correct, digests: (r.digests ?? []).map((d) => Buffer.from(d)) });

  it('offers audits in Hello', () => {
    const h = harness();
    h.client.start();
    expect(h.of('hello')[0].hello!.capabilities!.audits).toBe(true);
  });

  it('recomputes a node against the version it holds, and against the one it kept before the next arrived; the engine ends holding the newest', async () => {
    const h = harness();
    await joined(h);
    for (const f of layerFrames(2)) h.client.receive(f);
    h.client.receive(auditWork(7, 2, 1, 3));
    await h.until(() => audits(h).length === 1);
    expect(audits(h)[0]).toMatchObject({ seq: 7, node: { lo: 1, hi: 3 }, held: true });
    expect(asPlain(audits(h)[0])).toEqual(expected(2, 1, 3));
    // Keep v2, then v3 arrives part by part: an audit of v2 is computed on the kept copy, one of v3 on the engine's.
    h.client.receive(frame({ keep: { version: 2 } }));
    for (const f of layerFrames(3)) h.client.receive(f);
    h.client.receive(auditWork(8, 2, 0, 1));
    h.client.receive(auditWork(9, 3, 0, 1));
    h.client.receive(auditWork(10, 2, 0, 2, gradhub.Mode.EVAL));
    await h.until(() => audits(h).length === 4);
    const [, a8, a9, a10] = audits(h);
    expect(asPlain(a8)).toEqual(expected(2, 0, 1));
    expect(asPlain(a9)).toEqual(expected(3, 0, 1));
    expect(asPlain(a10)).toEqual(expected(2, 0, 2, false));
    expect(a10.digests ?? []).toEqual([]);
    expect(Buffer.from(h.engines[0].params.buffer, h.engines[0].params.byteOffset, h.engines[0].params.byteLength).equals(Buffer.from(paramsOf(3).buffer))).toBe(true);
    // Audits neither are Results nor count as the request's: a Work of request 1 after audit 10 still runs.
    h.client.receive(work(1, 3, [{ lo: 0, hi: 1 }]));
    await h.until(() => h.finished().length === 1);
    expect(h.of('result').every((e) => e.result!.seq === 1)).toBe(true);
  });

  it('answers held: false for a version neither held nor kept, and keeps nothing when told to keep one it does not hold', async () => {
    const h = harness();
    await joined(h);
    h.client.receive(paramsFrame(2));
    h.client.receive(frame({ keep: { version: 1 } }));
    h.client.receive(paramsFrame(3));
    h.client.receive(auditWork(1, 2, 0, 1));
    h.client.receive(auditWork(2, 1, 0, 1));
    await h.until(() => audits(h).length === 2);
    expect(audits(h).map((a) => [a.seq, a.held ?? false])).toEqual([[1, false], [2, false]]);
    expect(h.of('paramsRequest')).toEqual([]);
  });

  it('refuses audit Work with several nodes, parts outside the model, or parts to hash in EVAL (MALFORMED_FRAME)', async () => {
    const { pixels, labels } = samples(0, 2 * CHUNK);
    const bad: gradhub.IWork[] = [
      { nodes: [{ lo: 0, hi: 1, sampleStart: 0, sampleCount: CHUNK }, { lo: 1, hi: 2, sampleStart: CHUNK, sampleCount: CHUNK }], mode: gradhub.Mode.TRAIN, auditParts: PARTS },
      { nodes: [{ lo: 0, hi: 2, sampleStart: 0, sampleCount: 2 * CHUNK }], mode: gradhub.Mode.TRAIN, auditParts: [{ offset: SPEC.paramCount - 1, length: 2 }] },
      { nodes: [{ lo: 0, hi: 2, sampleStart: 0, sampleCount: 2 * CHUNK }], mode: gradhub.Mode.EVAL, auditParts: PARTS },
      { nodes: [{ lo: 0, hi: 2, sampleStart: 0, sampleCount: 2 * CHUNK }], mode: gradhub.Mode.TRAIN, auditParts: [] },
    ];
    for (const w of bad) {
      const h = harness();
      await joined(h);
      h.client.receive(paramsFrame(2));
      h.client.receive(frame({ work: { seq: 1, step: 1, version: 2, pixels, labels, batch: BATCH, audit: true, ...w } }));
      expect(await h.client.ended, JSON.stringify(w.auditParts)).toMatchObject({ kind: 'error', code: gradhub.ErrorCode.MALFORMED_FRAME });
    }
  });
});

describe('worker client in rounds mode', () => {
  const H = 2;
  const SGD = { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, maximize: false };
  /** ROUND work: one node of replicas [lo, hi), H inner batches of `sizes` each. */
  function roundWork(seq: number, version: number, lo: number, hi: number, sizes: number[], over: Partial<gradhub.IRoundWork> = {}): { frame: Uint8Array; pixels: Uint8Array; labels: Uint8Array } {
    const total = sizes.reduce((a, b) => a + b, 0);
    const { pixels, labels } = samples(0, total);
    return {
      pixels, labels,
      frame: frame({
        work: {
          seq, step: seq, version, mode: gradhub.Mode.ROUND, nodes: [{ lo, hi, sampleStart: 0, sampleCount: total }], pixels, labels, batch: total,
          round: { localSteps: H, ...SGD, innerBatches: sizes, ...over },
        },
      }),
    };
  }

  it("runs a node's replicas in turn (core's replica runner) and sends its pseudo-gradient sum by stream part", async () => {
    const h = harness();
    h.client.start();
    h.client.receive(welcome({ maxWorkSamples: 4 * BATCH }));
    await h.until(() => h.events.some((e) => e.type === 'welcome'));
    h.client.receive(paramsFrame(2));
    const sizes = [BATCH, 9, BATCH, BATCH];
    const w = roundWork(1, 2, 0, 2, sizes);
    h.client.receive(w.frame);
    await h.until(() => h.events.some((e) => e.type === 'result'));
    // The same module by hand, on an engine holding the same parameters.
    const e = createEngine({ spec: SPEC, backend: createOracleBackend(), maxBatch: BATCH, chunk: CHUNK, normalize: false });
    e.params.set(paramsOf(2));
    const runner = await createReplicaRunner(e);
    const sums = (await runner.run({ lo: 0, hi: 2 }, { localSteps: H, sgd: SGD, pixels: w.pixels, labels: w.labels, innerBatches: sizes }))!;
    const results = h.of('result').map((x) => x.result!);
    expect(results).toHaveLength(streamParts(SPEC).length);
    for (const r of results) {
      expect(r).toMatchObject({ seq: 1, version: 2, node: { lo: 0, hi: 2 }, lossSum: sums.lossSum, denomSum: sums.denomSum, correct: sums.correct });
      const got = new Float32Array(new Uint8Array(r.grad!).buffer);
      expect(Buffer.from(got.buffer).equals(Buffer.from(runner.delta.slice(r.part!.offset!, r.part!.offset! + r.part!.length!).buffer))).toBe(true);
    }
    // The engine still holds the version it was sent (theta), for the next request.
    expect(Buffer.from(h.engines[0].params.buffer, h.engines[0].params.byteOffset, h.engines[0].params.byteLength).equals(Buffer.from(paramsOf(2).buffer))).toBe(true);
  });

  it('refuses ROUND work whose inner batches do not fit its nodes, or without its inner settings', async () => {
    for (const bad of [{ innerBatches: [BATCH, BATCH, BATCH] }, { innerBatches: [BATCH, BATCH + 1, BATCH, BATCH - 1] }, { localSteps: 0 }, { lr: Number.NaN }]) {
      const h = harness();
      h.client.start();
      h.client.receive(welcome({ maxWorkSamples: 4 * BATCH }));
      await h.until(() => h.events.some((e) => e.type === 'welcome'));
      h.client.receive(paramsFrame(2));
      h.client.receive(roundWork(1, 2, 0, 2, [BATCH, BATCH, BATCH, BATCH], bad).frame);
      expect(await h.client.ended, JSON.stringify(bad)).toMatchObject({ kind: 'error', code: gradhub.ErrorCode.MALFORMED_FRAME });
    }
  });
});
