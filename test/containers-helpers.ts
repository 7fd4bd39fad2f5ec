/**
 * Helpers of the container tests (test/containers.test.ts): the Docker engine and images they need,
 * a `ContainerLab` that starts gradhub containers with testcontainers and injects faults through
 * the engine's API (dockerode, from testcontainers' client), removes everything it started by id,
 * and reports the containers' logs when a test fails; plus a Prometheus text-format parser and
 * small HTTP/polling helpers.
 *
 * Images cannot be pulled on machines without a registry (like CI's): the project image is built from
 * deploy/Dockerfile on a local stand-in base (deploy/scripts/make-test-base.sh), and testcontainers'
 * cleanup container (Ryuk) is disabled: this file cleans up by itself.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import type Dockerode from 'dockerode';
import { expect } from 'vitest';
import { GenericContainer, Network, Wait, getContainerRuntimeClient, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import { ROOT, SAMPLE, SMALL_RUN, tempDir } from './helpers.js';
import { stepsDone } from './cluster-helpers.js';
import { PollAbort, pollUntil } from './support/poll.js';
import { parsePrometheusText, promValue, type PromFamily } from './support/prometheus.js';

export { PollAbort, pollUntil, parsePrometheusText, promValue, type PromFamily };

// Ryuk would be pulled from a registry: off unless the caller says otherwise (read when the first
// container starts, so setting it here, after the imports, is in time).
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';

/** The project image the tests run (built once per test file from deploy/Dockerfile). */
export const IMAGE = process.env.GRADHUB_TEST_IMAGE ?? 'gradhub:test';
/** The local base image deploy/scripts/make-test-base.sh builds (its default name). */
export const BASE_IMAGE = process.env.GRADHUB_BASE_IMAGE ?? 'local/gradhub-base:test';
/** Where the CIFAR-10 sample is mounted (read-only) in the coordinator's container. */
export const DATA_IN_CONTAINER = '/data';
/** Where the host folder of each coordinator (export, metrics) is mounted. */
export const OUT_IN_CONTAINER = '/out';
/** The coordinator's checkpoint folder in the image (a named volume is mounted there). */
export const CHECKPOINTS_IN_CONTAINER = '/var/lib/gradhub/checkpoints';
export const COORDINATOR_PORT = 8080;
const LAB_LABEL = 'gradhub.test.lab';
const KEY_LABEL = 'gradhub.test.key';

/** SMALL_RUN (test/helpers.ts) with the data folder as the coordinator's container sees it. */
export const SMALL_RUN_IN_CONTAINER: readonly string[] = SMALL_RUN.map((a) => (a === SAMPLE ? DATA_IN_CONTAINER : a));

// ---------------------------------------------------------------------------------------------
// The engine and the images

export interface EngineState {
  /** The engine answers and the base image exists. */
  readonly ok: boolean;
  /** Why not, for people (what failed, with the end of its output, and what to run). */
  readonly reason: string;
}

