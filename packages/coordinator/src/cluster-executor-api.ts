/**
 * The cluster executor's surface: its options, its counters and what it offers beyond `Executor`
 * (the implementation: cluster-executor.ts; the usual wiring: cluster.ts).
 */
import type { ModelSpec } from '@gradhub/core';
import type { Logger } from 'pino';
import type { Executor } from './executor.js';
import type { ClusterStatusSink, Membership } from './membership.js';
import type { ReducerStats } from './reducer.js';
import type { RemoteAuditor } from './remote-audit.js';
import type { AssignedBytes } from './scheduler.js';
import type { StallRules } from './stalls.js';

export interface ClusterExecutorOptions {
  readonly membership: Membership;
  readonly spec: ModelSpec;
  /** Samples per chunk of the reduction tree. */
  readonly chunk: number;
  /** Largest batch `run` will be given. */
  readonly maxBatch: number;
  readonly logger: Logger;
  // Note: `run` inputs must not decrease `version` (a resume from a checkpoint starts a new
  // coordinator incarnation: a new membership and executor). Equal versions mean equal parameters.
  /** Bytes of waiting gradients before reading in tree order. Default 512 MiB (at least 2 gradients). */
  readonly memoryBudgetBytes?: number;
  /** Also give a node outstanding this long (ms) to an idle worker; null: never. Default 30000. */
  readonly speculateAfterMs?: number | null;
  /**
   * Hold deadlines (stalls.ts): a worker holding work past k x its measured time loses it, and is
   * dropped at its `strikes`-th stall within `windowMs` (the same count of non-finite results
   * drops it too). Default DEFAULT_STALL_RULES; null: no deadline (non-finite strikes still apply).
   */
  readonly stall?: Partial<StallRules> | null;
  /** Weight of the newest speed measurement in the EWMA. Default 0.5. */
  readonly speedAlpha?: number;
  /** Optional: the workers table and the `late_results` counter (RunStatus fits). */
  readonly status?: ClusterStatusSink;
  /**
   * Let measured step times decide how many of the workers (the fastest) a training step uses
   * (scheduler.ts `CrewChooser`): fewer win when moving the model costs more than their compute
   * saves. Default false: every worker, up to one per chunk.
   */
  readonly adaptiveWorkers?: boolean;
}

export interface ClusterStats extends ReducerStats {
  /** Requests completed. */
  requests: number;
  /** Nodes given to another worker after their worker was lost. */
  reassigned: number;
  /** Nodes recomputed after a non-finite result. */
  recomputed: number;
  /** Speculative copies of slow nodes. */
  speculated: number;
  /** Workers kicked for protocol faults. */
  kicked: number;
  /** Times a worker held work past its deadline (its nodes went to others). */
  stalls: number;
  /** Workers dropped for stalling `strikes` times within the window (Error STALLED). */
  stallDrops: number;
  /** Workers dropped for `strikes` non-finite results within the window (Error NON_FINITE_GRADIENT). */
  nonFiniteDrops: number;
  /** Copies of nodes given to workers on probation (never measured: work-dispatch.ts `plan`). */
  probation: number;
  /** Bytes the last request's plan moves as assigned (params + work down, results up), or null before the first. */
  assigned: AssignedBytes | null;
}

export interface ClusterExecutor extends Executor {
  /** Resolves when at least `min` workers are ready (E_NO_WORKERS after `timeoutMs`, if given). */
  waitForWorkers(min: number, timeoutMs?: number): Promise<void>;
  /** Ready workers now. */
  workerCount(): number;
  readonly stats: Readonly<ClusterStats>;
  /** Fail a pending run, say Bye (TRAINING_DONE by default: workers exit) and close the sockets. */
  close(reason?: 'done' | 'shutdown'): Promise<void>;
  /** Audits on a trusted worker (remote-audit.ts): give it to the auditor (AuditorOptions.remote). */
  readonly remoteAudits: RemoteAuditor;
}
