// The volunteer page's routes over real HTTP, on a stand-in build of the browser worker: what is
// served where, the cross-origin isolation and CSP headers, the join-token checks, caching.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isGradhubError } from '@gradhub/core';
import { createVolunteerRoutes, type VolunteerRoutesOptions } from '../src/volunteer-routes.js';
import { testLogger } from './cluster-helpers.js';

const TOKEN = 'join-secret';
const logger = testLogger();
const TEMPLATE = '<!doctype html><title>{{RUN_NAME}}</title><meta name="gradhub-ws-path" content="{{WS_PATH}}">' +
  '<meta name="gradhub-auth-path" content="{{AUTH_PATH}}"><meta name="gradhub-join-token" content="{{JOIN_TOKEN}}"><h1 id="run-name">{{RUN_NAME}}</h1>';

let assetsDir: string;
const servers: http.Server[] = [];

beforeAll(() => {
  assetsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-volunteer-assets-'));
  fs.writeFileSync(path.join(assetsDir, 'volunteer.html'), TEMPLATE);
  fs.writeFileSync(path.join(assetsDir, 'volunteer.css'), 'body { color: black; }\n');
  fs.writeFileSync(path.join(assetsDir, 'page.js'), 'console.log("page");\n');
  fs.writeFileSync(path.join(assetsDir, 'worker.js'), 'console.log("worker");\n');
  fs.writeFileSync(path.join(assetsDir, 'worker.js.map'), '{"version":3}\n');
  fs.writeFileSync(path.join(assetsDir, 'notes.md'), 'not served\n');
});

afterAll(async () => {
  for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  fs.rmSync(assetsDir, { recursive: true, force: true });
});

async function serve(over: Partial<VolunteerRoutesOptions> = {}): Promise<string> {
  const routes = createVolunteerRoutes({ assetsDir, runName: 'cifar <10> & "friends"', token: TOKEN, logger, ...over });
  const server = http.createServer((req, res) => {
    if (!routes(req, res)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    }
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function expectIsolated(res: Response): void {
  expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
  expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
  expect(res.headers.get('cross-origin-resource-policy')).toBe('same-origin');
  expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  expect(res.headers.get('referrer-policy')).toBe('no-referrer');
}

describe('volunteer routes', () => {
  it('serves the page at / and /join, cross-origin isolated, with a strict CSP and the run name escaped', async () => {
    const base = await serve();
    for (const p of ['/', '/join', `/join?token=${TOKEN}`]) {
      const res = await fetch(base + p);
      expect(res.status, p).toBe(200);
      expectIsolated(res);
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(res.headers.get('cache-control')).toBe('no-store');
      const csp = res.headers.get('content-security-policy')!;
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self' 'wasm-unsafe-eval'");
      expect(csp).toContain(`connect-src 'self' ws://${new URL(base).host} wss://${new URL(base).host}`);
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      const html = await res.text();
      expect(html).toContain('<h1 id="run-name">cifar &lt;10&gt; &amp; &quot;friends&quot;</h1>');
      expect(html).toContain('name="gradhub-ws-path" content="/ws"');
      expect(html).toContain('name="gradhub-auth-path" content="/volunteer/auth"');
      expect(html).toContain('name="gradhub-join-token" content=""');
      expect(html).not.toContain(TOKEN);
    }
  });

  it('refuses a join link with a wrong token (403 page); puts the token in / only with openJoin', async () => {
    const base = await serve();
    const bad = await fetch(`${base}/join?token=nope`);
    expect(bad.status).toBe(403);
    expectIsolated(bad);
    expect(await bad.text()).toContain('This join link is not valid');

    const open = await serve({ openJoin: true, wsPath: '/' });
    const html = await (await fetch(`${open}/`)).text();
    expect(html).toContain(`name="gradhub-join-token" content="${TOKEN}"`);
    expect(html).toContain('name="gradhub-ws-path" content="/"');
    expect(await (await fetch(`${open}/join`)).text()).toContain('name="gradhub-join-token" content=""');

    // Without a token, nothing is checked here (the WebSocket upgrade still is).
    const unchecked = await serve({ token: undefined });
    expect((await fetch(`${unchecked}/join?token=anything`)).status).toBe(200);
    expect(await (await fetch(`${unchecked}/`)).text()).toContain('name="gradhub-auth-path" content=""');
    expect((await fetch(`${unchecked}/volunteer/auth`)).status).toBe(404);
  });

  it('answers the token check: 204 for the join token, 401 otherwise', async () => {
    const base = await serve();
    const good = await fetch(`${base}/volunteer/auth`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(good.status).toBe(204);
    expectIsolated(good);
    expect((await fetch(`${base}/volunteer/auth`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    expect((await fetch(`${base}/volunteer/auth`)).status).toBe(401);
  });

  it('serves the build with content types, ETags and 304s; never the raw template or other files', async () => {
    const base = await serve();
    const js = await fetch(`${base}/volunteer/worker.js`);
    expect(js.status).toBe(200);
    expectIsolated(js);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('content-security-policy')).toContain("'wasm-unsafe-eval'");
    expect(await js.text()).toBe('console.log("worker");\n');
    const etag = js.headers.get('etag')!;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    const again = await fetch(`${base}/volunteer/worker.js`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect((await fetch(`${base}/volunteer/volunteer.css`)).headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect((await fetch(`${base}/volunteer/worker.js.map`)).headers.get('content-type')).toBe('application/json; charset=utf-8');
    const head = await fetch(`${base}/volunteer/page.js`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String('console.log("page");\n'.length));
    expect(await head.text()).toBe('');
    for (const p of ['/volunteer/volunteer.html', '/volunteer/notes.md', '/volunteer/../package.json', '/volunteer/', '/dashboard', '/ws']) {
      expect((await fetch(base + p)).status, p).toBe(404);
    }
    const post = await fetch(`${base}/`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('fails at creation when the build is missing or the options contradict', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-volunteer-empty-'));
    try {
      createVolunteerRoutes({ assetsDir: empty, runName: 'r', logger });
      expect.unreachable();
    } catch (err) {
      expect(isGradhubError(err) && err.code).toBe('E_USAGE');
      expect((err as Error).message).toMatch(/not built: volunteer\.html, volunteer\.css, page\.js, worker\.js missing .*build:browser/);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
    expect(() => createVolunteerRoutes({ assetsDir, runName: ' ', logger })).toThrow(/run name/);
    expect(() => createVolunteerRoutes({ assetsDir, runName: 'r', openJoin: true, logger })).toThrow(/needs the token/);
    expect(() => createVolunteerRoutes({ assetsDir, runName: 'r', token: '', logger })).toThrow(/non-empty/);
    expect(() => createVolunteerRoutes({ assetsDir, runName: 'r', wsPath: 'ws', logger })).toThrow(/absolute path/);
  });
});
