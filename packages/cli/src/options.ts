/**
 * The CLI's options, declared once: name, type, default, unit and help. Parsing, validation and
 * `--help` all read this table, so a flag cannot be documented one way and parsed another.
 * Contradictions (e.g. --nesterov without momentum) throw a GradhubError with code E_USAGE.
 */
import { GradhubError, LR_SCHEDULE_KINDS } from '@gradhub/core';
import { didYouMean } from './suggest.js';

export type OptionKind = 'string' | 'int' | 'number' | 'boolean' | 'sizes';

export interface OptionSpec {
  readonly name: string;
  readonly kind: OptionKind;
  readonly help: string;
  /** Default shown in --help and used when absent (undefined: no default). */
  readonly default?: string | number | boolean;
  /** Placeholder in --help, e.g. DIR. */
  readonly arg?: string;
  /** Lower bound for int/number. */
  readonly min?: number;
  /** Upper bound for int/number (shown in --help): beyond it the run could not hold its buffers, or the value means nothing. */
  readonly max?: number;
  /** Not listed in --help (test hooks). */
  readonly hidden?: boolean;
  /** The values a string option accepts (checked when parsed, listed in --help). */
  readonly choices?: readonly string[];
}

/**
 * The largest global batch: its pixels alone take 3 KiB a sample (192 MiB at 65536), and with the
 * model's activations it must fit one WebAssembly memory (4 GiB; planRun checks model and batch
 * together). Also the most chunks a batch has, so the most workers a step can use.
 */
export const MAX_BATCH = 65536;
/** The longest delay a Node timer takes (2^31 - 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** Local worker processes `train --workers N` may start (each a Node process with its own buffers). */
export const MAX_LOCAL_WORKERS = 256;
/** Kernel helper threads per process (each a worker_thread with its own stack and buffers). */
export const MAX_THREADS = 256;

/** pino's levels, for --log-level. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** How logs are written to stderr (log-format.ts): short lines for people, or pino's JSON lines. */
export const LOG_FORMAT_OPTION = {
  name: 'log-format', kind: 'string', arg: 'FORMAT', choices: ['text', 'json'],
  help: 'logs on stderr as short text lines or as JSON lines (default: text when stderr is a terminal, json otherwise)',
} as const satisfies OptionSpec;

