#!/usr/bin/env node
// An adversary worker for the tests: a real Node process that joins a coordinator like
// `gradhub worker` (the built @gradhub/worker: same session, client, engine and reconnects) and
// then misbehaves in one way, through the client's `beforeResult` test hook (client.ts
// `ResultHook`), which changes or drops each Result just before it is sent. The CLI never sets
// that hook; only this harness does.
//
//   node test/adversary/evil-worker.mjs --url URL --token TOKEN --mode MODE [--factor K]
//        [--backend wasm|ts] [--grace-ms MS] [--slowdown-ms MS] [--name NAME] [--every N] [--honest-first K]
//
// Modes (K: --factor, default 2):
//   honest            no change (a control)
//   stall             takes Work, never answers, keeps heartbeating (sends no Result at all)
//   forge-compute-ms  reports compute_ms = 1 in every Result
//   scale-grad        multiplies its gradients by K
//   forge-denom       divides denom_sum by K
//   forge-correct     reports correct = the node's samples
//   forge-eval        reports correct = the node's samples in evaluation results only (sums, no gradient)
//   nan               all-NaN gradients (and a NaN loss sum, so EVAL answers are non-finite too)
//   nan-once          the first Result all-NaN, then honest
// --every N (default 1): a corrupting mode corrupts only each N-th node result it computes (the
// N-th, 2N-th, ...: all messages of that node alike), honest otherwise: a patient cheater.
// --honest-first K (default 0): its first K node results are honest, and the count starts after.
// Both count the results the mode can change (scale-grad: those with a gradient, training and
// rounds; forge-eval: evaluation results; the other modes: all); the others go out unchanged and
// uncounted.
//
// stdout: one JSON object a line: {"event":"welcome","workerId":N} at each join (it reconnects
// like a worker after being dropped), {"event":"corrupt","step":S,"seq":Q,"node":"lo:hi","at":ms}
// for each node result it corrupts (the first message of it), {"event":"end", ...} when the
// session ends for good.
// The worker's own log goes to stderr (pino, level from GRADHUB_LOG_LEVEL, default warn).
// Exit code 0 when training is done or on SIGTERM/SIGINT, 1 on any other end.
import { parseArgs } from 'node:util';
import pino from 'pino';
import { startNodeWorker } from '@gradhub/worker';

const MODES = ['honest', 'stall', 'forge-compute-ms', 'scale-grad', 'forge-denom', 'forge-correct', 'forge-eval', 'nan', 'nan-once'];

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    mode: { type: 'string' },
    factor: { type: 'string', default: '2' },
    backend: { type: 'string', default: 'wasm' },
    'grace-ms': { type: 'string', default: '10000' },
    'slowdown-ms': { type: 'string', default: '0' },
    name: { type: 'string', default: '' },
    every: { type: 'string', default: '1' },
    'honest-first': { type: 'string', default: '0' },
  },
  strict: true,
});
const usage = (msg) => {
  process.stderr.write(`evil-worker: ${msg}\nusage: evil-worker.mjs --url URL --token TOKEN --mode ${MODES.join('|')} [--factor K]\n`);
  process.exit(2);
};
if (!values.url || !values.token) usage('--url and --token are required');
if (!MODES.includes(values.mode ?? '')) usage(`--mode must be one of ${MODES.join(', ')}`);
const factor = Number(values.factor);
if (!Number.isFinite(factor) || factor === 0) usage('--factor must be a finite non-zero number');
if (values.backend !== 'ts' && values.backend !== 'wasm') usage('--backend must be ts or wasm');
const every = Number(values.every);
if (!Number.isInteger(every) || every < 1) usage('--every must be a positive integer');
const honestFirst = Number(values['honest-first']);
if (!Number.isInteger(honestFirst) || honestFirst < 0) usage('--honest-first must be an integer >= 0');

const print = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

/**
 * `hook` applied to each `every`-th node result only (keyed by request and node, so all messages
 * of one node are alike); prints a corrupt event for each node it corrupts.
 */
function patient(hook) {
  if (!hook) return hook;
  const target = values.mode === 'forge-eval' ? (r) => r.grad.length === 0
    : values.mode === 'scale-grad' ? (r) => r.grad.length > 0
      : () => true;
  const seen = new Map(); // "seq:lo:hi" -> corrupted? (the latest 4096)
  let count = 0;
  return (r) => {
    if (!target(r)) return r;
    const key = `${r.seq}:${r.node.lo}:${r.node.hi}`;
    let bad = seen.get(key);
    if (bad === undefined) {
      count++;
      bad = count > honestFirst && (count - honestFirst) % every === 0;
      seen.set(key, bad);
      if (seen.size > 4096) seen.delete(seen.keys().next().value);
      if (bad) print({ event: 'corrupt', step: r.step, seq: r.seq, node: `${r.node.lo}:${r.node.hi}`, at: Date.now() });
    }
    return bad ? hook(r) : r;
  };
}

/** The Result hook of each mode: a changed copy of `r`, or null to send nothing. */
function hookFor(mode) {
  let first = true;
  switch (mode) {
    case 'honest': return undefined;
    case 'stall': return () => null;
    case 'forge-compute-ms': return (r) => ({ ...r, computeMs: 1 });
    case 'scale-grad': return (r) => ({ ...r, grad: r.grad.map((g) => g * factor) });
    case 'forge-denom': return (r) => ({ ...r, denomSum: r.denomSum / factor });
    case 'forge-correct': return (r) => ({ ...r, correct: r.samples });
    case 'forge-eval': return (r) => (r.grad.length === 0 ? { ...r, correct: r.samples } : r);
    case 'nan': return (r) => ({ ...r, lossSum: Number.NaN, grad: new Float32Array(r.grad.length).fill(Number.NaN) });
    case 'nan-once': return (r) => {
      if (!first) return r;
      first = false;
      return { ...r, lossSum: Number.NaN, grad: new Float32Array(r.grad.length).fill(Number.NaN) };
    };
    default: throw new Error(`no hook for ${mode}`);
  }
}


const logger = pino({ level: process.env.GRADHUB_LOG_LEVEL ?? 'warn' }, pino.destination(2));
const worker = startNodeWorker({
  url: values.url,
  token: values.token,
  logger,
  backend: values.backend,
  graceMs: Number(values['grace-ms']),
  slowdownMs: Number(values['slowdown-ms']),
  name: values.name || `evil-${values.mode}:${process.pid}`,
  backoffInitialMs: 100,
  backoffMaxMs: 1000,
  beforeResult: patient(hookFor(values.mode)),
  onEvent: (e) => {
    if (e.type === 'welcome') print({ event: 'welcome', workerId: e.info.workerId, mode: values.mode });
  },
});
let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    stopping = true;
    worker.kill();
  });
}
worker.done.then(
  (exit) => {
    print({ event: 'end', reason: exit.reason });
    process.exit(0);
  },
  (err) => {
    print({ event: 'end', error: err?.code ?? String(err), message: err?.message });
    process.exit(stopping ? 0 : 1);
  },
);
