/**
 * gradhub in real containers (deploy/Dockerfile's image), started with testcontainers on their own
 * Docker network: the coordinator under the alias `coordinator` with its port mapped to the host,
 * workers dialling ws://coordinator:8080. Every run must end with weights byte-identical to
 * `gradhub train --workers 0` run on the host with the same flags, whatever happens to the
 * containers on the way: a worker killed, one frozen past the heartbeat deadline, one cut off the
 * network, the coordinator killed and started again from its checkpoint volume. /metrics is scraped
 * from the host during a run and checked against /api/status and the metrics file.
 *
 * Runs only when asked: GRADHUB_TEST_CONTAINERS=1 (`npm run test:containers`; CI sets it in .ci/run),
 * otherwise vitest.config.ts leaves this file out. It needs a running Docker engine and the base image
 * ($GRADHUB_BASE_IMAGE, default local/gradhub-base:test) and does not install or start either:
 * deploy/scripts/start-docker.sh and deploy/scripts/make-test-base.sh do (.ci/run runs them first).
 * Asked without them, it fails and says what is missing. The image (gradhub:test, or
 * $GRADHUB_TEST_IMAGE) is built from the working tree once per run of this file (seconds when nothing
 * changed); GRADHUB_TEST_NO_BUILD=1 uses it as it is. Containers, networks and volumes it starts are
 * removed as it goes; the images stay (the next run's build cache), and .ci/run removes them.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCli, sha256, tempDir, readJsonl, SMALL_RUN } from './helpers.js';
import { stepsDone } from './cluster-helpers.js';
import {
  prepareEngine, buildImage, ContainerLab, IMAGE, SMALL_RUN_IN_CONTAINER, OUT_IN_CONTAINER, CHECKPOINTS_IN_CONTAINER,
  getText, liveWorkerAddresses, promValue, RunWatch, Scraper, type ApiStatus, type LabContainer, type CoordinatorContainer,
} from './containers-helpers.js';

const engine = prepareEngine();
const TOKEN = 'gradhub-containers-test';
/** The coordinator's heartbeat deadline in these tests (--heartbeat-ms). */
const HEARTBEAT_MS = 1500;
/** SMALL_RUN's batch size (samples per step). */
const BATCH = 40;
/** Steps of the run without faults. */
const CLEAN_STEPS = 30;
/** Steps of the fault run, and how long the workers sleep per tree node so that the faults land mid-run. */
const FAULT_STEPS = 80;
const SLOWDOWN_MS = 150;
/** Steps of the coordinator-restart run, and its checkpoint interval. */
const RESTART_STEPS = 30;
const CHECKPOINT_EVERY = 5;

