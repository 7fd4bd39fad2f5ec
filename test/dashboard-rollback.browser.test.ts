/**
 * The dashboard after a rollback (a cheater proven: docs/design.md "Audits and exact rollback"),
 * in a real headless Chromium: the run status goes back to an earlier step and the steps after it
 * are replayed; the open page drops the undone points and evaluations and draws the replayed ones,
 * so the chart holds one point per step, as the metrics file does.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { RunStatus, createHttpRoutes } from '@gradhub/coordinator';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const TOKEN = 'rollback-dashboard-token';

describe.skipIf(!HAVE_CHROMIUM && !process.env.CI)('the dashboard across a rollback', () => {
  it('drops the undone steps and evaluations from the open page and draws the replayed ones', async () => {
    expect(HAVE_CHROMIUM, 'CI must install chromium (apt-get install -y chromium)').toBe(true);
    const status = new RunStatus({ runId: 'run-rollback', name: 'rollback', settings: { sizes: '3072,8,10' }, totalSteps: 12 });
    const routes = createHttpRoutes({ status, logger: pino({ level: 'silent' }), adminToken: TOKEN });
    const server = http.createServer((req, res) => {
      if (!routes(req, res)) {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const errors: string[] = [];
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      page.on('pageerror', (e) => errors.push(e.message));
      status.setState('training');
      const step = (k: number, loss: number): void => status.addStep({ step: k, epoch: 1, loss, accuracy: 0.1, samplesPerS: 100 });
      for (let k = 1; k <= 10; k++) step(k, 2.3 - k * 0.01);
      status.addEval({ epoch: 0.3, step: 3, testLoss: 2.2, testAccuracy: 0.12 });
      status.addEval({ epoch: 0.6, step: 6, testLoss: 2.1, testAccuracy: 0.15 });
      await page.goto(`${base}/dashboard?token=${TOKEN}`);
      const attr = (id: string, name: string) => page.locator(id).getAttribute(name);
      await page.waitForFunction(() => document.querySelector('#loss-chart')?.getAttribute('data-points') === '10', undefined, { timeout: 20_000 });
      // Live: two more steps, then a rollback to step 4 and a replay of 5..8.
      step(11, 2.0);
      step(12, 1.9);
      await page.waitForFunction(() => document.querySelector('#loss-chart')?.getAttribute('data-points') === '12', undefined, { timeout: 20_000 });
      expect(await attr('#acc-chart', 'data-evals')).toBe('2');
      status.rollBack(4);
      for (let k = 5; k <= 8; k++) step(k, 2.25 - k * 0.01);
      await page.waitForFunction(() => document.querySelector('#step')?.textContent === '8', undefined, { timeout: 20_000 });
      await page.waitForFunction(() => document.querySelector('#loss-chart')?.getAttribute('data-points') === '8', undefined, { timeout: 20_000 });
      expect(await attr('#acc-chart', 'data-evals')).toBe('1'); // the evaluation at step 6 was undone
      expect(errors).toEqual([]);
    } finally {
      await context.close();
      routes.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(profile, { recursive: true, force: true });
    }
  }, 60_000);
});
