/**
 * What `train` and `coordinator` share before the first step, in two stages: `planRun` checks the
 * whole command line (settings, run folder, backend, TLS files, --data, --init-from, the checkpoint
 * to resume from) without creating or downloading anything; `prepareRun` then loads the data and
 * makes the run folder, the checkpoint folder and the metrics file. Also the compute backend and
 * the final export.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import {
  GradhubError, modelSpec, initParams, validateSgd, engineFloats,
  decodeSafetensors, safetensorsToParams, tensorEntries,
  type Backend, type ModelSpec, type ErrorCode,
} from '@gradhub/core';
import { createNodeBackend } from '@gradhub/worker';
import {
  loadCifar10, readLatestCheckpoint, checkSettingsMatch, bitSettings, runSettings, openMetricsFile, modelToSafetensors, writeFileAtomic,
  type RoundSettings, type TrainSettings, type TrainStart, type MetricsLine, type MetricsSink, type Samples,
  auditRateProblem,
} from '@gradhub/coordinator';
import { TRAINING_OPTIONS, envName, explicitOptions, type OptionSpec, type ParsedOptions, type RunOptions } from './options.js';
import type { Progress } from './progress.js';
import {
  planRunDir, resumedOptions, runPaths, RUNS_DIR, createRunDir, writeRunRecord, newRunRecord, withResume, type RunDirPlan, type RunPaths,
} from './run-dir.js';
import { GRADHUB_VERSION } from './version.js';
import { checkWritable } from './output-checks.js';
import { allowedChangesFrom, lrScheduleFrom } from './lr-options.js';

export function settingsFrom(o: RunOptions): TrainSettings {
  const s: TrainSettings = {
    sizes: o['model'],
    batch: o['batch-size'],
    chunk: o['chunk'],
    seed: o['seed'],
    shuffle: !o['no-shuffle'],
    normalize: o['normalize'],
    lr: o['lr'],
    momentum: o['momentum'],
    dampening: o['dampening'],
    weightDecay: o['weight-decay'],
    nesterov: o['nesterov'],
    ...lrScheduleFrom(o),
    epochs: o['epochs'],
    steps: o['steps'] ?? null,
    rounds: roundsFrom(o),
    evalEvery: o['eval-every'],
  };
  try {
    validateSgd(s);
    modelSpec(s.sizes);
  } catch (e) {
    throw new GradhubError('E_USAGE', (e as Error).message);
  }
  checkKernelMemory(s.sizes, s.batch);
  if (s.sizes[0] !== 3072) throw new GradhubError('E_USAGE', `--model must start with 3072 (CIFAR-10's 3x32x32 inputs), got ${s.sizes[0]}`);
  if (s.sizes[s.sizes.length - 1] !== 10) throw new GradhubError('E_USAGE', `--model must end with 10 (CIFAR-10's classes), got ${s.sizes[s.sizes.length - 1]}`);
  if (o['resume'] && o['init-from']) throw new GradhubError('E_USAGE', '--resume and --init-from contradict each other: a resumed run takes its weights from the checkpoint');
  allowedChangesFrom(o);
  return s;
}

/** Most samples one round may hold (its images are held by the coordinator and sent in its Work frames). */
export const MAX_ROUND_SAMPLES = 1 << 17;

/**
 * Rounds mode's settings (docs/design.md "Rounds"): on when --local-steps or --replicas is given
 * (H defaults to 1, M to 2); the outer flags without it are contradictions.
 */
export function roundsFrom(o: RunOptions): RoundSettings | null {
  const H = o['local-steps'];
  const M = o['replicas'];
  if (H === undefined && M === undefined) {
    for (const flag of ['outer-lr', 'outer-momentum'] as const) {
      if (o[flag] !== undefined) throw new GradhubError('E_USAGE', `--${flag} applies to rounds mode only: add --local-steps H (and --replicas M)`);
    }
    if (o['no-outer-nesterov']) throw new GradhubError('E_USAGE', '--no-outer-nesterov applies to rounds mode only: add --local-steps H (and --replicas M)');
    return null;
  }
  const outerMomentum = o['outer-momentum'] ?? 0.9;
  const samples = o['batch-size'] * (H ?? 1) * (M ?? 2);
  if (samples > MAX_ROUND_SAMPLES) {
    throw new GradhubError('E_USAGE', `a round of --batch-size ${o['batch-size']} x --local-steps ${H ?? 1} x --replicas ${M ?? 2} = ${samples} samples is more than ${MAX_ROUND_SAMPLES} (${Math.round((MAX_ROUND_SAMPLES * 3073) / 1024 ** 2)} MiB of images held and sent at once): lower --local-steps or --replicas`);
  }
  return {
    localSteps: H ?? 1,
    replicas: M ?? 2,
    outerLr: o['outer-lr'] ?? 0.7,
    outerMomentum,
    outerNesterov: outerMomentum > 0 && !o['no-outer-nesterov'],
  };
}

