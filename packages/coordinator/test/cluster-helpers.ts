// Shared fixtures of the coordinator's cluster tests: real CIFAR-10 pixels, a reference engine,
// a raw protocol client for playing bad workers.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pino, type Logger } from 'pino';
import WebSocket from 'ws';
import { gradhub } from '@gradhub/proto';
import { createEngine, createOracleBackend, initParams, modelSpec, type ModelSpec } from '@gradhub/core';
import { CIFAR10_DIR } from '../../../test/fixtures/index.js';
import { startNodeWorker, type NodeWorkerHandle, type NodeWorkerOptions } from '@gradhub/worker';
import { startCluster, type Cluster, type ClusterOptions } from '../src/cluster.js';

export const DATA_FILE = path.join(CIFAR10_DIR, 'data_batch_1.bin');
const RECORD = 3073;

let records: Uint8Array | null = null;

/** Samples [offset, offset + n) of the sample file: pixels (n, 3072) and labels (n). */
export function cifarBatch(offset: number, n: number): { pixels: Uint8Array; labels: Uint8Array } {
  records ??= new Uint8Array(fs.readFileSync(DATA_FILE));
  if ((offset + n) * RECORD > records.length) throw new Error(`cifarBatch(${offset}, ${n}): the fixture has ${records.length / RECORD} images`);
  const pixels = new Uint8Array(n * 3072);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const r = (offset + i) * RECORD;
    labels[i] = records[r];
    pixels.set(records.subarray(r + 1, r + RECORD), i * 3072);
  }
  return { pixels, labels };
}

export function testLogger(): Logger {
  return pino({ level: process.env.GRADHUB_TEST_LOG ?? 'silent' });
}

/** Parameters for a step: the init, nudged deterministically by `version`. */
export function paramsFor(spec: ModelSpec, version: number): Float32Array {
  const p = new Float32Array(spec.paramCount);
  initParams(spec, 7, p);
  for (let i = 0; i < p.length; i += 97) p[i] = Math.fround(p[i] + version * 1e-3);
  return p;
}

/** What one engine computes on the whole batch (the in-process executor's answer). */
export function reference(spec: ModelSpec, params: Float32Array, pixels: Uint8Array, labels: Uint8Array, batch: number, chunk: number, train: boolean) {
  const engine = createEngine({ spec, backend: createOracleBackend(), maxBatch: batch, chunk, normalize: false });
  engine.params.set(params);
  const sums = engine.computeSums(pixels, labels, batch, train);
  return { ...sums, grad: train ? new Float32Array(engine.grads) : null };
}

/** Bytes of a float array, for bitwise comparison. */
export function bits(a: Float32Array | null): Buffer | null {
  return a ? Buffer.from(a.buffer, a.byteOffset, a.byteLength) : null;
}

export const SIZES = [3072, 16, 10];
export const SPEC = modelSpec(SIZES);

/** A hand-driven protocol client: plays good or bad workers. */
export class RawClient {
  readonly ws: WebSocket;
  readonly frames: gradhub.Envelope[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;
  private waiters: { kind: string; resolve: (e: gradhub.Envelope) => void }[] = [];
  private seen = 0;

  constructor(url: string, token: string | null) {
    this.ws = new WebSocket(url, { headers: token === null ? {} : { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.ws.on('message', (data: Buffer) => {
      const env = gradhub.Envelope.decode(data);
      this.frames.push(env);
      const i = this.waiters.findIndex((w) => w.kind === env.body);
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(env);
    });
  }

  send(env: gradhub.IEnvelope): void {
    this.ws.send(gradhub.Envelope.encode({ protocolVersion: gradhub.ProtocolVersion.CURRENT, ...env }).finish());
  }

  sendRaw(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }

  hello(token = 'secret', protocolVersion: number = gradhub.ProtocolVersion.CURRENT): void {
    this.send({ hello: { protocolVersion, token, runtime: gradhub.Runtime.NODE, capabilities: { threads: 1 } } });
  }

  /** The next frame of `kind` not yet consumed (frames already received count). */
  next(kind: string, timeoutMs = 5000): Promise<gradhub.Envelope> {
    for (let i = this.seen; i < this.frames.length; i++) {
      if (this.frames[i].body === kind) {
        const env = this.frames[i];
        this.frames.splice(i, 1);
        return Promise.resolve(env);
      }
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${kind} frame within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        kind,
        resolve: (e) => {
          clearTimeout(t);
          const i = this.frames.indexOf(e);
          if (i >= 0) this.frames.splice(i, 1);
          resolve(e);
        },
      });
    });
  }

  async join(): Promise<gradhub.IWelcome> {
    await this.opened;
    this.hello();
    return (await this.next('welcome')).welcome!;
  }

  close(): void {
    this.ws.terminate();
  }
}

/**
 * A loopback cluster for a test file: `start` a coordinator (the file's defaults, then `over`),
 * in-process Node `worker`s and hand-driven `rawClient`s on it; `cleanup` (afterEach) closes them all.
 */
export class LoopbackHarness {
  cluster: Cluster | null = null;
  private readonly workers: NodeWorkerHandle[] = [];
  private readonly raws: RawClient[] = [];

  constructor(private readonly defaults: ClusterOptions, private readonly token: string) {}

  async start(over: Partial<ClusterOptions> = {}): Promise<Cluster> {
    this.cluster = await startCluster({ ...this.defaults, ...over });
    return this.cluster;
  }

  worker(over: Partial<NodeWorkerOptions> = {}): NodeWorkerHandle {
    const w = startNodeWorker({ url: this.cluster!.url, token: this.token, logger: this.defaults.logger, backend: 'ts', graceMs: 3000, ...over });
    this.workers.push(w);
    w.done.catch(() => {});
    return w;
  }

  rawClient(token: string | null = this.token): RawClient {
    return this.track(new RawClient(this.cluster!.url, token));
  }

  /** Close `r` at cleanup too (a raw client made another way, e.g. on the Unix socket). */
  track(r: RawClient): RawClient {
    this.raws.push(r);
    return r;
  }

  async cleanup(): Promise<void> {
    for (const r of this.raws.splice(0)) r.close();
    await this.cluster?.close();
    this.cluster = null;
    await Promise.allSettled(this.workers.splice(0).map((w) => {
      w.stop();
      return w.done;
    }));
  }
}