export const TRAINING_OPTIONS = [
  { name: 'data', kind: 'string', arg: 'DIR', default: './data', help: 'folder holding the CIFAR-10 binary files (or its parent); downloaded there when absent' },
  { name: 'no-download', kind: 'boolean', default: false, help: 'never download CIFAR-10; fail with a message when the files are absent' },
  { name: 'model', kind: 'sizes', arg: 'SIZES', default: '3072,2048,2048,10', help: 'MLP layer sizes, input first, logits last (ReLU between layers)' },
  { name: 'batch-size', kind: 'int', arg: 'N', default: 64, min: 1, max: MAX_BATCH, help: "global batch size in samples (the last batch of an epoch may be short); with the model's activations it must fit WebAssembly's 4 GiB" },
  { name: 'lr', kind: 'number', arg: 'X', default: 0.01, min: 0, help: 'SGD learning rate' },
  { name: 'momentum', kind: 'number', arg: 'X', default: 0, min: 0, help: 'SGD momentum (torch.optim.SGD semantics)' },
  { name: 'weight-decay', kind: 'number', arg: 'X', default: 0, min: 0, help: 'SGD weight decay (L2), added to the gradient' },
  { name: 'dampening', kind: 'number', arg: 'X', default: 0, min: 0, help: 'SGD momentum dampening' },
  { name: 'nesterov', kind: 'boolean', default: false, help: 'Nesterov momentum (needs --momentum > 0 and --dampening 0)' },
  { name: 'lr-schedule', kind: 'string', arg: 'NAME', default: 'constant', choices: LR_SCHEDULE_KINDS, help: 'lr per update: constant, step (StepLR) or cosine (CosineAnnealingLR over the run, T_max = its updates - warm-up); PyTorch 1.13\'s values' },
  { name: 'lr-step-size', kind: 'int', arg: 'N', min: 1, help: 'StepLR step_size: multiply the lr by --lr-gamma every N updates (required by --lr-schedule step, only with it)' },
  { name: 'lr-gamma', kind: 'number', arg: 'X', min: 0, help: 'StepLR gamma (--lr-schedule step only; default 0.1)' },
  { name: 'lr-min', kind: 'number', arg: 'X', min: 0, help: 'CosineAnnealingLR eta_min, the final lr (--lr-schedule cosine only; default 0)' },
  { name: 'warmup-steps', kind: 'int', arg: 'N', default: 0, min: 0, help: 'linear warm-up over the first N updates (LinearLR, then SequentialLR into --lr-schedule); 0: none' },
  { name: 'warmup-start-factor', kind: 'number', arg: 'X', help: 'LinearLR start_factor in (0, 1]: the first update uses lr * X (needs --warmup-steps > 0; default 1/3)' },
  { name: 'epochs', kind: 'int', arg: 'N', default: 20, min: 1, help: 'number of epochs (see --steps; whichever ends first)' },
  { name: 'steps', kind: 'int', arg: 'N', min: 1, help: 'stop after N updates (default: no limit)' },
  { name: 'seed', kind: 'int', arg: 'N', default: 0, min: 0, max: 0xffffffff, help: "seed of gradhub's generator: initialisation and epoch shuffles" },
  { name: 'no-shuffle', kind: 'boolean', default: false, help: 'visit the training set in file order every epoch' },
  { name: 'local-steps', kind: 'int', arg: 'H', min: 1, help: 'rounds mode (local SGD with an outer optimizer, DiLoCo): each replica runs H inner SGD steps per round (default 1 when --replicas is given); --steps then counts rounds' },
  { name: 'replicas', kind: 'int', arg: 'M', min: 1, help: 'rounds mode: M replicas per round, each on its own inner batches, whatever the worker count (default 2 when --local-steps is given)' },
  { name: 'outer-lr', kind: 'number', arg: 'X', min: 0, help: "rounds mode: the outer SGD's lr on the mean pseudo-gradient (default 0.7, DiLoCo's)" },
  { name: 'outer-momentum', kind: 'number', arg: 'X', min: 0, help: "rounds mode: the outer SGD's momentum (default 0.9; Nesterov whenever it is above 0)" },
  { name: 'no-outer-nesterov', kind: 'boolean', default: false, help: 'rounds mode: plain (not Nesterov) outer momentum' },
  { name: 'eval-every', kind: 'int', arg: 'N', default: 0, min: 0, help: 'also evaluate the test set every N training samples, between epoch ends (0: only at epoch ends); the time it takes is kept apart' },
  { name: 'chunk', kind: 'int', arg: 'N', default: 16, min: 1, max: MAX_BATCH, help: 'samples per chunk of the reduction tree (fixes the bits; any worker count gives the same result); at most --batch-size' },
  { name: 'normalize', kind: 'boolean', default: false, help: 'normalise inputs with the CIFAR-10 per-channel mean and std' },
  { name: 'init-from', kind: 'string', arg: 'FILE', help: 'start from weights in a safetensors file (layers.{i}.weight / layers.{i}.bias, e.g. saved by PyTorch)' },
  { name: 'export', kind: 'string', arg: 'FILE', help: 'write the final weights as safetensors, loadable by PyTorch; --normalize is recorded in its metadata (default: RUN_DIR/model.safetensors)' },
  { name: 'force', kind: 'boolean', default: false, help: 'replace an existing --export file (without it the run refuses to start)' },
  { name: 'metrics', kind: 'string', arg: 'FILE', help: 'write the run, training and evaluation metrics as JSON lines, appended to with --resume (default: RUN_DIR/metrics.jsonl)' },
  { name: 'report', kind: 'string', arg: 'FILE', help: 'when the run ends (done, stopped or failed), write a self-contained HTML report here: curves, settings, workers, step-time split (default: RUN_DIR/report.html)' },
  { name: 'checkpoint-dir', kind: 'string', arg: 'DIR', help: 'write checkpoints here (atomically; the last --checkpoint-keep kept; default: RUN_DIR/checkpoints)' },
  { name: 'checkpoint-every', kind: 'int', arg: 'N', default: 100, min: 1, help: 'steps between checkpoints (one is also written at the end)' },
  { name: 'checkpoint-keep', kind: 'int', arg: 'N', default: 3, min: 1, help: 'checkpoints kept in --checkpoint-dir' },
  { name: 'resume', kind: 'boolean', default: false, help: 'continue the run in --run-dir (its settings and newest valid checkpoint), or from the newest checkpoint in --checkpoint-dir' },
  { name: 'allow-changed', kind: 'string', arg: 'WHAT', help: 'with --resume: accept these changed settings (only "lr": --lr and the schedule flags; earlier steps keep their bits, the new values apply from the resumed step on)' },
  { name: 'run-dir', kind: 'string', arg: 'DIR', help: 'the run folder: run.json, metrics.jsonl, checkpoints/, model.safetensors (default: runs/YYYYMMDD-HHMMSS, local time)' },
  { name: 'backend', kind: 'string', arg: 'NAME', default: 'wasm', choices: ['wasm', 'ts'], help: 'compute kernels: wasm (WebAssembly SIMD) or ts (the TypeScript oracle; same bits, slower)' },
  { name: 'log-level', kind: 'string', arg: 'LEVEL', choices: LOG_LEVELS, help: 'pino log level (default: warn for train, info otherwise); logs go to stderr' },
  LOG_FORMAT_OPTION,
  { name: 'stop-grace-ms', kind: 'int', arg: 'MS', default: 5000, min: 0, hidden: true, max: MAX_TIMER_MS, help: 'after Ctrl-C or SIGTERM, how long the step in flight may take before it is abandoned' },
] as const satisfies readonly OptionSpec[];

