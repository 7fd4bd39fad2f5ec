/**
 * The coordinator's side of a cluster, shared by `gradhub coordinator` and `gradhub train
 * --workers N`: the server, membership and cluster executor (startCluster), with the dashboard,
 * /api/status and /metrics mounted on the same port, reporting into the run's status.
 * `gradhub train --workers 0` serves the same pages from a server without the worker endpoint
 * (startStatusServer).
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { xxh64Hex } from '@gradhub/core';
import { startCluster, startHttpServer, createHttpRoutes, createVolunteerRoutes, bitSettings, type Cluster, type HttpServer, type RunStatus } from '@gradhub/coordinator';
import { BROWSER_ASSETS_DIR } from '@gradhub/worker';
import type { RunOptions } from './options.js';
import { allowedOrigins, readTls, type PreparedRun } from './run-setup.js';

export interface CoordinatorCluster {
  readonly cluster: Cluster;
  /** The public join token of volunteers. */
  readonly token: string;
  /** The trusted token of the operator's workers (`--trusted-token`, or a random one). */
  readonly trustedToken: string;
  /** Whether the trusted token was generated here (then it is printed for the operator). */
  readonly trustedTokenGenerated: boolean;
  /** ws:// address workers use. */
  readonly wsUrl: string;
  /** ws+unix:// address of the Unix socket (when `socketPath` was given), else null. */
  readonly socketUrl: string | null;
  /** http:// base address of the dashboard and the volunteer page. */
  readonly httpUrl: string;
  /** The page a volunteer opens in a browser to help (carries the join token). */
  readonly joinUrl: string;
}

/** A run id that is the same for every coordinator incarnation of the same run (settings + seed). */
export function runIdOf(run: PreparedRun): string {
  return xxh64Hex(new TextEncoder().encode(JSON.stringify(bitSettings(run.settings))));
}

export async function startCoordinatorCluster(
  o: RunOptions, run: PreparedRun, status: RunStatus, logger: Logger, defaultPort: number, socketPath?: string,
): Promise<CoordinatorCluster> {
  const token = o['token'] ?? randomBytes(12).toString('hex');
  const trustedTokenGenerated = o['trusted-token'] === undefined;
  const trustedToken = o['trusted-token'] ?? randomBytes(16).toString('hex');
  const tls = readTls(o['tls-cert'], o['tls-key']);
  const cluster = await startCluster({
    host: o['host'],
    port: o['port'] ?? defaultPort,
    token,
    trustedToken,
    ...netOptions(o),
    helloTimeoutMs: o['hello-timeout-ms'],
    maxWorkers: o['max-volunteers'],
    maxTrustedWorkers: o['max-trusted-workers'],
    sizes: run.settings.sizes,
    chunk: run.settings.chunk,
    normalize: run.settings.normalize,
    maxBatch: run.settings.batch,
    maxWorkSamples: run.settings.batch * (run.settings.rounds ? run.settings.rounds.localSteps * run.settings.rounds.replicas : 1),
    logger,
    runId: runIdOf(run),
    heartbeatTimeoutMs: o['heartbeat-ms'],
    status,
    tls,
    // Measured step times decide how many workers a step uses (fewer when moving the model costs
    // more than their compute saves: small batches on one machine).
    adaptiveWorkers: true,
    socketPath,
    packTensors: o['wire-compression'] as 'auto' | 'on' | 'off',
  });
  mountStatusRoutes(cluster.server, o, status, logger);
  cluster.server.use(createVolunteerRoutes({ assetsDir: BROWSER_ASSETS_DIR, runName: status.snapshot().name, token, logger }));
  const wsUrl = cluster.url.replace(/\/+$/, '');
  const httpUrl = wsUrl.replace(/^ws/, 'http'); // ws -> http, wss -> https
  return { cluster, token, trustedToken, trustedTokenGenerated, wsUrl, socketUrl: cluster.socketUrl, httpUrl, joinUrl: `${httpUrl}/join?token=${encodeURIComponent(token)}` };
}

/** The connection limits and checks of the server (server.ts, net-limits.ts) from the options. */
function netOptions(o: RunOptions) {
  return {
    limits: {
      maxHttp: o['max-http-connections'],
      maxHttpPerAddress: o['max-http-per-address'],
      maxTrusted: o['max-trusted-workers'],
      maxVolunteers: o['max-volunteers'],
      maxVolunteersPerAddress: o['max-volunteers-per-address'],
    },
    fdLimit: o['max-open-files'],
    headersTimeoutMs: o['headers-timeout-ms'],
    requestTimeoutMs: 3 * o['headers-timeout-ms'],
    allowOrigins: allowedOrigins(o['allow-origin']),
    serveSourceMaps: o['serve-source-maps'],
  };
}

/** The dashboard, /api and /metrics of the run's status on `server` (ended when the server closes). */
function mountStatusRoutes(server: HttpServer, o: RunOptions, status: RunStatus, logger: Logger): void {
  const routes = createHttpRoutes({ status, adminToken: o['admin-token'], logger });
  server.use(routes);
  server.onClose(() => routes.close());
}

/**
 * The pages of a run that computes in this process (`train --workers 0`): the dashboard, /api and
 * /metrics on --host and --port (default: any free port), with no worker endpoint.
 */
export async function startStatusServer(o: RunOptions, status: RunStatus, logger: Logger): Promise<HttpServer> {
  const server = await startHttpServer({
    host: o['host'],
    port: o['port'] ?? 0,
    tls: readTls(o['tls-cert'], o['tls-key']),
    logger,
    ...netOptions(o),
    status,
  });
  mountStatusRoutes(server, o, status, logger);
  return server;
}
