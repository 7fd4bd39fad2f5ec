/**
 * The local launcher of `gradhub train --workers N`: the coordinator's server in this process and N
 * `gradhub worker` child processes connected to it over loopback.
 */
import type { Logger } from 'pino';
import { GradhubError } from '@gradhub/core';
import type { Executor } from '@gradhub/coordinator';
import type { ParsedOptions } from './options.js';
import type { PreparedRun } from './run-setup.js';
import type { Progress } from './progress.js';

export interface LocalCluster {
  readonly executor: Executor;
  stop(): Promise<void>;
}

export async function startLocalCluster(_o: ParsedOptions, _run: PreparedRun, _logger: Logger, _progress: Progress): Promise<LocalCluster> {
  throw new GradhubError('E_USAGE', 'the cluster is not wired yet');
}