export const CLUSTER_OPTIONS = [
  { name: 'port', kind: 'int', arg: 'P', min: 0, max: 65535, help: 'port of the coordinator and its dashboard (0: any free port); default 8080 for `coordinator`, 0 for `train`' },
  { name: 'host', kind: 'string', arg: 'ADDR', default: '0.0.0.0', help: 'address the coordinator listens on' },
  { name: 'token', kind: 'string', arg: 'T', help: 'public join token of volunteers, untrusted workers (default: a random one, printed at start)' },
  { name: 'trusted-token', kind: 'string', arg: 'T', help: 'token of the workers you run yourself: trusted, with slots of their own that volunteers cannot take (default: a random one, printed at start; `train` gives it to its local workers)' },
  { name: 'min-workers', kind: 'int', arg: 'N', default: 1, min: 1, max: MAX_BATCH, help: 'workers to wait for before the first step' },
  { name: 'tls-cert', kind: 'string', arg: 'FILE', help: 'serve https:// and wss:// with this PEM certificate (chain); needs --tls-key' },
  { name: 'tls-key', kind: 'string', arg: 'FILE', help: 'PEM private key of --tls-cert' },
  { name: 'admin-token', kind: 'string', arg: 'T', help: 'protect /dashboard, /api and /metrics with this token (default: open)' },
  { name: 'heartbeat-ms', kind: 'int', arg: 'MS', default: 10000, min: 100, max: MAX_TIMER_MS, help: 'a worker silent this long is dropped and its work reassigned' },
  { name: 'allow-origin', kind: 'string', arg: 'ORIGINS', help: 'web origins (comma-separated, e.g. https://example.org) whose pages may open a worker WebSocket besides the coordinator\'s own (default: none)' },
  { name: 'max-http-connections', kind: 'int', arg: 'N', default: 256, min: 1, help: 'most connections that are not worker WebSockets (raw TCP, dashboard, API, event streams); past it they are closed at once' },
  { name: 'max-http-per-address', kind: 'int', arg: 'N', default: 32, min: 1, help: 'most such connections from one remote address' },
  { name: 'max-trusted-workers', kind: 'int', arg: 'N', default: 256, min: 1, help: 'WebSocket slots reserved for --trusted-token workers' },
  { name: 'max-volunteers', kind: 'int', arg: 'N', default: 1024, min: 1, help: 'most WebSockets with the join token (volunteers); past it the upgrade gets 503' },
  { name: 'max-volunteers-per-address', kind: 'int', arg: 'N', default: 16, min: 1, help: 'most volunteer WebSockets from one remote address' },
  { name: 'max-open-files', kind: 'int', arg: 'N', min: 16, help: 'fit the connection caps above under this many open files, minus a reserve of min(128, N/4) for checkpoints and data (default: the process\'s `ulimit -n`, else 1024)' },
  { name: 'headers-timeout-ms', kind: 'int', arg: 'MS', default: 10000, min: 100, max: MAX_TIMER_MS, help: 'a connection must send a whole request head within this (then 408 and closed); the whole request within 3x this' },
  { name: 'hello-timeout-ms', kind: 'int', arg: 'MS', default: 5000, min: 100, max: MAX_TIMER_MS, help: 'a worker WebSocket must say Hello within this, else it is closed' },
  { name: 'wire-compression', kind: 'string', arg: 'WHEN', default: 'auto', choices: ['auto', 'on', 'off'], help: 'pack parameters and gradients losslessly for the wire (about half the bytes, the same bits; costs CPU): on, off, or auto: each side packs while its link to the other measures below 250 Mbit/s' },
  { name: 'serve-source-maps', kind: 'boolean', default: false, help: 'serve the browser worker\'s *.map files (debugging; default: 404)' },
  { name: 'audit-rate', kind: 'number', arg: 'X', default: 0.05, min: 0, help: "share of an untrusted worker's results recomputed here and compared bit for bit, after its first 4 (always), halved once 20 were drawn; a mismatch bans it and rolls training back (0: none sampled, though conflicting and non-finite answers are still recomputed; 1: every result)" },
  { name: 'rollback-memory-mb', kind: 'int', arg: 'MB', default: 256, min: 1, help: 'memory for the states of recent steps that a rollback after a failed audit can return to (8 bytes a parameter each)' },
] as const satisfies readonly OptionSpec[];

