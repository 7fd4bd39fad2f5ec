/**
 * Checkpoints that never end a run. A write that fails for the file system's sake (EMFILE, ENOSPC,
 * EFBIG, EACCES, EROFS, a folder replaced by a file...) is tried once more after a short backoff;
 * if that fails too, one warning line with the code is logged and the failure is returned for the
 * caller to count, and the run goes on: the next checkpoint point writes again. Nothing is lost on
 * the way: writeFileAtomic removes its temp file, and older checkpoints are only pruned after a new
 * one was written (checkpoint.ts). A bug (E_INTERNAL: an inconsistent state) is still thrown.
 */
import type { Logger } from 'pino';
import { isGradhubError } from '@gradhub/core';
import { writeCheckpoint, type CheckpointState } from './checkpoint.js';

/** How one checkpoint point ended: the file written, or why not (after the retries). */
export type CheckpointOutcome =
  | { readonly step: number; readonly ok: true; readonly file: string }
  | { readonly step: number; readonly ok: false; readonly code: string; readonly message: string };

export interface CheckpointRetry {
  /** Tries after the first (default 1). */
  readonly retries?: number;
  /** Wait before each retry, ms (default 200). */
  readonly backoffMs?: number;
}

/** Write `state` into `dir` (keeping `keep`), retrying a failed write; never throws for an I/O failure. */
export async function saveCheckpoint(
  dir: string, state: CheckpointState, keep: number, logger: Logger, retry: CheckpointRetry = {},
): Promise<CheckpointOutcome> {
  const retries = retry.retries ?? 1;
  const backoffMs = retry.backoffMs ?? 200;
  for (let attempt = 0; ; attempt++) {
    try {
      const file = writeCheckpoint(dir, state, keep, logger);
      if (attempt > 0) logger.info({ step: state.step, file, attempt }, 'checkpoint written on a retry');
      return { step: state.step, ok: true, file };
    } catch (err) {
      if (isGradhubError(err)) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      const message = (err as Error).message ?? String(err);
      if (attempt < retries) {
        await new Promise((resolve) => setTimeout(resolve, backoffMs * (attempt + 1)));
        continue;
      }
      logger.warn({ step: state.step, dir, code, err: message }, `checkpoint of step ${state.step} not written (${code}): the run goes on, the next checkpoint tries again`);
      return { step: state.step, ok: false, code, message };
    }
  }
}
