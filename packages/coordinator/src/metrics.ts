/**
 * The metrics JSONL file (DESIGN "Contracts: Metrics JSONL").
 *
 *   {"kind":"step","step":k,"epoch":e,"loss":...,"accuracy":...,"samples_per_s":...,"lr":...}
 *   {"kind":"epoch","epoch":e,"step":k,"test_loss":...,"test_accuracy":...}
 *
 * `step` counts updates from 1, `loss` is the batch loss computed before update k, epochs count
 * from 1, accuracies are fractions. On resume the file is appended to, and lines for steps it
 * already holds (replayed after the checkpoint) are not written twice: the writer reads the last
 * step and epoch already there and skips lines at or before them. A torn last line (a crash in
 * the middle of a write) is cut off first.
 */
import * as fs from 'node:fs';

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

export interface EpochLine {
  kind: 'epoch';
  epoch: number;
  step: number;
  test_loss: number;
  test_accuracy: number;
}

export type MetricsLine = StepLine | EpochLine;

export interface MetricsSink {
  write(line: MetricsLine): void;
  close(): void;
}

/** A sink that drops everything (no --metrics). */
export const nullMetrics: MetricsSink = { write() {}, close() {} };

/** An open metrics file: a sink, and the lines it already held when it was opened to resume. */
export interface MetricsFile extends MetricsSink {
  /** The readable lines already in the file, in file order (empty for a new file). */
  readonly past: readonly MetricsLine[];
}

/** Open (append) a metrics file. With `resume`, lines already present are not written again. */
export function openMetricsFile(file: string, resume: boolean): MetricsFile {
  let lastStep = 0;
  let lastEvalStep = 0;
  const past: MetricsLine[] = [];
  if (resume && fs.existsSync(file)) {
    const text = fs.readFileSync(file, 'utf8');
    const complete = text.lastIndexOf('\n') + 1;
    if (complete < text.length) fs.truncateSync(file, Buffer.byteLength(text.slice(0, complete)));
    for (const raw of text.slice(0, complete).split('\n')) {
      if (!raw) continue;
      try {
        const l = JSON.parse(raw) as MetricsLine;
        if (l.kind === 'step') lastStep = Math.max(lastStep, l.step);
        else if (l.kind === 'epoch') lastEvalStep = Math.max(lastEvalStep, l.step);
        else continue;
        past.push(l);
      } catch {
        // A line we cannot read is left as it is; the steps after it still count.
      }
    }
  } else {
    fs.writeFileSync(file, '');
  }
  const fd = fs.openSync(file, 'a');
  return {
    past,
    write(line: MetricsLine): void {
      if (line.kind === 'step' && line.step <= lastStep) return;
      if (line.kind === 'epoch' && line.step <= lastEvalStep) return;
      fs.writeSync(fd, JSON.stringify(line) + '\n');
    },
    close(): void {
      fs.closeSync(fd);
    },
  };
}