/**
 * Threads per worker (`gradhub worker`; `gradhub train` for its in-process compute and its local
 * workers): the wasm kernels split each call's independent outputs over this many worker_threads
 * helpers, while the main thread only moves data (a worker streams gradients during the backward
 * pass). Any N gives the same bits.
 */
export const THREADS_OPTION = {
  name: 'threads', kind: 'int', arg: 'N', default: 1, min: 1, max: MAX_THREADS,
  help: 'threads computing each kernel call (wasm backend; helper threads, the main one moves data); same bits for any N',
} as const satisfies OptionSpec;

export const WORKER_OPTIONS = [
  { name: 'url', kind: 'string', arg: 'URL', help: 'coordinator address, e.g. ws://HOST:8080 (required)' },
  { name: 'token', kind: 'string', arg: 'T', help: 'the coordinator\'s join token, or its trusted token (--trusted-token) for workers you run yourself (required)' },
  { name: 'backend', kind: 'string', arg: 'NAME', default: 'wasm', choices: ['wasm', 'ts'], help: 'compute kernels: wasm or ts (same bits)' },
  THREADS_OPTION,
  { name: 'ca', kind: 'string', arg: 'FILE', help: "trust this PEM certificate for wss:// (e.g. the coordinator's self-signed one)" },
  { name: 'grace-ms', kind: 'int', arg: 'MS', default: 60000, min: 0, max: MAX_TIMER_MS, help: 'exit when the coordinator stays unreachable this long' },
  { name: 'log-level', kind: 'string', arg: 'LEVEL', default: 'info', choices: LOG_LEVELS, help: 'pino log level; logs go to stderr' },
  LOG_FORMAT_OPTION,
  { name: 'exit-with-parent', kind: 'boolean', default: false, hidden: true, help: 'started by the local launcher over an IPC channel: exit when it closes (the launcher is gone), leave Ctrl-C to the launcher' },
  { name: 'slowdown-ms', kind: 'int', arg: 'MS', default: 0, min: 0, hidden: true, max: MAX_TIMER_MS, help: 'test hook: sleep this long per tree node (simulates a slow machine)' },
] as const satisfies readonly OptionSpec[];

/** `gradhub train`'s own options: the local workers, and the threads of whoever computes. */
const TRAIN_ONLY_OPTIONS = [
  { name: 'workers', kind: 'int', arg: 'N', default: 0, min: 0, max: MAX_LOCAL_WORKERS, help: '0: compute in this process; N: start a coordinator and N local worker processes' },
  { ...THREADS_OPTION, help: 'threads computing each kernel call: of this process (--workers 0), of each local worker (--workers N); same bits for any N' },
] as const satisfies readonly OptionSpec[];

