/**
 * The run folder: every `train` and `coordinator` run keeps its results in one place.
 *
 *   runs/20261205-131500/          (--run-dir DIR; default runs/ + the start time, local time;
 *     run.json                      -2, -3... when the name is taken)
 *     metrics.jsonl                 (--metrics F writes it elsewhere)
 *     checkpoints/                  (--checkpoint-dir D writes them elsewhere)
 *     model.safetensors             (--export F writes it elsewhere)
 *     report.html                   (the place reserved for the run's HTML report)
 *
 * run.json (`RunRecord`) holds the gradhub version, the command line, the folder it ran in, the
 * options as the run used them (no tokens) and the trainer's settings. `--resume --run-dir DIR` continues the run: the options come from run.json unless given
 * again, its checkpoints and metrics file are the ones used, and each resume is added to run.json.
 *
 * Planning (`planRunDir`) only looks: it runs with the other checks before any data is read, so a
 * wrong command line creates nothing. `createRunDir` makes the folder once the run is ready to start.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GradhubError } from '@gradhub/core';
import { writeFileAtomic } from '@gradhub/coordinator';
import type { OptionSpec, ParsedOptions } from './options.js';

export const RUN_JSON = 'run.json';
/** The folder default run folders are made in, under the working directory. */
export const RUNS_DIR = 'runs';
/** What run.json's `format` says, and its version. */
const RUN_FORMAT = 'gradhub-run';
const RUN_FORMAT_VERSION = 1;

/** Where a run's files go (each may be overridden by its own flag: see resolveRunFiles). */
export interface RunPaths {
  readonly dir: string;
  readonly runJson: string;
  readonly metrics: string;
  readonly checkpoints: string;
  readonly model: string;
  readonly report: string;
}

export function runPaths(dir: string): RunPaths {
  return {
    dir,
    runJson: path.join(dir, RUN_JSON),
    metrics: path.join(dir, 'metrics.jsonl'),
    checkpoints: path.join(dir, 'checkpoints'),
    model: path.join(dir, 'model.safetensors'),
    report: path.join(dir, 'report.html'),
  };
}

export interface RunRecord {
  readonly format: typeof RUN_FORMAT;
  readonly format_version: number;
  readonly gradhub_version: string;
  /** `train` or `coordinator`. */
  readonly command: string;
  /** The arguments after `gradhub`, as given. */
  readonly argv: readonly string[];
  /** The working directory the run started in (relative paths in `options` are relative to it). */
  readonly cwd: string;
  /** ISO time the run started. */
  readonly started: string;
  /** The options the run used (see recordedOptions). */
  readonly options: Readonly<Record<string, unknown>>;
  /** The trainer's settings. */
  readonly settings: Readonly<Record<string, unknown>>;
  /** Each `--resume`: when, and the arguments. */
  readonly resumes: readonly { readonly time: string; readonly argv: readonly string[] }[];
}

/** Options run.json leaves out: how it was started, and secrets. */
const NOT_RECORDED = new Set(['resume', 'run-dir', 'token', 'trusted-token', 'admin-token']);
/** Recorded options a resumed run does not take from run.json (each invocation says its own). */
const NOT_RESTORED = new Set(['init-from', 'log-level', 'log-format', 'stop-grace-ms']);
/** Options that are paths: relative to the run's working directory. */
const PATH_OPTIONS = new Set(['data', 'metrics', 'checkpoint-dir', 'export', 'tls-cert', 'tls-key']);

/** The options run.json records: all but those of NOT_RECORDED. */
export function recordedOptions(o: ParsedOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (!NOT_RECORDED.has(k) && v !== undefined) out[k] = v;
  return out;
}

/** runs/YYYYMMDD-HHMMSS for `date` in local time. */
export function defaultRunDirName(date: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return path.join(RUNS_DIR, `${date.getFullYear()}${p(date.getMonth() + 1)}${p(date.getDate())}-${p(date.getHours())}${p(date.getMinutes())}${p(date.getSeconds())}`);
}

