/**
 * The transport benchmark: what moving tensors through the coordinator costs, apart from compute.
 *
 * 1. Round trip of a gradient at the full model (3072-2048-2048-10, 42 MB of parameters and of
 *    gradient) through the real coordinator (server, membership, cluster executor, reducer) and a
 *    Node worker socket in another process, on loopback: one request of one chunk of one sample,
 *    with a new parameter version each time, so each round trip is Params down + Work down +
 *    Result up. `rt ms` is the executor's request time without the compute the worker reports
 *    (StepTiming broadcast + upload: from the first send until the reducer has taken the
 *    gradient; hashing the new parameters happens before and is not in it), `GB/s` is
 *    2 x 42 MB / rt, `coord CPU ms` the coordinator's CPU time per round trip (encoding included).
 *    Workers:
 *    - `ws (transport)`: a worker that speaks the protocol with the worker package's own socket
 *      and framing (wsClientSocket, resultHeader, decodeMessage: zero mask, fragments) but copies
 *      the parameters without checking their checksum and answers at once (the gradient it sends
 *      is the parameter bytes);
 *    - `gradhub worker (overlaps compute)`: the real Node worker (CLI): it also copies the
 *      parameters into its engine, checks their xxHash64 and computes (the reported compute is
 *      taken out); it streams its gradient part by part while it computes, so part of the upload
 *      hides under the compute taken out: the `ws (transport)` row is the transport's own figure;
 *    - `raw TCP`: 42 MB down and 42 MB up over a plain `net` socket between the same two
 *      processes, the floor for this machine in the same run.
 * 2. Coordinator memory against the worker count: a small model (3072-256-10, 3.2 MB gradient),
 *    global batch 256 in 16 chunks, 2, 8 and 16 real `gradhub worker` processes, 8 train
 *    requests, with the default memory budget (512 MiB: 170 of these gradients, so it never binds)
 *    and with 16 MiB (5 gradients); each row in a fresh process. `RSS base` is the coordinator's
 *    RSS once the workers joined, `RSS peak` its highest RSS during the requests and
 *    `ArrayBuffers peak` the highest ArrayBuffer memory (received fragments not yet collected
 *    included), both sampled every 2 ms; `held peak` the most gradient bytes the reducer held at
 *    once (waiting results + the one being combined: ReducerStats.peakHeld), `pool` its buffers,
 *    `step ms` the median request time.
 *
 *   node bench/transport.js            prints both tables
 *   benchTransport({ reps, workers })  returns { roundTrip, memory } (rows as printed)
 */
import { fork, spawn } from 'node:child_process';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import WebSocket from 'ws';
import { modelSpec, initParams } from '@gradhub/core';
import { startCluster } from '@gradhub/coordinator';
import { NODE_FLAGS } from '@gradhub/cli';
import { PROTOCOL_VERSION, decodeMessage, encode, resultHeader, wsClientSocket } from '@gradhub/worker';

