/**
 * The link emulator (bench/link/proxy.js) over real loopback sockets: bytes arrive intact and in
 * order, no faster than the rate and no sooner than the latency allow, a shared link is shared,
 * its queues stay bounded; and a cluster whose workers sit behind slow links trains to the same
 * bits as --workers 0. Only lower bounds on time are asserted (a loaded machine may be slower).
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createSharedLink, startLinkProxy, type LinkProxy } from '../bench/link/proxy.js';
import { runCli, startCli, sha256, tempDir, SMALL_RUN } from './helpers.js';
import { startCoordinator } from './cluster-helpers.js';

type Proxy = LinkProxy;

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  // Last opened, first closed: sockets, then proxies, then the servers they lead to.
  for (const c of closers.splice(0).reverse()) await c();
});

/** A TCP server on loopback that echoes (or, with `sink`, counts and drops) what it receives. */
async function server(mode: 'echo' | 'sink'): Promise<{ port: number; received: () => number }> {
  let received = 0;
  const s = net.createServer((c) => {
    c.on('data', (d) => {
      received += d.length;
      if (mode === 'echo') c.write(d);
    });
    c.on('error', () => {});
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => s.close(() => r())));
  return { port: (s.address() as net.AddressInfo).port, received: () => received };
}

async function proxy(o: Parameters<typeof startLinkProxy>[0]): Promise<Proxy> {
  const p = await startLinkProxy(o);
  closers.push(() => p.close());
  return p;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
    closers.push(() => void s.destroy());
  });
}

/** Send `data`, resolve with what came back once `expect` bytes arrived, and the time it took. */
function exchange(s: net.Socket, data: Buffer, expectBytes: number): Promise<{ back: Buffer; ms: number }> {
  const t0 = performance.now();
  const parts: Buffer[] = [];
  let n = 0;
  return new Promise((resolve) => {
    s.on('data', (d: Buffer) => {
      parts.push(d);
      n += d.length;
      if (n >= expectBytes) resolve({ back: Buffer.concat(parts), ms: performance.now() - t0 });
    });
    s.write(data);
  });
}

describe('link proxy', () => {
  it('delivers every byte in order both ways, no sooner than the latency allows', async () => {
    const echo = await server('echo');
    const p = await proxy({ target: { host: '127.0.0.1', port: echo.port }, upBps: 200e6, downBps: 200e6, latencyMs: 25 });
    const s = await connect(p.port);
    const ping = await exchange(s, Buffer.from('x'), 1);
    expect(ping.ms).toBeGreaterThanOrEqual(2 * 25 - 1); // one way there, one way back
    const data = randomBytes(2 * 1024 * 1024);
    const { back } = await exchange(s, data, data.length + 0);
    expect(back.equals(data)).toBe(true);
    expect(p.stats()).toMatchObject({ upBytes: data.length + 1, downBytes: data.length + 1 });
  });

  it('sends no faster than its rate, and holds a bounded queue when the sender is faster', async () => {
    const sink = await server('sink');
    const limit = 64 * 1024;
    const p = await proxy({ target: { host: '127.0.0.1', port: sink.port }, upBps: 4e6, latencyMs: 0, maxQueuedBytes: limit });
    const s = await connect(p.port);
    const bytes = 512 * 1024;
    const t0 = performance.now();
    s.write(randomBytes(bytes));
    while (sink.received() < bytes) await new Promise((r) => setTimeout(r, 10));
    const ms = performance.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(((bytes * 8) / 4e6) * 1000 * 0.98);
    // The proxy paused its reading side: at most the limit plus one socket read (64 KiB) was ever held.
    expect(p.stats().peak).toBeLessThanOrEqual(limit + 64 * 1024);
  });

  it('two links behind one shared link share its rate', async () => {
    const sink = await server('sink');
    const shared = createSharedLink({ upBps: 16e6 });
    const a = await proxy({ target: { host: '127.0.0.1', port: sink.port }, upBps: 1e9, shared });
    const b = await proxy({ target: { host: '127.0.0.1', port: sink.port }, upBps: 1e9, shared });
    const [sa, sb] = await Promise.all([connect(a.port), connect(b.port)]);
    const each = 512 * 1024;
    const t0 = performance.now();
    sa.write(randomBytes(each));
    sb.write(randomBytes(each));
    while (sink.received() < 2 * each) await new Promise((r) => setTimeout(r, 10));
    // 1 MiB through 16 Mbit/s: at least 0.52 s, though each worker link alone could do it in 4 ms.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(((2 * each * 8) / 16e6) * 1000 * 0.98);
  });
});

describe('a cluster behind slow links', () => {
  it('two workers behind 40 Mbit/s + 5 ms links, through a shared 80 Mbit/s coordinator link, end byte-identical to --workers 0', async () => {
    const run = [...SMALL_RUN, '--steps', '8'];
    const refDir = tempDir('slowref');
    const ref = await runCli(['train', '--workers', '0', ...run, '--run-dir', path.join(refDir, 'run')]);
    expect(ref.code, ref.stderr).toBe(0);

    const dir = tempDir('slowlink');
    const coord = await startCoordinator([...run, '--min-workers', '2', '--run-dir', path.join(dir, 'run')]);
    closers.push(() => void coord.process.kill('SIGKILL'));
    const shared = createSharedLink({ upBps: 80e6, downBps: 80e6 });
    const links: Proxy[] = [];
    for (let i = 0; i < 2; i++) {
      const p = await proxy({ target: { host: '127.0.0.1', port: coord.port }, upBps: 40e6, downBps: 40e6, latencyMs: 5, shared });
      links.push(p);
      const w = startCli(['worker', '--url', `ws://127.0.0.1:${p.port}`, '--token', coord.token]);
      closers.push(() => void w.kill('SIGKILL'));
    }
    const r = await coord.exited;
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(path.join(dir, 'run', 'model.safetensors'))).toBe(sha256(path.join(refDir, 'run', 'model.safetensors')));
    // The parameters and gradients really went through the links.
    for (const p of links) expect(p.stats().downBytes).toBeGreaterThan(100_000);
  });
});