/** One WebAssembly memory: the most bytes the kernels' buffers (and the optimizer's) can take. */
const WASM_MEMORY_BYTES = 4 * 1024 ** 3;
/** What a kernel memory needs besides the engine's buffers (its scratch space, with headroom). */
const KERNEL_SCRATCH_BYTES = 64 * 1024 ** 2;

/**
 * E_USAGE when `sizes` at `batch` samples cannot be computed: the engine's buffers (parameters,
 * gradients, the batch's activations and their gradients) or the optimizer's (parameters, gradient,
 * momentum) must fit one WebAssembly memory.
 */
export function checkKernelMemory(sizes: readonly number[], batch: number): void {
  const spec = modelSpec(sizes);
  const engine = engineFloats(spec, batch) * 4 + KERNEL_SCRATCH_BYTES;
  const optimizer = 3 * spec.paramCount * 4 + KERNEL_SCRATCH_BYTES;
  const need = Math.max(engine, optimizer);
  if (need <= WASM_MEMORY_BYTES) return;
  const gib = (b: number): string => (b / 1024 ** 3).toFixed(1);
  throw new GradhubError('E_USAGE', `--model ${sizes.join(',')} with --batch-size ${batch} needs ${gib(need)} GiB for its ${engine >= optimizer ? "parameters, gradients and the batch's activations" : 'parameters, gradients and momentum'}, more than one WebAssembly memory holds (4 GiB): lower ${engine >= optimizer ? '--batch-size or ' : ''}the layer sizes`);
}

/** How a command was started: what run.json records and a resumed run re-reads. */
export interface Invocation {
  readonly command: 'train' | 'coordinator';
  /** The arguments after the command name. */
  readonly argv: readonly string[];
  readonly specs: readonly OptionSpec[];
  readonly env: NodeJS.ProcessEnv;
}

/**
 * A run checked from end to end before any data is read: every usage error, then --data, then
 * --init-from and the checkpoint to resume from. Nothing is created or downloaded to get it.
 */
export interface RunPlan<O extends RunOptions = RunOptions> {
  /** The options the run uses (a resumed run's come from its run.json unless given again). */
  readonly o: O;
  readonly invocation: Invocation;
  readonly settings: TrainSettings;
  readonly spec: ModelSpec;
  readonly runDir: RunDirPlan;
  /** The starting point when it is not a fresh initialisation (--init-from, --resume). */
  readonly start: TrainStart | null;
  /** What to say about the start (resuming from step N...). */
  readonly startNote: string | null;
  /** The checkpoint folder, when --checkpoint-dir names one (else the run folder's). */
  readonly checkpointDir: string | undefined;
}

/** Default of --data: the one folder CIFAR-10 is downloaded into when it does not exist yet. */
const DEFAULT_DATA = TRAINING_OPTIONS.find((s) => s.name === 'data')?.default as string;

