/**
 * The dashboard of a real cluster (`gradhub coordinator` + 2 `gradhub worker` processes), open
 * in headless Chromium before the workers join and through the run: the loss chart grows step by
 * step to as many points as steps and the workers table has a row per worker, fed by the cluster
 * itself. Screenshot:
 * test/artifacts/dashboard-cluster.png.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { describe, it, expect } from 'vitest';
import { startCli, tempDir, ROOT, SMALL_RUN } from './helpers.js';
import { startCoordinator, stepsDone } from './cluster-helpers.js';

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
    const workers: ReturnType<typeof startCli>[] = [];
    const context = await chromium.launchPersistentContext(tempDir('dash-profile'), { executablePath: CHROMIUM, args: LAUNCH_ARGS });
    try {
      // The page opens before the workers join (the run waits for 2), so it is open during the
      // whole run however slow the machine; it records each point count the chart shows.
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      await page.goto(`${base}/dashboard?token=adm`);
      await page.evaluate(() => {
        const chart = document.querySelector('#loss-chart')!;
        const seen: number[] = ((window as unknown as { seen: number[] }).seen = []);
        new MutationObserver(() => seen.push(Number(chart.getAttribute('data-points')))).observe(chart, { attributes: true, attributeFilter: ['data-points'] });
      });
      expect(stepsDone(metrics), 'no step before the workers join').toBe(0);
      for (let i = 0; i < 2; i++) workers.push(startCli(['worker', '--url', coord.url, '--token', coord.token, '--slowdown-ms', '100']));
      // Mid-run: both workers have a row, and the chart follows the steps as they happen.
      await page.waitForFunction(() => document.querySelectorAll('table#workers tr.worker').length === 2, undefined, { timeout: 30_000 });
      const r = await coord.exited;
      expect(r.code, r.stderr).toBe(0);
      // After the run: exactly one point per step, and the chart showed counts in between.
      await page.waitForFunction((n) => Number(document.querySelector('#loss-chart')?.getAttribute('data-points')) === n, STEPS, { timeout: 10_000 });
      const seen = await page.evaluate(() => (window as unknown as { seen: number[] }).seen);
      expect(seen.some((n) => n > 0 && n < STEPS), `point counts seen: ${seen.join(',')}`).toBe(true);
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