function run(cmd: string, args: readonly string[], timeoutMs: number): { ok: boolean; output: string } {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}`;
  return { ok: r.status === 0, output };
}

const tail = (s: string, lines: number): string => s.trimEnd().split('\n').slice(-lines).join('\n');

/**
 * Whether a Docker engine answers and the base image exists. Only looks: installing or starting an
 * engine and building the base image are the caller's (deploy/scripts/start-docker.sh, as root,
 * installs Debian's docker.io and starts dockerd; deploy/scripts/make-test-base.sh builds the base;
 * .ci/run runs both). Synchronous, so a test file can decide at collection time.
 */
export function prepareEngine(): EngineState {
  const info = run('docker', ['info'], 15_000);
  if (!info.ok) {
    return { ok: false, reason: `no Docker engine answers (docker info:\n${tail(info.output, 10)})\nStart one first: deploy/scripts/start-docker.sh (as root; installs docker.io when missing).` };
  }
  if (!run('docker', ['image', 'inspect', BASE_IMAGE], 15_000).ok) {
    return {
      ok: false,
      reason: `the base image ${BASE_IMAGE} is missing. Build it: deploy/scripts/make-test-base.sh (as root), or, with a registry, ` +
        '`docker pull node:20-bookworm-slim` and set GRADHUB_BASE_IMAGE=node:20-bookworm-slim.',
    };
  }
  return { ok: true, reason: '' };
}

function imageId(image: string): string | null {
  const r = run('docker', ['image', 'inspect', '-f', '{{.Id}}', image], 15_000);
  return r.ok ? r.output.trim() : null;
}

/**
 * `docker build -f deploy/Dockerfile --build-arg BASE_IMAGE=<base> -t <IMAGE> .` from the repository
 * root (the engine's layer cache makes a rebuild of unchanged sources take seconds). The image the
 * tag pointed to before is removed when the tag moved, so repeated runs do not pile up images.
 * Resolves with the build's wall time, ms; rejects with the end of the build's output.
 */
export function buildImage(timeoutMs = 900_000): Promise<number> {
  const before = imageId(IMAGE);
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('docker', ['build', '--force-rm', '-f', 'deploy/Dockerfile', '--build-arg', `BASE_IMAGE=${BASE_IMAGE}`, '-t', IMAGE, '.'], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`docker build could not run: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`docker build -f deploy/Dockerfile -t ${IMAGE} failed (${signal ?? `exit ${code}`}${signal === 'SIGKILL' ? `, over ${timeoutMs} ms` : ''}):\n${tail(output, 40)}`));
        return;
      }
      const after = imageId(IMAGE);
      if (before && after && before !== after) run('docker', ['image', 'rm', before], 60_000); // best effort: it may be in use
      resolve(Date.now() - t0);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Containers

/** A container this lab started. */
export interface LabContainer {
  readonly id: string;
  /** For people: role and alias, e.g. "coordinator#1" or "worker-2". */
  readonly label: string;
  readonly started: StartedTestContainer;
}

export interface CoordinatorOptions {
  readonly network: StartedNetwork;
  /** Network alias workers dial. Default "coordinator". */
  readonly alias?: string;
  /** Every flag after `coordinator` (training flags, --token, --min-workers, ...): --host and --port are added. */
  readonly args: readonly string[];
  /** Host folder mounted at /out (made writable for the image's uid 10001). */
  readonly outDir: string;
  /** Named volume mounted at /var/lib/gradhub/checkpoints. */
  readonly checkpointVolume?: string;
  /** Extra environment (GRADHUB_* variables). */
  readonly env?: Record<string, string>;
}

export interface WorkerOptions {
  readonly network: StartedNetwork;
  readonly alias: string;
  /** Flags after `worker`. */
  readonly args?: readonly string[];
  readonly env?: Record<string, string>;
}

/** A `gradhub coordinator` container and its address as seen from the host. */
export interface CoordinatorContainer extends LabContainer {
  /** http://HOST:PORT of its mapped port, from the host. */
  readonly httpUrl: string;
}

interface Tracked {
  readonly c: LabContainer;
  /** Logs fetched before the container was removed. */
  logs: string | null;
  removed: boolean;
}

/**
 * Starts gradhub containers on testcontainers networks, injects faults through the engine's API,
 * and removes everything it made (containers, networks, volumes) by id in `cleanup()`.
 */
export class ContainerLab {
  private readonly tracked: Tracked[] = [];
  private readonly networks: StartedNetwork[] = [];
  private readonly volumes: string[] = [];
  private readonly dirs: string[] = [];
  private counter = 0;
  private coordinators = 0;
  /** Labels every container of this lab, so one left behind by a failed start is found too. */
  private readonly labId = randomBytes(6).toString('hex');

  private constructor(readonly docker: Dockerode) {}

  static async create(): Promise<ContainerLab> {
    const client = await getContainerRuntimeClient();
    return new ContainerLab(client.container.dockerode);
  }

