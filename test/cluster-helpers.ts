/** Helpers for tests that start `gradhub coordinator` and workers by hand. */
import * as fs from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { startCli, type CliResult } from './helpers.js';
import { pollUntil } from './support/poll.js';

export interface RunningCoordinator {
  process: ChildProcess;
  url: string;
  token: string;
  port: number;
  exited: Promise<CliResult>;
  output: () => CliResult;
}

/**
 * Start `gradhub coordinator ARGS` on 127.0.0.1 (port 0 unless given) and read the worker address
 * and token it prints.
 */
export async function startCoordinator(args: readonly string[]): Promise<RunningCoordinator> {
  const withPort = args.includes('--port') ? args : [...args, '--port', '0'];
  const child = startCli(['coordinator', '--host', '127.0.0.1', ...withPort]);
  const exited = new Promise<CliResult>((resolve) => child.on('exit', () => setImmediate(() => resolve(child.output()))));
  const m = await waitFor(() => /--url (wss?:\/\/\S+) --token (\S+)/.exec(child.output().stdout), 30_000, 'coordinator address', exited)
    .catch((err: unknown) => {
      child.kill('SIGKILL'); // never leave a coordinator behind a failed start
      throw err;
    });
  const url = m[1];
  return { process: child, url, token: m[2], port: Number(new URL(url).port), exited, output: child.output };
}

/** Poll `probe` until it returns something truthy (support/poll.ts, every 10 ms); reject after `ms` or when `abort` settles first. */
export function waitFor<T>(probe: () => T | null | undefined | false, ms: number, what: string, abort?: Promise<CliResult>): Promise<T> {
  return pollUntil(probe, ms, what, { everyMs: 10, abort });
}

/** Number of step lines in a metrics file so far. */
export function stepsDone(file: string): number {
  if (!fs.existsSync(file)) return 0;
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('"kind":"step"')).length;
}
