/**
 * Seeded chaos: schedules of worker kills, pauses past the heartbeat (the coordinator drops the
 * worker, which reconnects when it wakes), refilled slots and coordinator restarts with --resume,
 * drawn from a seed (schedule.ts) and played against real processes over real sockets. Every
 * schedule must end with weights byte-identical to the fault-free `--workers 0` run
 * (docs/design.md "Invariant 6: reproducible runs"). A failing schedule names its seed: replay it
 * with `CHAOS_SEEDS=<seed> npx vitest run test/chaos`. CHAOS_SCHEDULES sets how many seeds run
 * (default 20, seeds 1..N).
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import * as path from 'node:path';
import { runCli, startCli, sha256, tempDir, SAMPLE } from '../helpers.js';
import { stepsDone, waitFor } from '../cluster-helpers.js';
import { chaosSchedule, describeSchedule, type ChaosEvent } from './schedule.js';

const STEPS = 14;
const WORKERS = 3;
const HEARTBEAT_MS = 1500;
const TOKEN = 'chaos-token';
const RUN = [
  '--data', SAMPLE, '--no-download', '--model', '3072,24,10', '--batch-size', '40', '--chunk', '8', '--lr', '0.05', '--momentum', '0.9',
  '--seed', '9', '--steps', String(STEPS),
];
const seeds = process.env.CHAOS_SEEDS
  ? process.env.CHAOS_SEEDS.split(',').map(Number)
  : Array.from({ length: Number(process.env.CHAOS_SCHEDULES ?? 20) }, (_, i) => i + 1);

const procs = new Set<ReturnType<typeof startCli>>();
afterEach(() => {
  for (const p of procs) p.kill('SIGKILL');
  procs.clear();
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

let reference: Promise<string> | null = null;
function referenceSha(): Promise<string> {
  reference ??= (async () => {
    const dir = tempDir('chaos-ref');
    const r = await runCli(['train', '--workers', '0', ...RUN, '--run-dir', path.join(dir, 'run')]);
    expect(r.code, r.stderr).toBe(0);
    return sha256(path.join(dir, 'run', 'model.safetensors'));
  })();
  return reference;
}

/** Seeds whose runs pack their tensors (`--wire-compression on`); the others send them raw. */
const packedSeed = (seed: number): boolean => seed % 2 === 0;

