/**
 * Checkpoint files: everything a resumed run needs to continue bit for bit (docs/design.md "Invariant 6: reproducible runs",
 * "Contracts: Checkpoint").
 *
 * File `ckpt-<step, 9 digits>.msgpack` = P || sha256(P), where P is one standard msgpack map (no
 * msgpackr records, readable by any msgpack library after dropping the last 32 bytes):
 *   { format_version: 1, settings: {...the settings that fix the bits...}, step, epoch,
 *     sampler: {epoch, position}, params: bin (paramCount x float32 LE),
 *     optimizer: { momentum_buffer: bin (paramCount x float32 LE) | nil }, metrics: [...] }
 * Float32Arrays are stored as their raw little-endian bytes, never as number arrays. `momentum_buffer`
 * nil means "no buffer yet" (PyTorch's first step sets buf = g), which differs from a zero buffer.
 *
 * Writes are atomic and durable: a temp file in the same folder, fsync, rename to the real name,
 * fsync of the folder; then only the newest `keepLast` are kept. A crash leaves either the old set
 * or the new file, never a partial `ckpt-*` file. Reads verify the checksum and every field; the
 * newest valid checkpoint wins and each corrupt newer one is reported (E_CHECKPOINT_CORRUPT, logged
 * and returned), never skipped silently. The folder belongs to one run.
 *
 * Synchronous on purpose: a checkpoint is a consistent snapshot of the master copy, written between
 * two steps while nothing else may touch the parameters.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Packr, Unpackr } from 'msgpackr';
import { writeFileAtomic } from './atomic-write.js';
import type { Logger } from 'pino';
import { ErrorCode, GradhubError, isGradhubError, modelSpec, internalError } from '@gradhub/core';

export const CHECKPOINT_FORMAT_VERSION = 1;
const CHECKSUM_BYTES = 32;
const CHECKPOINT_RE = /^ckpt-(\d{9})\.msgpack$/;
const TEMP_RE = /^\.ckpt-\d{9}\.\d+\.tmp$/;
const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';

export interface CheckpointState {
  readonly format_version: 1;
  /**
   * The settings that fix the bits (model sizes as `model`: "3072,2048,2048,10" or [3072, ...],
   * batch, chunk, seed, shuffle, normalize, lr, momentum, dampening, weight_decay, nesterov, ...):
   * plain JSON-like values. `model` is required: it sizes `params`.
   */
  readonly settings: Readonly<Record<string, unknown>>;
  /** Updates applied so far (the parameter version). */
  readonly step: number;
  /** 0-based epoch the sampler is in. */
  readonly epoch: number;
  /** The sampler's state: its order is a pure function of (seed, epoch); position is the next sample. */
  readonly sampler: { epoch: number; position: number };
  /** The master parameters, flat layout of the model (paramCount floats). */
  readonly params: Float32Array;
  /** SGD state: the momentum buffer (paramCount floats), or null before the first momentum step. */
  readonly optimizer: { readonly momentum_buffer: Float32Array | null };
  /** Recent metrics lines (small). */
  readonly metrics: readonly unknown[];
}

/** A checkpoint read back, with its file and the corrupt newer ones that were skipped to reach it. */
export interface LoadedCheckpoint extends CheckpointState {
  readonly file: string;
  readonly skipped: readonly GradhubError[];
}

/** `ckpt-000000123.msgpack` */
export function checkpointFileName(step: number): string {
  return `ckpt-${String(step).padStart(9, '0')}.msgpack`;
}

/**
 * Write `state` as `dir/ckpt-<step>.msgpack` (atomically, durably) and keep the newest `keepLast`:
 * the new file and the keepLast - 1 newest with a smaller step. Files with a larger step are from an
 * abandoned future (a corrupt one skipped on resume) and are deleted, as are stale temp files.
 * Returns the path written. Throws E_INTERNAL on an inconsistent state (a bug: nothing is written).
 */
