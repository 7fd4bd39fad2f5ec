/** `gradhub worker`: lend this machine to a coordinator until the run is done. */
import * as fs from 'node:fs';
import type { Logger } from 'pino';
import { GradhubError } from '@gradhub/core';
import { startNodeWorker } from '@gradhub/worker';
import type { WorkerCommandOptions } from './options.js';
import type { StopSignals } from './signals.js';

/** Exit code of a worker whose launcher went away (--exit-with-parent). */
export const EXIT_PARENT_GONE = 1;

export async function workerCommand(o: WorkerCommandOptions, logger: Logger, stop: StopSignals): Promise<void> {
  const url = o['url'];
  const token = o['token'];
  if (!url) throw new GradhubError('E_USAGE', 'gradhub worker needs --url ws://HOST:PORT (the coordinator prints it)');
  if (!token) throw new GradhubError('E_USAGE', 'gradhub worker needs --token T (the coordinator prints it)');
  // ws+unix://PATH:/ws: a coordinator on this machine listening on a Unix socket too (the local launcher's).
  if (!/^(wss?|ws\+unix):\/\//.test(url)) throw new GradhubError('E_USAGE', `--url must start with ws:// or wss:// (or ws+unix:// for a local socket), got "${url}"`);
  const backend = o['backend'];
  if (o['exit-with-parent']) exitWithParent(logger);
  const caFile = o['ca'];
  let ca: Buffer | undefined;
  if (caFile) {
    try {
      ca = fs.readFileSync(caFile);
    } catch (e) {
      throw new GradhubError('E_USAGE', `cannot read --ca ${caFile}: ${(e as Error).message}`);
    }
  }
  const handle = startNodeWorker({
    url, token, logger, backend, threads: o['threads'], graceMs: o['grace-ms'], slowdownMs: o['slowdown-ms'], ca,
  });
  // First signal: leave politely (Bye); a second one ends the process at once (signals.ts).
  stop.graceful((name) => void process.stderr.write(`gradhub: ${name}: leaving the coordinator (again: quit at once)\n`));
  stop.signal.addEventListener('abort', () => handle.stop(), { once: true });
  await handle.done;
}

/**
 * A worker of the local launcher (local-cluster.ts) ends with it: the IPC channel it was started
 * with closes when the launcher exits or dies, even by SIGKILL, and then nothing is left to work for.
 */
function exitWithParent(logger: Logger): void {
  if (!process.channel) throw new GradhubError('E_USAGE', '--exit-with-parent is for workers the local launcher starts (with an IPC channel); this process has none');
  process.channel.unref();
  process.once('disconnect', () => {
    logger.debug({ module: 'worker' }, 'the launcher is gone: exiting');
    process.exit(EXIT_PARENT_GONE);
  });
}
