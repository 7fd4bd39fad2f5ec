/**
 * A coordinator's cluster: the server, the membership and the cluster executor, wired together
 * (workers' sockets go to the membership, its events to the executor; the server's health reads
 * both).
 */
import type { Logger } from 'pino';
import { modelSpec } from '@gradhub/core';
import { createClusterExecutor, type ClusterExecutor, type ClusterExecutorOptions } from './cluster-executor.js';
import { Membership, type ClusterStatusSink, type MembershipOptions } from './membership.js';
import { frameLimits } from './protocol.js';
import { startServer, type GradhubServer, type ServerOptions } from './server.js';

/** Membership settings a cluster passes through unchanged (documented on MembershipOptions). */
type MembershipPassThrough = Pick<MembershipOptions,
  'runId' | 'incarnation' | 'heartbeatIntervalMs' | 'heartbeatTimeoutMs' | 'helloTimeoutMs' | 'maxWorkers' | 'maxTrustedWorkers' | 'trustedToken' | 'packTensors'>;
/** Server settings a cluster passes through unchanged (documented on ServerOptions). */
type ServerPassThrough = Pick<ServerOptions, 'limits' | 'fdLimit' | 'allowOrigins' | 'serveSourceMaps' | 'headersTimeoutMs' | 'requestTimeoutMs'>;

export interface ClusterOptions extends MembershipPassThrough, ServerPassThrough {
  /** Listen address. Default '0.0.0.0'. */
  readonly host?: string;
  /** TCP port. Default 8080; 0 picks a free one. */
  readonly port?: number;
  /** Join token of volunteers (untrusted workers). Required, non-empty. */
  readonly token: string;
  /** Model sizes, e.g. [3072, 2048, 2048, 10]. */
  readonly sizes: readonly number[];
  readonly chunk: number;
  readonly normalize: boolean;
  /** The run's batch size (largest batch `run` gets). */
  readonly maxBatch: number;
  /** Most samples one Work frame may carry (a round: maxBatch x local steps x replicas). Default maxBatch. */
  readonly maxWorkSamples?: number;
  readonly logger: Logger;
  readonly memoryBudgetBytes?: number;
  readonly speculateAfterMs?: number | null;
  /** See ClusterExecutorOptions.stall. */
  readonly stall?: ClusterExecutorOptions['stall'];
  /** Optional: where the workers table and counters go (RunStatus fits). */
  readonly status?: ClusterStatusSink;
  /** Serve https/wss (see ServerOptions.tls). */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** See ClusterExecutorOptions.adaptiveWorkers. Default false. */
  readonly adaptiveWorkers?: boolean;
  /** Also listen on this Unix domain socket, for workers on this machine (see ServerOptions.socketPath). */
  readonly socketPath?: string;
}

export interface Cluster {
  readonly executor: ClusterExecutor;
  readonly server: GradhubServer;
  readonly membership: Membership;
  /** ws:// URL workers connect to (without the token). */
  readonly url: string;
  /** ws+unix:// URL of the Unix socket (ClusterOptions.socketPath), else null. */
  readonly socketUrl: string | null;
  /** Close the executor (Bye: 'done' makes workers exit, 'shutdown' lets them wait to reconnect) and the server. */
  close(reason?: 'done' | 'shutdown'): Promise<void>;
}

/** Start the server, membership and executor of a coordinator. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const spec = modelSpec(opts.sizes);
  const limits = frameLimits(spec.paramCount, opts.maxBatch);
  const membership = new Membership({
    logger: opts.logger, token: opts.token, trustedToken: opts.trustedToken, spec, chunk: opts.chunk, normalize: opts.normalize, maxBatch: opts.maxBatch, maxWorkSamples: opts.maxWorkSamples,
    maxFrameBytes: limits.fromWorker, runId: opts.runId, incarnation: opts.incarnation,
    heartbeatIntervalMs: opts.heartbeatIntervalMs, heartbeatTimeoutMs: opts.heartbeatTimeoutMs,
    helloTimeoutMs: opts.helloTimeoutMs, maxWorkers: opts.maxWorkers, maxTrustedWorkers: opts.maxTrustedWorkers, status: opts.status,
    packTensors: opts.packTensors,
  });
  let executor: ClusterExecutor;
  let server: GradhubServer;
  try {
    executor = createClusterExecutor({
      membership, spec, chunk: opts.chunk, maxBatch: opts.maxBatch, logger: opts.logger,
      memoryBudgetBytes: opts.memoryBudgetBytes, speculateAfterMs: opts.speculateAfterMs, stall: opts.stall, status: opts.status, adaptiveWorkers: opts.adaptiveWorkers,
    });
    // ws's hard cap is twice the protocol limit: frames in between get a clear OVERSIZE_FRAME error.
    server = await startServer({
      host: opts.host, port: opts.port, token: opts.token, trustedToken: opts.trustedToken, maxPayloadBytes: 2 * limits.fromWorker,
      logger: opts.logger, tls: opts.tls, socketPath: opts.socketPath, status: opts.status, limits: opts.limits, fdLimit: opts.fdLimit,
      allowOrigins: opts.allowOrigins, serveSourceMaps: opts.serveSourceMaps, headersTimeoutMs: opts.headersTimeoutMs, requestTimeoutMs: opts.requestTimeoutMs,
    });
  } catch (err) {
    await membership.close();
    throw err;
  }
  server.onConnection((ws, req, trusted) => membership.attach(ws, req, trusted));
  let closing: Promise<void> | null = null;
  return {
    executor, server, membership, url: server.url, socketUrl: server.socketUrl,
    close(reason = 'done') {
      closing ??= (async () => {
        await executor.close(reason);
        await server.close();
      })();
      return closing;
    },
  };
}
