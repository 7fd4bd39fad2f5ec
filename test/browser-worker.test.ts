/**
 * The browser worker in real headless Chromium tabs (Debian's, driven by playwright-core) beside
 * real Node worker processes: a mixed cluster of 2 Node workers and 2 tabs trains on the CIFAR-10
 * sample and ends with weights byte-identical to `gradhub train --workers 0` with the same flags;
 * a tab closed while it holds a node of a step changes nothing either. The volunteer page must be
 * cross-origin isolated, show that it is connected and what it contributed, and log no error.
 * A screenshot goes to test/artifacts/volunteer.png.
 *
 * The coordinator runs in this process (startCluster + runTraining + the volunteer routes on the
 * same server, as `gradhub coordinator` wires them); the Node workers are `gradhub worker`
 * processes; the browser bundle is built first when it is missing or stale
 * (packages/worker/scripts/build-browser.js).
 *
 * Needs /usr/bin/chromium (`apt-get install -y chromium`): skipped without it, except in CI
 * (CI set), where its absence is a failure.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pino } from 'pino';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeSafetensors, initParams, modelSpec, safetensorsToParams } from '@gradhub/core';
import {
  createVolunteerRoutes, loadCifar10, nullMetrics, runTraining, startCluster,
  type Cluster, type Samples, type TrainSettings,
} from '@gradhub/coordinator';
import { BROWSER_ASSETS_DIR, BROWSER_ASSET_FILES } from '@gradhub/worker';
import { ROOT, SAMPLE, runCli, startCli, tempDir } from './helpers.js';
import { waitFor } from './cluster-helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const ARTIFACTS = path.join(ROOT, 'test/artifacts');
const TOKEN = 'browser-test-token';
const RUN_NAME = 'cifar10-sample · mlp 3072,24,10';
const STEPS = 10;
/** The run (SMALL_RUN of test/helpers.ts), as the trainer's settings; FLAGS are the same for `gradhub train`. */
const SETTINGS: TrainSettings = {
  sizes: [3072, 24, 10], batch: 40, chunk: 8, seed: 5, shuffle: true, normalize: false,
  lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, epochs: 20, steps: STEPS,
};
const FLAGS = [
  '--data', SAMPLE, '--no-download', '--model', SETTINGS.sizes.join(','), '--batch-size', String(SETTINGS.batch),
  '--chunk', String(SETTINGS.chunk), '--seed', String(SETTINGS.seed), '--lr', String(SETTINGS.lr), '--momentum', String(SETTINGS.momentum),
  '--dampening', String(SETTINGS.dampening), '--weight-decay', String(SETTINGS.weightDecay), '--epochs', String(SETTINGS.epochs), '--steps', String(STEPS),
];
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A `gradhub worker` process. */
function startNodeWorkerProcess(url: string): ReturnType<typeof startCli> & { exited: Promise<number | null> } {
  const child = startCli(['worker', '--url', url, '--token', TOKEN, '--grace-ms', '15000', '--log-level', 'warn']);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return Object.assign(child, { exited });
}

/** Newest modification time of the files under `p` (a file or a folder), ms. */
function newest(p: string): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...fs.readdirSync(p).map((f) => newest(path.join(p, f))));
}

/** True when the browser bundle is missing or older than what goes into it (npm test may not build it). */
function browserBuildStale(): boolean {
  const outputs = BROWSER_ASSET_FILES.map((f) => path.join(BROWSER_ASSETS_DIR, f));
  if (!outputs.every((f) => fs.existsSync(f))) return true;
  const built = Math.min(...outputs.map((f) => fs.statSync(f).mtimeMs));
  const inputs = ['packages/worker/src', 'packages/worker/static', 'packages/worker/scripts', 'packages/core/src', 'proto/generated', 'proto/src'];
  return inputs.some((p) => newest(path.join(ROOT, p)) > built);
}

