/**
 * Starting the adversary worker (evil-worker.mjs, a real Node process on the built packages) from
 * a test, and reading what a run reports about it. Reusable by any adversary test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { CliResult } from '../helpers.js';

export const EVIL_WORKER = fileURLToPath(new URL('./evil-worker.mjs', import.meta.url));

export type EvilMode = 'honest' | 'stall' | 'forge-compute-ms' | 'scale-grad' | 'forge-denom' | 'forge-correct' | 'forge-eval' | 'nan' | 'nan-once';

export interface EvilWorker extends ChildProcess {
  output(): CliResult;
  /** Worker ids it was welcomed with so far (one per connection: it rejoins after being dropped). */
  welcomes(): number[];
}

/** Start `evil-worker.mjs --url URL --token TOKEN --mode MODE` (plus `extra` flags, e.g. --factor, --slowdown-ms). */
export function startEvilWorker(url: string, token: string, mode: EvilMode, extra: readonly string[] = []): EvilWorker {
  const child = spawn(process.execPath, [EVIL_WORKER, '--url', url, '--token', token, '--mode', mode, ...extra], {
    cwd: os.tmpdir(), env: process.env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return Object.assign(child, {
    output: () => ({ code: child.exitCode, signal: child.signalCode, stdout, stderr }),
    welcomes: () => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string; workerId?: number })
      .filter((e) => e.event === 'welcome').map((e) => e.workerId!),
  });
}

/** The status snapshot a run's HTML report embeds (its counters and workers are what /metrics derives from). */
export interface ReportedRun {
  readonly counters: Record<string, number>;
  readonly state: string;
}

export function readReport(file: string): ReportedRun {
  const html = fs.readFileSync(file, 'utf8');
  const m = /<script type="application\/json" id="gradhub-report-data">([\s\S]*?)<\/script>/.exec(html);
  if (!m) throw new Error(`no report data in ${file}`);
  return (JSON.parse(m[1]) as { run: ReportedRun }).run;
}

/** The plans ('request out' debug lines) of a coordinator's pino output: per request, chunks per worker id. */
export function plansOf(stderrAndOut: string): { step: number; mode: string; chunks: Map<number, number> }[] {
  const out: { step: number; mode: string; chunks: Map<number, number> }[] = [];
  for (const line of stderrAndOut.split('\n')) {
    if (!line.includes('"request out"')) continue;
    const o = JSON.parse(line) as { step: number; mode: string; plan: { worker: number; lo: number; hi: number }[] };
    out.push({ step: o.step, mode: o.mode, chunks: new Map(o.plan.map((p) => [p.worker, p.hi - p.lo])) });
  }
  return out;
}
