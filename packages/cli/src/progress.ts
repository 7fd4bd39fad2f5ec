/**
 * Training progress for people, as tqdm shows it: percent, a bar, steps, elapsed and remaining time,
 * smoothed loss and accuracy, mean samples/s.
 *
 *   epoch 2/3  42%|██████▍         | 420/1000 [00:13<00:18] loss 1.8234 acc 35.2% 1,234 samples/s
 *
 * On a terminal the line is redrawn in place; elsewhere (a file, a pipe, CI) plain lines are written,
 * at most one a second plus the last step. `ProgressMeter` holds the figures and formats the line
 * from step reports and a clock; it does no I/O (tested as a pure function). `createProgress` draws it.
 *
 * Smoothing: loss and accuracy are exponential moving averages with tqdm's default smoothing (0.3)
 * and its start-up correction (divided by 1 - 0.7^n, so the first value is not pulled towards 0).
 * Rates are means over this session: samples / elapsed, and the remaining steps at the mean step
 * time so far. Elapsed counts from the start of training (of this process, when resumed).
 */
import type { EvalReport, StepReport } from '@gradhub/coordinator';

/** tqdm's default smoothing factor. */
export const SMOOTHING = 0.3;
const BAR_WIDTH = 16;
const PARTIAL = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/** An exponential moving average with tqdm's start-up correction. */
export class Ema {
  private value = 0;
  private calls = 0;
  constructor(private readonly alpha = SMOOTHING) {}
  add(x: number): number {
    this.value = this.alpha * x + (1 - this.alpha) * this.value;
    this.calls++;
    return this.get();
  }
  get(): number {
    return this.calls === 0 ? Number.NaN : this.value / (1 - (1 - this.alpha) ** this.calls);
  }
}

export interface ProgressFigures {
  /** Steps done so far in the run (it may have been resumed). */
  readonly step: number;
  readonly totalSteps: number;
  readonly epoch: number;
  /** Epochs the run will reach (fewer than --epochs when --steps ends it first). */
  readonly epochs: number;
  /** Steps and samples done by this process. */
  readonly sessionSteps: number;
  readonly sessionSamples: number;
  readonly elapsedMs: number;
  /** Remaining time at the mean step time so far; null before the first step. */
  readonly etaMs: number | null;
  readonly meanSamplesPerS: number;
  readonly loss: number;
  readonly accuracy: number;
  readonly lastEval: EvalReport | null;
}

/** The figures of a run's progress, fed with step reports and the time (ms) they arrive. */
export class ProgressMeter {
  private readonly loss = new Ema();
  private readonly accuracy = new Ema();
  private last: StepReport | null = null;
  private sessionSteps = 0;
  private sessionSamples = 0;
  private lastEval: EvalReport | null = null;

  /** `epochs`: the epochs the run will reach (see ProgressFigures); `startMs`: training starts. */
  /** `unit`: what an update is called, 'round' in rounds mode. */
  constructor(private readonly startMs: number, private readonly epochs?: number, private readonly unit: 'step' | 'round' = 'step') {}

  step(r: StepReport): void {
    this.last = r;
    this.sessionSteps++;
    this.sessionSamples += r.samples;
    this.loss.add(r.loss);
    this.accuracy.add(r.accuracy);
  }

  evaluation(r: EvalReport): void {
    this.lastEval = r;
  }

  figures(nowMs: number): ProgressFigures {
    const r = this.last;
    const elapsedMs = Math.max(0, nowMs - this.startMs);
    const remaining = r ? r.totalSteps - r.step : 0;
    return {
      step: r?.step ?? 0,
      totalSteps: r?.totalSteps ?? 0,
      epoch: r?.epoch ?? 0,
      epochs: this.epochs ?? r?.epochs ?? 0,
      sessionSteps: this.sessionSteps,
      sessionSamples: this.sessionSamples,
      elapsedMs,
      etaMs: this.sessionSteps > 0 ? (remaining * elapsedMs) / this.sessionSteps : null,
      meanSamplesPerS: elapsedMs > 0 ? (1000 * this.sessionSamples) / elapsedMs : 0,
      loss: this.loss.get(),
      accuracy: this.accuracy.get(),
      lastEval: this.lastEval,
    };
  }

