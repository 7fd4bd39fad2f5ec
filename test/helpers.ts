/** Shared helpers of the cluster-level tests: real `gradhub` processes, real files. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CIFAR10_DIR, REFERENCE_DIR } from './fixtures/index.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CLI = path.join(ROOT, 'packages/cli/dist/main.js');
export const SAMPLE = CIFAR10_DIR;
export const REFERENCE = REFERENCE_DIR;

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Start `gradhub ARGS` as a child process. It runs in the test run's temporary directory (TMPDIR,
 * test/global-setup.ts), so the run folders every train and coordinator run writes (runs/...) go
 * there, not into the repository.
 */
export function startCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): ChildProcess & { output: () => CliResult } {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: os.tmpdir(), env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return Object.assign(child, { output: () => ({ code: child.exitCode, signal: child.signalCode, stdout, stderr }) });
}

/** Run `gradhub ARGS` to the end. */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<CliResult> {
  const child = startCli(args, env);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gradhub ${args.join(' ')} timed out\n${child.output().stderr}`));
    }, timeoutMs);
    child.on('exit', () => {
      clearTimeout(timer);
      // let the pipes drain
      setImmediate(() => resolve(child.output()));
    });
  });
}

export function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `gradhub-${prefix}-`));
}

export function readJsonl<T = Record<string, unknown>>(file: string): T[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as T);
}

/** Small-model flags shared by the determinism tests: fast on 2 cores, every code path exercised. */
export const SMALL_RUN = ['--data', SAMPLE, '--model', '3072,24,10', '--batch-size', '40', '--chunk', '8', '--lr', '0.05', '--momentum', '0.9', '--seed', '5', '--no-download'];

/** sha256 of the weights `gradhub train --workers 0 ARGS` exports: the fault-free run other runs must equal. */
export async function referenceSha(args: readonly string[], prefix = 'ref'): Promise<string> {
  const dir = tempDir(prefix);
  const r = await runCli(['train', '--workers', '0', ...args, '--export', path.join(dir, 'w.st')]);
  if (r.code !== 0) throw new Error(`the reference run failed (${r.code}): ${r.stderr}`);
  return sha256(path.join(dir, 'w.st'));
}