/** Play the schedule of `seed`; resolves with the run's export sha256. */
async function play(seed: number): Promise<string> {
  const schedule = chaosSchedule(seed, { steps: STEPS, workers: WORKERS, pauseMs: HEARTBEAT_MS + 1000 });
  const dir = tempDir(`chaos-${seed}`);
  const run = path.join(dir, 'run');
  const metrics = path.join(run, 'metrics.jsonl');
  const port = await freePort();
  const coordinatorArgs = [
    'coordinator', '--host', '127.0.0.1', '--port', String(port), '--token', TOKEN, ...RUN, '--min-workers', '1',
    '--run-dir', run, '--checkpoint-every', '2', '--heartbeat-ms', String(HEARTBEAT_MS), '--log-level', 'warn',
    // Even seeds pack every tensor (parameters as deltas from the version a worker holds): through
    // kills, pauses, rejoins with held parameters and restarts, the bits must not change.
    '--wire-compression', packedSeed(seed) ? 'on' : 'off',
  ];
  const track = <T extends ReturnType<typeof startCli>>(p: T): T => {
    procs.add(p);
    p.once('exit', () => procs.delete(p));
    return p;
  };
  let coordinator = track(startCli(coordinatorArgs));
  let exited = new Promise<number | null>((r) => coordinator.once('exit', (code) => r(code)));
  // Workers sleep 60 ms before each node, so that steps take long enough for the faults to land inside them.
  const startWorker = (): ReturnType<typeof startCli> => track(startCli(['worker', '--url', `ws://127.0.0.1:${port}`, '--token', TOKEN, '--slowdown-ms', '60', '--grace-ms', '30000', '--log-level', 'warn']));
  const slots: (ReturnType<typeof startCli> | null)[] = Array.from({ length: WORKERS }, startWorker);
  const pending: ChaosEvent[] = [...schedule.events];
  const refills: { atStep: number; slot: number }[] = [];
  const fire = async (e: ChaosEvent, done: number): Promise<void> => {
    if (e.kind === 'kill') {
      slots[e.worker]?.kill('SIGKILL');
      slots[e.worker] = null;
      refills.push({ atStep: done + e.restartAfter, slot: e.worker });
    } else if (e.kind === 'pause') {
      const w = slots[e.worker];
      if (!w) return;
      w.kill('SIGSTOP');
      setTimeout(() => w.kill('SIGCONT'), e.ms).unref();
    } else {
      coordinator.kill('SIGKILL');
      await exited;
      coordinator = track(startCli([...coordinatorArgs, '--resume']));
      exited = new Promise<number | null>((r) => coordinator.once('exit', (code) => r(code)));
    }
  };
  let code: number | null | undefined;
  void exited.then((c) => (code = c));
  const deadline = Date.now() + 90_000;
  for (;;) {
    const done = stepsDone(metrics);
    while (pending.length > 0 && pending[0].atStep <= done && done < STEPS) {
      const e = pending.shift()!;
      await fire(e, done);
      if (e.kind === 'restart-coordinator') {
        code = undefined;
        void exited.then((c) => (code = c));
      }
    }
    for (let i = refills.length - 1; i >= 0; i--) {
      if (code === undefined && (refills[i].atStep <= done || done >= STEPS - 1)) {
        slots[refills[i].slot] = startWorker();
        refills.splice(i, 1);
      }
    }
    if (code !== undefined) break;
    if (Date.now() > deadline) throw new Error(`seed ${seed}: no end after 90 s at step ${done}; schedule: ${describeSchedule(schedule)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  expect(code, `seed ${seed} (${describeSchedule(schedule)}): the coordinator's exit code\n${coordinator.output().stderr}`).toBe(0);
  // The workers connected at the end got Bye (training done) and exit; one that was between sessions is dismissed.
  await waitFor(() => [...procs].every((p) => p.exitCode !== null || p.signalCode !== null), 3000, 'the workers to exit').catch(() => {});
  return sha256(path.join(run, 'model.safetensors'));
}

describe('seeded chaos', () => {
  it('schedules are a pure function of the seed, with 2 to 4 faults inside the run', () => {
    const o = { steps: STEPS, workers: WORKERS, pauseMs: 2500 };
    expect(chaosSchedule(7, o)).toEqual(chaosSchedule(7, o));
    expect(chaosSchedule(7, o)).not.toEqual(chaosSchedule(8, o));
    for (let s = 1; s <= 50; s++) {
      const { events } = chaosSchedule(s, o);
      expect(events.length).toBeGreaterThanOrEqual(2);
      expect(events.length).toBeLessThanOrEqual(4);
      expect(events.filter((e) => e.kind === 'restart-coordinator').length).toBeLessThanOrEqual(1);
      for (const e of events) expect(e.atStep >= 1 && e.atStep <= STEPS - 2).toBe(true);
    }
    // The 20 seeds CI plays include every kind of fault.
    const kinds = new Set(Array.from({ length: 20 }, (_, i) => chaosSchedule(i + 1, o).events.map((e) => e.kind)).flat());
    expect([...kinds].sort()).toEqual(['kill', 'pause', 'restart-coordinator']);
  });

  for (const seed of seeds) {
    it(`schedule ${seed}${packedSeed(seed) ? ', tensors packed,' : ''} ends byte-identical to the fault-free run (replay: CHAOS_SEEDS=${seed})`, async () => {
      const want = await referenceSha();
      const schedule = chaosSchedule(seed, { steps: STEPS, workers: WORKERS, pauseMs: HEARTBEAT_MS + 1000 });
      expect(await play(seed), `seed ${seed}: ${describeSchedule(schedule)}`).toBe(want);
    }, 120_000);
  }
});
