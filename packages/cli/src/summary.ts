/**
 * The lines a run ends with: what it did (steps, wall time, mean samples/s, the final test loss and
 * accuracy) and where its files are; after a stop, how to continue it. Pure: formatted from figures.
 */
import type { ProgressFigures } from './progress.js';
import { formatCount } from './progress.js';

export interface RunSummary {
  /** done: all steps; stopped: a signal, after a completed step; abandoned: a step in flight was given up. */
  readonly outcome: 'done' | 'stopped' | 'abandoned';
  readonly step: number;
  readonly totalSteps: number;
  /** This session's figures (null: no step ran). */
  readonly figures: ProgressFigures | null;
  /** The last evaluation of the run (this session's, or the metrics file's), null when none. */
  readonly lastEval: { readonly testLoss: number; readonly testAccuracy: number; readonly step: number } | null;
  readonly runDir: string;
  /** The files, as [label, path]; a null path is left out. */
  readonly files: readonly (readonly [string, string | null])[];
  /** A checkpoint of the last completed step was written (false: the abandoned step had changed the weights). */
  readonly saved: boolean;
  /** The command that continues the run. */
  readonly resumeCommand: string;
  /** What an update is called: 'round' in rounds mode. Default 'step'. */
  readonly unit?: 'step' | 'round';
  /** What went wrong on the way without ending the run (a checkpoint or the export not written), one line each. */
  readonly warnings?: readonly string[];
}

/** Wall time for people: 0.6 s, 42 s, 3m 05s, 1h 02m. */
export function formatWallTime(ms: number): string {
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

export function formatSummary(s: RunSummary): string[] {
  const f = s.figures;
  const n = f?.sessionSteps ?? 0;
  const rate = f && n > 0 ? `, ${formatCount(f.meanSamplesPerS)} samples/s` : '';
  const wall = f ? formatWallTime(f.elapsedMs) : '0 s';
  const u = s.unit ?? 'step';
  // Steps of this session: all of them, or (a resumed run) the part after the checkpoint.
  const ran = n === 0 ? `no ${u} run in this session`
    : n === s.step ? `${n} ${u}${n === 1 ? '' : 's'} in ${wall}${rate}` : `${n} of them in this session, in ${wall}${rate}`;
  const head = s.outcome === 'done'
    ? (n === s.step ? `done: ${ran}` : `done: ${s.step} ${u}s (${ran})`)
    : `stopped at ${u} ${s.step} of ${s.totalSteps} (${n === s.step || n === 0 ? ran : ran.replace('of them ', `${u}s `)})`;
  const test = s.lastEval
    ? `test loss ${s.lastEval.testLoss.toFixed(4)}, test accuracy ${(100 * s.lastEval.testAccuracy).toFixed(2)}%${s.lastEval.step !== s.step ? ` (at ${u} ${s.lastEval.step})` : ''}`
    : 'no test evaluation yet';
  const lines = [`${head}; ${test}`];
  const width = Math.max(...s.files.map(([label]) => label.length), 'run folder'.length) + 2;
  lines.push(`  ${'run folder:'.padEnd(width)}${s.runDir}`);
  for (const [label, file] of s.files) if (file !== null) lines.push(`  ${`${label}:`.padEnd(width)}${file}`);
  if (s.outcome === 'abandoned') {
    lines.push(s.saved
      ? `  the step in flight did not finish in time and was abandoned; step ${s.step} is saved`
      : `  the step in flight was abandoned part-way through its update: nothing was saved; the last periodic checkpoint holds the run`);
  }
  for (const w of s.warnings ?? []) lines.push(`  warning: ${w}`);
  if (s.outcome !== 'done') lines.push(`  continue with: ${s.resumeCommand}`);
  return lines;
}