export function writeCheckpoint(dir: string, state: CheckpointState, keepLast: number, logger?: Logger): string {
  if (!Number.isInteger(keepLast) || keepLast < 1) throw internalError(`keepLast must be an integer >= 1, got ${keepLast}`);
  const problem = stateProblem(state);
  if (problem !== null) throw internalError(`refusing to write an invalid checkpoint: ${problem}`);

  const record = {
    format_version: state.format_version,
    settings: state.settings,
    step: state.step,
    epoch: state.epoch,
    sampler: { epoch: state.sampler.epoch, position: state.sampler.position },
    params: f32ToBytes(state.params),
    optimizer: { momentum_buffer: state.optimizer.momentum_buffer === null ? null : f32ToBytes(state.optimizer.momentum_buffer) },
    metrics: state.metrics,
  };
  const payload = new Packr({ useRecords: false, variableMapSize: true }).pack(record);
  const checksum = createHash('sha256').update(payload).digest();

  const file = path.join(dir, checkpointFileName(state.step));
  writeFileAtomic(file, [payload, checksum]);
  prune(dir, state.step, keepLast, logger);
  return file;
}

/** Read and verify one checkpoint file. Throws GradhubError E_CHECKPOINT_CORRUPT naming the file. */
export function readCheckpoint(file: string): CheckpointState {
  const corrupt = (what: string, cause?: unknown): GradhubError =>
    new GradhubError(
      ErrorCode.E_CHECKPOINT_CORRUPT,
      `${file}: checkpoint is corrupt: ${what}. Delete it to resume from an older checkpoint, or start a fresh run.`,
      cause === undefined ? undefined : { cause },
    );
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw corrupt(`cannot read it (${(err as Error).message})`, err);
  }
  if (bytes.length <= CHECKSUM_BYTES) throw corrupt(`${bytes.length} bytes is too short (truncated)`);
  const payload = bytes.subarray(0, bytes.length - CHECKSUM_BYTES);
  const stored = bytes.subarray(bytes.length - CHECKSUM_BYTES);
  const actual = createHash('sha256').update(payload).digest();
  if (!actual.equals(stored)) throw corrupt('its sha256 checksum does not match (truncated or damaged file)');

  let obj: unknown;
  try {
    obj = new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(payload);
  } catch (err) {
    throw corrupt(`not valid msgpack (${String((err as Error).message).slice(0, 120)})`, err);
  }
  if (!isObject(obj)) throw corrupt('the payload is not a msgpack map');
  if (obj.format_version !== CHECKPOINT_FORMAT_VERSION) {
    throw corrupt(`format_version is ${JSON.stringify(obj.format_version)}, this gradhub reads ${CHECKPOINT_FORMAT_VERSION}`);
  }
  const params = bytesToF32(obj.params);
  const optimizer = obj.optimizer;
  const mb = isObject(optimizer) ? optimizer.momentum_buffer : undefined;
  const momentum = mb === null ? null : bytesToF32(mb);
  if (params === undefined) throw corrupt('params is missing or not float32 bytes');
  if (momentum === undefined) throw corrupt('optimizer.momentum_buffer is missing or not float32 bytes or nil');
  const sampler = isObject(obj.sampler) ? { epoch: obj.sampler.epoch as number, position: obj.sampler.position as number } : undefined;
  const state: CheckpointState = {
    format_version: CHECKPOINT_FORMAT_VERSION,
    settings: obj.settings as Record<string, unknown>,
    step: obj.step as number,
    epoch: obj.epoch as number,
    sampler: sampler as { epoch: number; position: number },
    params,
    optimizer: { momentum_buffer: momentum },
    metrics: obj.metrics as unknown[],
  };
  const problem = stateProblem(state);
  if (problem !== null) throw corrupt(problem);
  return state;
}