  async network(): Promise<StartedNetwork> {
    const n = await new Network().start();
    this.networks.push(n);
    return n;
  }

  /** A named volume (removed in cleanup). */
  async volume(): Promise<string> {
    const name = `gradhub-test-${randomBytes(6).toString('hex')}`;
    await this.docker.createVolume({ Name: name, Labels: { [LAB_LABEL]: this.labId } });
    this.volumes.push(name);
    return name;
  }

  /** A host folder the image's user (uid 10001) can write, removed in cleanup. */
  outDir(prefix: string): string {
    const dir = tempDir(`ct-${prefix}`);
    fs.chmodSync(dir, 0o777);
    this.dirs.push(dir);
    return dir;
  }

  async coordinator(o: CoordinatorOptions): Promise<CoordinatorContainer> {
    const alias = o.alias ?? 'coordinator';
    const binds: { source: string; target: string; mode: 'ro' | 'rw' }[] = [
      { source: SAMPLE, target: DATA_IN_CONTAINER, mode: 'ro' },
      { source: o.outDir, target: OUT_IN_CONTAINER, mode: 'rw' },
    ];
    if (o.checkpointVolume) binds.push({ source: o.checkpointVolume, target: CHECKPOINTS_IN_CONTAINER, mode: 'rw' });
    const container = new GenericContainer(IMAGE)
      .withNetwork(o.network)
      .withNetworkAliases(alias)
      .withExposedPorts(COORDINATOR_PORT)
      .withBindMounts(binds)
      .withEnvironment(o.env ?? {})
      .withCommand(['coordinator', ...o.args, '--host', '0.0.0.0', '--port', String(COORDINATOR_PORT)])
      .withWaitStrategy(Wait.forLogMessage(/gradhub worker --url/))
      .withStartupTimeout(60_000);
    const c = await this.start(`${alias}#${++this.coordinators}`, container);
    const host = c.started.getHost() === 'localhost' ? '127.0.0.1' : c.started.getHost();
    return { ...c, httpUrl: `http://${host}:${c.started.getMappedPort(COORDINATOR_PORT)}` };
  }

  async worker(o: WorkerOptions): Promise<LabContainer> {
    const container = new GenericContainer(IMAGE)
      .withNetwork(o.network)
      .withNetworkAliases(o.alias)
      .withEnvironment(o.env ?? {})
      .withCommand(['worker', ...(o.args ?? [])])
      .withStartupTimeout(60_000);
    return this.start(o.alias, container);
  }

  private async start(label: string, container: GenericContainer): Promise<LabContainer> {
    const key = `${this.labId}-${++this.counter}`;
    let started: StartedTestContainer;
    try {
      started = await container.withLabels({ [LAB_LABEL]: this.labId, [KEY_LABEL]: key }).start();
    } catch (err) {
      // A container that failed its wait strategy is left behind by testcontainers: find it by its
      // label, say what it printed, and remove it.
      let logs = '';
      const found = await this.docker.listContainers({ all: true, filters: { label: [`${KEY_LABEL}=${key}`] } }).catch(() => []);
      for (const info of found) {
        const h = this.docker.getContainer(info.Id);
        logs += demuxLogs((await h.logs({ stdout: true, stderr: true, follow: false, tail: 60 }).catch(() => Buffer.from(''))) as unknown as Buffer);
        await h.remove({ force: true, v: true }).catch(() => {});
      }
      throw new Error(`starting ${label} (image ${IMAGE}) failed: ${(err as Error).message}\n${label}'s output:\n${logs || '(none)'}`, { cause: err });
    }
    const c: LabContainer = { id: started.getId(), label, started };
    this.tracked.push({ c, logs: null, removed: false });
    return c;
  }

  private handle(c: LabContainer): Dockerode.Container {
    return this.docker.getContainer(c.id);
  }

  /** SIGKILL, like a crash (docker kill). */
  async kill(c: LabContainer): Promise<void> {
    await this.handle(c).kill({ signal: 'SIGKILL' });
  }