  /** The progress line at `nowMs`: with a bar (a terminal) or plain. Empty before the first step. */
  line(nowMs: number, bar: boolean): string {
    if (!this.last) return '';
    const f = this.figures(nowMs);
    const pct = f.totalSteps > 0 ? f.step / f.totalSteps : 0;
    const pctText = `${Math.floor(100 * pct)}%`.padStart(4);
    const time = `[${formatDuration(f.elapsedMs)}<${f.etaMs === null ? '?' : formatDuration(f.etaMs)}]`;
    const figures = `loss ${f.loss.toFixed(4)} acc ${(100 * f.accuracy).toFixed(1)}% ${formatCount(f.meanSamplesPerS)} samples/s`;
    const epoch = `epoch ${f.epoch}/${f.epochs}`;
    if (!bar) return `${epoch} ${this.unit} ${f.step}/${f.totalSteps} ${pctText.trim()} ${time} ${figures}`;
    return `${epoch} ${pctText}|${drawBar(pct, BAR_WIDTH)}| ${f.step}/${f.totalSteps} ${time} ${figures}`;
  }
}

/** A bar of `width` cells filled to `fraction` (0..1), in eighths of a cell. */
export function drawBar(fraction: number, width: number): string {
  const eighths = Math.round(Math.min(1, Math.max(0, fraction)) * width * 8);
  const full = Math.floor(eighths / 8);
  const part = PARTIAL[eighths % 8];
  return ('█'.repeat(full) + part).padEnd(width, ' ');
}

/** mm:ss, or h:mm:ss from an hour on (tqdm's format). */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** A whole count with thousands separators (1,234), locale-independent. */
export function formatCount(x: number): string {
  return String(Math.round(x)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

export interface Progress {
  /** Training starts now; `epochs`: the epochs it will really reach; `unit`: 'round' in rounds mode. */
  start(epochs: number, unit?: 'step' | 'round'): void;
  step(r: StepReport): void;
  evaluation(r: EvalReport): void;
  /** A line on stdout (the bar, if drawn, is cleared first and redrawn at the next step). */
  message(text: string): void;
  /** A line on stderr, e.g. what a signal does (the bar is cleared first). */
  notice(text: string): void;
  /** Clear the bar (before something else writes to the terminal). */
  clear(): void;
  /** Training ended: end the bar's line. */
  done(): void;
  /** The figures so far (null before start). */
  figures(): ProgressFigures | null;
}

export function createProgress(out: NodeJS.WriteStream = process.stdout, err: NodeJS.WriteStream = process.stderr, now: () => number = Date.now): Progress {
  const tty = out.isTTY === true;
  let meter: ProgressMeter | null = null;
  let lastPlain = 0;
  let lastDrawn = 0;
  let drawn = false;
  let unit: 'step' | 'round' = 'step';
  const clear = (): void => {
    if (tty && drawn) out.write('\r\x1b[2K');
    drawn = false;
  };
  return {
    start(epochs, u = 'step') {
      unit = u;
      meter = new ProgressMeter(now(), epochs, u);
    },
    step(r) {
      meter ??= new ProgressMeter(now());
      meter.step(r);
      const t = now();
      if (tty) {
        // At most 10 redraws a second (tqdm's mininterval), and always the last step.
        if (drawn && t - lastDrawn < 100 && r.step !== r.totalSteps) return;
        lastDrawn = t;
        const line = meter.line(t, true);
        const width = out.columns ?? 0;
        clear();
        out.write(width > 0 && line.length >= width ? line.slice(0, width - 1) : line);
        drawn = true;
        return;
      }
      if (t - lastPlain >= 1000 || r.step === r.totalSteps) {
        lastPlain = t;
        out.write(meter.line(t, false) + '\n');
      }
    },
    evaluation(r) {
      meter?.evaluation(r);
      clear();
      out.write(`${Number.isInteger(r.epoch) ? `epoch ${r.epoch}` : `epoch ${r.epoch.toFixed(2)}`} (${unit} ${r.step}): test loss ${r.testLoss.toFixed(4)}, test accuracy ${(100 * r.testAccuracy).toFixed(2)}%\n`);
    },
    message(text) {
      clear();
      out.write(text + '\n');
    },
    notice(text) {
      clear();
      err.write(text + '\n');
    },
    clear,
    done() {
      if (tty && drawn) out.write('\n');
      drawn = false;
    },
    figures() {
      return meter?.figures(now()) ?? null;
    },
  };
}
