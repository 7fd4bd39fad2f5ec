/**
 * What `train` and `coordinator` share before the first step: settings from the flags, the data,
 * the starting point (fresh, --init-from, or --resume), the metrics sink, the compute backend,
 * and the final export.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import {
  GradhubError, modelSpec, initParams, validateSgd, engineFloats,
  decodeSafetensors, safetensorsToParams,
  type Backend, type ModelSpec, type ErrorCode,
} from '@gradhub/core';
import { createNodeBackend } from '@gradhub/worker';
import {
  loadCifar10, readLatestCheckpoint, checkSettingsMatch, bitSettings, runSettings, openMetricsFile, nullMetrics, GRADHUB_VERSION, modelToSafetensors,
  type TrainSettings, type TrainStart, type MetricsLine, type MetricsSink, type Samples,
} from '@gradhub/coordinator';
import type { ParsedOptions } from './options.js';
import type { Progress } from './progress.js';

export function settingsFrom(o: ParsedOptions): TrainSettings {
  const s: TrainSettings = {
    sizes: o['model'] as number[],
    batch: o['batch-size'] as number,
    chunk: o['chunk'] as number,
    seed: o['seed'] as number,
    shuffle: !(o['no-shuffle'] as boolean),
    normalize: o['normalize'] as boolean,
    lr: o['lr'] as number,
    momentum: o['momentum'] as number,
    dampening: o['dampening'] as number,
    weightDecay: o['weight-decay'] as number,
    nesterov: o['nesterov'] as boolean,
    epochs: o['epochs'] as number,
    steps: (o['steps'] as number | undefined) ?? null,
  };
  try {
    validateSgd(s);
    modelSpec(s.sizes);
  } catch (e) {
    throw new GradhubError('E_USAGE', (e as Error).message);
  }
  if (s.sizes[0] !== 3072) throw new GradhubError('E_USAGE', `--model must start with 3072 (CIFAR-10's 3x32x32 inputs), got ${s.sizes[0]}`);
  if (s.sizes[s.sizes.length - 1] !== 10) throw new GradhubError('E_USAGE', `--model must end with 10 (CIFAR-10's classes), got ${s.sizes[s.sizes.length - 1]}`);
  if (o['resume'] && !o['checkpoint-dir']) throw new GradhubError('E_USAGE', '--resume needs --checkpoint-dir DIR');
  if (o['resume'] && o['init-from']) throw new GradhubError('E_USAGE', '--resume and --init-from contradict each other: a resumed run takes its weights from the checkpoint');
  return s;
}

export interface PreparedRun {
  readonly settings: TrainSettings;
  readonly spec: ModelSpec;
  readonly train: Samples;
  readonly test: Samples | null;
  readonly start: TrainStart;
  readonly metrics: MetricsSink;
  /** The lines the metrics file already held (a resumed run's curves so far), in file order. */
  readonly pastMetrics: readonly MetricsLine[];
  readonly checkpoint: { dir: string; every: number; keep: number } | null;
}

export async function prepareRun(o: ParsedOptions, logger: Logger, progress: Progress): Promise<PreparedRun> {
  const settings = settingsFrom(o);
  checkExportTarget(o);
  const spec = modelSpec(settings.sizes);
  let lastPct = -1;
  const data = await loadCifar10(o['data'] as string, {
    download: !(o['no-download'] as boolean),
    logger,
    progress: (received: number, total: number) => {
      const pct = total > 0 ? Math.floor((100 * received) / total) : -1;
      if (pct !== lastPct && pct % 5 === 0) progress.message(`downloading CIFAR-10: ${pct}% of ${(total / 1e6).toFixed(0)} MB`);
      lastPct = pct;
    },
  });
  const checkpointDir = o['checkpoint-dir'] as string | undefined;
  const checkpoint = checkpointDir
    ? { dir: checkpointDir, every: o['checkpoint-every'] as number, keep: o['checkpoint-keep'] as number }
    : null;
  if (checkpoint) fs.mkdirSync(checkpoint.dir, { recursive: true });
  let start: TrainStart | null = null;
  if (o['resume'] && checkpoint) {
    const ck = readLatestCheckpoint(checkpoint.dir, logger);
    if (ck) {
      checkSettingsMatch(ck.settings, bitSettings(settings));
      start = { params: ck.params, step: ck.step, sampler: ck.sampler, momentumBuffer: ck.optimizer.momentum_buffer };
      progress.message(`resuming from step ${ck.step} (${checkpoint.dir})`);
    } else {
      progress.message(`no checkpoint in ${checkpoint.dir} yet: starting from step 0`);
    }
  }
  if (!start) {
    const params = new Float32Array(spec.paramCount);
    const initFrom = o['init-from'] as string | undefined;
    if (initFrom) {
      const bytes = readFileOrThrow(initFrom, 'E_INIT_FROM');
      params.set(safetensorsToParams(spec, decodeSafetensors(bytes, initFrom), initFrom));
    } else {
      initParams(spec, settings.seed, params);
    }
    start = { params, step: 0, sampler: { epoch: 0, position: 0 }, momentumBuffer: null };
  }
  const metricsFile = o['metrics'] as string | undefined;
  const file = metricsFile
    ? openMetricsFile(metricsFile, { resume: o['resume'] as boolean, run: { ...runSettings(settings), version: GRADHUB_VERSION }, startStep: start.step })
    : null;
  return { settings, spec, train: data.train, test: data.test, start, metrics: file ?? nullMetrics, pastMetrics: file?.past ?? [], checkpoint };
}

/**
 * A compute backend sized for `spec` at `maxBatch` samples, its kernels on `threads` threads
 * (wasm only; worker_threads helpers, unref'd). Close it (`backend.close?.()`) when done.
 */
export async function makeBackend(name: string, spec: ModelSpec, maxBatch: number, threads = 1): Promise<Backend> {
  if (name !== 'ts' && name !== 'wasm') throw new GradhubError('E_USAGE', `--backend must be wasm or ts, got "${name}"`);
  if (threads > 1 && name !== 'wasm') throw new GradhubError('E_USAGE', `--threads ${threads} needs --backend wasm (the ts oracle runs on one thread)`);
  return createNodeBackend(name, engineFloats(spec, maxBatch), threads);
}

/**
 * Refuse to start a run whose --export file exists, unless --force: the check is made before
 * training, so a trained model is never lost at the end.
 */
export function checkExportTarget(o: ParsedOptions): void {
  const file = o['export'] as string | undefined;
  if (file !== undefined && !(o['force'] as boolean) && fs.existsSync(file)) {
    throw new GradhubError('E_USAGE', `--export ${file} exists: pass --force to replace it, or choose another file`);
  }
}

/** Write the weights as safetensors (atomically), with metadata that is the same for equal runs. */
export function exportWeights(file: string, spec: ModelSpec, params: Float32Array, normalize: boolean): void {
  const bytes = modelToSafetensors(spec, params, { normalize });
  const dir = path.dirname(path.resolve(file));
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, file);
}

function readFileOrThrow(file: string, code: ErrorCode): Uint8Array {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new GradhubError(code, `cannot read ${file}: ${(e as Error).message}`);
  }
}
