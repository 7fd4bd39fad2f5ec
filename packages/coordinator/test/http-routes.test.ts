/**
 * The coordinator's HTTP routes on a real node:http server, fed by a real (short) training run:
 * /api/status, the /api/events stream and its order, /metrics as Prometheus text matching the run,
 * the dashboard page and its assets, the admin token, limits, and what the handler leaves alone.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOracleBackend, initParams, modelSpec } from '@gradhub/core';
import { gradhub } from '@gradhub/proto';
import { loadCifar10 } from '../src/dataset.js';
import { createInProcessExecutor } from '../src/in-process-executor.js';
import { createHttpRoutes, type HttpRoutes, type HttpRoutesOptions } from '../src/http-routes.js';
import { bitSettings, type TrainSettings } from '../src/settings.js';
import { RunStatus, type StatusSnapshot } from '../src/status.js';
import { nullMetrics } from '../src/metrics.js';
import { runTraining, totalSteps, type Samples } from '../src/trainer.js';
import type { Executor } from '../src/executor.js';
import { CIFAR10_DIR as SAMPLE } from '../../../test/fixtures/index.js';
import { startCluster } from '../src/cluster.js';
import { RawClient } from './cluster-helpers.js';
import { parsePrometheusText } from '../../../test/support/prometheus.js';

const STEPS = 6;
const BATCH = 20;
const logger = pino({ level: 'silent' });

const settings: TrainSettings = {
  sizes: [3072, 8, 10], batch: BATCH, chunk: 4, seed: 3, shuffle: true, normalize: false,
  lr: 0.01, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, epochs: 1, steps: STEPS,
};

// ---- a tiny real server around the handler ----

interface Served {
  url: string;
  routes: HttpRoutes;
  /** What the handler returned, request by request. */
  handled: { path: string; handled: boolean }[];
  close(): Promise<void>;
}