describe.skipIf(!HAVE_CHROMIUM && !process.env.CI)('the browser worker in Chromium, beside Node workers', () => {
  const logger = pino({ level: process.env.GRADHUB_TEST_LOG ?? 'silent' });
  let reference: Buffer;
  let train: Samples;
  let test: Samples;
  let profile: string;
  let context: BrowserContext;
  const problems: string[] = [];

  beforeAll(async () => {
    if (!HAVE_CHROMIUM) {
      throw new Error(`${CHROMIUM} is missing: the browser worker test needs Debian's Chromium (apt-get install -y chromium); CI must install it`);
    }
    if (browserBuildStale()) {
      const build = spawnSync(process.execPath, [path.join(ROOT, 'packages/worker/scripts/build-browser.js'), '--no-typecheck'], { cwd: ROOT, encoding: 'utf8' });
      expect(build.status, build.stderr).toBe(0);
    }

    const dir = tempDir('browser-ref');
    const r = await runCli(['train', '--workers', '0', ...FLAGS, '--export', path.join(dir, 'w.st')]);
    expect(r.code, r.stderr).toBe(0);
    const spec = modelSpec(SETTINGS.sizes);
    const params = safetensorsToParams(spec, decodeSafetensors(fs.readFileSync(path.join(dir, 'w.st')), 'reference'), 'reference');
    reference = Buffer.from(params.buffer, params.byteOffset, params.byteLength);

    const data = await loadCifar10(SAMPLE, { download: false });
    train = data.train;
    test = data.test;

    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, viewport: { width: 1100, height: 760 }, args: LAUNCH_ARGS,
    });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  });

  /** Open the volunteer page at `url` in a new tab, recording its errors. */
  async function openTab(url: string, label: string): Promise<Page> {
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`${label} console error: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`${label} page error: ${e.message}`));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`${label} HTTP ${r.status()}: ${r.url()}`);
    });
    await page.goto(url);
    return page;
  }

  /**
   * A coordinator in this process with the volunteer page on its server, 2 Node worker processes
   * and 2 tabs (`tabQueries[i]` appended to tab i's join link); `during` runs once the 4 workers
   * are in and training has started. Resolves with the final parameters.
   */
  async function mixedRun(
    tabQueries: [string, string], during: (tabs: Page[], cluster: Cluster) => Promise<void>, settings: TrainSettings = SETTINGS,
  ): Promise<{ params: Buffer; tabs: Page[]; cluster: Cluster }> {
    const r = settings.rounds;
    const cluster = await startCluster({
      host: '127.0.0.1', port: 0, token: TOKEN, sizes: settings.sizes, chunk: settings.chunk, normalize: false,
      maxBatch: settings.batch, maxWorkSamples: settings.batch * (r ? r.localSteps * r.replicas : 1),
      logger, heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 20_000, speculateAfterMs: null,
    });
    cluster.server.use(createVolunteerRoutes({ assetsDir: BROWSER_ASSETS_DIR, runName: RUN_NAME, token: TOKEN, logger }));
    const base = `http://127.0.0.1:${cluster.server.port}`;
    const nodes = [startNodeWorkerProcess(cluster.url), startNodeWorkerProcess(cluster.url)];
    try {
      const tabs = await Promise.all(tabQueries.map((q, i) => openTab(`${base}/join?token=${TOKEN}${q}`, `tab ${i}`)));
      await cluster.executor.waitForWorkers(4, 60_000);
      for (const tab of tabs) {
        await tab.waitForFunction(() => document.body.dataset.state === 'connected', undefined, { timeout: 20_000 });
        expect(await tab.locator('#state').textContent()).toBe('Connected');
        expect(await tab.evaluate(() => crossOriginIsolated)).toBe(true);
      }
      const spec = modelSpec(settings.sizes);
      const params = new Float32Array(spec.paramCount);
      initParams(spec, settings.seed, params);
      const training = runTraining({
        settings, train, test, executor: cluster.executor, logger, metrics: nullMetrics,
        start: { params, step: 0, sampler: { epoch: 0, position: 0 }, momentumBuffer: null },
      });
      await during(tabs, cluster);
      const result = await training;
      expect(result.step).toBe(settings.steps);
      return { params: Buffer.from(result.params.buffer, result.params.byteOffset, result.params.byteLength), tabs, cluster };
    } finally {
      await cluster.close('done');
      const codes = await Promise.all(nodes.map((n) => Promise.race([n.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))])));
      for (const [i, n] of nodes.entries()) {
        if (codes[i] === null) n.kill('SIGKILL');
        else expect(codes[i], n.output().stderr).toBe(0);
      }
    }
  }

  it('2 Node workers and 2 tabs (on 2 and 1 kernel threads: ?threads=) train to weights byte-identical to --workers 0', async () => {
    problems.length = 0;
    const { params, tabs, cluster } = await mixedRun(['&threads=2', '&threads=1'], async (tabs, cluster) => {
      // Each page passed its ?threads= on to its worker, which said so in its Hello.
      const browserThreads = cluster.membership.workers().filter((w) => w.runtime === 'browser').map((w) => w.capabilities.threads).sort();
      expect(browserThreads).toEqual([1, 2]);
      for (const tab of tabs) {
        // Every tab does its share, and says so while the run goes on.
        await tab.waitForFunction(() => Number(document.body.dataset.contributed) > 0 && document.getElementById('loss')!.textContent !== '—', undefined, { timeout: 30_000, polling: 20 });
        expect(await tab.locator('#state').textContent()).toBe('Connected');
        expect(Number((await tab.locator('#contributed').textContent())!.replace(/,/g, ''))).toBeGreaterThan(0);
        expect(Number(await tab.locator('#loss').textContent())).toBeGreaterThan(0);
        expect(await tab.locator('#run-name').textContent()).toBe(RUN_NAME);
        expect(await tab.locator('#run-id').textContent()).toBe(cluster.membership.runId);
        expect(await tab.locator('#tech').textContent()).toContain('WebAssembly SIMD · cross-origin isolated');
        // The join token left the address bar.
        expect(tab.url()).not.toContain(TOKEN);
      }
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await tabs[0].screenshot({ path: path.join(ARTIFACTS, 'volunteer.png'), fullPage: true });
    });
    expect(params.equals(reference)).toBe(true);
    expect(cluster.executor.stats.requests).toBeGreaterThan(STEPS);
    // The coordinator said training is over: the tabs say so and stop.
    for (const tab of tabs) await tab.waitForFunction(() => document.body.dataset.state === 'done', undefined, { timeout: 10_000 });
    expect(await tabs[1].locator('#pause').isDisabled()).toBe(true);
    expect(problems).toEqual([]);
    await Promise.all(tabs.map((t) => t.close()));
  }, 180_000);

  it('rounds mode: 2 Node workers and 2 tabs run whole replica-rounds (M = 3, H = 2) to weights byte-identical to --workers 0', async () => {
    problems.length = 0;
    const rounds = { localSteps: 2, replicas: 3, outerLr: 0.7, outerMomentum: 0.9, outerNesterov: true };
    const steps = 3;
    const dir = tempDir('browser-rounds-ref');
    const r = await runCli(['train', '--workers', '0', ...FLAGS.slice(0, -2), '--steps', String(steps), '--local-steps', '2', '--replicas', '3', '--export', path.join(dir, 'w.st')]);
    expect(r.code, r.stderr).toBe(0);
    const spec = modelSpec(SETTINGS.sizes);
    const want = safetensorsToParams(spec, decodeSafetensors(fs.readFileSync(path.join(dir, 'w.st')), 'rounds reference'), 'rounds reference');
    const { params, tabs } = await mixedRun(['', '&threads=2'], async (tabs) => {
      for (const tab of tabs) {
        await tab.waitForFunction(() => Number(document.body.dataset.contributed) > 0, undefined, { timeout: 60_000, polling: 20 });
      }
    }, { ...SETTINGS, steps, rounds });
    expect(params.equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(true);
    expect(problems).toEqual([]);
    await Promise.all(tabs.map((t) => t.close()));
  }, 180_000);

  it('a tab closed while it holds a node of a step: the run finishes, byte-identical', async () => {
    problems.length = 0;
    let closedMidStep = false;
    const { params, tabs, cluster } = await mixedRun(['', '&slowdown-ms=4000'], async (tabs) => {
      // The slow tab sleeps 4 s before each node: closing it as soon as it holds work cuts a step.
      const victim = tabs[1];
      await victim.waitForFunction(() => Number(document.body.dataset.work) > 0, undefined, { timeout: 30_000, polling: 20 });
      expect(Number(await victim.evaluate(() => document.body.dataset.contributed))).toBe(0);
      await victim.close();
      closedMidStep = true;
    });
    expect(closedMidStep).toBe(true);
    expect(params.equals(reference)).toBe(true);
    expect(cluster.executor.stats.reassigned).toBeGreaterThan(0);
    await tabs[0].waitForFunction(() => document.body.dataset.state === 'done', undefined, { timeout: 10_000 });
    expect(Number(await tabs[0].evaluate(() => document.body.dataset.contributed))).toBeGreaterThan(0);
    expect(problems).toEqual([]);
    await tabs[0].close();
  }, 180_000);

  it('pause, resume and leave; a coordinator that restarts is rejoined with backoff; a refused token asks for a new link', async () => {
    const options = {
      host: '127.0.0.1', token: TOKEN, sizes: SETTINGS.sizes, chunk: SETTINGS.chunk, normalize: false,
      maxBatch: SETTINGS.batch, logger, heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 20_000,
    };
    const routes = createVolunteerRoutes({ assetsDir: BROWSER_ASSETS_DIR, runName: RUN_NAME, token: TOKEN, logger });
    const first = await startCluster({ ...options, port: 0 });
    first.server.use(routes);
    const port = first.server.port;
    const base = `http://127.0.0.1:${port}`;
    const tab = await openTab(`${base}/join?token=${TOKEN}`, 'tab');
    const state = (s: string): Promise<unknown> => tab.waitForFunction((want) => document.body.dataset.state === want, s, { timeout: 20_000 });
    await first.executor.waitForWorkers(1, 20_000);
    await state('connected');

    await tab.click('#pause');
    await state('paused');
    expect(await tab.locator('#pause').textContent()).toBe('Resume');
    await waitFor(() => first.executor.workerCount() === 0, 10_000, 'the paused tab to leave the run');
    await tab.click('#pause');
    await state('connected');
    await first.executor.waitForWorkers(1, 20_000);

    // The coordinator goes away (and may come back): the tab retries, then rejoins the new one.
    await first.close('shutdown');
    await state('reconnecting');
    const second = await startCluster({ ...options, port });
    second.server.use(routes);
    try {
      await second.executor.waitForWorkers(1, 30_000);
      await state('connected');
      expect(await tab.locator('#run-id').textContent()).toBe(second.membership.runId);

      await tab.click('#leave');
      await state('left');
      await waitFor(() => second.executor.workerCount() === 0, 10_000, 'the tab to leave the run');
      expect(await tab.locator('#leave').isDisabled()).toBe(true);
      await tab.close();

      // A wrong token: the link is refused at once; a token pasted into the page at / is refused by
      // the coordinator, and the page asks for a new link.
      const bad = await context.newPage();
      const res = await bad.goto(`${base}/join?token=not-the-token`);
      expect(res!.status()).toBe(403);
      expect(await bad.locator('#state').textContent()).toBe('This join link is not valid');
      await bad.goto(`${base}/`);
      expect(await bad.evaluate(() => document.body.dataset.state)).toBe('needs-token');
      await bad.fill('#join-input', `${base}/join?token=stale-token`);
      await bad.click('#join-form button[type=submit]');
      await bad.waitForFunction(() => document.body.dataset.state === 'refused', undefined, { timeout: 20_000 });
      expect(await bad.locator('#join-form').isVisible()).toBe(true);
      expect(await bad.evaluate(() => sessionStorage.length)).toBe(0);
      await bad.close();
    } finally {
      await second.close('done');
    }
  }, 120_000);
});
