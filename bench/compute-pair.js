/**
 * The bound on any cluster of N worker processes on this machine: N processes that each compute
 * their share of the global batch (forward + loss + backward, one thread, the wasm kernels) at the
 * same time, and nothing else: no coordinator, no sockets, no reduction, no SGD. Their speed is
 * what the cluster would reach if coordination cost nothing, so `npm run bench` can print how much
 * of a step is left for coordination at a given target.
 *   node bench/compute-pair.js [WORKERS] [GLOBAL_BATCH]
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '@gradhub/cli';
import { benchTrainStep } from './train-step.js';

const SELF = fileURLToPath(import.meta.url);

/**
 * @param {{ workers: number, batch: number, reps?: number }} o  batch: the global batch, split evenly
 * @returns {Promise<{ workers: number, batch: number, compute_ms: number[], samples_per_s: number }>}
 */
export async function benchComputePair(o) {
  const share = Math.ceil(o.batch / o.workers);
  const runs = [];
  for (let i = 0; i < o.workers; i++) {
    runs.push(new Promise((resolve, reject) => {
      const c = spawn(process.execPath, [...NODE_FLAGS, SELF, '--child', String(share), String(o.reps ?? 8)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.on('error', reject);
      c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`compute-pair child exited with ${code}`))));
    }));
  }
  const each = await Promise.all(runs);
  // The step ends when the slowest share is done.
  const slowest = Math.max(...each.map((r) => r.compute_ms));
  return { workers: o.workers, batch: o.batch, compute_ms: each.map((r) => r.compute_ms), samples_per_s: (1000 * o.batch) / slowest };
}

if (process.argv[1] === SELF) {
  const at = process.argv.indexOf('--child');
  if (at >= 0) {
    // One share: the median compute time (forward + backward) over the reps, printed as JSON.
    const r = await benchTrainStep({ batch: Number(process.argv[at + 1]), reps: Number(process.argv[at + 2]) });
    console.log(JSON.stringify({ compute_ms: r.compute_ms }));
  } else {
    console.log(JSON.stringify(await benchComputePair({ workers: Number(process.argv[2] ?? 2), batch: Number(process.argv[3] ?? 256) })));
  }
}