  /** Freeze every process of the container (docker pause): its sockets stay open but silent. */
  async pause(c: LabContainer): Promise<void> {
    await this.handle(c).pause();
  }

  async unpause(c: LabContainer): Promise<void> {
    await this.handle(c).unpause();
  }

  /** docker network disconnect: the container loses its interface on `network`. */
  async disconnect(c: LabContainer, network: StartedNetwork): Promise<void> {
    await this.docker.getNetwork(network.getId()).disconnect({ Container: c.id, Force: true });
  }

  /** docker network connect, with the container's alias back. */
  async connect(c: LabContainer, network: StartedNetwork, alias: string): Promise<void> {
    await this.docker.getNetwork(network.getId()).connect({ Container: c.id, EndpointConfig: { Aliases: [alias] } });
  }

  /** The container's address on `network` now (it may change across disconnect/connect). */
  async ipOf(c: LabContainer, network: StartedNetwork): Promise<string> {
    const info = await this.handle(c).inspect();
    return info.NetworkSettings.Networks[network.getName()]?.IPAddress ?? '';
  }

  async state(c: LabContainer): Promise<Dockerode.ContainerInspectInfo['State']> {
    return (await this.handle(c).inspect()).State;
  }

  /** Wait until the container has exited; resolves with its exit code. */
  async waitExit(c: LabContainer, timeoutMs: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${c.label} did not exit within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const r = (await Promise.race([this.handle(c).wait(), timeout])) as { StatusCode: number };
      return r.StatusCode;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The container's stdout and stderr, interleaved as the engine stored them (last `lines` lines). */
  async logs(c: LabContainer, lines = 10_000): Promise<string> {
    const t = this.tracked.find((x) => x.c.id === c.id);
    if (t?.logs !== null && t?.logs !== undefined) return tail(t.logs, lines);
    const buf = (await this.handle(c).logs({ stdout: true, stderr: true, follow: false, tail: lines })) as unknown as Buffer;
    return demuxLogs(buf);
  }

  /** Remove one container now (its logs are kept for the failure report). */
  async remove(c: LabContainer): Promise<void> {
    const t = this.tracked.find((x) => x.c.id === c.id);
    if (!t || t.removed) return;
    t.logs = await this.logs(c).catch((err: unknown) => `(logs unavailable: ${(err as Error).message})`);
    await this.handle(c).remove({ force: true, v: true });
    t.removed = true;
  }

  /** The end of every container's logs, for a failure message. */
  async report(lines = 40): Promise<string> {
    const parts: string[] = [];
    for (const t of this.tracked) {
      let text: string;
      try {
        text = tail(await this.logs(t.c, lines), lines);
      } catch (err) {
        text = `(logs unavailable: ${(err as Error).message})`;
      }
      let state = t.removed ? 'removed' : '';
      if (!t.removed) {
        try {
          const s = await this.state(t.c);
          state = `${s.Status}${s.Status === 'exited' ? ` (exit ${s.ExitCode})` : ''}`;
        } catch {
          state = 'gone';
        }
      }
      const clipped = text.split('\n').map((l) => (l.length > 400 ? `${l.slice(0, 400)}...` : l)).join('\n');
      parts.push(`----- ${t.c.label} ${t.c.id.slice(0, 12)} [${state}], last ${lines} log lines:\n${clipped}`);
    }
    return parts.join('\n');
  }

  /**
   * Remove every container, network, volume and folder made since the last cleanup, by id.
   * Never throws; returns what could not be removed.
   */
  async cleanup(): Promise<string[]> {
    const problems: string[] = [];
    for (const t of this.tracked.splice(0)) {
      if (t.removed) continue;
      const h = this.handle(t.c);
      await h.unpause().catch(() => {}); // a paused container is removed more reliably once thawed
      await h.remove({ force: true, v: true }).catch((err: unknown) => {
        if (!/no such container/i.test((err as Error).message)) problems.push(`container ${t.c.label} ${t.c.id}: ${(err as Error).message}`);
      });
    }
    // Anything else carrying this lab's label (a start that failed half-way).
    const stray = await this.docker.listContainers({ all: true, filters: { label: [`${LAB_LABEL}=${this.labId}`] } }).catch(() => []);
    for (const info of stray) {
      await this.docker.getContainer(info.Id).remove({ force: true, v: true }).catch((err: unknown) => problems.push(`container ${info.Id}: ${(err as Error).message}`));
    }
    for (const n of this.networks.splice(0)) {
      await this.docker.getNetwork(n.getId()).remove().catch((err: unknown) => problems.push(`network ${n.getName()}: ${(err as Error).message}`));
    }
    for (const v of this.volumes.splice(0)) {
      await this.docker.getVolume(v).remove().catch((err: unknown) => problems.push(`volume ${v}: ${(err as Error).message}`));
    }
    for (const d of this.dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
    return problems;
  }

  /**
   * Run `fn`; if it throws, add the end of every container's logs to the error's message, so a
   * failure says what the coordinator and the workers were doing.
   */
  async withLogsOnFailure<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const report = await this.report().catch((e: unknown) => `(no container logs: ${(e as Error).message})`);
      if (err instanceof Error) {
        err.message = `${err.message}\n\nContainer logs:\n${report}`;
        throw err;
      }
      throw new Error(`${String(err)}\n\nContainer logs:\n${report}`);
    }
  }
}

