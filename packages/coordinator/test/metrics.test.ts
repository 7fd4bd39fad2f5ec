/**
 * The metrics file's line shapes (docs/design.md "Contracts: Metrics JSONL"): the run line first, step and
 * epoch lines with their keys in contract order and `time` last, a resume line on resume, and
 * readers that skip the kinds they do not use.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openMetricsFile, parseMetricsLine } from '../src/metrics.js';
import { runSettings, type TrainSettings } from '../src/settings.js';

const settings: TrainSettings = {
  sizes: [3072, 8, 10], batch: 20, chunk: 4, seed: 3, shuffle: true, normalize: true,
  lr: 0.01, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, epochs: 2, steps: null,
};

/** The keys of each line in file order (JSON.parse keeps the order of a line's keys). */
const keysOf = (file: string): string[][] => fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => Object.keys(JSON.parse(l) as object));

describe('the metrics file', () => {
  it('starts with the run line, then step and epoch lines with time last; a resume appends a resume line', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-metrics-')), 'm.jsonl');
    let t = 1_700_000_000_000;
    const now = (): number => t++;
    const run = { ...runSettings(settings), version: '9.9.9' };
    const first = openMetricsFile(file, { resume: false, run, startStep: 0, now });
    first.write({ kind: 'step', step: 1, epoch: 1, loss: 2.3, accuracy: 0.1, samples_per_s: 50 });
    first.write({ kind: 'epoch', epoch: 1, step: 1, test_loss: 2.2, test_accuracy: 0.15 });
    first.close();
    const resumed = openMetricsFile(file, { resume: true, run, startStep: 1, now });
    expect(resumed.past.map((l) => l.kind)).toEqual(['step', 'epoch']); // the run line is not a metrics point
    resumed.write({ kind: 'step', step: 2, epoch: 2, loss: 2.1, accuracy: 0.2, samples_per_s: 60 });
    resumed.close();

    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toEqual([
      '{"kind":"run","model":"3072,8,10","batch":20,"chunk":4,"seed":3,"shuffle":true,"normalize":true,"lr":0.01,"momentum":0.9,' +
        '"dampening":0,"weight_decay":0,"nesterov":false,"epochs":2,"steps":null,"version":"9.9.9","time":1700000000000}',
      '{"kind":"step","step":1,"epoch":1,"loss":2.3,"accuracy":0.1,"samples_per_s":50,"time":1700000000001}',
      '{"kind":"epoch","epoch":1,"step":1,"test_loss":2.2,"test_accuracy":0.15,"time":1700000000002}',
      '{"kind":"resume","step":1,"time":1700000000003}',
      '{"kind":"step","step":2,"epoch":2,"loss":2.1,"accuracy":0.2,"samples_per_s":60,"time":1700000000004}',
    ]);
    expect(keysOf(file)[1]).toEqual(['kind', 'step', 'epoch', 'loss', 'accuracy', 'samples_per_s', 'time']);
  });

  it('a fresh run replaces an old file; the time is the wall clock by default', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-metrics-')), 'm.jsonl');
    fs.writeFileSync(file, '{"kind":"step","step":9}\n');
    const before = Date.now();
    const m = openMetricsFile(file, { resume: false, run: { model: '3072,10' }, startStep: 0 });
    m.close();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; time: number });
    expect(lines.map((l) => l.kind)).toEqual(['run']);
    expect(lines[0].time).toBeGreaterThanOrEqual(before);
    expect(lines[0].time).toBeLessThanOrEqual(Date.now());
  });

  it('parseMetricsLine keeps step and epoch lines and skips the rest', () => {
    expect(parseMetricsLine('{"kind":"step","step":1,"epoch":1,"loss":1,"accuracy":0,"samples_per_s":1,"time":5}')?.kind).toBe('step');
    expect(parseMetricsLine('{"kind":"epoch","epoch":1,"step":1,"test_loss":1,"test_accuracy":0,"time":5}')?.kind).toBe('epoch');
    for (const other of ['{"kind":"run","model":"3072,10"}', '{"kind":"resume","step":3}', '{"kind":"lr"}', 'null', '3', 'not json', '{"step":1}']) {
      expect(parseMetricsLine(other), other).toBeNull();
    }
  });
});

describe('a rollback truncates the metrics file', () => {
  it('drops every line written after a mark; the replayed lines follow, each step once', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-metrics-')), 'm.jsonl');
    const m = openMetricsFile(file, { resume: false, run: { ...runSettings(settings), version: '9.9.9' }, startStep: 0, now: () => 1 });
    m.write({ kind: 'step', step: 1, epoch: 1, loss: 2.3, accuracy: 0.1, samples_per_s: 50, lr: 0.01 });
    const mark = m.mark!();
    expect(mark).toBe(fs.statSync(file).size);
    m.write({ kind: 'step', step: 2, epoch: 1, loss: 99, accuracy: 0.1, samples_per_s: 50, lr: 0.01 });
    m.write({ kind: 'epoch', epoch: 1, step: 2, test_loss: 99, test_accuracy: 0.15, samples: 40, eval_ms: 1 });
    m.truncate!(mark);
    expect(fs.statSync(file).size).toBe(mark);
    m.write({ kind: 'step', step: 2, epoch: 1, loss: 2.2, accuracy: 0.2, samples_per_s: 50, lr: 0.01 });
    m.close();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; step?: number; loss?: number });
    expect(lines.map((l) => [l.kind, l.step, l.loss])).toEqual([['run', undefined, undefined], ['step', 1, 2.3], ['step', 2, 2.2]]);
  });

  it('refuses a mark past the end', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-metrics-')), 'm.jsonl');
    const m = openMetricsFile(file, { resume: false, run: { version: '9.9.9' }, startStep: 0 });
    expect(() => m.truncate!(m.mark!() + 1)).toThrow(/truncate/);
    m.close();
  });
});
