/**
 * The dashboard of a real cluster (`gradhub coordinator` + 2 `gradhub worker` processes), opened
 * in headless Chromium during the run: the loss chart holds as many points as steps done and the
 * workers table has a row per worker, fed by the cluster itself. Screenshot:
 * test/artifacts/dashboard-cluster.png.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { describe, it, expect } from 'vitest';
import { startCli, tempDir, ROOT, SMALL_RUN } from './helpers.js';
import { startCoordinator, waitFor, stepsDone } from './cluster-helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const STEPS = 30;

describe.skipIf(!HAVE_CHROMIUM && !process.env.CI)('the dashboard of a running cluster', () => {
  it('shows every step done on the loss curve and a row per worker', async () => {
    expect(HAVE_CHROMIUM, 'CI must install chromium (apt-get install -y chromium)').toBe(true);
    const dir = tempDir('dash');
    const metrics = path.join(dir, 'm.jsonl');
    const coord = await startCoordinator([...SMALL_RUN, '--steps', String(STEPS), '--min-workers', '2', '--admin-token', 'adm', '--metrics', metrics]);
    const base = coord.url.replace(/^ws/, 'http');
    const workers = [0, 1].map(() => startCli(['worker', '--url', coord.url, '--token', coord.token, '--slowdown-ms', '40']));
    const context = await chromium.launchPersistentContext(tempDir('dash-profile'), { executablePath: CHROMIUM, args: LAUNCH_ARGS });
    try {
      await waitFor(() => stepsDone(metrics) >= 2, 30_000, 'two steps');
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      await page.goto(`${base}/dashboard?token=adm`);
      const midRun = stepsDone(metrics);
      expect(midRun, 'the page must open during the run').toBeLessThan(STEPS);
      // Mid-run: the chart follows the steps as they happen, and both workers have a row.
      await page.waitForFunction(() => document.querySelectorAll('table#workers tr.worker').length === 2, undefined, { timeout: 20_000 });
      await page.waitForFunction((n) => Number(document.querySelector('#loss-chart')?.getAttribute('data-points')) >= n, midRun + 1, { timeout: 20_000 });
      const r = await coord.exited;
      expect(r.code, r.stderr).toBe(0);
      // After the run: exactly one point per step.
      await page.waitForFunction((n) => Number(document.querySelector('#loss-chart')?.getAttribute('data-points')) === n, STEPS, { timeout: 10_000 });
      const rows = await page.$$eval('table#workers tr.worker', (trs) => trs.map((tr) => tr.textContent ?? ''));
      expect(rows.length).toBe(2);
      expect(rows.every((t) => /node/.test(t))).toBe(true);
      fs.mkdirSync(path.join(ROOT, 'test/artifacts'), { recursive: true });
      await page.screenshot({ path: path.join(ROOT, 'test/artifacts/dashboard-cluster.png'), fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      await context.close();
      for (const w of workers) w.kill('SIGKILL');
      coord.process.kill('SIGKILL');
    }
  });
});