/** The cluster options `train` takes: no --min-workers or --token (its workers are its own), loopback by default. */
const TRAIN_CLUSTER_OPTIONS = CLUSTER_OPTIONS
  .filter((s) => s.name !== 'min-workers' && s.name !== 'token')
  .map((s) => (s.name === 'host' ? { ...s, default: '127.0.0.1' } : s)) as readonly Exclude<(typeof CLUSTER_OPTIONS)[number], { name: 'min-workers' | 'token' }>[];

/** Every option of `gradhub train`, and of `gradhub coordinator`, in --help order. */
export const TRAIN_SPECS = [...TRAIN_ONLY_OPTIONS, ...TRAINING_OPTIONS, ...TRAIN_CLUSTER_OPTIONS] as const;
export const COORDINATOR_SPECS = [...TRAINING_OPTIONS, ...CLUSTER_OPTIONS] as const;

/** The value type of one option: numbers, booleans, sizes, a choice, or text. */
type ValueOf<S> = S extends { kind: 'int' | 'number' } ? number
  : S extends { kind: 'boolean' } ? boolean
  : S extends { kind: 'sizes' } ? number[]
  : S extends { choices: readonly (infer C)[] } ? C
  : string;

/**
 * The typed settings of a command, derived from its option table: one property per flag (its name
 * as written, e.g. `o['batch-size']`), present whenever the flag has a default, else possibly
 * undefined. parseOptions builds it once at the entry point; everything below reads it typed.
 */
export type OptionsOf<Specs extends readonly OptionSpec[]> = {
  readonly [S in Specs[number] as S['name']]: S extends { default: string | number | boolean } ? ValueOf<S> : ValueOf<S> | undefined;
};

export type TrainOptions = OptionsOf<typeof TRAIN_SPECS>;
export type CoordinatorOptions = OptionsOf<typeof COORDINATOR_SPECS>;
export type WorkerCommandOptions = OptionsOf<typeof WORKER_OPTIONS>;
/** What `train` and `coordinator` share (run-setup, the cluster's setup): either one's settings. */
export type RunOptions = OptionsOf<typeof TRAINING_OPTIONS> & OptionsOf<typeof TRAIN_CLUSTER_OPTIONS>
  & Partial<Pick<TrainOptions, 'workers' | 'threads'>> & Partial<Pick<CoordinatorOptions, 'min-workers' | 'token'>>;

export type ParsedOptions = Record<string, string | number | boolean | number[] | undefined>;

/**
 * The environment variable that mirrors a flag, for containers (deploy/): GRADHUB_ + the flag's
 * name in capitals with '-' as '_' (--batch-size -> GRADHUB_BATCH_SIZE; booleans take true/false).
 * This is the one place the mapping is defined; flags on the command line win over the environment.
 */
