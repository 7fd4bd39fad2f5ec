/**
 * The coordinator's edge against a browser on another site and a peer that does not keep to the
 * limits (issue 15), on a real `gradhub coordinator` process over real sockets: WebSocket upgrades
 * from other web origins refused (403), the coordinator's own origin, an allowed one and none
 * accepted; bad tokens refused (401); a frame past ws's hard cap answered with OVERSIZE_FRAME
 * before the 1009 close; a silent connection timed out; every refusal counted in /metrics; the
 * security headers on every answer, no source maps, /healthz without the run's details.
 */
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { gradhub } from '@gradhub/proto';
import { SMALL_RUN, tempDir } from '../helpers.js';
import { waitFor, type RunningCoordinator } from '../cluster-helpers.js';
import { pollUntil } from '../support/poll.js';
import { JOIN, TRUSTED, counted, get, metricsOf, startCoordinatorUnder } from './adversary-helpers.js';
import { hello } from './attackers/hello.mjs';

let coord: RunningCoordinator;

beforeAll(async () => {
  const dir = tempDir('adv-edge');
  coord = await startCoordinatorUnder([...SMALL_RUN, '--steps', '2', '--min-workers', '2', '--run-dir', `${dir}/run`,
    '--allow-origin', 'https://allowed.example,http://also.example:8000', '--headers-timeout-ms', '1000']);
});

afterAll(() => {
  coord?.process.kill('SIGKILL');
});

/** Open a WebSocket to the coordinator: the HTTP status of a refusal, or 101 with the socket. */
function upgrade(headers: Record<string, string>, token = JOIN): Promise<{ status: number; ws: WebSocket | null }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${coord.url}/ws`, { headers: { authorization: `Bearer ${token}`, ...headers }, perMessageDeflate: false });
    ws.on('open', () => resolve({ status: 101, ws }));
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, ws: null });
      ws.terminate();
    });
    ws.on('error', (err) => reject(err));
  });
}

describe('the Origin of a WebSocket upgrade', () => {
  it('refuses other sites with 403 and counts them; takes no Origin (Node), its own origin (http or https), and --allow-origin', async () => {
    const own = `http://127.0.0.1:${coord.port}`;
    for (const origin of ['https://evil.example', 'http://127.0.0.1:1', 'null', 'https://allowed.example.evil.example']) {
      expect((await upgrade({ origin })).status, origin).toBe(403);
    }
    const accepted: Record<string, string>[] = [{}, { origin: own }, { origin: `https://127.0.0.1:${coord.port}` }, { origin: 'https://allowed.example' }, { origin: 'http://also.example:8000' }];
    for (const headers of accepted) {
      const r = await upgrade(headers);
      expect(r.status, JSON.stringify(headers)).toBe(101);
      r.ws!.terminate();
    }
    expect((await upgrade({ origin: own }, 'wrong-token')).status).toBe(401);
    const m = await pollUntil(async () => {
      const f = await metricsOf(coord.port);
      return counted(f, 'gradhub_refused_total', { reason: 'origin' }) >= 4 ? f : null;
    }, 20_000, 'the refused upgrades counted');
    expect(counted(m, 'gradhub_refused_total', { reason: 'origin' })).toBe(4);
    expect(counted(m, 'gradhub_refused_total', { reason: 'bad_token' })).toBe(1);
  });
});

describe('a frame past the hard cap', () => {
  it('is answered with OVERSIZE_FRAME before the 1009 close, and counted', async () => {
    const { ws } = await upgrade({}, TRUSTED);
    const got: { kind: string; code?: number }[] = [];
    const closed = new Promise<number>((resolve) => ws!.on('close', (code) => resolve(code)));
    ws!.on('message', (data) => {
      const env = gradhub.Envelope.decode(data as Buffer);
      const kind = env.body!;
      got.push({ kind, code: kind === 'reject' || kind === 'error' ? (env[kind] as { code: number }).code : undefined });
    });
    ws!.send(hello(TRUSTED, 'oversize'));
    await waitFor(() => got.some((g) => g.kind === 'welcome'), 20_000, 'Welcome');
    ws!.send(Buffer.alloc(8 * 1024 * 1024)); // the model is 300 KB: far past twice its limit
    expect(await closed).toBe(1009);
    expect(got.filter((g) => g.kind === 'error' || g.kind === 'reject')).toEqual([{ kind: 'error', code: gradhub.ErrorCode.OVERSIZE_FRAME }]);
    const m = await metricsOf(coord.port);
    expect(counted(m, 'gradhub_rejected_messages_total', { code: 'OVERSIZE_FRAME' })).toBeGreaterThanOrEqual(1);
  });
});

describe('a connection that sends nothing, or half a request head', () => {
  it('is answered 408 or closed after --headers-timeout-ms, and counted', async () => {
    const t0 = Date.now();
    const ends = ['', 'GET /healthz HTTP/1.1\r\nHost: x\r\n'].map((head) => new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: coord.port }, () => s.write(head));
      let said = '';
      s.on('data', (d) => (said += d.toString()));
      s.on('error', () => {});
      s.on('close', () => resolve(said));
    }));
    const said = await Promise.all(ends);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(said[1]).toMatch(/^HTTP\/1\.1 408/);
    const m = await metricsOf(coord.port);
    expect(counted(m, 'gradhub_refused_total', { reason: 'timeout' })).toBeGreaterThanOrEqual(1);
  });
});

describe('every HTTP answer', () => {
  it('carries the security headers; /healthz says only ok; source maps are not served', async () => {
    const health = await get(coord.port, '/healthz');
    expect(JSON.parse(health.body)).toEqual({ status: 'ok' });
    for (const p of ['/healthz', '/dashboard', '/join', '/volunteer/worker.js', '/api/status', '/nope']) {
      const r = await get(coord.port, p);
      expect(r.headers.get('x-content-type-options'), p).toBe('nosniff');
      expect(r.headers.get('x-frame-options'), p).toBe('DENY');
      expect(r.headers.get('referrer-policy'), p).toBe('no-referrer');
      expect(r.headers.get('cross-origin-opener-policy'), p).toBe('same-origin');
      expect(r.headers.get('content-security-policy'), p).toMatch(/frame-ancestors 'none'|default-src/);
    }
    // The pages keep the CSP they need (their own scripts), not the default that allows nothing.
    expect((await get(coord.port, '/dashboard')).headers.get('content-security-policy')).toMatch(/script-src/);
    expect((await get(coord.port, '/join')).headers.get('content-security-policy')).toMatch(/script-src/);
    for (const p of ['/volunteer/worker.js.map', '/volunteer/page.js.map', '/assets/x.map']) expect((await get(coord.port, p)).status, p).toBe(404);
  });
});
