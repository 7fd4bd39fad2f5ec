/**
 * A resumed run's curves: the metrics file hands back the lines it held, and a RunStatus seeded
 * with the steps and evaluations up to the checkpoint shows them and goes on from there.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openMetricsFile } from '../src/metrics.js';
import { RunStatus } from '../src/status.js';

const step = (k: number) => ({ kind: 'step' as const, step: k, epoch: 1, loss: 2 - k / 10, accuracy: k / 100, samples_per_s: 100 + k });

describe('a resumed run keeps its curves', () => {
  it('the metrics file hands back the readable lines it held (a torn last line cut off)', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-status-')), 'metrics.jsonl');
    const opts = { run: { model: '3072,10' }, now: () => 1_700_000_000_000 };
    const first = openMetricsFile(file, { ...opts, resume: false, startStep: 0 });
    expect(first.past).toEqual([]);
    for (let k = 1; k <= 3; k++) first.write(step(k));
    first.write({ kind: 'epoch', epoch: 1, step: 3, test_loss: 1.5, test_accuracy: 0.25 });
    first.close();
    fs.appendFileSync(file, 'not json\n{"kind":"step","step":4,"ep'); // an unreadable line, then a torn one
    const again = openMetricsFile(file, { ...opts, resume: true, startStep: 2 });
    const time = 1_700_000_000_000;
    expect(again.past).toEqual([{ ...step(1), time }, { ...step(2), time }, { ...step(3), time }, { kind: 'epoch', epoch: 1, step: 3, test_loss: 1.5, test_accuracy: 0.25, time }]);
    again.write(step(3)); // replayed: not written twice
    again.write(step(4));
    again.close();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.filter((l) => l.includes('"step":3,"epoch"'))).toHaveLength(1);
    expect(lines[lines.length - 1]).toBe(JSON.stringify({ ...step(4), time }));
  });

  it('RunStatus seeded with the curves up to the checkpoint shows them and goes on', () => {
    const points = [1, 2, 3, 4, 5].map((k) => ({ step: k, epoch: 1, loss: 2 - k / 10, accuracy: k / 100, samplesPerS: 100 }));
    const s = new RunStatus({
      runId: 'r', name: 'n', settings: {}, totalSteps: 10,
      resumed: { step: 5, epoch: 1, samples: 320, steps: points, evals: [{ epoch: 1, step: 4, testLoss: 1.8, testAccuracy: 0.2 }] },
    }, 4);
    const snap = s.snapshot();
    expect(snap.step).toBe(5);
    expect(snap.counters.samples).toBe(320);
    // Past maxSteps (4 here) the older half is thinned, as for live steps; the newest stay whole.
    expect(snap.steps.map((p) => p.step)).toEqual([1, 3, 4, 5]);
    expect(snap.evals).toEqual([{ epoch: 1, step: 4, testLoss: 1.8, testAccuracy: 0.2 }]);
    s.addStep({ step: 6, epoch: 1, loss: 1.3, accuracy: 0.06, samplesPerS: 100 });
    expect(s.snapshot().steps.at(-1)!.step).toBe(6);
    expect(s.snapshot().state).toBe('training');
  });
});

describe('the workers table under a join/leave storm', () => {
  it('keeps every live row but only the most recent departed ones, with the totals as counters', () => {
    const status = new RunStatus({ runId: 'r', name: 'n', settings: {}, totalSteps: 1 }, 20_000, 8);
    const row = (id: number) => ({ id: String(id), runtime: 'node' as const, samplesPerS: 0, nodesDone: 0, samplesDone: 0, bytesIn: 0, bytesOut: 0, lastSeen: 0, state: 'idle' as const, trusted: false });
    status.upsertWorker(row(0)); // stays for the whole storm
    for (let i = 1; i <= 3000; i++) {
      status.upsertWorker(row(i));
      status.upsertWorker(row(i));
      status.removeWorker(String(i));
      status.upsertWorker(row(i)); // a late report about a departed worker brings no row back
    }
    const snap = status.snapshot();
    expect(snap.workers.map((w) => w.id)).toEqual(['0', ...Array.from({ length: 8 }, (_, k) => String(2993 + k))]);
    expect(snap.workers.slice(1).every((w) => w.state === 'gone')).toBe(true);
    expect(snap.counters.workers_joined).toBe(3001);
    expect(snap.counters.workers_left).toBe(3000);
    expect(JSON.stringify(snap).length).toBeLessThan(5000);
  });
});

describe('a rollback', () => {
  it('drops the step and evaluation points after the state it went back to, and says so to subscribers', () => {
    const s = new RunStatus({ runId: 'r', name: 'n', settings: {}, totalSteps: 10 });
    for (let k = 1; k <= 5; k++) s.addStep({ step: k, epoch: 1, loss: 2 - k / 10, accuracy: k / 100, samplesPerS: 100 });
    s.addEval({ epoch: 1, step: 2, testLoss: 1.9, testAccuracy: 0.1 });
    s.addEval({ epoch: 1, step: 4, testLoss: 1.8, testAccuracy: 0.2 });
    const events: unknown[] = [];
    s.subscribe((e) => events.push(e));
    s.rollBack(3);
    const snap = s.snapshot();
    expect(snap.step).toBe(3);
    expect(snap.steps.map((p) => p.step)).toEqual([1, 2, 3]);
    expect(snap.evals.map((p) => p.step)).toEqual([2]);
    expect(events).toEqual([{ type: 'state', state: 'training', step: 3 }]);
    s.addStep({ step: 4, epoch: 1, loss: 1.5, accuracy: 0.05, samplesPerS: 100 });
    expect(s.snapshot().steps.map((p) => p.loss)).toEqual([1.9, 1.8, 1.7, 1.5]);
  });
});
