/**
 * The dashboard in a real headless Chromium (Debian's, driven by playwright-core) while a real run
 * trains: the page opens mid-run behind the admin token (?token= then the cookie), follows the
 * run through /api/events until its loss chart holds every step, shows a row per worker and the
 * step's time split, and logs no error. A screenshot goes to test/artifacts/dashboard.png.
 *
 * Needs /usr/bin/chromium (`apt-get install -y chromium`): skipped without it, except in CI
 * (CI set), where its absence is a failure.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOracleBackend, initParams, modelSpec } from '@gradhub/core';
import {
  RunStatus, bitSettings, createHttpRoutes, createInProcessExecutor, loadCifar10, nullMetrics, runTraining, totalSteps,
  type Executor, type HttpRoutes, type TrainResult, type TrainSettings, type WorkerRow,
} from '@gradhub/coordinator';
import { ROOT, SAMPLE } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const ARTIFACTS = path.join(ROOT, 'test/artifacts');
const TOKEN = 'dashboard-test-token';
const STEPS = 12;
const BATCH = 20;
/** Pace of the run, so that the page really opens in the middle of it. */
const STEP_DELAY_MS = 120;

const settings: TrainSettings = {
  sizes: [3072, 8, 10], batch: BATCH, chunk: 4, seed: 7, shuffle: true, normalize: false,
  lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, epochs: 1, steps: STEPS,
};

function worker(id: string, runtime: WorkerRow['runtime'], over: Partial<WorkerRow> = {}): WorkerRow {
  return {
    id, runtime, samplesPerS: runtime === 'node' ? 2310.4 : 870.2, nodesDone: 0, samplesDone: 0,
    bytesIn: 0, bytesOut: 0, lastSeen: Date.now(), state: 'working', address: '127.0.0.1', ...over,
  };
}