export function planRun<O extends RunOptions>(parsed: O, invocation: Invocation, logger: Logger): RunPlan<O> {
  const runDir = planRunDir(parsed['run-dir'], parsed['resume'], parsed['checkpoint-dir']);
  const o = runDir.kind === 'resume'
    // run.json recorded options parsed by this same table (resumedOptions checks each against its spec).
    ? resumedOptions(parsed, explicitOptions(invocation.argv, invocation.specs, invocation.env), runDir.record, invocation.specs) as O
    : parsed;
  const settings = settingsFrom(o);
  const spec = modelSpec(settings.sizes);
  // A chunk above the batch only means one chunk; asked for on purpose it is a mistake (the default adapts to small batches).
  if (settings.chunk > settings.batch && explicitOptions(invocation.argv, invocation.specs, invocation.env)['chunk'] !== undefined) {
    throw new GradhubError('E_USAGE', `--chunk ${settings.chunk} is above --batch-size ${settings.batch}: a chunk is a part of the batch; give --chunk ${settings.batch} or less`);
  }
  checkThreads(o['backend'], o['threads'] ?? 1);
  const rate = (o as { readonly 'audit-rate'?: number })['audit-rate'];
  const rateProblem = rate === undefined ? null : auditRateProblem(rate);
  if (rateProblem) throw new GradhubError('E_USAGE', rateProblem);
  if (invocation.command === 'coordinator' || (o['workers'] ?? 0) > 0) readTls(o['tls-cert'], o['tls-key']);
  checkOutputs(o, runDir, invocation);
  allowedOrigins(o['allow-origin']);
  if (o['trusted-token'] !== undefined && o['trusted-token'] === o['token']) throw new GradhubError('E_USAGE', '--trusted-token must differ from --token (the public join token)');
  checkExportTarget(o);
  checkDataDir(o['data'], optionLabel('data', invocation));

  let start: TrainStart | null = null;
  let startNote: string | null = null;
  const initFrom = o['init-from'];
  if (initFrom) {
    const params = new Float32Array(spec.paramCount);
    params.set(safetensorsToParams(spec, decodeSafetensors(readFileOrThrow(initFrom, 'E_INIT_FROM'), initFrom), initFrom));
    checkFinite(spec, params, optionLabel('init-from', invocation), initFrom);
    start = { params, step: 0, sampler: { epoch: 0, position: 0 }, momentumBuffer: null };
  }
  const checkpointDir = o['checkpoint-dir'];
  if (o['resume']) {
    const dir = checkpointDir ?? (runDir.kind === 'new' ? undefined : runPaths(runDir.dir).checkpoints);
    const ck = dir !== undefined && fs.existsSync(dir) ? readLatestCheckpoint(dir, logger) : null;
    if (ck) {
      const allowed = allowedChangesFrom(o);
      const now = bitSettings(settings);
      checkSettingsMatch(ck.settings, now, { ignore: allowed });
      const changed = allowed.filter((k) => JSON.stringify(ck.settings[k]) !== JSON.stringify(now[k]));
      start = { params: ck.params, step: ck.step, sampler: ck.sampler, momentumBuffer: ck.optimizer.momentum_buffer };
      startNote = `resuming from step ${ck.step} (${ck.file})`;
      if (changed.length > 0) startNote += `\n--allow-changed: ${changed.join(', ')} differ from the checkpoint's; the new values apply from step ${ck.step + 1}`;
    } else if (runDir.kind === 'first') {
      startNote = `no run in ${runDir.dir} yet: starting a new one there`;
    } else {
      startNote = `no checkpoint in ${dir} yet: starting from step 0`;
    }
  }
  return { o, invocation, settings, spec, runDir, start, startNote, checkpointDir };
}

/**
 * Every folder and file the run will write can be written (output-checks.ts): the run folder (or
 * runs/ for a default one), --checkpoint-dir, and --export, --metrics, --report or their places in
 * the run folder. E_OUTPUT_UNWRITABLE otherwise, before any data is read.
 */
function checkOutputs(o: RunOptions, runDir: RunDirPlan, inv: Invocation): void {
  if (runDir.dir === null) checkWritable(RUNS_DIR, 'folder', 'the folder of default run folders');
  else checkWritable(runDir.dir, 'folder', optionLabel('run-dir', inv));
  const checkpointDir = o['checkpoint-dir'];
  if (checkpointDir !== undefined) checkWritable(checkpointDir, 'folder', optionLabel('checkpoint-dir', inv));
  const inRun = runDir.dir === null ? null : runPaths(runDir.dir);
  for (const [name, fallback] of [['export', inRun?.model], ['metrics', inRun?.metrics], ['report', inRun?.report]] as const) {
    const file = o[name];
    // The metrics file is appended to (it may be a device, e.g. /dev/stdout); the others are replaced atomically.
    if (file !== undefined) checkWritable(file, 'file', optionLabel(name, inv), name !== 'metrics');
    else if (fallback !== undefined) checkWritable(fallback, 'file', `the run's ${name} file`, name !== 'metrics');
  }
}

/** "--data", or the environment variable it came from. */
function optionLabel(name: string, inv: Invocation): string {
  const given = inv.argv.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  return !given && inv.env[envName(name)] ? envName(name) : `--${name}`;
}