/**
 * The newest valid checkpoint in `dir`, or null when it holds none (or does not exist). A corrupt
 * newer file is skipped with a warning and returned in `skipped`; when every file is corrupt this
 * throws E_CHECKPOINT_CORRUPT listing them (a resume must not silently start over).
 */
export function readLatestCheckpoint(dir: string, logger?: Logger): LoadedCheckpoint | null {
  const log = logger?.child({ module: 'checkpoint' });
  const files = listCheckpoints(dir);
  if (files.length === 0) return null;
  const skipped: GradhubError[] = [];
  for (const { file } of files) {
    try {
      const state = readCheckpoint(file);
      if (skipped.length > 0) log?.warn({ file, skipped: skipped.length }, `resuming from the older checkpoint ${file}`);
      return { ...state, file, skipped };
    } catch (err) {
      if (!isGradhubError(err, ErrorCode.E_CHECKPOINT_CORRUPT)) throw err;
      skipped.push(err);
      log?.warn({ file, code: err.code, err: err.message }, 'corrupt checkpoint skipped');
    }
  }
  throw new GradhubError(
    ErrorCode.E_CHECKPOINT_CORRUPT,
    `every checkpoint in ${dir} is corrupt:\n  ${skipped.map((e) => e.message).join('\n  ')}\n` +
      `Start a fresh run (without --resume, in an empty --checkpoint-dir), or restore a checkpoint from a backup.`,
  );
}

/** The checkpoint files in `dir`, newest (largest step) first. */
export function listCheckpoints(dir: string): { step: number; file: string }[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: { step: number; file: string }[] = [];
  for (const name of names) {
    const m = CHECKPOINT_RE.exec(name);
    if (m) out.push({ step: Number(m[1]), file: path.join(dir, name) });
  }
  return out.sort((a, b) => b.step - a.step);
}

/**
 * Refuse a resume whose settings that fix the bits differ from the checkpoint's: throws
 * E_RESUME_MISMATCH listing each differing key with both values. Keys in `ignore` are not compared.
 */
export function checkSettingsMatch(
  saved: Readonly<Record<string, unknown>>,
  current: Readonly<Record<string, unknown>>,
  options: { readonly ignore?: readonly string[]; readonly file?: string } = {},
): void {
  const ignore = new Set(options.ignore ?? []);
  const keys = [...new Set([...Object.keys(saved), ...Object.keys(current)])].filter((k) => !ignore.has(k)).sort();
  const diffs = keys.filter((k) => canonical(saved[k]) !== canonical(current[k]));
  if (diffs.length === 0) return;
  const show = (v: unknown): string => (v === undefined ? '(absent)' : typeof v === 'string' ? v : canonical(v));
  const flags = diffs.map((k) => flagFor(k, saved[k])).filter((f) => f.length > 0);
  throw new GradhubError(
    ErrorCode.E_RESUME_MISMATCH,
    `cannot resume${options.file ? ` from ${options.file}` : ''}: settings that fix the bits differ from the checkpoint's: ` +
      diffs.map((k) => `${k} (checkpoint ${show(saved[k])}, now ${show(current[k])})`).join(', ') +
      `. Resume with the checkpoint's values${flags.length > 0 ? ` (${flags.join(' ')})` : ''}, or start a fresh run in a new --checkpoint-dir.`,
  );
}

// ---------------------------------------------------------------------------------------------