/** Split the engine's multiplexed log stream (8-byte frame headers) into text. */
export function demuxLogs(buf: Buffer): string {
  if (!Buffer.isBuffer(buf)) return String(buf);
  const out: string[] = [];
  let i = 0;
  // A TTY container's logs are raw; a multiplexed frame starts with 1 or 2 then three zero bytes.
  if (!(buf.length >= 8 && (buf[0] === 1 || buf[0] === 2) && buf[1] === 0 && buf[2] === 0 && buf[3] === 0)) return buf.toString('utf8');
  while (i + 8 <= buf.length) {
    const len = buf.readUInt32BE(i + 4);
    out.push(buf.subarray(i + 8, i + 8 + len).toString('utf8'));
    i += 8 + len;
  }
  return out.join('');
}

// ---------------------------------------------------------------------------------------------
// HTTP and polling

export async function getText(url: string, timeoutMs = 3000): Promise<{ status: number; contentType: string; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', body: await res.text() };
}

export interface WorkerRow {
  id: string;
  state: string;
  address?: string;
  nodesDone: number;
}

/** The part of /api/status the tests read. */
export interface ApiStatus {
  step: number;
  state: string;
  totalSteps: number;
  workers: WorkerRow[];
  counters: Record<string, number>;
}

export async function getStatus(httpUrl: string): Promise<ApiStatus> {
  const r = await getText(`${httpUrl}/api/status`);
  if (r.status !== 200) throw new Error(`GET /api/status answered ${r.status}: ${r.body.slice(0, 200)}`);
  return JSON.parse(r.body) as ApiStatus;
}

/** Workers of a status that are not gone, by address (IPv4-mapped IPv6 written as plain IPv4). */
export function liveWorkerAddresses(s: ApiStatus): string[] {
  return s.workers.filter((w) => w.state !== 'gone').map((w) => (w.address ?? '').replace(/^::ffff:/, ''));
}


/** One line about a status for failure messages: step, state and the workers table. */
export function describeStatus(s: ApiStatus | null): string {
  if (!s) return 'no /api/status answer yet';
  const workers = s.workers.map((w) => `#${w.id} ${(w.address ?? '?').replace(/^::ffff:/, '')} ${w.state} (${w.nodesDone} nodes)`).join(', ');
  return `last /api/status: step ${s.step}/${s.totalSteps}, state ${s.state}, workers: ${workers || 'none'}`;
}

/**
 * Follows a run through /api/status: `until(what, predicate)` polls until the predicate holds, and
 * stops at once with a clear message when the run ended before (the run was too short for the
 * scenario); `advance(n)` waits for n more steps.
 */
