/**
 * gradhub's one error type: every failure a user or a peer can cause is a `GradhubError` with a
 * stable string `code` (never reworded, safe to match on in code, tests and scripts) and a message
 * that says what is wrong and what to do about it.
 *
 * Pure (no I/O), shared by every package. To add a code: add one entry to `ErrorCode` below with a
 * comment saying when it is raised; never rename or reuse an existing code.
 */

export const ErrorCode = {
  // --- datasets (CIFAR-10 binary files) ---
  /** The dataset files are not there and could not be downloaded (offline, download off or failed). */
  E_DATA_MISSING: 'E_DATA_MISSING',
  /** A dataset file's size is not a whole number of records: truncated or not a CIFAR-10 batch. */
  E_DATA_TRUNCATED: 'E_DATA_TRUNCATED',
  /** A dataset file has whole records but impossible content (a label outside 0..9, bad class list). */
  E_DATA_CORRUPT: 'E_DATA_CORRUPT',
  /** A downloaded dataset archive does not have the expected checksum. */
  E_DATA_CHECKSUM: 'E_DATA_CHECKSUM',

  // --- tensor files ---
  /** A safetensors file is malformed (header, JSON, offsets) or holds a dtype gradhub does not read. */
  E_SAFETENSORS_CORRUPT: 'E_SAFETENSORS_CORRUPT',
  /** Tensors (from a file or a checkpoint) do not fit the model sizes given with --model. */
  E_MODEL_MISMATCH: 'E_MODEL_MISMATCH',

  // --- checkpoints ---
  /** A checkpoint file is truncated, not msgpack, fails its checksum or lacks required fields. */
  E_CHECKPOINT_CORRUPT: 'E_CHECKPOINT_CORRUPT',
  /** --resume with settings that fix the bits (model, batch, chunk, seed, optimizer...) changed. */
  E_RESUME_MISMATCH: 'E_RESUME_MISMATCH',

  // --- runs (CLI and trainer) ---
  /** A command line that cannot run: unknown option, bad value, contradicting flags. */
  E_USAGE: 'E_USAGE',
  /** --init-from names a file that cannot be read. */
  E_INIT_FROM: 'E_INIT_FROM',
  /** --init-from holds a NaN or an infinity: the message names the tensor and the first bad index. */
  E_INIT_NOT_FINITE: 'E_INIT_NOT_FINITE',
  /**
   * A file or folder the run writes (--export, --metrics, --report, --checkpoint-dir, --run-dir)
   * cannot be written: a folder where a file is expected or the reverse, no permission, a read-only
   * file system. Checked at the start, before any data is read; also the final export failing.
   */
  E_OUTPUT_UNWRITABLE: 'E_OUTPUT_UNWRITABLE',
  /** The loss or reduced gradient is not finite (twice for the same node) or every target is ignored: the run stops. */
  E_DIVERGED: 'E_DIVERGED',
  /**
   * Two workers sent different sums for one node of a request: the request ends, and the
   * coordinator recomputes the node to find who lied (audits). Seen by a user only when nothing
   * could decide (a trusted worker disagrees with the coordinator's own compute: a bug).
   */
  E_DISPUTED: 'E_DISPUTED',
  /** A broken promise between gradhub's own modules (a bug): please report it. */
  E_INTERNAL: 'E_INTERNAL',

  // --- cluster (coordinator server, executor, workers) ---
  /** A peer sent a frame that breaks the wire protocol; the wire ErrorCode in the message says which. Its connection is closed. */
  E_PROTOCOL: 'E_PROTOCOL',
  /** The coordinator refused the worker's join token (HTTP 401 at the upgrade, or Reject BAD_TOKEN). */
  E_AUTH: 'E_AUTH',
  /** The coordinator rejected the worker (protocol version, model mismatch, full); the message says why. */
  E_REJECTED: 'E_REJECTED',
  /** The worker lost its coordinator and could not reconnect within the grace period (--grace). */
  E_COORDINATOR_GONE: 'E_COORDINATOR_GONE',
  /** The coordinator server could not listen (port in use, no permission). */
  E_LISTEN: 'E_LISTEN',
  /** The executor or server was closed while a step was still running, or used after close(). */
  E_CLOSED: 'E_CLOSED',
  /** No worker connected within the time allowed (waitForWorkers with a timeout). */
  E_NO_WORKERS: 'E_NO_WORKERS',

  // --- model export (gradhub export) ---
  /** `gradhub export` was given a CHECKPOINT path that does not exist, or a folder holding no checkpoint file. */
  E_NO_CHECKPOINT: 'E_NO_CHECKPOINT',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class GradhubError extends Error {
  /** Stable machine-readable code, one of `ErrorCode`. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GradhubError';
    this.code = code;
  }
}

/**
 * Our own bug: a caller broke a function's contract (a shape, a range, an order of calls). The one
 * way gradhub reports them, as E_INTERNAL (not a bare RangeError), so they surface with a code.
 */
export function internalError(message: string): GradhubError {
  return new GradhubError(ErrorCode.E_INTERNAL, message);
}

/**
 * True when `err` is a GradhubError, and (when `code` is given) has that code. Checks the name and
 * code rather than `instanceof`, so it also holds across two copies of this module (e.g. a package's
 * `src/` and its built `dist/` loaded side by side).
 */
export function isGradhubError(err: unknown, code?: ErrorCode): err is GradhubError {
  if (!(err instanceof Error) || err.name !== 'GradhubError') return false;
  const c = (err as { code?: unknown }).code;
  return typeof c === 'string' && (code === undefined || c === code);
}
