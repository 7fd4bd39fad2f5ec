/**
 * The metrics JSONL file (docs/design.md "Contracts: Metrics JSONL"). One JSON object a line:
 *
 *   {"kind":"run",<settings>,"version":"0.1.0","time":t}      first line of a new file
 *   {"kind":"resume","step":k,"time":t}                        a resumed run starts at step k
 *   {"kind":"step","step":k,"epoch":e,"loss":...,"accuracy":...,"samples_per_s":...,"lr":...,"time":t}
 *   {"kind":"round","round":r,"epoch":e,"samples":n,"loss":...,"accuracy":...,"samples_per_s":...,"lr":...,"time":t}   (rounds mode, instead of step lines)
 *   {"kind":"epoch","epoch":e,"step":k,"test_loss":...,"test_accuracy":...,"samples":n,"eval_ms":...,"time":t}
 *   {"kind":"eval","step":k,"samples":n,"test_loss":...,"test_accuracy":...,"eval_ms":...,"time":t}   (--eval-every)
 *
 * `<settings>` are the run's bitSettings plus `epochs` and `steps` (null: no limit), in that
 * order; `time` is the Unix time in milliseconds when the line was written, always the last key
 * (fields added to a kind later go before it). `step` counts updates from 1, `loss` is the batch
 * loss computed before update k, epochs count from 1, accuracies are fractions. Readers skip kinds
 * they do not know.
 *
 * On resume the file is appended to, and lines for steps it already holds (replayed after the
 * checkpoint) are not written twice: the writer reads the last step and epoch already there and
 * skips lines at or before them. A torn last line (a crash in the middle of a write) is cut off first.
 */
import * as fs from 'node:fs';
import { internalError } from '@gradhub/core';

export interface StepLine {
  kind: 'step';
  step: number;
  epoch: number;
  loss: number;
  accuracy: number;
  samples_per_s: number;
  /** The learning rate update `step` used (absent in files written before lr schedules). */
  lr?: number;
}

/** One round of rounds mode (docs/design.md "Rounds"): its loss = the round's loss sums over its denominators. */
export interface RoundLine {
  kind: 'round';
  /** Rounds (outer updates) counted from 1. */
  round: number;
  /** The epoch the round's last inner batch belongs to, from 1. */
  epoch: number;
  /** Samples the round trained on (all replicas' inner batches). */
  samples: number;
  loss: number;
  accuracy: number;
  samples_per_s: number;
  /** The inner learning rate of the round. */
  lr: number;
}

/** An evaluation at the end of an epoch. */
export interface EpochLine {
  kind: 'epoch';
  epoch: number;
  step: number;
  test_loss: number;
  test_accuracy: number;
  /** Training samples seen so far (absent in files written before it). */
  samples?: number;
  /** Wall time the evaluation took, ms (not part of any step's time). */
  eval_ms?: number;
}

/** An evaluation every --eval-every samples, between epoch ends. */
export interface EvalLine {
  kind: 'eval';
  step: number;
  samples: number;
  test_loss: number;
  test_accuracy: number;
  eval_ms: number;
}

/** The lines the trainer writes (the sink adds `time`). */
export type MetricsLine = StepLine | RoundLine | EpochLine | EvalLine;

/** The first line of a metrics file: what the run is. */
export interface RunLine {
  kind: 'run';
  /** The run's bitSettings, then epochs and steps, then version (see the file's contract). */
  [setting: string]: unknown;
}

/** Appended when a run resumes from a checkpoint at `step`. */
export interface ResumeLine {
  kind: 'resume';
  step: number;
}

export interface MetricsSink {
  write(line: MetricsLine): void;
  close(): void;
  /**
   * Optional (a rollback, docs/design.md "Audits and exact rollback"): a mark of the lines written
   * so far (the file's length in bytes), and `truncate(mark)` drops every line written after it,
   * so the replayed steps are in the file once, with their replayed values.
   */
  mark?(): number;
  truncate?(mark: number): void;
}

/** A sink that drops everything (no --metrics). */
export const nullMetrics: MetricsSink = { write() {}, close() {}, mark: () => 0, truncate() {} };

/** An open metrics file: a sink, and the lines it already held when it was opened to resume. */
export interface MetricsFile extends MetricsSink {
  /** The readable step and epoch lines already in the file, in file order (empty for a new file). */
  readonly past: readonly MetricsLine[];
}

export interface MetricsFileOptions {
  /** Append to an existing file (a resumed run) instead of starting a new one. */
  readonly resume: boolean;
  /** The run line's fields after `kind` (no `kind` or `time` of its own): runSettings, then version. */
  readonly run: Readonly<Record<string, unknown>>;
  /** The step the run starts from (0 for a fresh run; a resume line says it). */
  readonly startStep: number;
  /** Clock of the `time` fields, Unix ms. Default Date.now. */
  readonly now?: () => number;
}

/** Parse one line of a metrics file: the step and epoch lines, null for anything else (other kinds, unreadable). */
export function parseMetricsLine(raw: string): MetricsLine | null {
  let l: unknown;
  try {
    l = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof l !== 'object' || l === null) return null;
  const kind = (l as { kind?: unknown }).kind;
  return kind === 'step' || kind === 'round' || kind === 'epoch' || kind === 'eval' ? (l as MetricsLine) : null;
}

/**
 * Open a metrics file. A new run (or a resume without a file) truncates it and writes the run
 * line; a resume appends a resume line, and lines already present are not written again.
 */
export function openMetricsFile(file: string, o: MetricsFileOptions): MetricsFile {
  const now = o.now ?? Date.now;
  let lastStep = 0;
  let lastEvalStep = 0;
  const past: MetricsLine[] = [];
  const resuming = o.resume && fs.existsSync(file);
  if (resuming) {
    const text = fs.readFileSync(file, 'utf8');
    const complete = text.lastIndexOf('\n') + 1;
    if (complete < text.length) fs.truncateSync(file, Buffer.byteLength(text.slice(0, complete)));
    for (const raw of text.slice(0, complete).split('\n')) {
      // A line we cannot read is left as it is; the steps after it still count.
      const l = raw ? parseMetricsLine(raw) : null;
      if (!l) continue;
      if (l.kind === 'step') lastStep = Math.max(lastStep, l.step);
      else if (l.kind === 'round') lastStep = Math.max(lastStep, l.round);
      else lastEvalStep = Math.max(lastEvalStep, l.step);
      past.push(l);
    }
  } else {
    fs.writeFileSync(file, '');
  }
  const fd = fs.openSync(file, 'a');
  let size = fs.fstatSync(fd).size;
  const append = (line: object): void => {
    const text = Buffer.from(JSON.stringify({ ...line, time: now() }) + '\n');
    fs.writeSync(fd, text);
    size += text.byteLength;
  };
  if (resuming) append({ kind: 'resume', step: o.startStep } satisfies ResumeLine);
  else append({ kind: 'run', ...o.run });
  return {
    past,
    write(line: MetricsLine): void {
      if (line.kind === 'step' && line.step <= lastStep) return;
      if (line.kind === 'round' && line.round <= lastStep) return;
      if ((line.kind === 'epoch' || line.kind === 'eval') && line.step <= lastEvalStep) return;
      append(line);
    },
    mark: () => size,
    truncate(mark: number): void {
      if (!Number.isInteger(mark) || mark < 0 || mark > size) throw internalError(`metrics: truncate to ${mark} of ${size} bytes`);
      // The file is opened for appending: later writes go to the new end.
      fs.ftruncateSync(fd, mark);
      size = mark;
    },
    close(): void {
      fs.closeSync(fd);
    },
  };
}