/** What planRunDir found. */
export type RunDirPlan =
  /** A new run: in `dir`, or (null) in a default folder named when it is created. */
  | { readonly kind: 'new'; readonly dir: string | null }
  /** --resume of the run in `dir`, recorded in `record`. */
  | { readonly kind: 'resume'; readonly dir: string; readonly record: RunRecord }
  /** --resume --run-dir DIR where DIR does not exist or is empty: a new run there (a first start). */
  | { readonly kind: 'first'; readonly dir: string };

/**
 * Decide the run folder from --run-dir / --resume / --checkpoint-dir, without creating anything.
 * Throws E_USAGE for a folder that cannot be used: --resume of a folder that holds other things,
 * a new run in a folder that already holds one, a file.
 */
export function planRunDir(runDir: string | undefined, resume: boolean, checkpointDir: string | undefined): RunDirPlan {
  if (runDir === undefined) {
    if (resume && checkpointDir === undefined) {
      const newest = newestRunDir();
      throw new GradhubError('E_USAGE', `--resume needs --run-dir DIR, the run folder to continue${newest ? ` (the newest here: ${newest})` : ''}, or --checkpoint-dir DIR`);
    }
    return { kind: 'new', dir: null };
  }
  const entries = listDir(runDir);
  const isRun = entries !== null && entries.includes(RUN_JSON);
  if (resume) {
    if (isRun) return { kind: 'resume', dir: runDir, record: readRunRecord(runDir) };
    if (entries === null || entries.length === 0) return { kind: 'first', dir: runDir };
    throw new GradhubError('E_USAGE', `--resume --run-dir ${runDir}: not a gradhub run folder (it has no ${RUN_JSON}); give the folder a run was written to, e.g. ${path.join(RUNS_DIR, 'YYYYMMDD-HHMMSS')}`);
  }
  if (isRun) throw new GradhubError('E_USAGE', `--run-dir ${runDir} already holds a run (${RUN_JSON}): continue it with --resume, or choose another folder`);
  return { kind: 'new', dir: runDir };
}

/** The entries of `dir`; null when it does not exist; E_USAGE when it is not a folder. */
function listDir(dir: string): string[] | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    return null;
  }
  if (!st.isDirectory()) throw new GradhubError('E_USAGE', `--run-dir ${dir} is a file, not a folder`);
  return fs.readdirSync(dir);
}

/** The newest default run folder (runs/YYYYMMDD-HHMMSS[-N] holding a run.json) under the working directory, or null. */
export function newestRunDir(): string | null {
  let names: string[];
  try {
    names = fs.readdirSync(RUNS_DIR);
  } catch {
    return null;
  }
  let best: { name: string; time: string; n: number } | null = null;
  for (const name of names) {
    const m = /^(\d{8}-\d{6})(?:-(\d+))?$/.exec(name);
    if (!m || !fs.existsSync(path.join(RUNS_DIR, name, RUN_JSON))) continue;
    const c = { name, time: m[1], n: Number(m[2] ?? 1) };
    if (!best || c.time > best.time || (c.time === best.time && c.n > best.n)) best = c;
  }
  return best ? path.join(RUNS_DIR, best.name) : null;
}

/** Read a run folder's run.json; E_USAGE when it is unreadable or not one of ours. */
export function readRunRecord(dir: string): RunRecord {
  const file = path.join(dir, RUN_JSON);
  let r: RunRecord;
  try {
    r = JSON.parse(fs.readFileSync(file, 'utf8')) as RunRecord;
  } catch (e) {
    throw new GradhubError('E_USAGE', `cannot read ${file}: ${(e as Error).message}`);
  }
  if (r?.format !== RUN_FORMAT || typeof r.options !== 'object' || r.options === null) {
    throw new GradhubError('E_USAGE', `${file} is not a gradhub run record (format "${String(r?.format)}")`);
  }
  if (r.format_version > RUN_FORMAT_VERSION) {
    throw new GradhubError('E_USAGE', `${file} has format version ${r.format_version}; this gradhub reads up to ${RUN_FORMAT_VERSION}: use a newer gradhub`);
  }
  return r;
}