async function serve(opts: HttpRoutesOptions): Promise<Served> {
  const routes = createHttpRoutes(opts);
  const handled: Served['handled'] = [];
  const server = http.createServer((req, res) => {
    const h = routes(req, res);
    handled.push({ path: req.url ?? '', handled: h });
    if (!h) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found (server)\n');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    routes,
    handled,
    close: async () => {
      routes.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(url: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

// ---- Server-Sent Events client (the wire format, parsed by hand) ----

interface SseEvent {
  event: string;
  data: string;
}

interface SseClient {
  status: number;
  events: SseEvent[];
  /** Resolves when an event satisfying `pred` has arrived (or rejects after `ms`). */
  until(pred: (e: SseEvent) => boolean, ms?: number): Promise<void>;
  ended: Promise<void>;
  close(): void;
}

function openEvents(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
      const events: SseEvent[] = [];
      const waiters: { pred: (e: SseEvent) => boolean; done: () => void }[] = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') event = value;
            else if (field === 'data') data.push(value);
          }
          if (data.length === 0) continue; // retry: or comments only
          const e = { event, data: data.join('\n') };
          events.push(e);
          for (const w of [...waiters]) {
            if (w.pred(e)) {
              waiters.splice(waiters.indexOf(w), 1);
              w.done();
            }
          }
        }
      });
      const ended = new Promise<void>((r) => res.on('close', () => r()));
      resolve({
        status: res.statusCode ?? 0,
        events,
        ended,
        until(pred, ms = 20_000) {
          if (events.some(pred)) return Promise.resolve();
          return new Promise<void>((done, fail) => {
            const t = setTimeout(() => fail(new Error(`no such event in ${ms} ms; got ${events.map((e) => e.event).join(',')}`)), ms);
            waiters.push({ pred, done: () => { clearTimeout(t); done(); } });
          });
        },
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}

// ---- /metrics through the tests' one Prometheus parser (test/support/prometheus.ts), by sample name ----

interface Sample {
  labels: Record<string, string>;
  value: number;
}

function parsePrometheus(text: string): { types: Map<string, string>; samples: Map<string, Sample[]> } {
  const types = new Map<string, string>();
  const samples = new Map<string, Sample[]>();
  for (const [family, f] of parsePrometheusText(text)) {
    if (f.type === 'untyped') throw new Error(`${family} has samples but no # TYPE line`);
    types.set(family, f.type);
    for (const x of f.samples) samples.set(x.name, [...(samples.get(x.name) ?? []), { labels: { ...x.labels }, value: x.value }]);
  }
  return { types, samples };
}

// ---- the run ----

let status: RunStatus;
let served: Served;
let early: SseClient; // opened before the first step
let finalSnapshot: StatusSnapshot;
let samplesTrained = 0;
/** Bytes of the Hello the rejected worker sent (the cluster counts them in gradhub_bytes_total). */
let helloBytes = 0;

/** Two workers the coordinator rejects: a Hello with the wrong token, then a text frame. Returns the Hello's size. */
async function rejectTwoWorkers(sink: RunStatus): Promise<number> {
  const cluster = await startCluster({
    host: '127.0.0.1', port: 0, token: 'the-token', sizes: settings.sizes, chunk: settings.chunk, normalize: false,
    maxBatch: BATCH, logger, status: sink,
  });
  try {
    const badToken = new RawClient(cluster.url, 'the-token');
    await badToken.opened;
    const hello = { hello: { protocolVersion: gradhub.ProtocolVersion.CURRENT, token: 'not-the-token', runtime: gradhub.Runtime.NODE, capabilities: { threads: 1 } } };
    const size = gradhub.Envelope.encode({ protocolVersion: gradhub.ProtocolVersion.CURRENT, ...hello }).finish().byteLength;
    badToken.send(hello);
    expect((await badToken.next('reject')).reject!.code).toBe(gradhub.ErrorCode.BAD_TOKEN);
    await badToken.closed;
    const text = new RawClient(cluster.url, 'the-token');
    await text.opened;
    text.ws.send('hello?');
    expect((await text.next('reject')).reject!.code).toBe(gradhub.ErrorCode.MALFORMED_FRAME);
    await text.closed;
    return size;
  } finally {
    await cluster.close('shutdown');
  }
}

beforeAll(async () => {
  const data = await loadCifar10(SAMPLE, { download: false });
  const train: Samples = data.train;
  const test: Samples = { count: 200, pixels: data.test.pixels.subarray(0, 200 * 3072), labels: data.test.labels.subarray(0, 200) };
  const spec = modelSpec(settings.sizes);
  const params = new Float32Array(spec.paramCount);
  initParams(spec, settings.seed, params);

  status = new RunStatus({
    runId: 'run-http-test', name: 'routes <b>test</b> & "friends"',
    settings: { ...bitSettings(settings), note: '"><script>alert(1)</script>' }, totalSteps: totalSteps(settings, train.count),
  });
  served = await serve({ status, logger, maxEventClients: 3 });
  early = await openEvents(`${served.url}/api/events`);
  await early.until((e) => e.event === 'snapshot');

  // The executor of the run, reporting what a cluster executor reports: the samples trained and
  // the step's time split (compute only: in process there is no network).
  const inner = createInProcessExecutor({ spec, backend: createOracleBackend(), maxBatch: BATCH, chunk: settings.chunk, normalize: false });
  const executor: Executor = {
    async run(input) {
      const t0 = performance.now();
      const sums = await inner.run(input);
      if (input.mode === 'train') {
        samplesTrained += input.batch;
        status.count('samples', input.batch);
        status.setSplit({ compute: performance.now() - t0, upload: 0, reduce: 0, sgd: 0, broadcast: 0 });
      }
      return sums;
    },
    close: () => inner.close(),
  };
  // What the server counts, as it would: bytes and late results.
  status.count('bytes_in', 123_456);
  status.count('bytes_out', 654_321);
  status.count('late_results', 3);
  status.count('results_non_finite', 2);
  status.count('stalls', 4);
  status.count('audits.passed', 9);
  status.count('audits.failed', 1);
  status.count('audits.skipped', 20);
  status.count('bans');
  status.count('rollbacks');
  status.count('rollback_steps', 3);
  // Rejected frames, counted by the real coordinator: a cluster reporting into this status, and two
  // bad workers on real sockets (a Hello with the wrong join token, a text frame).
  helloBytes = await rejectTwoWorkers(status);
  status.upsertWorker({ id: 'w1', runtime: 'node', samplesPerS: 1000, nodesDone: 5, samplesDone: 100, bytesIn: 10, bytesOut: 20, lastSeen: Date.now(), state: 'working' });
  status.upsertWorker({ id: 'w2', runtime: 'browser', samplesPerS: 500, nodesDone: 2, samplesDone: 40, bytesIn: 1, bytesOut: 2, lastSeen: Date.now(), state: 'gone' });

  const result = await runTraining({
    settings, train, test, executor, logger, metrics: nullMetrics,
    start: { params, step: 0, sampler: { epoch: 0, position: 0 }, momentumBuffer: null },
    onStep: (r) => status.addStep({ step: r.step, epoch: r.epoch, loss: r.loss, accuracy: r.accuracy, samplesPerS: r.samplesPerS }),
    onEval: (r) => status.addEval({ epoch: r.epoch, step: r.step, testLoss: r.testLoss, testAccuracy: r.testAccuracy }),
  });
  expect(result.step).toBe(STEPS);
  status.setState('done');
  finalSnapshot = status.snapshot();
  await early.until((e) => e.event === 'state' && JSON.parse(e.data).state === 'done');
});

afterAll(async () => {
  early?.close();
  await served?.close();
});

describe('GET /api/status', () => {
  it('answers the snapshot of the run as JSON', async () => {
    const r = await request(`${served.url}/api/status`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(r.headers['cache-control']).toBe('no-store');
    const body = JSON.parse(r.body) as StatusSnapshot & { now: number };
    expect(Math.abs(body.now - Date.now())).toBeLessThan(5000);
    const { now: _now, ...snap } = body;
    expect(snap).toEqual(JSON.parse(JSON.stringify(status.snapshot())));
    expect(snap.state).toBe('done');
    expect(snap.step).toBe(STEPS);
    expect(snap.steps.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(snap.evals).toHaveLength(1);
    expect(snap.evals[0].step).toBe(STEPS);
    expect(snap.workers.map((w) => w.id)).toEqual(['w1', 'w2']);
    for (const p of snap.steps) expect(Number.isFinite(p.loss) && p.loss > 0).toBe(true);
  });

  it('answers HEAD with the headers only, and 405 to other methods', async () => {
    const head = await request(`${served.url}/api/status`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(Number(head.headers['content-length'])).toBeGreaterThan(100);
    const post = await request(`${served.url}/api/status`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });
});

describe('GET /api/events', () => {
  it('sends a snapshot, then every event of the run in order', async () => {
    // The last table may trail the run's events by the coalescing interval (at most 1/4 s).
    await early.until((e) => e.event === 'workers' && (JSON.parse(e.data) as { workers: unknown[] }).workers.length === 2);
    const names = early.events.map((e) => e.event);
    // The stream opened before training: an empty snapshot, then the run; the workers table
    // (two upserts in a row) comes coalesced, at least once, the last one whole.
    expect(names.filter((n) => n !== 'workers')).toEqual(['snapshot', 'state', ...Array<string>(STEPS).fill('step'), 'eval', 'state']);
    const tables = early.events.filter((e) => e.event === 'workers').map((e) => JSON.parse(e.data) as { workers: { id: string }[] });
    expect(tables.length).toBeGreaterThanOrEqual(1);
    expect(tables.length).toBeLessThanOrEqual(2);
    expect(tables.at(-1)!.workers.map((w) => w.id)).toEqual(['w1', 'w2']);
    const snap = JSON.parse(early.events[0].data) as StatusSnapshot & { now: number };
    expect(snap.state).toBe('waiting');
    expect(snap.steps).toEqual([]);
    expect(typeof snap.now).toBe('number');
    expect(JSON.parse(early.events.find((e) => e.event === 'state')!.data)).toEqual({ type: 'state', state: 'training', step: 1 });
    const steps = early.events.filter((e) => e.event === 'step').map((e) => JSON.parse(e.data));
    expect(steps.map((s) => s.point)).toEqual(finalSnapshot.steps);
    for (const s of steps) expect(Object.keys(s.split).sort()).toEqual(['broadcast', 'compute', 'reduce', 'sgd', 'upload']);
    const runEvents = early.events.filter((e) => e.event !== 'workers');
    expect(JSON.parse(runEvents[runEvents.length - 2].data).point).toEqual(finalSnapshot.evals[0]);
    expect(JSON.parse(runEvents[runEvents.length - 1].data)).toEqual({ type: 'state', state: 'done', step: STEPS });
  });

  it('gives a late subscriber the whole run in its snapshot, then live events', async () => {
    const late = await openEvents(`${served.url}/api/events`);
    try {
      expect(late.status).toBe(200);
      await late.until((e) => e.event === 'snapshot');
      const snap = JSON.parse(late.events[0].data) as StatusSnapshot;
      expect(snap.steps).toEqual(finalSnapshot.steps);
      expect(snap.evals).toEqual(finalSnapshot.evals);
      status.upsertWorker({ id: 'w3', runtime: 'node', samplesPerS: 1, nodesDone: 0, samplesDone: 0, bytesIn: 0, bytesOut: 0, lastSeen: Date.now(), state: 'connected' });
      await late.until((e) => e.event === 'workers');
      expect(JSON.parse(late.events[1].data).workers.map((w: { id: string }) => w.id)).toEqual(['w1', 'w2', 'w3']);
    } finally {
      status.removeWorker('w3');
      late.close();
    }
  });

  it('refuses streams past the cap with 503, and forgets closed ones', async () => {
    // `early` is open; the cap is 3.
    await expect.poll(() => served.routes.eventClients).toBe(1);
    const a = await openEvents(`${served.url}/api/events`);
    const b = await openEvents(`${served.url}/api/events`);
    expect([a.status, b.status]).toEqual([200, 200]);
    const refused = await request(`${served.url}/api/events`);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('10');
    a.close();
    await expect.poll(() => served.routes.eventClients).toBe(2);
    const c = await openEvents(`${served.url}/api/events`);
    expect(c.status).toBe(200);
    b.close();
    c.close();
    await expect.poll(() => served.routes.eventClients).toBe(1);
  });

  it('ends every stream on close()', async () => {
    const s = await serve({ status, logger });
    const one = await openEvents(`${s.url}/api/events`);
    await one.until((e) => e.event === 'snapshot');
    s.routes.close();
    await one.ended;
    expect(s.routes.eventClients).toBe(0);
    const after = await request(`${s.url}/api/events`);
    expect(after.status).toBe(503);
    await s.close();
  });
});

describe('GET /metrics', () => {
  it('is Prometheus text whose figures are the run\'s', async () => {
    const r = await request(`${served.url}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const { types, samples } = parsePrometheus(r.body);
    const one = (name: string): number => {
      const s = samples.get(name);
      expect(s, name).toHaveLength(1);
      return s![0].value;
    };
    const byLabel = (name: string, label: string): Record<string, number> =>
      Object.fromEntries((samples.get(name) ?? []).map((s) => [s.labels[label], s.value]));

    expect(types.get('gradhub_steps_total')).toBe('counter');
    expect(one('gradhub_steps_total')).toBe(STEPS);
    expect(one('gradhub_samples_total')).toBe(STEPS * BATCH);
    expect(one('gradhub_samples_total')).toBe(samplesTrained);
    expect(types.get('gradhub_loss')).toBe('gauge');
    expect(one('gradhub_loss')).toBe(finalSnapshot.steps[STEPS - 1].loss);
    expect(one('gradhub_test_accuracy')).toBe(finalSnapshot.evals[0].testAccuracy);
    expect(one('gradhub_workers_connected')).toBe(1); // w1 working, w2 gone
    expect(byLabel('gradhub_workers', 'runtime')).toEqual({ node: 1, browser: 0 });
    expect(one('gradhub_epoch')).toBe(finalSnapshot.epoch);
    expect(one('gradhub_lr')).toBe(settings.lr);
    expect(one('gradhub_test_loss')).toBe(finalSnapshot.evals[0].testLoss);
    // Every step's split, as a histogram per phase (the routes existed before the first step).
    expect(types.get('gradhub_step_phase_seconds')).toBe('histogram');
    const counts = byLabel('gradhub_step_phase_seconds_count', 'phase');
    expect(counts).toEqual({ compute: STEPS, upload: STEPS, reduce: STEPS, sgd: STEPS, broadcast: STEPS });
    const sums = byLabel('gradhub_step_phase_seconds_sum', 'phase');
    expect(sums.compute).toBeCloseTo(finalSnapshot.splitTotal.compute / 1000, 9);
    expect(sums.compute).toBeGreaterThan(0);
    expect(sums.upload).toBe(0);
    const computeBuckets = samples.get('gradhub_step_phase_seconds_bucket')!.filter((b) => b.labels.phase === 'compute');
    expect(computeBuckets.length).toBeGreaterThan(5);
    expect(computeBuckets.at(-1)).toEqual({ labels: { phase: 'compute', le: '+Inf' }, value: STEPS });
    for (let i = 1; i < computeBuckets.length; i++) expect(computeBuckets[i].value).toBeGreaterThanOrEqual(computeBuckets[i - 1].value);
    expect(samples.get('gradhub_build_info')).toEqual([{ labels: { version: expect.stringMatching(/^\d+\.\d+\.\d+/), node: process.version }, value: 1 }]);
    // prom-client's default metrics of this process.
    expect(types.get('process_cpu_seconds_total')).toBe('counter');
    expect(one('process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(types.get('nodejs_heap_size_used_bytes')).toBe('gauge');
    expect(byLabel('gradhub_bytes_total', 'direction')).toEqual({ in: 123_456 + helloBytes, out: 654_321 });
    expect(types.get('gradhub_rejected_messages_total')).toBe('counter');
    // Labelled with the wire protocol's ErrorCode names, as the coordinator counts them.
    expect(byLabel('gradhub_rejected_messages_total', 'code')).toEqual({ BAD_TOKEN: 1, MALFORMED_FRAME: 1 });
    expect(one('gradhub_late_results_total')).toBe(3);
    expect(types.get('gradhub_results_non_finite_total')).toBe('counter');
    expect(one('gradhub_results_non_finite_total')).toBe(2);
    expect(one('gradhub_stalls_total')).toBe(4);
    expect(byLabel('gradhub_audits_total', 'outcome')).toEqual({ passed: 9, failed: 1, skipped: 20 });
    expect(one('gradhub_bans_total')).toBe(1);
    expect(one('gradhub_rollbacks_total')).toBe(1);
    expect(one('gradhub_rollback_steps_total')).toBe(3);
    expect(one('gradhub_rollbacks_beyond_window_total')).toBe(0);
    expect(one('gradhub_rollback_anchor_failures_total')).toBe(0);
  });

  it('follows the status between scrapes, and keeps each status in its own registry', async () => {
    const other = new RunStatus({ runId: 'other', name: 'other', settings: {}, totalSteps: 1 });
    const s = await serve({ status: other, logger });
    try {
      const fresh = parsePrometheus((await request(`${s.url}/metrics`)).body).samples;
      expect(fresh.get('gradhub_steps_total')![0].value).toBe(0);
      expect(Number.isNaN(fresh.get('gradhub_loss')![0].value)).toBe(true);
      expect(fresh.get('gradhub_step_phase_seconds_count')!.map((c) => c.value)).toEqual([0, 0, 0, 0, 0]);
      expect(fresh.get('gradhub_rejected_messages_total')).toBeUndefined();
      other.setSplit({ compute: 30, upload: 0, reduce: 0, sgd: 2, broadcast: 0 });
      other.addStep({ step: 1, epoch: 1, loss: 2.5, accuracy: 0.25, samplesPerS: 10 });
      other.count('rejected.OVERSIZE_FRAME');
      const after = parsePrometheus((await request(`${s.url}/metrics`)).body).samples;
      expect(after.get('gradhub_steps_total')![0].value).toBe(1);
      expect(after.get('gradhub_loss')![0].value).toBe(2.5);
      expect(after.get('gradhub_step_phase_seconds_sum')!.find((x) => x.labels.phase === 'compute')!.value).toBe(0.03);
      expect(Number.isNaN(after.get('gradhub_lr')![0].value)).toBe(true); // a status without settings has no lr
      expect(after.get('gradhub_rejected_messages_total')).toEqual([{ labels: { code: 'OVERSIZE_FRAME' }, value: 1 }]);
      // The run's own server still says the run's figures.
      const run = parsePrometheus((await request(`${served.url}/metrics`)).body).samples;
      expect(run.get('gradhub_steps_total')![0].value).toBe(STEPS);
    } finally {
      await s.close();
    }
  });
});

describe('rounds mode on /metrics and the dashboard', () => {
  it('shows M, H, the inner steps and the bytes on the wire per sample; the page says rounds', async () => {
    const rounds = new RunStatus({ runId: 'r', name: 'rounds', settings: { ...bitSettings({ ...settings, rounds: { localSteps: 4, replicas: 2, outerLr: 0.7, outerMomentum: 0.9, outerNesterov: true } }) }, totalSteps: 5 });
    const s = await serve({ status: rounds, logger });
    try {
      const sync = parsePrometheus((await request(`${served.url}/metrics`)).body).samples;
      expect(sync.get('gradhub_round_replicas')![0].value).toBe(0);
      expect(sync.get('gradhub_inner_steps_total')![0].value).toBe(0);
      rounds.count('samples', 2 * 4 * BATCH);
      rounds.count('bytes_out', 1000);
      rounds.count('bytes_in', 600);
      rounds.addStep({ step: 1, epoch: 1, loss: 2.5, accuracy: 0.25, samplesPerS: 10 });
      rounds.count('samples', 2 * 4 * BATCH);
      rounds.addStep({ step: 2, epoch: 1, loss: 2.4, accuracy: 0.25, samplesPerS: 10 });
      const m = parsePrometheus((await request(`${s.url}/metrics`)).body).samples;
      expect(m.get('gradhub_round_replicas')![0].value).toBe(2);
      expect(m.get('gradhub_round_local_steps')![0].value).toBe(4);
      expect(m.get('gradhub_inner_steps_total')![0].value).toBe(2 * 2 * 4);
      expect(m.get('gradhub_wire_bytes_per_sample')![0].value).toBe(1600 / (2 * 2 * 4 * BATCH));
      const page = (await request(`${s.url}/dashboard`)).body;
      expect(page).toContain('round <b id="step">2</b>');
      expect(page).toContain('2 replicas × 4 inner steps a round');
      expect(page).toContain('<b id="wire">5 B</b> a sample');
    } finally {
      await s.close();
    }
  });
});

describe('GET /dashboard', () => {
  it('serves the page with its hooks, every value escaped, and a strict CSP', async () => {
    const r = await request(`${served.url}/dashboard`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.headers['content-security-policy']).toContain("script-src 'self'");
    for (const hook of ['id="loss-chart"', 'data-points="0"', 'id="acc-chart"', 'id="workers"', 'id="split"', 'id="settings"']) {
      expect(r.body).toContain(hook);
    }
    expect(r.body).toContain('routes &lt;b&gt;test&lt;/b&gt; &amp; &quot;friends&quot;');
    expect(r.body).toContain('&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(r.body).not.toContain('<b>test</b>');
    expect(r.body).not.toContain('<script>alert');
    expect(r.body).toContain('<th scope="row">batch</th><td>20</td>');
    expect(r.body).toContain('<script src="/assets/uplot.iife.min.js"></script>');
    expect(r.body).toContain('<script src="/assets/dashboard.js"></script>');
  });

  it('serves uPlot from node_modules and its own script and style, with ETags', async () => {
    const require = createRequire(import.meta.url);
    const uplot = await request(`${served.url}/assets/uplot.iife.min.js`);
    expect(uplot.status).toBe(200);
    expect(uplot.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(uplot.body).toBe(fs.readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'));
    const css = await request(`${served.url}/assets/uPlot.min.css`);
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    const js = await request(`${served.url}/assets/dashboard.js`);
    expect(js.status).toBe(200);
    expect(js.body).toContain("new EventSource('/api/events')");
    const again = await request(`${served.url}/assets/dashboard.js`, { headers: { 'If-None-Match': js.headers.etag! } });
    expect(again.status).toBe(304);
    expect((await request(`${served.url}/assets/dashboard.css`)).status).toBe(200);
  });
});

describe('admin token', () => {
  const TOKEN = 's3cret-admin-token';
  let s: Served;
  beforeAll(async () => {
    s = await serve({ status, logger, adminToken: TOKEN });
  });
  afterAll(async () => {
    await s.close();
  });

  it('answers 401 without it: an HTML page for the dashboard, text for the API', async () => {
    const page = await request(`${s.url}/dashboard`);
    expect(page.status).toBe(401);
    expect(page.headers['www-authenticate']).toBe('Bearer realm="gradhub"');
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body).toContain('Admin token needed');
    expect(page.body).not.toContain('routes'); // nothing of the run
    for (const path of ['/api/status', '/api/events', '/metrics']) {
      const r = await request(`${s.url}${path}`);
      expect(r.status, path).toBe(401);
      expect(r.body).not.toContain('gradhub_steps_total');
    }
    expect((await request(`${s.url}/api/status`, { headers: { Authorization: `Bearer ${TOKEN}x` } })).status).toBe(401);
    expect((await request(`${s.url}/api/status`, { headers: { Authorization: `Basic ${TOKEN}` } })).status).toBe(401);
    expect((await request(`${s.url}/dashboard?token=wrong`)).status).toBe(401);
    expect((await request(`${s.url}/api/status`, { headers: { Cookie: 'gradhub_admin=forged' } })).status).toBe(401);
  });

  it('lets a bearer token in', async () => {
    const auth = { Authorization: `Bearer ${TOKEN}` };
    expect((await request(`${s.url}/api/status`, { headers: auth })).status).toBe(200);
    expect((await request(`${s.url}/metrics`, { headers: auth })).status).toBe(200);
    expect((await request(`${s.url}/dashboard`, { headers: auth })).status).toBe(200);
    const ev = await openEvents(`${s.url}/api/events`, auth);
    expect(ev.status).toBe(200);
    await ev.until((e) => e.event === 'snapshot');
    ev.close();
  });

  it('takes ?token= once on /dashboard, sets an HttpOnly cookie and drops the token from the URL', async () => {
    const r = await request(`${s.url}/dashboard?token=${TOKEN}&theme=light`);
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe('/dashboard?theme=light');
    const setCookie = r.headers['set-cookie']![0];
    expect(setCookie).toMatch(/^gradhub_admin=[^;]+; Path=\/; HttpOnly; SameSite=Lax$/);
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(';')[0];
    const page = await request(`${s.url}/dashboard?theme=light`, { headers: { Cookie: `other=1; ${cookie}` } });
    expect(page.status).toBe(200);
    expect(page.body).toContain('id="loss-chart"');
    expect((await request(`${s.url}/api/status`, { headers: { Cookie: cookie } })).status).toBe(200);
    // The cookie is not the token: it does not work as a bearer.
    expect((await request(`${s.url}/api/status`, { headers: { Authorization: `Bearer ${cookie.split('=')[1]}` } })).status).toBe(401);
  });

  it('leaves the static assets open (code, no run data)', async () => {
    expect((await request(`${s.url}/assets/dashboard.css`)).status).toBe(200);
  });

  it('refuses an empty token rather than opening everything', () => {
    expect(() => createHttpRoutes({ status, logger, adminToken: '' })).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
    expect(() => createHttpRoutes({ status, logger, maxEventClients: 0 })).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
  });
});

describe('paths it does not own', () => {
  it('returns false and writes nothing, so the server answers', async () => {
    for (const path of ['/', '/healthz', '/nope', '/assets/worker.js', '/api', '/api/status/x', '/dashboardx', '/metrics.json']) {
      const r = await request(`${served.url}${path}`);
      expect(r.status, path).toBe(404);
      expect(r.body).toBe('not found (server)\n');
      expect(served.handled.filter((h) => h.path === path).map((h) => h.handled)).toEqual([false]);
    }
    expect(served.handled.find((h) => h.path === '/api/status')?.handled).toBe(true);
  });
});
