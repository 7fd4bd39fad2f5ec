/**
 * `gradhub coordinator --tls-cert --tls-key`: https:// and wss:// on one port, with a self-signed
 * certificate made here by openssl. A Node worker that trusts it (--ca) and a headless Chromium tab
 * (a secure context, so cross-origin isolated) train together, byte-identical to --workers 0.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as https from 'node:https';
import { chromium } from 'playwright-core';
import { describe, it, expect } from 'vitest';
import { runCli, startCli, sha256, tempDir, SMALL_RUN } from './helpers.js';
import { startCoordinator, waitFor } from './cluster-helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const RUN = [...SMALL_RUN, '--steps', '8'];

function selfSigned(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

function getJson(url: string, ca: Buffer): Promise<{ status: number; body: Record<string, unknown>; hsts: string | undefined }> {
  return new Promise((resolve, reject) => {
    https.get(url, { ca }, (res) => {
      let text = '';
      const hsts = res.headers['strict-transport-security'];
      res.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text), hsts }));
    }).on('error', reject);
  });
}

describe.skipIf(!HAVE_CHROMIUM && !process.env.CI)('coordinator over TLS', () => {
  it('serves https/wss: a Node worker trusting the certificate and a Chromium tab train byte-identical to --workers 0', async () => {
    expect(HAVE_CHROMIUM, 'CI must install chromium (apt-get install -y chromium)').toBe(true);
    const dir = tempDir('tls');
    const { cert, key } = selfSigned(dir);
    const ref = await runCli(['train', '--workers', '0', ...RUN, '--export', path.join(dir, 'ref.st')]);
    expect(ref.code, ref.stderr).toBe(0);

    const coord = await startCoordinator([...RUN, '--min-workers', '2', '--tls-cert', cert, '--tls-key', key, '--export', path.join(dir, 'w.st')]);
    expect(coord.url.startsWith('wss://127.0.0.1:')).toBe(true);
    const base = coord.url.replace(/^wss/, 'https');
    const health = await getJson(`${base}/healthz`, fs.readFileSync(cert));
    expect(health.status).toBe(200);
    expect(health.hsts).toMatch(/^max-age=\d+/); // with TLS, browsers are told to keep to https

    const worker = startCli(['worker', '--url', coord.url, '--token', coord.token, '--ca', cert, '--slowdown-ms', '30']);
    // A fresh profile; the self-signed certificate is accepted for this context only.
    const context = await chromium.launchPersistentContext(tempDir('tls-profile'), { executablePath: CHROMIUM, args: LAUNCH_ARGS, ignoreHTTPSErrors: true });
    try {
      const page = await context.newPage();
      // What the tab says (its worker logs the protocol client's lines with ?debug), for a failure message.
      const said: string[] = [];
      page.on('console', (m) => said.push(`${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => said.push(`page error: ${e.message}`));
      page.on('requestfailed', (r) => said.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
      page.on('worker', (w) => said.push(`worker started: ${w.url()}`));
      await page.goto(`${base}/join?token=${encodeURIComponent(coord.token)}&debug`);
      expect(await page.evaluate(() => window.isSecureContext && window.crossOriginIsolated)).toBe(true);
      // The run normally takes a few seconds; if it hangs, say what the processes said.
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the run did not end within 45 s\n--- coordinator stderr (tail):\n${coord.output().stderr.slice(-6000)}\n--- worker stderr (tail):\n${worker.output().stderr.slice(-3000)}\n--- the tab:\n${said.join('\n').slice(-6000)}`)), 45_000);
      });
      const r = await Promise.race([coord.exited, stuck]).finally(() => clearTimeout(timer));
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(path.join(dir, 'w.st'))).toBe(sha256(path.join(dir, 'ref.st')));
      await waitFor(() => worker.exitCode !== null, 10_000, 'the worker to leave after the run');
    } finally {
      await context.close();
      worker.kill('SIGKILL');
    }
  });

  it('refuses a certificate without its key, and unreadable files, with a usage error', async () => {
    const dir = tempDir('tls-bad');
    const { cert } = selfSigned(dir);
    for (const extra of [['--tls-cert', cert], ['--tls-cert', cert, '--tls-key', path.join(dir, 'missing.pem')], ['--tls-cert', cert, '--tls-key', cert]]) {
      const r = await runCli(['coordinator', ...RUN, '--host', '127.0.0.1', '--port', '0', ...extra]);
      expect(r.code, extra.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/E_USAGE/);
      expect(r.stderr).toMatch(/tls|TLS/);
    }
  });
});