/**
 * A value run.json recorded for option `s`, checked against the table as the parser would have
 * made it (so the typed options of a resumed run hold what their types say): E_USAGE otherwise.
 */
function recordedValue(s: OptionSpec, v: unknown): ParsedOptions[string] {
  const ok = v === undefined || v === null
    || (s.kind === 'boolean' ? typeof v === 'boolean'
      : s.kind === 'sizes' ? Array.isArray(v) && v.every((x) => Number.isInteger(x) && x > 0)
      : s.kind === 'string' ? typeof v === 'string' && (s.choices === undefined || s.choices.includes(v))
      : typeof v === 'number' && Number.isFinite(v) && (s.kind === 'number' || Number.isInteger(v)) && (s.min === undefined || v >= s.min) && (s.max === undefined || v <= s.max));
  if (!ok) throw new GradhubError('E_USAGE', `run.json records --${s.name} as ${JSON.stringify(v)}, which is not a valid value: give --${s.name} again, or fix run.json`);
  return v === null ? undefined : (v as ParsedOptions[string]);
}

/**
 * The options of a resumed run: `explicit` (given again on the command line or in the environment)
 * win; the others come from run.json (paths made relative to here from the run's folder), then the
 * defaults in `parsed`.
 */
export function resumedOptions(
  parsed: ParsedOptions, explicit: ParsedOptions, record: RunRecord, specs: readonly OptionSpec[], cwd: string = process.cwd(),
): ParsedOptions {
  const out: ParsedOptions = { ...parsed };
  for (const s of specs) {
    const name = s.name;
    if (NOT_RECORDED.has(name) || NOT_RESTORED.has(name) || explicit[name] !== undefined || !(name in record.options)) continue;
    let v = recordedValue(s, record.options[name]);
    if (typeof v === 'string' && PATH_OPTIONS.has(name) && !path.isAbsolute(v)) v = path.relative(cwd, path.resolve(record.cwd, v)) || '.';
    out[name] = v;
  }
  return out;
}

/**
 * Create a new run folder: `dir`, or runs/<start time> with -2, -3... when the name is taken
 * (mkdir is atomic, so runs started in the same second get different folders).
 */
export function createRunDir(dir: string | null, started: Date): string {
  if (dir !== null) {
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  }
  const base = defaultRunDirName(started);
  fs.mkdirSync(path.dirname(base), { recursive: true });
  for (let i = 1; ; i++) {
    const candidate = i === 1 ? base : `${base}-${i}`;
    try {
      fs.mkdirSync(candidate);
      return candidate;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

/** Write run.json atomically (atomic-write.ts). */
export function writeRunRecord(dir: string, record: RunRecord): void {
  writeFileAtomic(path.join(dir, RUN_JSON), JSON.stringify(record, null, 2) + '\n');
}

export function newRunRecord(o: {
  gradhubVersion: string; command: string; argv: readonly string[]; started: Date; options: ParsedOptions; settings: object;
}): RunRecord {
  return {
    format: RUN_FORMAT,
    format_version: RUN_FORMAT_VERSION,
    gradhub_version: o.gradhubVersion,
    command: o.command,
    argv: [...o.argv],
    cwd: process.cwd(),
    started: o.started.toISOString(),
    options: recordedOptions(o.options),
    settings: { ...o.settings },
    resumes: [],
  };
}

/** `record` with one more resume. */
export function withResume(record: RunRecord, argv: readonly string[], time: Date): RunRecord {
  return { ...record, resumes: [...(record.resumes ?? []), { time: time.toISOString(), argv: [...argv] }] };
}