export class RunWatch {
  /** The last status read. */
  last: ApiStatus | null = null;

  constructor(private readonly httpUrl: () => string, private readonly totalSteps: number) {}

  get step(): number {
    return this.last?.step ?? 0;
  }

  until(what: string, predicate: (s: ApiStatus) => boolean, ms = 60_000): Promise<ApiStatus> {
    return pollUntil(async () => {
      const s = await getStatus(this.httpUrl());
      this.last = s;
      if (predicate(s)) return s;
      if (s.step >= this.totalSteps || s.state === 'done' || s.state === 'failed' || s.state === 'stopped') {
        throw new PollAbort(`the run ended (step ${s.step} of ${this.totalSteps}, state ${s.state}) before ${what}: the run is too short for this scenario. ${describeStatus(s)}`);
      }
      return false;
    }, ms, what, { describe: () => describeStatus(this.last) });
  }

  advance(n: number, what: string, ms = 60_000): Promise<ApiStatus> {
    const from = this.step;
    return this.until(`${what} (from step ${from} to ${from + n})`, (s) => s.step >= from + n, ms);
  }
}

/** One scrape: /api/status, /metrics, /api/status, with the metrics file's step count around it. */
export interface Scrape {
  readonly at: number;
  readonly fileBefore: number;
  readonly before: ApiStatus;
  readonly contentType: string;
  readonly families: Map<string, PromFamily>;
  readonly after: ApiStatus;
  readonly fileAfter: number;
}

/**
 * Scrapes a coordinator's /metrics from the host every `everyMs` while a run goes on, bracketed by
 * /api/status and the metrics file (both updated in the same event-loop turn as the status the
 * metrics are derived from), then checks what it saw (`check`). Connection errors (the run ended,
 * a restart) are kept apart from text that does not parse, which fails the check.
 */