/** What is wrong with a state, or null. Also checks params against settings.model. */
function stateProblem(s: CheckpointState): string | null {
  if (s.format_version !== CHECKPOINT_FORMAT_VERSION) return `format_version must be ${CHECKPOINT_FORMAT_VERSION}`;
  if (!isObject(s.settings)) return 'settings is missing or not a map';
  for (const k of ['step', 'epoch'] as const) if (!isCount(s[k])) return `${k} is missing or not a non-negative integer`;
  if (!isObject(s.sampler) || !isCount(s.sampler.epoch) || !isCount(s.sampler.position)) return 'sampler {epoch, position} is missing or invalid';
  if (!Array.isArray(s.metrics)) return 'metrics is missing or not an array';
  const sizes = modelSizes(s.settings.model);
  if (sizes === null) return `settings.model is missing or not model sizes (got ${JSON.stringify(s.settings.model)})`;
  let paramCount: number;
  try {
    paramCount = modelSpec(sizes).paramCount;
  } catch (err) {
    return `settings.model: ${(err as Error).message}`;
  }
  if (!(s.params instanceof Float32Array)) return 'params is not a Float32Array';
  if (s.params.length !== paramCount) return `params hold ${s.params.length} floats, model ${sizes.join(',')} has ${paramCount}`;
  const mb = s.optimizer?.momentum_buffer;
  if (mb !== null && !(mb instanceof Float32Array)) return 'optimizer.momentum_buffer is neither a Float32Array nor null';
  if (mb !== null && mb.length !== paramCount) return `optimizer.momentum_buffer holds ${mb.length} floats, params ${paramCount}`;
  return null;
}

/** Model sizes from "3072,32,10" or [3072, 32, 10]; null when neither. */
function modelSizes(v: unknown): number[] | null {
  const parts = typeof v === 'string' ? v.split(',').map((p) => (/^\s*\d+\s*$/.test(p) ? Number(p) : NaN)) : v;
  if (!Array.isArray(parts) || parts.length < 2 || !parts.every((x) => Number.isSafeInteger(x) && x > 0)) return null;
  return parts as number[];
}

function isCount(v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

/** JSON with sorted keys, for comparing settings values. */
function canonical(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

/** The command-line flag that restores a setting's saved value ('' when there is none to give). */
function flagFor(key: string, value: unknown): string {
  if (value === undefined) return '';
  if (key === 'shuffle') return value === false ? '--no-shuffle' : '';
  const flag = key === 'batch' ? '--batch-size' : key === 'sizes' ? '--model' : `--${key.replace(/_/g, '-')}`;
  if (typeof value === 'boolean') return value ? flag : '';
  return `${flag} ${Array.isArray(value) ? value.join(',') : String(value)}`;
}

function prune(dir: string, step: number, keepLast: number, logger?: Logger): void {
  const older = listCheckpoints(dir).filter((c) => c.step < step);
  const remove = [
    ...listCheckpoints(dir).filter((c) => c.step > step),
    ...older.slice(keepLast - 1),
  ].map((c) => c.file);
  for (const name of fs.readdirSync(dir)) if (TEMP_RE.test(name)) remove.push(path.join(dir, name));
  for (const file of remove) {
    try {
      fs.rmSync(file, { force: true });
      logger?.debug({ file }, 'old checkpoint removed');
    } catch (err) {
      // The new checkpoint is written: an old file that cannot be removed (a folder by that name,
      // a file system error) is left and said, never a reason to call the write failed.
      logger?.warn({ file, code: (err as NodeJS.ErrnoException).code, err: (err as Error).message }, 'old checkpoint not removed');
    }
  }
}

/** The raw little-endian bytes of a Float32Array (a view on little-endian hosts, no copy). */
function f32ToBytes(a: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN_HOST) return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const out = Buffer.alloc(a.byteLength);
  for (let k = 0; k < a.length; k++) out.writeFloatLE(a[k], 4 * k);
  return out;
}

/** A fresh, aligned Float32Array from little-endian bytes; undefined when v is not such bytes. */
function bytesToF32(v: unknown): Float32Array | undefined {
  if (!(v instanceof Uint8Array) || v.length % 4 !== 0) return undefined;
  const copy = new Uint8Array(v.length);
  copy.set(v);
  const out = new Float32Array(copy.buffer);
  if (!LITTLE_ENDIAN_HOST) {
    const view = new DataView(copy.buffer);
    for (let k = 0; k < out.length; k++) out[k] = view.getFloat32(4 * k, true);
  }
  return out;
}
