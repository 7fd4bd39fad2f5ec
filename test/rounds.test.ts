/**
 * Rounds mode (docs/design.md "Rounds") as users run it: byte-identical weights whatever computes
 * the replica-rounds (0, 1, 2 or 4 Node workers, a worker SIGKILLed mid-round, slow links, a
 * coordinator restarted with --resume), the round lines of the metrics file, and the flags' checks.
 * The PyTorch reference is test/rounds.reference.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeSafetensors } from '@gradhub/core';
import { createSharedLink, startLinkProxy } from '../bench/link/proxy.js';
import { runCli, startCli, sha256, tempDir, readJsonl, SAMPLE } from './helpers.js';
import { startCoordinator, waitFor } from './cluster-helpers.js';

/**
 * 1,280 training samples in batches of 100: 13 batches an epoch, the last of 80. M = 3 replicas
 * (not a power of two) of H = 2 steps: 6 batches a round, so round 3 straddles the first epoch's
 * end (its short batch included) and 2 epochs take ceil(26 / 6) = 5 rounds.
 */
const ROUNDS = [
  '--data', SAMPLE, '--no-download', '--model', '3072,24,10', '--batch-size', '100', '--chunk', '16', '--lr', '0.05', '--momentum', '0.9',
  '--weight-decay', '0.0001', '--seed', '3', '--epochs', '2', '--replicas', '3', '--local-steps', '2',
];
const closers: (() => void)[] = [];
afterEach(() => {
  while (closers.length) closers.pop()!();
});

interface RoundLine { kind: 'round'; round: number; epoch: number; samples: number; loss: number; accuracy: number; lr: number }

let reference: Promise<{ file: string; lines: Record<string, unknown>[] }> | null = null;
/** The --workers 0 run every other run must equal (computed once). */
function referenceRun(): Promise<{ file: string; lines: Record<string, unknown>[] }> {
  reference ??= (async () => {
    const dir = tempDir('rounds-ref');
    const r = await runCli(['train', '--workers', '0', ...ROUNDS, '--run-dir', path.join(dir, 'run')]);
    expect(r.code, r.stderr).toBe(0);
    return { file: path.join(dir, 'run', 'model.safetensors'), lines: readJsonl(path.join(dir, 'run', 'metrics.jsonl')) };
  })();
  return reference;
}

