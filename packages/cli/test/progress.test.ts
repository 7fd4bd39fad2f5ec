/** The progress line and the closing summary, as pure functions of step reports and a clock. */
import { describe, expect, it } from 'vitest';
import type { StepReport } from '@gradhub/coordinator';
import { Ema, ProgressMeter, drawBar, formatCount, formatDuration } from '../src/progress.js';
import { formatSummary, formatWallTime } from '../src/summary.js';

const split = { compute: 0, upload: 0, reduce: 0, sgd: 0, broadcast: 0 };
function report(step: number, o: Partial<StepReport> = {}): StepReport {
  return { step, totalSteps: 100, epoch: 1, epochs: 20, samples: 32, loss: 2, accuracy: 0.5, samplesPerS: 1000, lr: 0.01, split, ...o };
}

describe('Ema (tqdm smoothing 0.3 with its start-up correction)', () => {
  it('starts at the first value and moves 30% towards each new one, corrected for its start', () => {
    const e = new Ema();
    expect(e.get()).toBeNaN();
    expect(e.add(2)).toBeCloseTo(2, 12);
    // raw: 0.3*2 = 0.6, then 0.3*1 + 0.7*0.6 = 0.72; corrected by 1 - 0.7^2 = 0.51
    expect(e.add(1)).toBeCloseTo(0.72 / 0.51, 12);
    for (let i = 0; i < 200; i++) e.add(5);
    expect(e.get()).toBeCloseTo(5, 9);
  });
});

describe('ProgressMeter', () => {
  it('shows percent, elapsed, ETA from the mean step time, smoothed loss and accuracy, mean samples/s', () => {
    const m = new ProgressMeter(1_000, 3);
    m.step(report(1, { loss: 2.5, accuracy: 0.25 }));
    m.step(report(2, { loss: 2.5, accuracy: 0.25 }));
    // 2 steps of 32 samples in 4 s: 16 samples/s; 98 steps left at 2 s each
    const f = m.figures(5_000);
    expect(f.meanSamplesPerS).toBe(16);
    expect(f.etaMs).toBe(196_000);
    expect(f.epochs).toBe(3);
    expect(m.line(5_000, false)).toBe('epoch 1/3 step 2/100 2% [00:04<03:16] loss 2.5000 acc 25.0% 16 samples/s');
    expect(m.line(5_000, true)).toBe(`epoch 1/3   2%|${drawBar(0.02, 16)}| 2/100 [00:04<03:16] loss 2.5000 acc 25.0% 16 samples/s`);
  });

  it('counts rates over this session only when the run was resumed', () => {
    const m = new ProgressMeter(0);
    m.step(report(51));
    const f = m.figures(1_000);
    expect(f.sessionSteps).toBe(1);
    expect(f.etaMs).toBe(49_000);
    expect(f.epochs).toBe(20); // the report's, when none was given
    expect(m.line(1_000, false)).toContain('step 51/100 51% [00:01<00:49]');
  });

  it('prints nothing before the first step, and no ETA is guessed', () => {
    const m = new ProgressMeter(0, 1);
    expect(m.line(10, true)).toBe('');
    expect(m.figures(10).etaMs).toBeNull();
  });
});

describe('formatting', () => {
  it('draws bars in eighths of a cell', () => {
    expect(drawBar(0, 4)).toBe('    ');
    expect(drawBar(1, 4)).toBe('████');
    expect(drawBar(0.5, 4)).toBe('██  ');
    expect(drawBar(1 / 32, 4)).toBe('▏   ');
    expect(drawBar(2, 4)).toBe('████');
  });
  it('writes durations as tqdm does and counts with separators', () => {
    expect(formatDuration(0)).toBe('00:00');
    expect(formatDuration(61_400)).toBe('01:01');
    expect(formatDuration(3_723_000)).toBe('1:02:03');
    expect(formatCount(1234567.4)).toBe('1,234,567');
    expect(formatCount(12)).toBe('12');
    expect(formatWallTime(600)).toBe('0.6 s');
    expect(formatWallTime(185_000)).toBe('3m 05s');
    expect(formatWallTime(3_720_000)).toBe('1h 02m');
  });
});

describe('formatSummary', () => {
  const m = new ProgressMeter(0, 1);
  for (let s = 1; s <= 10; s++) m.step(report(s, { totalSteps: 10 }));
  const base = {
    step: 10, totalSteps: 10, figures: m.figures(2_000), lastEval: { testLoss: 1.23456, testAccuracy: 0.4567, step: 10 },
    runDir: 'runs/x', files: [['metrics', 'runs/x/metrics.jsonl'], ['weights', null]] as const, saved: true,
    resumeCommand: 'gradhub train --resume --run-dir runs/x',
  };
  it('says what the run did and where its files are', () => {
    expect(formatSummary({ ...base, outcome: 'done' })).toEqual([
      'done: 10 steps in 2.0 s, 160 samples/s; test loss 1.2346, test accuracy 45.67%',
      '  run folder: runs/x',
      '  metrics:    runs/x/metrics.jsonl',
    ]);
  });
  it('after a stop, says how to continue', () => {
    const lines = formatSummary({ ...base, outcome: 'stopped', step: 12, totalSteps: 40, lastEval: null });
    expect(lines[0]).toBe('stopped at step 12 of 40 (10 steps in this session, in 2.0 s, 160 samples/s); no test evaluation yet');
    expect(lines.at(-1)).toBe('  continue with: gradhub train --resume --run-dir runs/x');
  });
});