describe.skipIf(!HAVE_CHROMIUM && !process.env.CI)('the dashboard in Chromium', () => {
  const logger = pino({ level: 'silent' });
  let status: RunStatus;
  let routes: HttpRoutes;
  let server: http.Server;
  let base: string;
  let profile: string;
  let context: BrowserContext;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    if (!HAVE_CHROMIUM) {
      throw new Error(`${CHROMIUM} is missing: the dashboard browser test needs Debian's Chromium (apt-get install -y chromium); CI must install it`);
    }
    status = new RunStatus({
      runId: 'run-dashboard-test', name: 'cifar10 <tiny> mlp',
      settings: { ...bitSettings(settings), epochs: settings.epochs, steps: settings.steps }, totalSteps: STEPS,
    });
    routes = createHttpRoutes({ status, logger, adminToken: TOKEN });
    server = http.createServer((req, res) => {
      if (!routes(req, res)) {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => {
      // The event stream is cut when the page goes away; anything else is a real failure.
      if (!r.url().endsWith('/api/events')) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
    });
  });

  afterAll(async () => {
    await context?.close();
    routes?.close();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  });

  it('follows a run live: every step on the chart, a row per worker, the split, no errors', async () => {
    const data = await loadCifar10(SAMPLE, { download: false });
    const test = { count: 200, pixels: data.test.pixels.subarray(0, 200 * 3072), labels: data.test.labels.subarray(0, 200) };
    expect(totalSteps(settings, data.train.count)).toBe(STEPS);
    const spec = modelSpec(settings.sizes);
    const params = new Float32Array(spec.paramCount);
    initParams(spec, settings.seed, params);
    const inner = createInProcessExecutor({ spec, backend: createOracleBackend(), maxBatch: BATCH, chunk: settings.chunk, normalize: false });
    const executor: Executor = {
      async run(input) {
        const t0 = performance.now();
        if (input.mode === 'train') await new Promise((r) => setTimeout(r, STEP_DELAY_MS));
        const t1 = performance.now();
        const sums = await inner.run(input);
        if (input.mode === 'train') {
          const compute = performance.now() - t1;
          status.count('samples', input.batch);
          // The wait stands for the network: shown as upload and broadcast.
          status.setSplit({ compute, upload: (t1 - t0) * 0.6, reduce: compute * 0.1, sgd: compute * 0.05, broadcast: (t1 - t0) * 0.4 });
        }
        return sums;
      },
      close: () => inner.close(),
    };
    // Two workers, as the cluster would report them (the lead runs this against a real cluster later).
    status.upsertWorker(worker('node-7f3a', 'node', { nodesDone: 3, bytesIn: 4_200_000, bytesOut: 1_900_000 }));
    status.upsertWorker(worker('browser-19c2', 'browser', { nodesDone: 1, bytesIn: 1_300_000, bytesOut: 650_000 }));

    let firstStep!: () => void;
    const started = new Promise<void>((r) => (firstStep = r));
    const run: Promise<TrainResult> = runTraining({
      settings, train: data.train, test, executor, logger, metrics: nullMetrics,
      start: { params, step: 0, sampler: { epoch: 0, position: 0 }, momentumBuffer: null },
      onStep: (r) => {
        status.addStep({ step: r.step, epoch: r.epoch, loss: r.loss, accuracy: r.accuracy, samplesPerS: r.samplesPerS });
        if (r.step === 2) firstStep();
      },
      onEval: (r) => status.addEval({ epoch: r.epoch, step: r.step, testLoss: r.testLoss, testAccuracy: r.testAccuracy }),
    }).then((r) => {
      status.setState('done');
      return r;
    });

    await started;
    // The token once in the URL; the page then lives on the cookie (the EventSource too).
    const response = await page.goto(`${base}/dashboard?token=${TOKEN}`);
    expect(response?.status()).toBe(200);
    expect(new URL(page.url()).search).toBe('');
    const openedAt = status.snapshot().step;
    expect(openedAt).toBeLessThan(STEPS); // the page really opened mid-run

    const result = await run;
    expect(result.step).toBe(STEPS);
    await page.waitForFunction(
      (n) => document.querySelector('#loss-chart')?.getAttribute('data-points') === String(n),
      STEPS, { timeout: 20_000 },
    );
    await page.waitForFunction(() => document.querySelector('#acc-chart')?.getAttribute('data-evals') === '1', undefined, { timeout: 20_000 });
    await page.waitForFunction(() => document.querySelector('#run-state')?.textContent === 'done', undefined, { timeout: 20_000 });
    expect(await page.locator('#workers tr.worker').count()).toBe(2);
    expect(await page.locator('#workers tr.worker').evaluateAll((trs) => trs.map((tr) => (tr as HTMLElement).dataset.workerId)))
      .toEqual(['node-7f3a', 'browser-19c2']);
    expect(await page.locator('#workers tr.worker[data-worker-id="browser-19c2"] .col-runtime').textContent()).toBe('browser');
    expect(await page.locator('#step').textContent()).toBe(String(STEPS));
    expect(await page.locator('#connection').textContent()).toBe('live');

    // A worker update arrives as an event and changes its row in place.
    status.upsertWorker(worker('browser-19c2', 'browser', { nodesDone: 42, bytesIn: 9_100_000, state: 'idle' }));
    await page.waitForFunction(
      () => document.querySelector('#workers tr.worker[data-worker-id="browser-19c2"] .col-nodes-done')?.textContent === '42',
      undefined, { timeout: 10_000 },
    );
    expect(await page.locator('#workers tr.worker[data-worker-id="browser-19c2"] .col-bytes-in').textContent()).toBe('9.1 MB');

    // The split of the last step: every phase has a figure and the bar is drawn.
    for (const phase of ['compute', 'upload', 'reduce', 'sgd', 'broadcast']) {
      expect(await page.locator(`#split .phase-${phase} .ms`).textContent()).toMatch(/^\d+(\.\d+)? m?s$/);
    }
    expect(await page.locator('#split-step').textContent()).toBe(`step ${STEPS}`);
    const segWidth = await page.locator('#split-bar .seg-compute').evaluate((el) => el.getBoundingClientRect().width);
    expect(segWidth).toBeGreaterThan(0);

    // The charts are drawn (uPlot canvases with a size) and the settings are on the page.
    for (const id of ['#loss-chart', '#acc-chart']) {
      const box = await page.locator(`${id} canvas`).boundingBox();
      expect(box!.width, id).toBeGreaterThan(200);
      expect(box!.height, id).toBeGreaterThan(100);
    }
    expect(await page.locator('#settings').textContent()).toContain('3072,8,10');
    expect(await page.title()).toBe('gradhub: cifar10 <tiny> mlp');

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    expect(problems).toEqual([]);

    // The run is over and the server goes away: the page keeps the final state and figures and
    // stops the stream, instead of "reconnecting" forever.
    const eventsBefore = routes.eventClients;
    expect(eventsBefore).toBe(1);
    routes.close();
    await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'run ended', undefined, { timeout: 10_000 });
    expect(await page.locator('#run-state').textContent()).toBe('done');
    expect(await page.locator('#step').textContent()).toBe(String(STEPS));
    expect(await page.locator('#loss-chart').getAttribute('data-points')).toBe(String(STEPS));
    await new Promise((r) => setTimeout(r, 2500)); // past the stream's 2 s retry: no new attempt
    expect(await page.locator('#connection').textContent()).toBe('run ended');
    expect(problems).toEqual([]);
  });

  it('shows the 401 page without the token, with no run data', async () => {
    await context.clearCookies();
    const before = problems.length;
    const response = await page.goto(`${base}/dashboard`);
    expect(response?.status()).toBe(401);
    expect(await page.locator('h1').textContent()).toBe('Admin token needed');
    expect(await page.content()).not.toContain('tiny');
    // Only the expected 401 is reported.
    expect(problems.slice(before).filter((p) => !p.startsWith('HTTP 401') && !p.includes('401 (Unauthorized)'))).toEqual([]);
  });
});