/**
 * --data must be a folder that exists: a typo must not start a 170 MB download into a new folder.
 * Only the default ./data is created (and CIFAR-10 downloaded into it), as documented.
 */
function checkDataDir(dir: string, label: string): void {
  let st: fs.Stats | null = null;
  try {
    st = fs.statSync(dir);
  } catch {
    // absent
  }
  if (st?.isDirectory()) return;
  if (st) throw new GradhubError('E_DATA_MISSING', `${label} ${dir} is a file; give the folder holding the CIFAR-10 binary files (data_batch_*.bin, test_batch.bin)`);
  if (path.resolve(dir) === path.resolve(DEFAULT_DATA)) return;
  throw new GradhubError('E_DATA_MISSING', `${label} ${dir}: no such folder (nothing was created or downloaded). Give the folder holding the CIFAR-10 binary files (data_batch_*.bin, test_batch.bin), or leave ${label} out to download CIFAR-10 into ${DEFAULT_DATA}`);
}

export interface PreparedRun<O extends RunOptions = RunOptions> {
  readonly settings: TrainSettings;
  readonly spec: ModelSpec;
  readonly train: Samples;
  readonly test: Samples | null;
  readonly start: TrainStart;
  readonly metrics: MetricsSink;
  /** The lines the metrics file already held (a resumed run's curves so far), in file order. */
  readonly pastMetrics: readonly MetricsLine[];
  readonly checkpoint: { dir: string; every: number; keep: number } | null;
  /** The run folder and where each of its files really goes (--metrics, --checkpoint-dir, --export override). */
  readonly paths: RunPaths;
  readonly files: { readonly metrics: string; readonly checkpoints: string; readonly model: string; readonly report: string };
  /** The options the run uses (see RunPlan.o). */
  readonly o: O;
}

/** Load the data, then make the run folder (run.json), the checkpoint folder and the metrics file. */
export async function prepareRun<O extends RunOptions>(plan: RunPlan<O>, logger: Logger, progress: Progress): Promise<PreparedRun<O>> {
  const { o, settings, spec } = plan;
  let lastPct = -1;
  const data = await loadCifar10(o['data'], {
    download: !o['no-download'],
    logger,
    progress: (received: number, total: number) => {
      const pct = total > 0 ? Math.floor((100 * received) / total) : -1;
      if (pct !== lastPct && pct % 5 === 0) progress.message(`downloading CIFAR-10: ${pct}% of ${(total / 1e6).toFixed(0)} MB`);
      lastPct = pct;
    },
  });
  const now = new Date();
  const paths = runPaths(startWrite('the run folder', plan.runDir.dir ?? 'runs/', () => createRunDir(plan.runDir.dir, now)));
  const inv = plan.invocation;
  startWrite('the run record', paths.runJson, () => writeRunRecord(paths.dir, plan.runDir.kind === 'resume'
    ? withResume(plan.runDir.record, inv.argv, now)
    : newRunRecord({ gradhubVersion: GRADHUB_VERSION, command: inv.command, argv: inv.argv, started: now, options: o, settings })));
  const files = {
    metrics: o['metrics'] ?? paths.metrics,
    checkpoints: plan.checkpointDir ?? paths.checkpoints,
    model: o['export'] ?? paths.model,
    report: o['report'] ?? paths.report,
  };
  const checkpoint = { dir: files.checkpoints, every: o['checkpoint-every'], keep: o['checkpoint-keep'] };
  startWrite('the checkpoint folder', checkpoint.dir, () => fs.mkdirSync(checkpoint.dir, { recursive: true }));
  if (plan.startNote) progress.message(plan.startNote);
  let start = plan.start;
  if (!start) {
    const params = new Float32Array(spec.paramCount);
    initParams(spec, settings.seed, params);
    start = { params, step: 0, sampler: { epoch: 0, position: 0 }, momentumBuffer: null };
  }
  const file = startWrite('the metrics file', files.metrics, () => {
    fs.mkdirSync(path.dirname(path.resolve(files.metrics)), { recursive: true });
    return openMetricsFile(files.metrics, { resume: o['resume'], run: { ...runSettings(settings), version: GRADHUB_VERSION }, startStep: start.step });
  });
  return {
    settings, spec, train: data.train, test: data.test, start, metrics: file, pastMetrics: file.past, checkpoint, paths, files, o,
  };
}

