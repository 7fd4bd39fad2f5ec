/**
 * A network in a box: a userspace TCP proxy that makes a loopback connection behave like a link of
 * a given rate and latency (netem is not available on these machines). Used by the benches and by
 * the tests (a slow link must not change a bit).
 *
 *   const coordLink = createSharedLink({ upBps: 1e9, downBps: 1e9 });   // the coordinator's own link
 *   const p = await startLinkProxy({ target: { host: '127.0.0.1', port }, upBps: 100e6, downBps: 100e6,
 *                                    latencyMs: 20, shared: coordLink });
 *   // workers connect to ws://127.0.0.1:${p.port}
 *
 * Model (store and forward, per direction): a chunk of B bytes leaves the worker's link when that
 * link has sent everything before it (B * 8 / rate seconds each), then crosses the shared link the
 * same way (all proxies given the same `shared` queue there, in the order they arrive), and is
 * delivered `latencyMs` after it left. Order is kept. "up" is worker -> target, "down" the reverse.
 *
 * Backpressure, end to end: a direction holds at most `maxQueuedBytes` (default 1 MiB plus one
 * rate x latency product) scheduled but not yet written; past it the reading socket is paused, and
 * it is also paused while the writing socket's buffer is full. No queue grows without bound.
 */
import * as net from 'node:net';

/** One direction of a link: the time (ms, performance.now) at which it is free again. */
class Wire {
  /** @param {number} bitsPerS rate; Infinity for none */
  constructor(bitsPerS) {
    this.msPerByte = Number.isFinite(bitsPerS) && bitsPerS > 0 ? 8000 / bitsPerS : 0;
    this.freeAt = 0;
  }

  /** The bytes start at `from` or when the wire is free, whichever is later; returns when they are through. */
  pass(bytes, from) {
    const start = Math.max(from, this.freeAt);
    this.freeAt = start + bytes * this.msPerByte;
    return this.freeAt;
  }
}

/** A link several proxies share (the coordinator's own): rates in bits/s each way. */
export function createSharedLink({ upBps = Infinity, downBps = Infinity } = {}) {
  return { up: new Wire(upBps), down: new Wire(downBps) };
}

/** Chunks are cut to this size so that a fast link's bytes are not held behind one big chunk. */
const PIECE = 16 * 1024;

/**
 * Pipe `src` to `dst` through `wire` (then `shared`, if any) with `latencyMs`; returns a stats
 * getter. `end` of src ends dst once everything before it was delivered.
 */
function pipeThrough(src, dst, wire, shared, latencyMs, maxQueuedBytes) {
  /** @type {{ at: number, data: Buffer }[]} */
  const queue = [];
  let queued = 0;
  let peak = 0;
  let timer = null;
  let ended = false;
  let delivered = 0;

  const pump = () => {
    timer = null;
    const now = performance.now();
    while (queue.length > 0 && queue[0].at <= now) {
      const { data } = queue.shift();
      queued -= data.length;
      delivered += data.length;
      if (!dst.destroyed) dst.write(data);
    }
    if (queue.length > 0) timer = setTimeout(pump, Math.max(0, queue[0].at - now));
    else if (ended && !dst.destroyed) dst.end();
    maybeResume();
  };
  const maybeResume = () => {
    if (src.isPaused() && queued <= maxQueuedBytes && !dst.writableNeedDrain) src.resume();
  };
  src.on('data', (chunk) => {
    const now = performance.now();
    for (let off = 0; off < chunk.length; off += PIECE) {
      const data = chunk.subarray(off, Math.min(chunk.length, off + PIECE));
      let t = wire.pass(data.length, now);
      if (shared) t = shared.pass(data.length, t);
      queue.push({ at: t + latencyMs, data });
      queued += data.length;
    }
    peak = Math.max(peak, queued);
    if (queued > maxQueuedBytes || dst.writableNeedDrain) src.pause();
    if (timer === null) pump();
  });
  dst.on('drain', maybeResume);
  src.on('end', () => {
    ended = true;
    if (timer === null) pump();
  });
  return () => ({ queued, peak, delivered });
}

/**
 * Listen on `listenHost` (default 127.0.0.1), port `port` (default any), and forward each
 * connection to `target` ({host, port} or {path} for a Unix socket) through an emulated link:
 * `upBps`/`downBps` (bits/s, default unlimited), `latencyMs` one way (default 0), and `shared`
 * (createSharedLink) crossed by every proxy given it.
 * Resolves to { port, url(host?), stats(), close() }; stats() sums all connections (bytes queued
 * now, the largest queue seen in one direction, bytes delivered up and down).
 */
export async function startLinkProxy({
  target, listenHost = '127.0.0.1', port = 0, upBps = Infinity, downBps = Infinity, latencyMs = 0, shared = null, maxQueuedBytes,
}) {
  const up = new Wire(upBps);
  const down = new Wire(downBps);
  const bdp = (bps) => (Number.isFinite(bps) ? Math.ceil((bps / 8) * (latencyMs / 1000)) : 0);
  const limitUp = maxQueuedBytes ?? 1024 * 1024 + bdp(upBps);
  const limitDown = maxQueuedBytes ?? 1024 * 1024 + bdp(downBps);
  const sockets = new Set();
  const stats = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    const u = pipeThrough(client, upstream, up, shared?.up ?? null, latencyMs, limitUp);
    const d = pipeThrough(upstream, client, down, shared?.down ?? null, latencyMs, limitDown);
    stats.push({ u, d });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, listenHost, resolve);
  });
  const actual = /** @type {net.AddressInfo} */ (server.address()).port;
  return {
    port: actual,
    url: (scheme = 'ws') => `${scheme}://${listenHost}:${actual}`,
    stats() {
      let queued = 0;
      let peak = 0;
      let upBytes = 0;
      let downBytes = 0;
      for (const { u, d } of stats) {
        const a = u();
        const b = d();
        queued += a.queued + b.queued;
        peak = Math.max(peak, a.peak, b.peak);
        upBytes += a.delivered;
        downBytes += b.delivered;
      }
      return { queued, peak, upBytes, downBytes, limitUp, limitDown };
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