describe('rounds mode', () => {
  it('writes one round line per round (straddling an epoch end) and evaluates after each round in which an epoch ends', async () => {
    const { lines } = await referenceRun();
    const rounds = lines.filter((l) => l.kind === 'round') as unknown as RoundLine[];
    expect(rounds.map((l) => l.round)).toEqual([1, 2, 3, 4, 5]);
    // Samples per round: 6 batches of 100, except the rounds holding an epoch's short batch of 80.
    expect(rounds.map((l) => l.samples)).toEqual([600, 600, 580, 600, 580]);
    expect(rounds.map((l) => l.epoch)).toEqual([1, 1, 2, 2, 3]);
    expect(Object.keys(lines.find((l) => l.kind === 'round')!)).toEqual(['kind', 'round', 'epoch', 'samples', 'loss', 'accuracy', 'samples_per_s', 'lr', 'time']);
    const run = lines[0];
    expect(run).toMatchObject({ kind: 'run', local_steps: 2, replicas: 3, outer_lr: 0.7, outer_momentum: 0.9, outer_nesterov: true });
    // Round 3 ends epoch 1, round 5 ends epoch 2 (its last batch reads into epoch 3): two evaluations.
    const evals = lines.filter((l) => l.kind === 'epoch');
    expect(evals.map((l) => [l.epoch, l.step])).toEqual([[1, 3], [2, 5]]);
    for (const l of rounds) {
      expect(Number.isFinite(l.loss) && l.loss > 0).toBe(true);
      expect(l.accuracy).toBeGreaterThanOrEqual(0);
    }
  });

  it('gives byte-identical weights with 1, 2 and 4 workers as with --workers 0', async () => {
    const { file } = await referenceRun();
    const want = sha256(file);
    const runs = await Promise.all([1, 2, 4].map(async (n) => {
      const dir = tempDir(`rounds-w${n}`);
      const r = await runCli(['train', '--workers', String(n), ...ROUNDS, '--run-dir', path.join(dir, 'run')], {}, 180_000);
      return { n, r, file: path.join(dir, 'run', 'model.safetensors') };
    }));
    for (const { n, r, file: f } of runs) {
      expect(r.code, `--workers ${n}: ${r.stderr}`).toBe(0);
      expect(sha256(f), `--workers ${n}`).toBe(want);
    }
  });

  it('recomputes the replica-round of a worker SIGKILLed mid-round elsewhere, byte-identical; slow links change no bit either', async () => {
    const { file } = await referenceRun();
    const dir = tempDir('rounds-kill');
    const coord = await startCoordinator([...ROUNDS, '--min-workers', '2', '--run-dir', path.join(dir, 'run'), '--log-level', 'info', '--log-format', 'json']);
    closers.push(() => void coord.process.kill('SIGKILL'));
    const shared = createSharedLink({ upBps: 200e6, downBps: 200e6 });
    const links = await Promise.all([0, 1].map(() => startLinkProxy({ target: { host: '127.0.0.1', port: coord.port }, upBps: 100e6, downBps: 100e6, latencyMs: 5, shared })));
    for (const l of links) closers.push(() => void l.close());
    const steady = startCli(['worker', '--url', `ws://127.0.0.1:${links[0].port}`, '--token', coord.token]);
    // The victim sleeps 2 s before each node it is given: it holds a replica-round whenever it is killed.
    const victim = startCli(['worker', '--url', `ws://127.0.0.1:${links[1].port}`, '--token', coord.token, '--slowdown-ms', '2000']);
    closers.push(() => void steady.kill('SIGKILL'), () => void victim.kill('SIGKILL'));
    const metrics = path.join(dir, 'run', 'metrics.jsonl');
    await waitFor(() => fs.existsSync(metrics) && fs.readFileSync(metrics, 'utf8').includes('"kind":"round"'), 120_000, 'the first round', coord.exited);
    victim.kill('SIGKILL');
    const r = await coord.exited;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/worker lost mid-request/);
    expect(sha256(path.join(dir, 'run', 'model.safetensors'))).toBe(sha256(file));
    for (const l of links) expect(l.stats().upBytes).toBeGreaterThan(100_000);
  });

  it('packs its tensors over a slow link with --wire-compression on: byte-identical, fewer bytes each way than raw', async () => {
    const { file } = await referenceRun();
    const want = sha256(file);
    const runs = await Promise.all((['on', 'off'] as const).map(async (pack) => {
      const dir = tempDir(`rounds-pack-${pack}`);
      const coord = await startCoordinator([...ROUNDS, '--wire-compression', pack, '--run-dir', path.join(dir, 'run'), '--log-level', 'info', '--log-format', 'json']);
      closers.push(() => void coord.process.kill('SIGKILL'));
      const link = await startLinkProxy({ target: { host: '127.0.0.1', port: coord.port }, upBps: 100e6, downBps: 100e6, latencyMs: 5 });
      closers.push(() => void link.close());
      const w = startCli(['worker', '--url', `ws://127.0.0.1:${link.port}`, '--token', coord.token]);
      closers.push(() => void w.kill('SIGKILL'));
      const r = await coord.exited;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(pack === 'on' ? /"packed":true/ : /"packed":false/);
      return { pack, stats: link.stats(), file: path.join(dir, 'run', 'model.safetensors') };
    }));
    const [on, off] = runs;
    expect(sha256(on.file)).toBe(want);
    expect(sha256(off.file)).toBe(want);
    // Up: the pseudo-gradients, packed. Down: parameters after the first round as XOR deltas
    // (the pixels of Work, raw either way, are most of this small model's downlink).
    expect(on.stats.upBytes).toBeLessThan(0.9 * off.stats.upBytes);
    expect(on.stats.downBytes).toBeLessThan(off.stats.downBytes);
  });

  it('resumes a killed run with --resume --run-dir byte-identical, writing each round once', async () => {
    const { file, lines: refLines } = await referenceRun();
    const dir = tempDir('rounds-resume');
    const run = path.join(dir, 'run');
    const victim = startCli(['train', '--workers', '2', ...ROUNDS, '--run-dir', run, '--checkpoint-every', '2']);
    closers.push(() => void victim.kill('SIGKILL'));
    await waitFor(() => fs.existsSync(path.join(run, 'checkpoints')) && fs.readdirSync(path.join(run, 'checkpoints')).some((f) => f.startsWith('ckpt-')) &&
      fs.readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').includes('"round":3'), 120_000, 'a checkpoint and round 3');
    victim.kill('SIGKILL');
    await new Promise((r) => victim.once('exit', r));
    const r = await runCli(['train', '--resume', '--run-dir', run], {}, 180_000);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(path.join(run, 'model.safetensors'))).toBe(sha256(file));
    const rounds = readJsonl(path.join(run, 'metrics.jsonl')).filter((l) => l.kind === 'round');
    expect(rounds.map((l) => l.round)).toEqual([1, 2, 3, 4, 5]);
    const ref = refLines.filter((l) => l.kind === 'round');
    expect(rounds.map((l) => l.loss)).toEqual(ref.map((l) => l.loss));
  });

  it('--local-steps 1 --replicas 1 --outer-lr 1 --outer-momentum 0 with --momentum 0 is synchronous SGD to float32 rounding', async () => {
    const dir = tempDir('rounds-sync');
    const base = ['--data', SAMPLE, '--no-download', '--model', '3072,24,10', '--batch-size', '64', '--lr', '0.05', '--seed', '2', '--steps', '30'];
    const [sync, round] = await Promise.all([
      runCli(['train', '--workers', '0', ...base, '--run-dir', path.join(dir, 'sync')]),
      runCli(['train', '--workers', '0', ...base, '--local-steps', '1', '--replicas', '1', '--outer-lr', '1', '--outer-momentum', '0', '--run-dir', path.join(dir, 'round')]),
    ]);
    expect(sync.code, sync.stderr).toBe(0);
    expect(round.code, round.stderr).toBe(0);
    const a = decodeSafetensors(fs.readFileSync(path.join(dir, 'sync', 'model.safetensors')), 'sync');
    const b = decodeSafetensors(fs.readFileSync(path.join(dir, 'round', 'model.safetensors')), 'round');
    for (const [name, t] of a) {
      const u = b.get(name)!.data;
      for (let i = 0; i < t.data.length; i++) {
        // theta - (theta - (theta - lr g)) is theta - lr g exactly when theta and the update are
        // within a factor 2 (Sterbenz); otherwise the pseudo-gradient rounds once more.
        const ulp = Math.max(Math.abs(t.data[i]), 1e-30) * 2 ** -22;
        expect(Math.abs(t.data[i] - u[i]), `${name}[${i}]`).toBeLessThanOrEqual(30 * ulp);
      }
    }
    // The losses of the first update agree to the bit: the same gradient from the same parameters.
    const l1 = readJsonl(path.join(dir, 'sync', 'metrics.jsonl')).find((l) => l.kind === 'step')!;
    const r1 = readJsonl(path.join(dir, 'round', 'metrics.jsonl')).find((l) => l.kind === 'round')!;
    expect(r1.loss).toBe(l1.loss);
  });

  it('refuses the outer flags without rounds mode, and a rounds resume of a synchronous run', async () => {
    const r = await runCli(['train', '--workers', '0', '--data', path.join(tempDir('nodata'), 'missing'), '--outer-lr', '0.5']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--outer-lr applies to rounds mode only/);
    const n = await runCli(['train', '--workers', '0', '--data', SAMPLE, '--no-download', '--no-outer-nesterov']);
    expect(n.code).toBe(2);
    expect(n.stderr).toMatch(/--no-outer-nesterov applies to rounds mode only/);
    // A synchronous run's checkpoint holds no round settings: resuming it in rounds mode is refused.
    const dir = tempDir('rounds-mismatch');
    const sync = await runCli(['train', '--workers', '0', '--data', SAMPLE, '--no-download', '--model', '3072,8,10', '--steps', '2', '--run-dir', path.join(dir, 'run')]);
    expect(sync.code, sync.stderr).toBe(0);
    const resumed = await runCli(['train', '--resume', '--run-dir', path.join(dir, 'run'), '--local-steps', '4']);
    expect(resumed.code).toBe(1);
    expect(resumed.stderr).toMatch(/E_RESUME_MISMATCH.*local_steps \(checkpoint \(absent\), now 4\)/);
  });
});