const SELF = fileURLToPath(import.meta.url);
const CLI = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
const FULL = [3072, 2048, 2048, 10];
const SMALL = [3072, 256, 10];
const TOKEN = 'bench';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const exited = (c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', r)));

/** Random pixels and labels for `n` samples (the values do not matter here). */
function batchOf(n) {
  const pixels = new Uint8Array(n * 3072);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  return { pixels, labels };
}

/** One round-trip row: `worker` is 'echo' (ws transport) or 'cli' (gradhub worker). */
async function roundTrip(worker, reps) {
  const logger = pino({ level: 'silent' });
  const spec = modelSpec(FULL);
  const cluster = await startCluster({ host: '127.0.0.1', port: 0, token: TOKEN, sizes: FULL, chunk: 1, normalize: false, maxBatch: 1, logger, speculateAfterMs: null });
  const child = worker === 'echo'
    ? fork(SELF, ['--echo-worker', cluster.url], { execArgv: NODE_FLAGS, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    : spawn(process.execPath, [...NODE_FLAGS, CLI, 'worker', '--url', cluster.url, '--token', TOKEN, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await cluster.executor.waitForWorkers(1, 60_000);
    const params = new Float32Array(spec.paramCount);
    initParams(spec, 0, params);
    const { pixels, labels } = batchOf(1);
    const rts = [];
    let cpu = 0;
    for (let v = 0; v < reps + 2; v++) {
      params[0] = v; // a new version: its Params go down again
      const c0 = cpuMs();
      const r = await cluster.executor.run({ mode: 'train', step: v + 1, version: v, params, pixels, labels, batch: 1 });
      if (v < 2) continue; // warm-up
      cpu += cpuMs() - c0;
      const t = r.timing;
      rts.push(t.broadcastMs + t.uploadMs);
    }
    const rt = median(rts);
    return { worker: worker === 'echo' ? 'ws (transport)' : 'gradhub worker (overlaps compute)', 'MB each way': (4 * spec.paramCount) / 1e6, 'rt ms': rt, 'GB/s': (8 * spec.paramCount) / 1e6 / rt, 'coord CPU ms': cpu / reps };
  } finally {
    await cluster.close('done');
    if (worker === 'echo') child.kill();
    await exited(child);
  }
}

/** The raw TCP floor: 42 MB down, 42 MB back, between this process and a child. */
async function rawTcp(reps) {
  const bytes = 4 * modelSpec(FULL).paramCount;
  const data = new Uint8Array(bytes).fill(7);
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const child = fork(SELF, ['--tcp-echo', String(server.address().port), String(bytes)], { execArgv: [], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const sock = await new Promise((r) => server.once('connection', r));
  const rts = [];
  for (let i = 0; i < reps + 2; i++) {
    const t0 = performance.now();
    let got = 0;
    const back = new Promise((resolve) => {
      const on = (chunk) => {
        got += chunk.length;
        if (got >= bytes) {
          sock.off('data', on);
          resolve();
        }
      };
      sock.on('data', on);
    });
    sock.write(data);
    await back;
    if (i >= 2) rts.push(performance.now() - t0);
  }
  sock.destroy();
  server.close();
  await exited(child);
  const rt = median(rts);
  return { worker: 'raw TCP', 'MB each way': bytes / 1e6, 'rt ms': rt, 'GB/s': (2 * bytes) / 1e6 / rt, 'coord CPU ms': null };
}

/** Memory row for `n` workers and a memory budget (bytes; 0: the default), run in a fresh process (see benchTransport). */
async function memoryRow(n, steps, budget) {
  const logger = pino({ level: 'silent' });
  const spec = modelSpec(SMALL);
  const cluster = await startCluster({
    host: '127.0.0.1', port: 0, token: TOKEN, sizes: SMALL, chunk: 16, normalize: false, maxBatch: 256, logger, speculateAfterMs: null,
    memoryBudgetBytes: budget > 0 ? budget : undefined,
  });
  const children = [];
  for (let i = 0; i < n; i++) children.push(spawn(process.execPath, [...NODE_FLAGS, CLI, 'worker', '--url', cluster.url, '--token', TOKEN, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] }));
  try {
    await cluster.executor.waitForWorkers(n, 120_000);
    const params = new Float32Array(spec.paramCount);
    initParams(spec, 0, params);
    const { pixels, labels } = batchOf(256);
    // Warm-up (engines, JIT, pools), then measure.
    await cluster.executor.run({ mode: 'train', step: 1, version: 0, params, pixels, labels, batch: 256 });
    globalThis.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    let abPeak = 0;
    const sample = () => {
      const m = process.memoryUsage();
      peak = Math.max(peak, m.rss);
      abPeak = Math.max(abPeak, m.arrayBuffers);
    };
    const sampler = setInterval(sample, 2);
    const ms = [];
    for (let s = 1; s <= steps; s++) {
      params[0] = s;
      const t0 = performance.now();
      await cluster.executor.run({ mode: 'train', step: s + 1, version: s, params, pixels, labels, batch: 256 });
      ms.push(performance.now() - t0);
      sample();
    }
    clearInterval(sampler);
    const st = cluster.executor.stats;
    const grad = 4 * spec.paramCount;
    return {
      model: SMALL.join(','), 'budget MB': budget > 0 ? budget / 2 ** 20 : '512 (default)', workers: n, 'step ms': median(ms),
      'RSS base MB': base / 1e6, 'RSS peak MB': peak / 1e6, 'ArrayBuffers peak MB': abPeak / 1e6,
      'held peak MB': (st.peakHeld * grad) / 1e6, 'pool MB': (st.buffers * grad) / 1e6, 'results/step': st.assigned?.nodes ?? null,
    };
  } finally {
    await cluster.close('done');
    await Promise.all(children.map(exited));
  }
}

/**
 * @param {{ reps?: number, steps?: number, workers?: number[], budgets?: number[] }} [o] budgets: memory budgets in bytes (0: the default)
 * @returns {Promise<{ roundTrip: object[], memory: object[] }>}
 */
export async function benchTransport(o = {}) {
  const reps = o.reps ?? 9;
  const roundTrips = o.skipRoundTrip ? [] : [await rawTcp(reps), await roundTrip('echo', reps), await roundTrip('cli', reps)];
  const memory = [];
  for (const budget of o.budgets ?? [0, 16 * 2 ** 20]) {
    for (const n of o.workers ?? [2, 8, 16]) {
      const child = fork(SELF, ['--memory', String(n), String(o.steps ?? 8), String(budget)], { execArgv: ['--expose-gc', ...NODE_FLAGS], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const row = await new Promise((resolve, reject) => {
        child.once('message', resolve);
        child.once('exit', (code) => reject(new Error(`memory bench with ${n} workers exited with ${code}`)));
      });
      await exited(child);
      memory.push(row);
    }
  }
  return { roundTrip: roundTrips, memory };
}

/** The `ws (transport)` worker (a child process): protocol framing only, no checksum, no compute. */
async function echoWorker(url) {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${TOKEN}` }, perMessageDeflate: false, generateMask: (m) => m.fill(0), maxPayload: 1 << 30 });
  ws.binaryType = 'fragments';
  const sock = wsClientSocket(ws);
  let params = null;
  ws.on('open', () => sock.send([encode({ hello: { protocolVersion: PROTOCOL_VERSION, token: TOKEN, runtime: 1, capabilities: { threads: 1, simd: false, backend: 'echo' }, name: 'echo' } })], () => {}));
  ws.on('close', () => process.exit(0));
  ws.on('message', (data) => {
    const d = decodeMessage(Array.isArray(data) ? data : [data], 1 << 30);
    if (d.kind === 'welcome') {
      params = new Float32Array(modelSpec(d.msg.modelSizes).paramCount);
    } else if (d.kind === 'params') {
      const dst = new Uint8Array(params.buffer);
      let at = 4 * (d.msg.part?.offset ?? 0); // one message per layer
      for (const p of d.tail ?? [d.msg.data]) {
        dst.set(p, at);
        at += p.byteLength;
      }
    } else if (d.kind === 'work') {
      const m = d.msg;
      for (const n of m.nodes) {
        const header = resultHeader({
          seq: m.seq, step: m.step, version: m.version, node: { lo: n.lo, hi: n.hi }, part: { offset: 0, length: params.length },
          lossSum: 0, denomSum: n.sampleCount, correct: 0, computeMs: 0,
        }, params.byteLength);
        sock.send([header, new Uint8Array(params.buffer)], () => {});
      }
    } else if (d.kind === 'bye') {
      ws.close();
    }
  });
}

/** The raw TCP peer (a child process): reads `bytes`, writes them back, repeatedly. */
function tcpEcho(port, bytes) {
  const back = new Uint8Array(bytes).fill(9);
  const s = net.connect(port, '127.0.0.1');
  let got = 0;
  s.on('data', (chunk) => {
    got += chunk.length;
    if (got >= bytes) {
      got -= bytes;
      s.write(back);
    }
  });
  s.on('close', () => process.exit(0));
  s.on('error', () => process.exit(0));
}

function table(title, rows) {
  console.log(`\n## ${title}`);
  const keys = Object.keys(rows[0]);
  const fmt = (v) => (v === null ? '-' : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1)) : String(v));
  const cells = rows.map((r) => keys.map((k) => fmt(r[k])));
  const w = keys.map((k, i) => Math.max(k.length, ...cells.map((c) => c[i].length)));
  console.log(keys.map((k, i) => k.padEnd(w[i])).join('  '));
  for (const c of cells) console.log(c.map((v, i) => v.padEnd(w[i])).join('  '));
}

const arg = process.argv[2];
if (arg === '--echo-worker') {
  await echoWorker(process.argv[3]);
} else if (arg === '--tcp-echo') {
  tcpEcho(Number(process.argv[3]), Number(process.argv[4]));
} else if (arg === '--memory') {
  const row = await memoryRow(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5] ?? 0));
  process.send(row);
} else if (process.argv[1] === SELF) {
  const r = await benchTransport();
  table('Gradient round trip on loopback (full model; medians; rt = first send until the reducer took the gradient, compute excluded)', r.roundTrip);
  table('Coordinator memory against workers (small model, batch 256 in 16 chunks, 8 train requests, medians of step ms)', r.memory);
}
