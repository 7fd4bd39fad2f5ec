/**
 * Helpers of the adversary tests: a `gradhub coordinator` child process under a chosen open-file
 * limit, attackers as child processes (test/adversary/attackers/*.mjs) whose figures are read from
 * their JSON lines, and the coordinator's /metrics.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLI, ROOT, type CliResult } from '../helpers.js';
import { waitFor, type RunningCoordinator } from '../cluster-helpers.js';
import { parsePrometheusText, type PromFamily } from '../support/prometheus.js';

export const TRUSTED = 'trusted-token-of-the-operator';
export const JOIN = 'public-join-token';
/** Loopback addresses of their own for the attackers (Linux routes all of 127/8 to lo). */
export const attackerAddress = (i: number): string => `127.0.0.${2 + i}`;

/** Parameter bytes of SMALL_RUN's model, 3072,24,10. */
export const SMALL_MODEL_BYTES = 4 * (3072 * 24 + 24 + 24 * 10 + 10);

/**
 * `gradhub coordinator ARGS` on 127.0.0.1 (port 0), with `--token JOIN --trusted-token TRUSTED`,
 * under `ulimit -n` (when given) set by the shell that execs node, so the limit is the process's own.
 */
export async function startCoordinatorUnder(args: readonly string[], ulimit?: number): Promise<RunningCoordinator> {
  const argv = [CLI, 'coordinator', '--host', '127.0.0.1', '--port', '0', '--token', JOIN, '--trusted-token', TRUSTED, ...args];
  const quoted = [process.execPath, ...argv].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const child = spawn('bash', ['-c', `${ulimit === undefined ? '' : `ulimit -n ${ulimit} && `}exec ${quoted}`], { cwd: os.tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const output = (): CliResult => ({ code: child.exitCode, signal: child.signalCode, stdout, stderr });
  const exited = new Promise<CliResult>((resolve) => child.on('exit', () => setImmediate(() => resolve(output()))));
  const m = await waitFor(() => /--url (wss?:\/\/\S+) --token (\S+)/.exec(stdout), 30_000, 'coordinator address', exited).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return { process: child, url: m[1], token: m[2], port: Number(new URL(m[1]).port), exited, output };
}

export interface Attacker<F> {
  readonly process: ChildProcess;
  /** The last figures it printed (null before the first). */
  last(): F | null;
  /** Resolves with its last figures once it has exited. */
  readonly done: Promise<F | null>;
  /** Close its stdin (it stops, prints its figures and exits) and wait for that. */
  stop(): Promise<F | null>;
}

/** Start `node test/adversary/attackers/SCRIPT ARGS`. */
export function startAttacker<F>(script: string, args: readonly (string | number)[]): Attacker<F> {
  const child = spawn(process.execPath, [path.join(ROOT, 'test/adversary/attackers', script), ...args.map(String)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  let last: F | null = null;
  let buffered = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buffered += d;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const l of lines) if (l.trim()) last = JSON.parse(l) as F;
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin!.on('error', () => {});
  const done = new Promise<F | null>((resolve) => child.on('exit', () => setImmediate(() => resolve(last))));
  void done.then(() => {
    if (stderr.trim()) process.stderr.write(`[${script}] ${stderr}\n`);
  });
  return {
    process: child,
    last: () => last,
    done,
    stop() {
      child.stdin!.end();
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      return done.finally(() => clearTimeout(kill));
    },
  };
}

/** GET a path of the coordinator: status and body (no keep-alive, so nothing stays open). */
export async function get(port: number, p: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, { headers: { connection: 'close', ...headers }, signal: AbortSignal.timeout(20_000) });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/** The coordinator's /metrics, parsed. */
export async function metricsOf(port: number): Promise<Map<string, PromFamily>> {
  const r = await get(port, '/metrics');
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  return parsePrometheusText(r.body);
}

/**
 * The counters of the status snapshot a run's HTML report embeds (report.ts): what /metrics showed
 * last, read after the coordinator has exited.
 */
export function reportCounters(file: string): Record<string, number> {
  const html = fs.readFileSync(file, 'utf8');
  const m = /<script type="application\/json" id="gradhub-report-data">([\s\S]*?)<\/script>/.exec(html);
  if (!m) throw new Error(`no report data in ${file}`);
  return (JSON.parse(m[1]) as { run: { counters: Record<string, number> } }).run.counters;
}

/** A counter's value by labels, 0 when the sample is absent (a counter not counted yet). */
export function counted(families: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number {
  const f = families.get(name);
  const s = f?.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value ?? 0;
}
