/**
 * PyTorch's figures for the same train step, when Debian's PyTorch is present (`apt-get install
 * python3-torch libopenblas0-pthread`; run with /usr/bin/python3). Returns null when it is not.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PY = '/usr/bin/python3';

export function pytorchAvailable() {
  return spawnSync(PY, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

/** @param {{ batch: number, threads?: number, reps?: number }} o */
export function benchPytorchStep(o) {
  if (!pytorchAvailable()) return null;
  const script = fileURLToPath(new URL('./pytorch_step.py', import.meta.url));
  // OpenBLAS is told its core type on some machines here; it must not limit the thread count.
  const r = spawnSync(PY, [script, String(o.batch), String(o.threads ?? 1), String(o.reps ?? 5)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(o.threads ?? 1) } });
  if (r.status !== 0) throw new Error(`PyTorch bench failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/** PyTorch DDP (gloo, 2 processes x 1 thread on loopback) at a global batch; null without PyTorch. */
export function benchPytorchDdp(o) {
  if (!pytorchAvailable()) return null;
  const script = fileURLToPath(new URL('./pytorch_ddp.py', import.meta.url));
  const r = spawnSync(PY, [script, String(o.batch), String(o.steps ?? 6)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 600_000 });
  if (r.status !== 0) throw new Error(`PyTorch DDP bench failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}