export function envName(flag: string): string {
  return `GRADHUB_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/**
 * Parse `--name value` / `--name=value` / boolean `--flag` against `specs`, after defaults and the
 * GRADHUB_* environment variables (see envName).
 */
export function parseOptions<Specs extends readonly OptionSpec[]>(argv: readonly string[], specs: Specs, env: NodeJS.ProcessEnv = {}): OptionsOf<Specs> {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const out: ParsedOptions = {};
  for (const s of specs) if (s.default !== undefined) out[s.name] = convert(s, String(s.default), `--${s.name}`);
  for (const s of specs) {
    const raw = env[envName(s.name)];
    if (raw === undefined || raw === '') continue;
    if (s.kind === 'boolean' && raw !== 'true' && raw !== 'false') throw new GradhubError('E_USAGE', `${envName(s.name)} must be true or false, got "${raw}"`);
    out[s.name] = convert(s, raw, envName(s.name));
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new GradhubError('E_USAGE', `unexpected argument "${a}" (options start with --; see --help)`);
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    const spec = byName.get(name);
    if (!spec) {
      const visible = specs.filter((x) => !x.hidden).map((x) => x.name);
      throw new GradhubError('E_USAGE', `unknown option --${name}${didYouMean(name, visible, '--') || ' (see --help)'}`);
    }
    if (spec.kind === 'boolean') {
      if (eq >= 0) throw new GradhubError('E_USAGE', `--${name} is a flag and takes no value`);
      out[name] = true;
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = a.slice(eq + 1);
    else value = argv[++i];
    if (value === undefined) throw new GradhubError('E_USAGE', `--${name} needs a value (${spec.arg ?? 'VALUE'})`);
    out[name] = convert(spec, value, `--${name}`);
  }
  // The one place the table's types meet the parsed values: convert() gave each its kind.
  return out as OptionsOf<Specs>;
}

/**
 * The options of `argv` and `env` alone, without defaults: what the user asked for (a resumed run
 * takes the rest from its run.json).
 */
export function explicitOptions(argv: readonly string[], specs: readonly OptionSpec[], env: NodeJS.ProcessEnv = {}): ParsedOptions {
  return parseOptions(argv, specs.map((s) => ({ ...s, default: undefined })), env);
}

/** `raw` as `spec`'s type; `label` names where it came from in errors (--batch-size or GRADHUB_BATCH_SIZE). */
function convert(spec: OptionSpec, raw: string, label: string): string | number | boolean | number[] {
  switch (spec.kind) {
    case 'string':
      if (spec.choices && !spec.choices.includes(raw)) {
        throw new GradhubError('E_USAGE', `${label} must be one of ${spec.choices.join(', ')}, got "${raw}"${didYouMean(raw, spec.choices)}`);
      }
      return raw;
    case 'boolean':
      return raw === 'true';
    case 'sizes': {
      const parts = raw.split(',');
      const sizes = parts.map((p) => (/^\s*\d+\s*$/.test(p) ? Number(p) : Number.NaN));
      if (sizes.length < 2 || sizes.some((v) => !Number.isInteger(v) || v < 1)) {
        throw new GradhubError('E_USAGE', `${label} expects at least two positive integers like 3072,2048,2048,10, got "${raw}"`);
      }
      return sizes;
    }
    case 'int':
    case 'number': {
      const v = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(v) || (spec.kind === 'int' && !Number.isInteger(v))) {
        throw new GradhubError('E_USAGE', `${label} expects ${spec.kind === 'int' ? 'an integer' : 'a number'}, got "${raw}"`);
      }
      if (spec.min !== undefined && v < spec.min) throw new GradhubError('E_USAGE', `${label} must be >= ${spec.min}, got ${v}`);
      if (spec.max !== undefined && v > spec.max) throw new GradhubError('E_USAGE', `${label} must be <= ${spec.max}, got ${v}`);
      return v;
    }
  }
}

/** The option list of a command's --help. */
export function formatOptions(specs: readonly OptionSpec[]): string {
  const rows = specs.filter((s) => !s.hidden).map((s) => {
    const left = `  --${s.name}${s.kind === 'boolean' ? '' : ` ${s.arg ?? 'VALUE'}`}`;
    const def = [
      ...(s.default !== undefined && s.kind !== 'boolean' ? [`default: ${s.default}`] : []),
      ...(s.max !== undefined ? [`at most ${s.max}`] : []),
    ];
    const choices = s.choices ? ` [${s.choices.join('|')}]` : '';
    return [left, s.help + choices + (def.length > 0 ? ` (${def.join('; ')})` : '')] as const;
  });
  const w = Math.max(...rows.map(([l]) => l.length)) + 2;
  return rows.map(([l, r]) => l.padEnd(w) + r).join('\n');
}

/**
 * deploy/README.md's table of the environment variables of one command's options (regenerate the
 * README with `node deploy/scripts/env-tables.mjs` after changing options; a test compares them).
 */
export function envTable(specs: readonly OptionSpec[]): string {
  const cell = (s: string): string => s.replace(/\|/g, '\\|');
  const rows = specs.filter((s) => !s.hidden).map((s) => {
    const value = s.kind === 'boolean' ? 'true / false' : s.choices ? s.choices.join(' / ') : (s.arg ?? 'VALUE');
    const def = s.default === undefined ? '' : `\`${String(s.default)}\``;
    const help = s.max === undefined ? s.help : `${s.help} (at most ${s.max})`;
    return `| \`--${s.name}\` | \`${envName(s.name)}\` | ${value} | ${def} | ${cell(help)} |`;
  });
  return ['| flag | variable | value | default | meaning |', '| --- | --- | --- | --- | --- |', ...rows].join('\n');
}