/**
 * `write()`, with a file system error (a full disk or quota, which the start's probe cannot see)
 * as E_OUTPUT_UNWRITABLE naming `what`: the run has not started, nothing is lost.
 */
function startWrite<T>(what: string, where: string, write: () => T): T {
  try {
    return write();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === undefined) throw err;
    throw new GradhubError('E_OUTPUT_UNWRITABLE', `${what} ${where} could not be written (${(err as Error).message}); free space or choose another place, then start again`, { cause: err });
  }
}

/**
 * Throws E_USAGE for threads the backend cannot use (before anything is loaded); the backend's name
 * itself is one of the option table's choices, checked when it was parsed.
 */
export function checkThreads(backend: 'wasm' | 'ts', threads: number): void {
  if (threads > 1 && backend !== 'wasm') throw new GradhubError('E_USAGE', `--threads ${threads} needs --backend wasm (the ts oracle runs on one thread)`);
}

/**
 * `--allow-origin`'s comma-separated origins; E_USAGE unless each is an origin as browsers send it
 * (scheme://host[:port], no path). run-setup checks it before anything is read.
 */
export function allowedOrigins(raw: string | undefined): string[] {
  const list = (raw ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');
  for (const x of list) {
    let origin: string | null = null;
    try {
      origin = new URL(x).origin;
    } catch {
      origin = null;
    }
    if (origin !== x || !/^https?:/.test(x)) throw new GradhubError('E_USAGE', `--allow-origin takes origins like https://example.org (scheme, host, port; no path), got "${x}"`);
  }
  return list;
}

/** The TLS certificate and key, read (E_USAGE when only one is given or one cannot be read). */
export function readTls(cert: string | undefined, key: string | undefined): { cert: Buffer; key: Buffer } | undefined {
  if (!cert && !key) return undefined;
  if (!cert || !key) throw new GradhubError('E_USAGE', '--tls-cert and --tls-key go together (a PEM certificate and its private key)');
  const read = (file: string, what: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (e) {
      throw new GradhubError('E_USAGE', `cannot read the TLS ${what} ${file}: ${(e as Error).message}`);
    }
  };
  return { cert: read(cert, 'certificate'), key: read(key, 'key') };
}

/**
 * A compute backend sized for `spec` at `maxBatch` samples, its kernels on `threads` threads
 * (wasm only; worker_threads helpers, unref'd). Close it (`backend.close?.()`) when done.
 */
export async function makeBackend(name: 'wasm' | 'ts', spec: ModelSpec, maxBatch: number, threads = 1): Promise<Backend> {
  checkThreads(name, threads);
  return createNodeBackend(name, engineFloats(spec, maxBatch), threads);
}

/**
 * Refuse to start a run whose --export file exists, unless --force: the check is made before
 * training, so a trained model is never lost at the end.
 */
export function checkExportTarget(o: RunOptions): void {
  const file = o['export'];
  if (file !== undefined && !o['force'] && fs.existsSync(file)) {
    throw new GradhubError('E_USAGE', `--export ${file} exists: pass --force to replace it, or choose another file`);
  }
}

/** Write the weights as safetensors (atomically), with metadata that is the same for equal runs. */
export function exportWeights(file: string, spec: ModelSpec, params: Float32Array, normalize: boolean): void {
  writeFileAtomic(file, modelToSafetensors(spec, params, { normalize }));
}

/**
 * E_INIT_NOT_FINITE when a starting weight is NaN or infinite (the first step would fail with
 * E_DIVERGED): names the tensor and the first bad element's index in its shape.
 */
export function checkFinite(spec: ModelSpec, params: Float32Array, label: string, file: string): void {
  for (const t of tensorEntries(spec)) {
    for (let k = 0; k < t.length; k++) {
      const v = params[t.offset + k];
      if (Number.isFinite(v)) continue;
      const index = t.shape.length === 2 ? `[${Math.floor(k / t.shape[1])}, ${k % t.shape[1]}]` : `[${k}]`;
      throw new GradhubError('E_INIT_NOT_FINITE', `${label} ${file}: tensor "${t.name}" holds ${v} at ${index} (the first non-finite value); every starting weight must be a finite number: give a file saved from a model that did not diverge`);
    }
  }
}

function readFileOrThrow(file: string, code: ErrorCode): Uint8Array {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new GradhubError(code, `cannot read ${file}: ${(e as Error).message}`);
  }
}