export class Scraper {
  readonly scrapes: Scrape[] = [];
  readonly unreachable: string[] = [];
  readonly malformed: string[] = [];
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(private readonly httpUrl: () => string, private readonly metricsFile: string, private readonly everyMs = 200) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const url = this.httpUrl();
      try {
        const fileBefore = stepsDone(this.metricsFile);
        const before = await getStatus(url);
        const m = await getText(`${url}/metrics`);
        const after = await getStatus(url);
        const fileAfter = stepsDone(this.metricsFile);
        if (m.status !== 200) throw new Error(`GET /metrics answered ${m.status}`);
        let families: Map<string, PromFamily> | null = null;
        try {
          families = parsePrometheusText(m.body);
        } catch (err) {
          this.malformed.push(`${(err as Error).message}\n${m.body.slice(0, 2000)}`);
        }
        if (families) this.scrapes.push({ at: Date.now(), fileBefore, before, contentType: m.contentType, families, after, fileAfter });
      } catch (err) {
        this.unreachable.push((err as Error).message);
      }
      await new Promise((r) => setTimeout(r, this.everyMs));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /**
   * Every scrape parsed, has the families with their types, and agrees with the run:
   * gradhub_steps_total between the steps of the /api/status and metrics-file reads around it (equal
   * to them when they agree), samples = steps x batch (a run that was not resumed), workers_connected
   * equal to /api/status's live workers when that did not change around the scrape; bytes counters
   * positive once a step is done; counters never go down. Returns the workers_connected values seen.
   */
  check(totalSteps: number, batch: number): { workersSeen: number[]; exact: number; last: Scrape } {
    expect(this.malformed, 'scrapes of /metrics that are not valid Prometheus text').toEqual([]);
    expect(this.scrapes.length, `successful scrapes of /metrics (unreachable: ${this.unreachable.slice(-3).join('; ')})`).toBeGreaterThanOrEqual(5);
    const types: Record<string, string> = {
      gradhub_steps_total: 'counter', gradhub_samples_total: 'counter', gradhub_workers_connected: 'gauge', gradhub_bytes_total: 'counter',
      gradhub_rejected_messages_total: 'counter', gradhub_late_results_total: 'counter', gradhub_loss: 'gauge',
    };
    let exact = 0;
    const workersSeen = new Set<number>();
    let prev: { steps: number; samples: number; bytesIn: number; bytesOut: number; late: number } | null = null;
    for (const [i, sc] of this.scrapes.entries()) {
      const at = `scrape ${i + 1}/${this.scrapes.length} (status step ${sc.before.step}..${sc.after.step}, file ${sc.fileBefore}..${sc.fileAfter})`;
      expect(sc.contentType, `${at}: Content-Type`).toMatch(/^text\/plain; version=0\.0\.4/);
      for (const [name, type] of Object.entries(types)) expect(sc.families.get(name)?.type, `${at}: # TYPE of ${name}`).toBe(type);
      const steps = promValue(sc.families, 'gradhub_steps_total');
      const samples = promValue(sc.families, 'gradhub_samples_total');
      const workers = promValue(sc.families, 'gradhub_workers_connected');
      const bytesIn = promValue(sc.families, 'gradhub_bytes_total', { direction: 'in' });
      const bytesOut = promValue(sc.families, 'gradhub_bytes_total', { direction: 'out' });
      const late = promValue(sc.families, 'gradhub_late_results_total');
      expect(steps, `${at}: gradhub_steps_total within the status reads around it`).toBeGreaterThanOrEqual(sc.before.step);
      expect(steps, `${at}: gradhub_steps_total within the status reads around it`).toBeLessThanOrEqual(sc.after.step);
      expect(steps, `${at}: gradhub_steps_total within the metrics-file reads around it`).toBeGreaterThanOrEqual(sc.fileBefore);
      expect(steps, `${at}: gradhub_steps_total within the metrics-file reads around it`).toBeLessThanOrEqual(sc.fileAfter);
      if (sc.fileBefore === sc.fileAfter) {
        expect(steps, `${at}: gradhub_steps_total = steps in the metrics file`).toBe(sc.fileAfter);
        exact++;
      }
      expect(steps, `${at}: gradhub_steps_total <= --steps`).toBeLessThanOrEqual(totalSteps);
      expect(samples, `${at}: gradhub_samples_total = steps x batch`).toBe(steps * batch);
      const liveBefore = liveWorkerAddresses(sc.before).length;
      if (liveBefore === liveWorkerAddresses(sc.after).length) expect(workers, `${at}: gradhub_workers_connected = live workers of /api/status`).toBe(liveBefore);
      workersSeen.add(workers);
      if (steps >= 1) {
        expect(bytesIn, `${at}: bytes in after a step`).toBeGreaterThan(0);
        expect(bytesOut, `${at}: bytes out after a step`).toBeGreaterThan(0);
      }
      if (prev) {
        expect(steps, `${at}: gradhub_steps_total never decreases`).toBeGreaterThanOrEqual(prev.steps);
        expect(samples, `${at}: gradhub_samples_total never decreases`).toBeGreaterThanOrEqual(prev.samples);
        expect(bytesIn, `${at}: gradhub_bytes_total{direction="in"} never decreases`).toBeGreaterThanOrEqual(prev.bytesIn);
        expect(bytesOut, `${at}: gradhub_bytes_total{direction="out"} never decreases`).toBeGreaterThanOrEqual(prev.bytesOut);
        expect(late, `${at}: gradhub_late_results_total never decreases`).toBeGreaterThanOrEqual(prev.late);
      }
      prev = { steps, samples, bytesIn, bytesOut, late };
    }
    expect(exact, 'scrapes with the metrics file unchanged around them (gradhub_steps_total compared exactly)').toBeGreaterThanOrEqual(1);
    return { workersSeen: [...workersSeen].sort((a, b) => a - b), exact, last: this.scrapes[this.scrapes.length - 1] };
  }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text exposition format (version 0.0.4)

