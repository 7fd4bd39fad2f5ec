/**
 * The end of a run, when something could not be written on the way: the final export (its failure
 * is E_OUTPUT_UNWRITABLE, raised after the summary, never before it) and the summary's warnings
 * (a final checkpoint not written, metrics lines lost). A run is never ended by them early.
 */
import { GradhubError } from '@gradhub/core';
import type { RunStatus } from '@gradhub/coordinator';
import { exportWeights, type PreparedRun } from './run-setup.js';
import { metricsFailures, type CheckpointLog } from './run-status.js';

/** Write the final weights; the failure (a full disk, which the start's check cannot foresee), or null. */
export function exportFinalWeights(run: PreparedRun, params: Float32Array, checkpoints: CheckpointLog): GradhubError | null {
  try {
    exportWeights(run.files.model, run.spec, params, run.settings.normalize);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    const from = checkpoints.last()?.ok ? ` (export them from the checkpoint: gradhub export ${run.files.checkpoints} OUT)` : '';
    return new GradhubError('E_OUTPUT_UNWRITABLE', `the weights could not be written to ${run.files.model} (${code})${from}`);
  }
}

/** The summary's warning lines: what was not written. */
export function endWarnings(
  run: PreparedRun, status: RunStatus, checkpoints: CheckpointLog, exported: boolean, exportFailure: GradhubError | null,
): string[] {
  const warnings: string[] = [];
  const last = checkpoints.last();
  if (last && !last.ok) {
    const older = checkpoints.lastSaved();
    warnings.push(`the checkpoint of step ${last.step} could not be written (${last.code}, also on a retry): ${older === null ? 'this session saved no checkpoint' : `the newest checkpoint is of step ${older}`}${exported ? '; the weights are exported' : ''}`);
  }
  if (exportFailure) warnings.push(exportFailure.message);
  const lost = metricsFailures(status);
  if (lost) warnings.push(`${lost} metrics line${lost === 1 ? '' : 's'} could not be written to ${run.files.metrics}`);
  return warnings;
}
