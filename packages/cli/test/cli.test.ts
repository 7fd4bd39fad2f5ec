/**
 * The real `gradhub` binary (packages/cli/dist/main.js, built), as people run it: exit codes and
 * hints for mistakes, nothing created for a wrong --data, the run folder, Ctrl-C and SIGTERM (a
 * checkpoint of the last completed step, 130 / 143, a second signal quits at once, a step that
 * never ends is abandoned), no worker process left behind by `train --workers 2` however it ends,
 * and `--resume --run-dir` continuing a stopped run to the same bits as an uninterrupted one.
 *
 * Each test works in its own temporary folder (the working directory, where runs/ goes) with a small
 * synthetic CIFAR-10 set in the official binary format. Waits are on output lines, never on sleeps.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { readLatestCheckpoint } from '@gradhub/coordinator';
import { pollUntil } from '../../../test/support/poll.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const VERSION = (JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const SMALL = ['--model', '3072,16,10', '--batch-size', '32', '--no-download'];
const SLOW_STEP_MS = 120_000;

const temps: string[] = [];
afterAll(() => {
  for (const d of temps) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh working folder holding data/: a synthetic CIFAR-10 set (`train` + `test` records). */
function workdir(train = 320, test = 64): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-cli-'));
  temps.push(dir);
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  let s = 12345;
  const batch = (n: number): Buffer => {
    const b = Buffer.alloc(n * 3073);
    for (let i = 0; i < n; i++) {
      const label = i % 10;
      b[i * 3073] = label;
      for (let j = 1; j < 3073; j++) {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        b[i * 3073 + j] = ((s >>> 16) & 0x7f) + 12 * label; // learnable: brighter for higher labels
      }
    }
    return b;
  };
  fs.writeFileSync(path.join(data, 'data_batch_1.bin'), batch(train));
  fs.writeFileSync(path.join(data, 'test_batch.bin'), batch(test));
  fs.writeFileSync(path.join(data, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n');
  return dir;
}

interface Cli {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the match once `re` matches the stream (rejects when the process ends first). */
  waitFor: (re: RegExp, stream?: 'stdout' | 'stderr', ms?: number) => Promise<RegExpExecArray>;
}

/** `detached`: in a process group of its own, as a terminal's foreground job is (Ctrl-C reaches the group). */
function cli(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}, detached = false): Cli {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  let ended = false;
  void exited.then(() => (ended = true));
  const waitFor = (re: RegExp, stream: 'stdout' | 'stderr' = 'stdout', ms = 120_000): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = (): void => {
      const m = re.exec(stream === 'stdout' ? out : err);
      if (m) return resolve(m);
      if (ended) return reject(new Error(`gradhub ${args.join(' ')} ended before ${re} on ${stream}\nstdout: ${out}\nstderr: ${err}`));
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${re} on ${stream}\nstdout: ${out}\nstderr: ${err}`));
      setTimeout(tick, 20);
    };
    tick();
  });
  return { child, stdout: () => out, stderr: () => err, exited, waitFor };
}

async function run(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = cli(args, cwd, env);
  const { code } = await c.exited;
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

const sha256 = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const stepsOf = (file: string): number[] => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)
  .map((l) => JSON.parse(l) as { kind: string; step: number }).filter((l) => l.kind === 'step').map((l) => l.step);
const checkpointSteps = (dir: string): number[] => fs.readdirSync(dir).flatMap((f) => {
  const m = /^ckpt-(\d{9})\.msgpack$/.exec(f);
  return m ? [Number(m[1])] : [];
}).sort((a, b) => a - b);
/** The one run folder under `cwd`/runs. */
function onlyRunDir(cwd: string): string {
  const runs = fs.readdirSync(path.join(cwd, 'runs'));
  expect(runs).toHaveLength(1);
  return path.join(cwd, 'runs', runs[0]);
}

/** The pids of `pid`'s child processes. */
function childPids(pid: number): number[] {
  const out = execFileSync('ps', ['--ppid', String(pid), '-o', 'pid='], { encoding: 'utf8' });
  return out.split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);
}
/** A process that exited but was not reaped yet (a zombie of an init that does not reap) counts as gone. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
async function waitGone(pids: readonly number[], ms = 20_000): Promise<number[]> {
  await pollUntil(() => !pids.some(alive), ms, 'the processes to exit', { everyMs: 50 }).catch(() => {});
  return pids.filter(alive);
}

describe('gradhub: exit codes and hints', () => {
  const cwd = workdir(40, 10);
  it('prints its version (--version, -V, version) and exits 0', async () => {
    for (const v of ['--version', '-V', 'version']) {
      const r = await run([v], cwd);
      expect(r.code, v).toBe(0);
      expect(r.stdout).toBe(`gradhub ${VERSION}\n`);
    }
  });

  it('answers mistakes with a usage error (exit 2) and the nearest command or flag', async () => {
    const cases: [string[], RegExp, NodeJS.ProcessEnv?][] = [
      [['help', 'bogus'], /E_USAGE: no help for "bogus"/],
      [['help', 'trian'], /did you mean train\?/],
      [['trian'], /unknown command "trian" \(did you mean train\?\)/],
      [['train', '--epoch', '3'], /unknown option --epoch \(did you mean --epochs\?\)/],
      [['train', '--log-level', 'loud'], /E_USAGE: --log-level must be one of .*got "loud"/],
      [['train', '--log-format', 'jsno'], /--log-format must be one of text, json, got "jsno" \(did you mean json\?\)/],
      [['train'], /E_USAGE: GRADHUB_BATCH_SIZE expects an integer, got "x"/, { GRADHUB_BATCH_SIZE: 'x' }],
      [['train', '--resume'], /--resume needs --run-dir DIR/],
    ];
    for (const [args, re, env] of cases) {
      const r = await run(args, cwd, env);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(re);
      expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    }
    expect(fs.existsSync(path.join(cwd, 'runs'))).toBe(false);
  });

  it('refuses a --data folder that does not exist, creating and downloading nothing', async () => {
    const missing = path.join(cwd, 'no-such-data');
    const r = await run(['train', '--data', missing, '--steps', '1'], cwd);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/E_DATA_MISSING: --data .*no-such-data: no such folder/);
    expect(fs.existsSync(missing)).toBe(false);
    expect(fs.existsSync(path.join(cwd, 'runs'))).toBe(false);
    // The variable is named when the value came from it.
    const e = await run(['train', '--steps', '1'], cwd, { GRADHUB_DATA: missing });
    expect(e.stderr).toMatch(/GRADHUB_DATA .*no such folder/);
  });

  it('checks usage before the data: a bad flag with a missing --data is a usage error', async () => {
    const r = await run(['train', '--data', path.join(cwd, 'nope'), '--nesterov'], cwd);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/E_USAGE/);
  });
});

describe('gradhub train: the run folder', () => {
  it('keeps run.json, metrics.jsonl, checkpoints and model.safetensors, and says so at the end', async () => {
    const cwd = workdir();
    const r = await run(['train', '--data', 'data', ...SMALL, '--steps', '6'], cwd);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const dir = onlyRunDir(cwd);
    expect(path.basename(dir)).toMatch(/^\d{8}-\d{6}$/);
    const record = JSON.parse(fs.readFileSync(path.join(dir, 'run.json'), 'utf8'));
    expect(record).toMatchObject({ format: 'gradhub-run', gradhub_version: VERSION, command: 'train', cwd: fs.realpathSync(cwd) });
    expect(record.argv).toEqual(['--data', 'data', ...SMALL, '--steps', '6']);
    expect(record.options).toMatchObject({ 'batch-size': 32, model: [3072, 16, 10], steps: 6 });
    expect(record.settings).toMatchObject({ batch: 32, sizes: [3072, 16, 10] });
    expect(stepsOf(path.join(dir, 'metrics.jsonl'))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(checkpointSteps(path.join(dir, 'checkpoints'))).toEqual([6]);
    expect(fs.statSync(path.join(dir, 'model.safetensors')).size).toBeGreaterThan(4 * 3072 * 16);
    const rel = path.relative(cwd, dir);
    expect(r.stdout).toMatch(/done: 6 steps in .* samples\/s; test loss \d\.\d{4}, test accuracy \d+\.\d\d%/);
    expect(r.stdout).toContain(`run folder:  ${rel}`);
    expect(r.stdout).toContain(`weights:     ${path.join(rel, 'model.safetensors')}`);
    // The epochs shown are those the run reaches (--steps 6 ends it in the first of 20).
    expect(r.stdout).toMatch(/epoch 1\/1 step 6\/6 100%/);

    // A second run in the same second gets its own folder; an explicit --run-dir that holds a run is refused.
    const again = await run(['train', '--data', 'data', ...SMALL, '--steps', '1', '--run-dir', rel], cwd);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already holds a run/);
    const notRun = await run(['train', '--resume', '--run-dir', 'data'], cwd);
    expect(notRun.code).toBe(2);
    expect(notRun.stderr).toMatch(/--resume --run-dir data: not a gradhub run folder/);
  });
});

describe('gradhub train: signals', () => {
  it('SIGINT: finishes the step, checkpoints it, prints one line, exits 130; --resume --run-dir ends with the same bits', async () => {
    const cwd = workdir();
    // The ts backend on a wider model: steps slow enough to be interrupted mid-run.
    const slow = ['--data', 'data', '--model', '3072,64,10', '--batch-size', '32', '--backend', 'ts', '--seed', '3'];
    const c = cli(['train', ...slow, '--epochs', '200'], cwd);
    await c.waitFor(/step 1\//);
    c.child.kill('SIGINT');
    const { code } = await c.exited;
    expect(code, c.stderr()).toBe(130);
    expect(c.stderr().split('\n').filter(Boolean)).toEqual([expect.stringMatching(/^gradhub: SIGINT: stopping/)]);
    const dir = onlyRunDir(cwd);
    const done = stepsOf(path.join(dir, 'metrics.jsonl'));
    const last = done.at(-1)!;
    expect(done).toEqual(Array.from({ length: last }, (_, i) => i + 1));
    expect(checkpointSteps(path.join(dir, 'checkpoints')).at(-1)).toBe(last);
    expect(c.stdout()).toMatch(new RegExp(`stopped at step ${last} of 2000`));
    expect(c.stdout()).toContain(`continue with: gradhub train --resume --run-dir ${path.relative(cwd, dir)}`);

    // Continue it: the options come from run.json (only --steps is new), and the weights are those
    // of one uninterrupted run.
    const target = last + 3;
    const resumed = await run(['train', '--resume', '--run-dir', path.relative(cwd, dir), '--steps', String(target), '--backend', 'wasm'], cwd);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(new RegExp(`resuming from step ${last}`));
    expect(stepsOf(path.join(dir, 'metrics.jsonl'))).toEqual(Array.from({ length: target }, (_, i) => i + 1));
    const record = JSON.parse(fs.readFileSync(path.join(dir, 'run.json'), 'utf8'));
    expect(record.resumes).toHaveLength(1);
    const refDir = path.join(cwd, 'ref');
    const ref = await run(['train', ...slow, '--epochs', '200', '--backend', 'wasm', '--steps', String(target), '--run-dir', refDir], cwd);
    expect(ref.code, ref.stderr).toBe(0);
    expect(sha256(path.join(dir, 'model.safetensors'))).toBe(sha256(path.join(refDir, 'model.safetensors')));
  }, 300_000);

  it('SIGTERM: the same, exit 143', async () => {
    const cwd = workdir();
    const c = cli(['train', '--data', 'data', '--model', '3072,64,10', '--batch-size', '32', '--backend', 'ts', '--epochs', '200'], cwd);
    await c.waitFor(/step 1\//);
    c.child.kill('SIGTERM');
    expect((await c.exited).code, c.stderr()).toBe(143);
    expect(c.stderr()).toMatch(/^gradhub: SIGTERM: stopping/);
    const dir = onlyRunDir(cwd);
    expect(checkpointSteps(path.join(dir, 'checkpoints')).at(-1)).toBe(stepsOf(path.join(dir, 'metrics.jsonl')).at(-1));
  }, 180_000);
});

describe('gradhub coordinator: a step that does not end', () => {
  /** A coordinator and one worker that sleeps SLOW_STEP_MS before computing: step 1 hangs. */
  async function hangingStep(cwd: string, graceMs: number): Promise<{ coordinator: Cli; worker: Cli }> {
    const coordinator = cli(['coordinator', '--host', '127.0.0.1', '--port', '0', '--data', 'data', ...SMALL,
      '--log-level', 'debug', '--log-format', 'json', '--stop-grace-ms', String(graceMs)], cwd);
    const m = await coordinator.waitFor(/--url (ws:\/\/\S+) --token (\S+)/);
    const worker = cli(['worker', '--url', m[1], '--token', m[2], '--slowdown-ms', String(SLOW_STEP_MS), '--log-level', 'warn'], cwd);
    await coordinator.waitFor(/"msg":"request out"/, 'stderr');
    return { coordinator, worker };
  }

  it('is abandoned a grace period after SIGINT: exit 130 with a checkpoint of the last completed step', async () => {
    const cwd = workdir();
    const { coordinator, worker } = await hangingStep(cwd, 500);
    try {
      const t0 = Date.now();
      coordinator.child.kill('SIGINT');
      expect((await coordinator.exited).code, coordinator.stderr()).toBe(130);
      expect(Date.now() - t0).toBeLessThan(SLOW_STEP_MS / 2);
      expect(coordinator.stderr()).toMatch(/step abandoned after the stop/);
      expect(coordinator.stdout()).toMatch(/abandoned; step 0 is saved/);
      const checkpoints = path.join(onlyRunDir(cwd), 'checkpoints');
      expect(checkpointSteps(checkpoints)).toEqual([0]);
      // The checkpoint is of the last completed step, sampler included: the abandoned step's batch is drawn again.
      expect(readLatestCheckpoint(checkpoints)!.sampler).toEqual({ epoch: 0, position: 0 });
    } finally {
      worker.child.kill('SIGKILL');
    }
  }, 180_000);

  it('a second SIGINT quits at once, without waiting for the step', async () => {
    const cwd = workdir();
    const { coordinator, worker } = await hangingStep(cwd, SLOW_STEP_MS);
    try {
      coordinator.child.kill('SIGINT');
      await coordinator.waitFor(/gradhub: SIGINT: stopping/, 'stderr');
      const t0 = Date.now();
      coordinator.child.kill('SIGINT');
      expect((await coordinator.exited).code).toBe(130);
      expect(Date.now() - t0).toBeLessThan(SLOW_STEP_MS / 2);
    } finally {
      worker.child.kill('SIGKILL');
    }
  }, 180_000);

  it('stops on SIGTERM while it waits for workers (exit 143)', async () => {
    const cwd = workdir();
    const c = cli(['coordinator', '--host', '127.0.0.1', '--port', '0', '--data', 'data', ...SMALL], cwd);
    await c.waitFor(/waiting for 1 worker/);
    c.child.kill('SIGTERM');
    expect((await c.exited).code, c.stderr()).toBe(143);
    expect(c.stdout()).toMatch(/stopped at step 0/);
  }, 120_000);
});

describe('gradhub train --workers 2 leaves no worker process behind', () => {
  for (const signal of ['SIGINT', 'SIGKILL'] as const) {
    it(`when it gets ${signal === 'SIGINT' ? 'Ctrl-C (SIGINT to its process group)' : 'SIGKILL'}`, async () => {
      const cwd = workdir();
      const c = cli(['train', '--workers', '2', '--data', 'data', ...SMALL, '--epochs', '1000'], cwd, {}, true);
      await c.waitFor(/step 1\//); // every worker has joined: the first step ran
      const workers = childPids(c.child.pid!);
      expect(workers).toHaveLength(2);
      expect(workers.every(alive)).toBe(true);
      if (signal === 'SIGINT') process.kill(-c.child.pid!, 'SIGINT'); // the launcher and its workers, as a terminal does
      else c.child.kill('SIGKILL');
      const { code, signal: by } = await c.exited;
      if (signal === 'SIGINT') {
        expect(code, c.stderr()).toBe(130);
        // The workers left the stop to the launcher: none died and was restarted on the way.
        expect(c.stderr()).not.toMatch(/local worker exited/);
        expect(c.stdout()).toMatch(/stopped at step \d+ of 10000/);
      } else expect(by).toBe('SIGKILL');
      expect(await waitGone(workers)).toEqual([]);
    }, 180_000);
  }
});