/** sha256 of `gradhub train --workers 0 SMALL_RUN --steps N --export F`, run on the host, once per N. */
const references = new Map<number, Promise<string>>();
function reference(steps: number): Promise<string> {
  let p = references.get(steps);
  if (!p) {
    p = (async () => {
      const dir = tempDir('ct-ref');
      const file = path.join(dir, 'w.st');
      const r = await runCli(['train', '--workers', '0', ...SMALL_RUN, '--steps', String(steps), '--export', file]);
      try {
        if (r.code !== 0) throw new Error(`reference run failed (exit ${r.code}): ${r.stderr}`);
        return sha256(file);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    })();
    references.set(steps, p);
  }
  return p;
}

/** Flags of a coordinator container: the small run, the join token, exports into /out. */
function coordinatorArgs(steps: number, extra: readonly string[] = []): string[] {
  return [
    ...SMALL_RUN_IN_CONTAINER, '--steps', String(steps), '--token', TOKEN, '--heartbeat-ms', String(HEARTBEAT_MS),
    '--export', `${OUT_IN_CONTAINER}/w.st`, '--metrics', `${OUT_IN_CONTAINER}/m.jsonl`, ...extra,
  ];
}

function workerArgs(extra: readonly string[] = []): string[] {
  return ['--url', 'ws://coordinator:8080', '--token', TOKEN, '--grace-ms', '90000', ...extra];
}

/** The worker at `ip` is connected (not gone) and has computed a tree node in this session. */
const working = (s: ApiStatus, ip: string): boolean =>
  s.workers.some((w) => (w.address ?? '').replace(/^::ffff:/, '') === ip && w.state !== 'gone' && w.nodesDone > 0);

const stepLines = (file: string): number[] =>
  readJsonl<{ kind: string; step: number }>(file).filter((l) => l.kind === 'step').map((l) => l.step);
const oneToN = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

if (!engine.ok) {
  describe('gradhub in containers', () => {
    it('needs a Docker engine and the base image (asked for with GRADHUB_TEST_CONTAINERS=1)', () => {
      throw new Error(`the container tests were asked for, but cannot run:\n${engine.reason}`);
    });
  });
}

describe.runIf(engine.ok)('gradhub in containers', () => {
  let lab: ContainerLab;

  beforeAll(async () => {
    if (process.env.GRADHUB_TEST_NO_BUILD === '1') console.log(`containers: GRADHUB_TEST_NO_BUILD=1: using ${IMAGE} as it is`);
    else console.log(`containers: ${IMAGE} built in ${((await buildImage()) / 1000).toFixed(1)} s`);
    await Promise.all([reference(CLEAN_STEPS), reference(FAULT_STEPS), reference(RESTART_STEPS)]);
    lab = await ContainerLab.create();
  }, 20 * 60_000);

  afterEach(async () => {
    const problems = await lab?.cleanup();
    if (problems?.length) throw new Error(`cleanup left things behind:\n${problems.join('\n')}`);
  }, 120_000);

  afterAll(async () => {
    await lab?.cleanup();
  }, 120_000);

  it('a coordinator and 3 worker containers train to weights byte-identical to --workers 0', async () => {
    const STEPS = CLEAN_STEPS;
    await lab.withLogsOnFailure(async () => {
      const network = await lab.network();
      const out = lab.outDir('clean');
      const coord = await lab.coordinator({ network, outDir: out, args: coordinatorArgs(STEPS, ['--min-workers', '3']) });
      const health = await getText(`${coord.httpUrl}/healthz`);
      expect(health.status, `GET /healthz from the host: ${health.body}`).toBe(200);
      // Workers configured the way deploy/compose.yaml does it: GRADHUB_* variables only.
      const workers: LabContainer[] = [];
      for (let i = 1; i <= 3; i++) {
        workers.push(await lab.worker({
          network, alias: `worker-${i}`,
          env: { GRADHUB_URL: 'ws://coordinator:8080', GRADHUB_TOKEN: TOKEN, GRADHUB_GRACE_MS: '90000' },
        }));
      }
      expect(await lab.waitExit(coord, 120_000), 'coordinator exit code').toBe(0);
      for (const w of workers) expect(await lab.waitExit(w, 30_000), `${w.label} exit code (done: 0)`).toBe(0);
      expect(sha256(path.join(out, 'w.st'))).toBe(await reference(STEPS));
      expect(stepLines(path.join(out, 'm.jsonl'))).toEqual(oneToN(STEPS));
    });
  }, 240_000);

  it('a worker killed, one paused past the heartbeat deadline, one cut off the network: byte-identical; /metrics agrees', async () => {
    const STEPS = FAULT_STEPS;
    await lab.withLogsOnFailure(async () => {
      const network = await lab.network();
      const out = lab.outDir('faults');
      const metricsFile = path.join(out, 'm.jsonl');
      const coord = await lab.coordinator({ network, outDir: out, args: coordinatorArgs(STEPS, ['--min-workers', '3']) });
      const slow = ['--slowdown-ms', String(SLOWDOWN_MS)];
      const killed = await lab.worker({ network, alias: 'worker-killed', args: workerArgs(slow) });
      const paused = await lab.worker({ network, alias: 'worker-paused', args: workerArgs(slow) });
      const cut = await lab.worker({ network, alias: 'worker-cut', args: workerArgs(slow) });
      const ip = new Map<LabContainer, string>();
      for (const w of [killed, paused, cut]) ip.set(w, await lab.ipOf(w, network));
      const scraper = new Scraper(() => coord.httpUrl, metricsFile);
      const run = new RunWatch(() => coord.httpUrl, STEPS);
      const t0 = Date.now();
      const mark = (what: string): void => console.log(`containers/faults: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s, step ${run.step}`);
      try {
        await run.until('3 workers working and step 3', (s) => s.step >= 3 && [killed, paused, cut].every((w) => working(s, ip.get(w)!)));
        mark('3 workers training');

        // 1. A worker container killed (SIGKILL): its socket dies with it, its nodes go to the others.
        await lab.kill(killed);
        await run.until(`${killed.label} dropped`, (s) => !liveWorkerAddresses(s).includes(ip.get(killed)!));
        await run.advance(2, 'steps without the killed worker');
        mark('worker killed, run goes on');

        // 2. A worker frozen (docker pause) past the heartbeat deadline: dropped; thawed: it rejoins.
        await run.until(`${paused.label} at work before the pause`, (s) => working(s, ip.get(paused)!));
        await lab.pause(paused);
        const pausedAt = Date.now();
        await run.until(`${paused.label} dropped after the heartbeat deadline`, (s) => !liveWorkerAddresses(s).includes(ip.get(paused)!));
        const silentFor = Date.now() - pausedAt;
        await run.advance(2, 'steps while a worker is frozen');
        await lab.unpause(paused);
        // Back: it rejoins, on probation (a copy of a node others hold), is measured by that copy
        // even when the step ends first, and is at work again: docs/design.md "Speeds, stalls and
        // non-finite results".
        await run.until(`${paused.label} back after docker unpause`, (s) => liveWorkerAddresses(s).includes(ip.get(paused)!));
        await run.until(`${paused.label} at work again after it rejoined`, (s) => working(s, ip.get(paused)!));
        mark(`worker paused (dropped after ${silentFor} ms), back and at work`);
        expect(silentFor, 'a frozen worker is dropped only after the heartbeat deadline').toBeGreaterThanOrEqual(HEARTBEAT_MS - 100);

        // 3. A worker cut off the network (docker network disconnect), then connected again.
        await run.until(`${cut.label} at work before the cut`, (s) => working(s, ip.get(cut)!));
        await lab.disconnect(cut, network);
        await run.until(`${cut.label} dropped after docker network disconnect`, (s) => !liveWorkerAddresses(s).includes(ip.get(cut)!));
        await run.advance(2, 'steps while a worker is cut off');
        await lab.connect(cut, network, 'worker-cut');
        ip.set(cut, await lab.ipOf(cut, network));
        await run.until(`${cut.label} back after docker network connect`, (s) => liveWorkerAddresses(s).includes(ip.get(cut)!));
        mark('worker cut off and back');

        expect(await lab.waitExit(coord, 180_000), 'coordinator exit code').toBe(0);
        mark('coordinator done');
      } finally {
        await scraper.stop();
      }
      for (const w of [paused, cut]) expect(await lab.waitExit(w, 30_000), `${w.label} exit code (done: 0)`).toBe(0);
      expect((await lab.state(killed)).ExitCode, `${killed.label} was killed`).toBe(137);
      expect(sha256(path.join(out, 'w.st'))).toBe(await reference(STEPS));
      expect(stepLines(metricsFile)).toEqual(oneToN(STEPS));
      const seen = scraper.check(STEPS, BATCH);
      const f = seen.last.families;
      console.log(`containers/faults: ${scraper.scrapes.length} scrapes (${seen.exact} exact), workers_connected seen ${seen.workersSeen.join(',')}, last: steps ${promValue(f, 'gradhub_steps_total')}, bytes in ${promValue(f, 'gradhub_bytes_total', { direction: 'in' })}, out ${promValue(f, 'gradhub_bytes_total', { direction: 'out' })}, late results ${promValue(f, 'gradhub_late_results_total')}, rejected ${JSON.stringify(f.get('gradhub_rejected_messages_total')?.samples.map((x) => [x.labels.code, x.value]))}`);
      expect(seen.workersSeen, 'gradhub_workers_connected saw the 3 workers').toContain(3);
      expect(Math.min(...seen.workersSeen), 'gradhub_workers_connected saw the faults').toBeLessThanOrEqual(2);
    });
  }, 300_000);

  it('the coordinator container killed and started again from its checkpoint volume: workers reconnect, byte-identical', async () => {
    const STEPS = RESTART_STEPS;
    await lab.withLogsOnFailure(async () => {
      const network = await lab.network();
      const volume = await lab.volume();
      const out = lab.outDir('restart');
      const metricsFile = path.join(out, 'm.jsonl');
      const args = coordinatorArgs(STEPS, [
        '--min-workers', '2', '--checkpoint-dir', CHECKPOINTS_IN_CONTAINER, '--checkpoint-every', String(CHECKPOINT_EVERY),
      ]);
      let coord: CoordinatorContainer = await lab.coordinator({ network, outDir: out, checkpointVolume: volume, args });
      const workers = [
        await lab.worker({ network, alias: 'worker-1', args: workerArgs(['--slowdown-ms', '100']) }),
        await lab.worker({ network, alias: 'worker-2', args: workerArgs(['--slowdown-ms', '100']) }),
      ];
      const run = new RunWatch(() => coord.httpUrl, STEPS);
      const killAt = 2 * CHECKPOINT_EVERY + 2;
      await run.until(`step ${killAt} (two checkpoints written)`, (s) => s.step >= killAt);

      // SIGKILL: no goodbye, no last checkpoint. The container is removed; its volume stays.
      await lab.kill(coord);
      expect(await lab.waitExit(coord, 30_000), 'killed coordinator exit code').toBe(137);
      const killedAt = stepsDone(metricsFile);
      await lab.remove(coord);

      // The same command again, with --resume, the same alias, token and checkpoint volume.
      coord = await lab.coordinator({ network, outDir: out, checkpointVolume: volume, args: [...args, '--resume'] });
      const resumed = /resuming from step (\d+)/.exec(await lab.logs(coord));
      expect(resumed, `the restarted coordinator resumes from a checkpoint (it printed: ${await lab.logs(coord, 20)})`).not.toBeNull();
      const from = Number(resumed![1]);
      expect(from % CHECKPOINT_EVERY, 'resumed from a checkpoint step').toBe(0);
      expect(from).toBeGreaterThanOrEqual(CHECKPOINT_EVERY);
      expect(from).toBeLessThanOrEqual(killedAt);
      const workerIps = await Promise.all(workers.map((w) => lab.ipOf(w, network)));
      await run.until('both workers back at work on the restarted coordinator, past the replayed steps',
        (s) => s.step > killedAt && workerIps.every((ip) => working(s, ip)), 90_000);

      expect(await lab.waitExit(coord, 120_000), 'restarted coordinator exit code').toBe(0);
      for (const w of workers) expect(await lab.waitExit(w, 30_000), `${w.label} exit code (done: 0)`).toBe(0);
      expect(sha256(path.join(out, 'w.st'))).toBe(await reference(STEPS));
      // Steps replayed after the checkpoint are not written twice.
      expect(stepLines(metricsFile)).toEqual(oneToN(STEPS));
      console.log(`containers/restart: killed at step ${killedAt}, resumed from step ${from}`);
    });
  }, 300_000);
});
