/**
 * The training loop: the one place that owns the model (docs/design.md invariants 1 (loss semantics), 4 (replicas agree), 5 (SGD is torch.optim.SGD), 6 (reproducible runs)).
 *
 * Per step: the sampler picks the global batch, the executor (in-process or the cluster) returns the
 * tree sums for the current parameter version, the trainer divides once (loss = lossSum/denomSum)
 * and applies torch.optim.SGD to the master copy, part by part (core `streamParts`) as the executor
 * completes them (the same bits as one step over the whole buffer: SGD is element-wise),
 * publishing each updated part to the executor so that the new parameters stream to workers early. After each epoch (and
 * at the end of the run) the test set is evaluated through the same executor. Checkpoints are
 * taken every N steps and at the end; a resumed run continues from (params, optimizer state,
 * sampler state, step) exactly.
 *
 * Rounds mode (settings.rounds; docs/design.md "Rounds"): an update is a round. Its M x H inner
 * batches are drawn from the same sampler in order (replica-major), the executor returns the
 * pseudo-gradient sum S(0, M) over the replicas (core rounds.ts runs each replica's H inner steps
 * of the run's SGD at the schedule's lr for the round), and the trainer divides it by M once and
 * takes one step of the outer torch.optim.SGD (outer lr, momentum, Nesterov) on the master copy,
 * part by part as for a step. The optimizer state kept (and checkpointed) is the outer momentum.
 *
 * The executor is the only thing that differs between `--workers 0` and a cluster; everything that
 * decides bits (sampler, batch gather, SGD) is here, once.
 */
import type { Logger } from 'pino';
import {
  GradhubError, Sampler, createSgdOptimizer, batchesPerEpoch, modelSpec, streamParts, CIFAR10_IMAGE_BYTES,
  type FlatRange, type NodeSums, type SamplerState, type SgdPartialStep, type TreeNode,
} from '@gradhub/core';
import type { Executor, StepInput } from './executor.js';
import type { MetricsSink } from './metrics.js';
import type { TrainSettings } from './settings.js';
import { bitSettings, outerSgd } from './settings.js';
import { saveCheckpoint as saveCheckpointRetrying, type CheckpointOutcome } from './checkpoint-saver.js';
import { lrOfRun } from './lr-of-run.js';
import { unlessAbandoned } from './abandon.js';
import type { Auditor, DisputeClaim, NodeDigest } from './audit.js';
import type { RollbackAnchor } from './anchor.js';
import { DEFAULT_ROLLBACK_MEMORY_MB, SnapshotRing, type Snapshot } from './snapshots.js';

/** What the trainer asks of the auditor (audit.ts `Auditor`). */
export type TrainerAudits = Pick<Auditor, 'submit' | 'settled' | 'settledThrough' | 'takeProven' | 'rolledBack' | 'judgeNonFinite' | 'judgeDispute' | 'oldestOpenStep' | 'finalThrough'>;

/** A rollback (docs/design.md "Audits and exact rollback"): back from `from` updates to `to`; the steps after `to` are replayed. */
export interface RollbackReport {
  readonly from: number;
  readonly to: number;
  readonly workers: readonly number[];
}

/** A set of CIFAR-10 samples: (count, 3072) pixels and (count) labels. */
export interface Samples {
  readonly count: number;
  readonly pixels: Uint8Array;
  readonly labels: Uint8Array;
}

/** Where a run starts: fresh (step 0) or from a checkpoint. */
export interface TrainStart {
  readonly params: Float32Array;
  readonly step: number;
  readonly sampler: SamplerState;
  readonly momentumBuffer: Float32Array | null;
}

export interface StepReport {
  readonly step: number;
  readonly totalSteps: number;
  readonly epoch: number;
  readonly epochs: number;
  /** Samples in this step's batch. */
  readonly samples: number;
  /** The learning rate this update used (the schedule's value for this step). */
  readonly lr: number;
  readonly loss: number;
  readonly accuracy: number;
  readonly samplesPerS: number;
  /** Where the step's time went, ms (see StepTiming; sgdMs measured here). */
  readonly split: { compute: number; upload: number; reduce: number; sgd: number; broadcast: number };
}

export interface EvalReport {
  /** Epochs completed (an --eval-every evaluation between epoch ends: the fraction of epochs seen). */
  readonly epoch: number;
  readonly step: number;
  readonly testLoss: number;
  readonly testAccuracy: number;
}

export interface TrainOptions {
  readonly settings: TrainSettings;
  readonly train: Samples;
  readonly test: Samples | null;
  readonly executor: Executor;
  readonly logger: Logger;
  readonly start: TrainStart;
  readonly metrics: MetricsSink;
  readonly checkpoint?: { readonly dir: string; readonly every: number; readonly keep: number } | null;
  readonly onStep?: (r: StepReport) => void;
  readonly onEval?: (r: EvalReport) => void;
  /** After each checkpoint point: the file written, or the failure (after a retry; the run goes on). */
  readonly onCheckpoint?: (r: CheckpointOutcome) => void;
  /** Stop after the current step (a checkpoint is still written). */
  readonly signal?: AbortSignal;
  /**
   * Once `signal` aborts, how long the step or evaluation in flight may take before the trainer
   * gives it up (ms; default: no limit). The caller then closes the executor.
   */
  readonly abandonAfterMs?: number;
  /**
   * Audits of untrusted workers' results (audit.ts) and exact rollback: the trainer keeps the
   * state after each of the last W updates (snapshots.ts, within `rollbackMemoryBytes`, default
   * 256 MiB), submits each step's contributions with the snapshot they were computed on, waits
   * for a snapshot's audits before evicting it and for all audits before the run ends, and when a
   * worker is proven to cheat goes back to the state before its first distrusted step in the
   * window and replays from there (older distrusted steps are final: counted and logged).
   */
  readonly audits?: TrainerAudits | null;
  readonly rollbackMemoryBytes?: number;
  /**
   * One state on disk older than the window (anchor.ts): when the oldest snapshot leaves memory
   * and is the state before the oldest step that may still be proven a lie (audits
   * `oldestOpenStep`), it is kept there, and a rollback past the window restarts from it. Records
   * of steps no rollback can reach any more are made final (audits `finalThrough`).
   */
  readonly rollbackAnchor?: RollbackAnchor | null;
  readonly onRollback?: (r: RollbackReport) => void;
  /** Counters: `rollbacks`, `rollback_steps` (updates undone), `rollbacks_beyond_window`, `rollback_anchor_failed`. */
  readonly count?: (name: string, by?: number) => void;
}

export interface TrainResult {
  readonly params: Float32Array;
  readonly step: number;
  readonly stopped: boolean;
  /** A step or evaluation in flight was given up (abandonAfterMs). */
  readonly abandoned: boolean;
  /**
   * `params` are the parameters after `step` updates, and the final checkpoint (if any) was tried (onCheckpoint says how it went).
   * False only when an abandoned step had already updated part of them: nothing is saved then.
   */
  readonly consistent: boolean;
}

/**
 * Total updates of a run: epochs x batches per epoch, or --steps when that ends first. Rounds mode:
 * ceil(epochs x batches per epoch / (M x H)) rounds (the last may read into the next epoch).
 */
export function totalSteps(s: TrainSettings, trainCount: number): number {
  const batches = s.epochs * batchesPerEpoch(trainCount, s.batch);
  const r = s.rounds;
  const all = r ? Math.ceil(batches / (r.replicas * r.localSteps)) : batches;
  return s.steps === null ? all : Math.min(all, s.steps);
}

export async function runTraining(o: TrainOptions): Promise<TrainResult> {
  const { settings: s, train, executor, metrics } = o;
  const log = o.logger.child({ module: 'trainer' });
  // The master copy lives in the optimizer's memory (WebAssembly SIMD where supported, else
  // sgd.ts's loops: the same bits); `params` and `sgd.momentumBuffer` are views of it. The final
  // parameters are copied back into o.start.params, which is also the result's array.
  const opt = await createSgdOptimizer(o.start.params.length, { params: o.start.params, momentumBuffer: o.start.momentumBuffer });
  const params = opt.params;
  const sgd = opt.state;
  const samplerOptions = { count: train.count, batch: s.batch, seed: s.seed, shuffle: s.shuffle };
  let sampler = new Sampler(samplerOptions, o.start.sampler);
  const total = totalSteps(s, train.count);
  const lrOf = lrOfRun(s, total);
  const ranges = streamParts(modelSpec(s.sizes));
  const rounds = s.rounds ?? null;
  // Batches an update draws: one, or a round's M x H inner batches (replica-major, in stream order).
  const perUpdate = rounds ? rounds.replicas * rounds.localSteps : 1;
  const pixels = new Uint8Array(perUpdate * s.batch * CIFAR10_IMAGE_BYTES);
  const labels = new Uint8Array(perUpdate * s.batch);
  const innerBatches = new Uint32Array(perUpdate);
  const offsets = new Uint32Array(rounds ? rounds.replicas + 1 : 0);
  const outer = rounds ? outerSgd(rounds) : null;
  const evalEvery = s.evalEvery ?? 0;
  const samplesSeen = (st: SamplerState): number => st.epoch * train.count + st.position;
  let step = o.start.step;
  let evaluatedAt = -1;
  let abandoned = false;
  let consistent = true;
  /** The sampler's state after `step` updates, when the sampler is ahead (an abandoned step drew its batch). */
  let samplerAtStep: SamplerState | null = null;
  // Parameter versions only increase within an executor (workers refuse older ones): after a
  // rollback the replayed states get new version numbers, version = step + versionShift.
  let versionShift = 0;
  let topVersion = step;
  const audits = o.audits ?? null;
  const ring = audits ? new SnapshotRing(params.length, o.rollbackMemoryBytes ?? DEFAULT_ROLLBACK_MEMORY_MB * 1024 * 1024) : null;
  if (ring) log.info({ window: ring.capacity }, 'audits on: rollback window of the last updates held in memory');

  const anchor = audits ? o.rollbackAnchor ?? null : null;
  let anchorScratch: Snapshot | null = null;
  /** Roll back to before the first step a proven cheater touched (or to before step `redo`, proofs or not). */
  const rollbackIfProven = (redo?: number): boolean => {
    if (!audits || !ring) return false;
    const proofs = audits.takeProven();
    if (proofs.length === 0 && redo === undefined) return false;
    let target = redo !== undefined && ring.at(redo - 1) ? redo : Infinity;
    // Distrusted steps older than the memory window: undone from the anchor when it is older.
    const beyond: { workerId: number; step: number }[] = [];
    for (const p of proofs) {
      if (p.final) {
        o.count?.('rollbacks_beyond_window', p.final);
        log.warn({ workerId: p.workerId, steps: p.final }, 'a cheater\'s results older than any state kept are final');
      }
      for (const d of p.steps) {
        if (ring.at(d - 1)) target = Math.min(target, d);
        else beyond.push({ workerId: p.workerId, step: d });
      }
    }
    let snap: Snapshot | null = null;
    const anchorStep = anchor?.step ?? null;
    const reach = beyond.filter((b) => anchorStep !== null && anchorStep <= b.step - 1);
    if (reach.length > 0) {
      try {
        snap = anchor!.load((anchorScratch ??= { step: 0, params: new Float32Array(params.length), momentum: new Float32Array(params.length), hasMomentum: false, sampler: sampler.state, evaluatedAt: -1, metricsMark: 0 }));
        target = snap.step + 1;
      } catch (err) {
        o.count?.('rollback_anchor_failed');
        log.error({ err, file: anchor!.file }, 'the rollback anchor could not be read: the results older than the window are final');
      }
    }
    for (const b of beyond) {
      if (snap === null || !reach.includes(b)) {
        o.count?.('rollbacks_beyond_window');
        log.warn({ workerId: b.workerId, step: b.step, window: ring.capacity, anchor: anchorStep }, 'a cheater\'s result older than the rollback window is final');
      }
    }
    if (target === Infinity) return false;
    snap ??= ring.at(target - 1)!;
    const from = step;
    params.set(snap.params);
    if (!snap.hasMomentum) sgd.momentumBuffer = null;
    else if (sgd.momentumBuffer) sgd.momentumBuffer.set(snap.momentum);
    else sgd.momentumBuffer = snap.momentum.slice();
    sampler = new Sampler(samplerOptions, snap.sampler);
    step = snap.step;
    evaluatedAt = snap.evaluatedAt;
    samplerAtStep = null;
    metrics.truncate?.(snap.metricsMark);
    audits.rolledBack(snap.step);
    ring.dropFrom(snap.step);
    versionShift = topVersion + 1 - step;
    topVersion = step + versionShift;
    o.count?.('rollbacks');
    o.count?.('rollback_steps', from - step);
    const workers = proofs.map((p) => p.workerId);
    log.warn({ from, to: step, workers }, 'rolled back: a worker was proven to cheat; replaying without it');
    o.onRollback?.({ from, to: step, workers });
    return true;
  };

  /**
   * `oldest` leaves memory: kept on disk when it is the state before the oldest step that may
   * still be proven a lie; records no rollback can reach any more are made final.
   */
  const leaveWindow = (oldest: Snapshot): void => {
    const open = audits!.oldestOpenStep();
    if (anchor && open !== null && open - 1 === oldest.step && anchor.step !== oldest.step) {
      try {
        anchor.save(oldest);
        log.info({ step: oldest.step, file: anchor.file }, 'rollback anchor: the state before the oldest unaudited result kept on disk');
      } catch (err) {
        o.count?.('rollback_anchor_failed');
        log.warn({ err, file: anchor.file }, 'the rollback anchor could not be written: the window stays in memory only');
      }
    }
    // After the eviction a distrusted step d can be undone when d - 1 >= oldest.step + 1 (memory)
    // or d - 1 >= the anchor's step: steps up to the smaller bound are final.
    audits!.finalThrough(Math.min(oldest.step + 1, anchor?.step ?? Infinity));
  };

  const saveCheckpoint = async (): Promise<void> => {
    if (!o.checkpoint) return;
    const outcome = await saveCheckpointRetrying(o.checkpoint.dir, {
      format_version: 1,
      settings: bitSettings(s),
      step,
      epoch: (samplerAtStep ?? sampler.state).epoch,
      sampler: samplerAtStep ?? sampler.state,
      params,
      optimizer: { momentum_buffer: sgd.momentumBuffer },
      metrics: [],
    }, o.checkpoint.keep, log);
    if (outcome.ok) log.debug({ step }, 'checkpoint written');
    o.onCheckpoint?.(outcome);
  };

  /** Evaluate the test set: at an epoch end (`epoch`: epochs completed), or an --eval-every point (epoch null). */
  const evaluate = async (epoch: number | null): Promise<void> => {
    evaluatedAt = step;
    if (!o.test) return;
    const t = performance.now();
    // Untrusted answers go to the auditor like a step's, keyed by this step: a lie proven there
    // rolls back to before it, and the replay evaluates again.
    const untrusted: { start: number; n: number; contributions: readonly NodeDigest[] }[] = [];
    const collect = audits ? (b: (typeof untrusted)[number]): void => {
      if (b.contributions.some((c) => !c.trusted)) untrusted.push(b);
    } : undefined;
    const r = await unlessAbandoned(evaluateSet(executor, o.test, params, step, s.batch, step + versionShift, collect), o.signal, o.abandonAfterMs);
    if (audits && untrusted.length > 0) {
      const frozen = params.slice(); // the parameters the answers were computed on, until their audits are decided
      for (const b of untrusted) {
        audits.submit({
          step, mode: 'eval', params: frozen, version: step + versionShift, batch: b.n, nodes: b.contributions,
          pixels: o.test.pixels.slice(b.start * CIFAR10_IMAGE_BYTES, (b.start + b.n) * CIFAR10_IMAGE_BYTES), labels: o.test.labels.slice(b.start, b.start + b.n),
        });
      }
    }
    if (r === null) {
      abandoned = true;
      log.warn({ step }, 'evaluation abandoned after the stop');
      return;
    }
    const evalMs = performance.now() - t;
    const samples = samplesSeen(samplerAtStep ?? sampler.state);
    const line = epoch === null
      ? { kind: 'eval' as const, step, samples, test_loss: r.loss, test_accuracy: r.accuracy, eval_ms: evalMs }
      : { kind: 'epoch' as const, epoch, step, test_loss: r.loss, test_accuracy: r.accuracy, samples, eval_ms: evalMs };
    metrics.write(line);
    o.onEval?.({ epoch: epoch ?? samples / train.count, step, testLoss: r.loss, testAccuracy: r.accuracy });
    log.info(line, 'evaluation');
  };

  for (;;) {
    // Let the event loop run between steps: an executor that computes in this thread resolves
    // without it, and a stop signal (SIGINT) is only delivered there.
    if (o.signal) await new Promise<void>((resolve) => setImmediate(resolve));
    let snap: Snapshot | null = null;
    if (audits && ring && !o.signal?.aborted) {
      if (rollbackIfProven()) continue;
      if (step >= total) {
        // The run's end: the last evaluation (here, so that its answers are audited too), then
        // every audit decided, so the final weights and figures hold no proven lie.
        if (evaluatedAt !== step) await evaluate(sampler.state.epoch + 1);
        if (abandoned) break;
        await audits.settled();
        if (rollbackIfProven()) continue;
        break;
      }
      if (ring.full && ring.oldestStep !== null) {
        // The oldest snapshot goes: the audits of the step computed on it are decided first.
        await audits.settledThrough(ring.oldestStep + 1);
        if (rollbackIfProven()) continue;
        leaveWindow(ring.oldest()!);
      }
      snap = ring.at(step) ?? ring.push(step, params, sgd.momentumBuffer, sampler.state, evaluatedAt, metrics.mark?.() ?? 0);
    }
    if (step >= total || o.signal?.aborted) break;
    const t0 = performance.now();
    const before = sampler.state;
    let n = 0;
    let epoch = before.epoch;
    for (let i = 0; i < perUpdate; i++) {
      if (rounds && i % rounds.localSteps === 0) offsets[i / rounds.localSteps] = n;
      const b = sampler.next();
      epoch = b.epoch;
      innerBatches[i] = gather(train, b.indices, pixels, labels, n);
      n += innerBatches[i];
    }
    if (rounds) offsets[rounds.replicas] = n;
    // SGD goes part by part: the cluster executor hands each part's root gradient over as soon as
    // it is complete (onRootPart), the part is updated and published to the workers while the
    // other parts are still in flight; parts not handed over are updated once `run` resolves.
    // A round's root is the pseudo-gradient sum: divided by M, then the outer optimizer's step.
    const version = step + versionShift;
    topVersion = Math.max(topVersion, version + 1);
    const lr = lrOf(step + 1);
    const sgdOptions = outer ?? { ...s, lr };
    const denomOf = (sums: NodeSums): number => (rounds ? rounds.replicas : sums.denomSum);
    const input: StepInput = rounds
      ? {
        mode: 'round', step: step + 1, version, params, pixels, labels, batch: n,
        round: { localSteps: rounds.localSteps, replicas: rounds.replicas, sgd: { ...s, lr }, innerBatches, offsets },
      }
      : { mode: 'train', step: step + 1, version, params, pixels, labels, batch: n };
    const taken = ranges.map(() => false);
    let update: SgdPartialStep | null = null;
    let failed = false;
    let sgdMs = 0;
    const onRootPart = (i: number, range: FlatRange, grad: Float32Array, root: NodeSums): void => {
      if (failed) return;
      const t = performance.now();
      if (root.denomSum === 0 || !Number.isFinite(root.lossSum / root.denomSum)) {
        failed = true;
        return;
      }
      update ??= opt.beginStep(denomOf(root), sgdOptions);
      // The optimizer checks the slice is finite first and changes nothing when it is not.
      if (!update.part(range, grad)) {
        failed = true;
        return;
      }
      taken[i] = true;
      sgdMs += performance.now() - t;
      executor.publish?.(version + 1, params, i);
    };
    let sums: Awaited<ReturnType<Executor['run']>> | null;
    try {
      sums = await unlessAbandoned(executor.run(input, { onRootPart }), o.signal, o.abandonAfterMs);
    } catch (err) {
      // Non-finite answers from untrusted workers only, or two workers' sums in dispute: trusted
      // compute (the auditor) decides, and the step is done again without the liars.
      const u = (err as { untrusted?: { node: TreeNode; workers: readonly number[] } }).untrusted;
      const d = (err as { disputed?: { node: TreeNode; claims: readonly DisputeClaim[] } }).disputed;
      if (!audits || !snap || !(u || d)) throw err;
      const job = { step: step + 1, mode: rounds ? 'round' as const : 'train' as const, params: snap.params, pixels, labels, batch: n, round: input.round };
      if (u) {
        const lied = await audits.judgeNonFinite(job, u.node, u.workers);
        if (!lied) throw new GradhubError('E_DIVERGED', `${(err as Error).message}; recomputed by the coordinator: non-finite too, the model diverged`);
      } else if (d) {
        const liars = await audits.judgeDispute(job, d.node, d.claims);
        const trustedLiars = liars.filter((c) => c.trusted).map((c) => c.workerId);
        if (trustedLiars.length > 0 || liars.length === 0) {
          throw new GradhubError('E_INTERNAL', `${(err as Error).message}; the coordinator's recompute ${liars.length === 0 ? 'matches both' : `differs from trusted worker(s) ${trustedLiars.join(', ')}`}: computing is not deterministic here, please report it`);
        }
      }
      // The step is done again from its snapshot: parts already updated from this attempt are undone.
      if (rollbackIfProven(step + 1)) continue;
      throw err;
    }
    if (sums === null) {
      // Given up after the stop: parts already updated (streamed SGD) leave no step's parameters.
      abandoned = true;
      consistent = !taken.some(Boolean);
      failed = true;
      samplerAtStep = before; // the checkpoint is of step `step`: its batch is drawn again on resume
      log.warn({ step: step + 1, consistent }, 'step abandoned after the stop');
      break;
    }
    const what = rounds ? 'round' : 'step';
    if (sums.denomSum === 0) throw new GradhubError('E_DIVERGED', `${what} ${step + 1}: every target of the batch is ignored, the loss is NaN (as PyTorch)`);
    const loss = sums.lossSum / sums.denomSum;
    const diverged = (): GradhubError => new GradhubError('E_DIVERGED', `${what} ${step + 1}: the loss or gradient is not finite (loss ${loss}); the model diverged. Lower --lr${rounds ? ' or --outer-lr' : ''} or check the data.`);
    // Untrusted results of this step and the steps before go to the auditor.
    if (audits && snap && sums.contributions && sums.contributions.some((c) => !c.trusted)) {
      audits.submit({
        step: step + 1, mode: rounds ? 'round' : 'train', params: snap.params, version,
        pixels: pixels.slice(0, n * CIFAR10_IMAGE_BYTES), labels: labels.slice(0, n), batch: n,
        round: input.round ? { ...input.round, innerBatches: innerBatches.slice(), offsets: offsets.slice() } : undefined,
        nodes: sums.contributions,
      });
    }
    if (!Number.isFinite(loss) || failed) {
      // Only trusted compute declares divergence: a lie among the results undoes the step instead.
      if (audits) {
        await audits.settled();
        if (rollbackIfProven()) continue;
      }
      throw diverged();
    }
    const tSgd = performance.now();
    const rest = ranges.filter((_, i) => !taken[i]);
    if (rest.length > 0 && !sums.grad) throw new GradhubError('E_INTERNAL', 'executor returned no gradient for a training step');
    update ??= opt.beginStep(denomOf(sums), sgdOptions);
    for (const r of rest) {
      if (!update.part(r, sums.grad!.subarray(r.offset, r.offset + r.length))) throw diverged();
    }
    update.end();
    sgdMs += performance.now() - tSgd;
    step++;
    const t = sums.timing;
    const split = { compute: t?.computeMs ?? 0, upload: t?.uploadMs ?? 0, reduce: t?.reduceMs ?? 0, sgd: sgdMs, broadcast: t?.broadcastMs ?? 0 };
    const samplesPerS = n / ((performance.now() - t0) / 1000);
    const accuracy = sums.correct / n;
    metrics.write(rounds
      ? { kind: 'round', round: step, epoch: epoch + 1, samples: n, loss, accuracy, samples_per_s: samplesPerS, lr }
      : { kind: 'step', step, epoch: epoch + 1, loss, accuracy, samples_per_s: samplesPerS, lr });
    o.onStep?.({ step, totalSteps: total, epoch: epoch + 1, epochs: s.epochs, samples: n, lr, loss, accuracy, samplesPerS, split });
    if (o.checkpoint && o.checkpoint.every > 0 && step % o.checkpoint.every === 0) await saveCheckpoint();
    if (sampler.state.epoch > before.epoch) await evaluate(sampler.state.epoch);
    else if (evalEvery > 0 && Math.floor(samplesSeen(sampler.state) / evalEvery) > Math.floor(samplesSeen(before) / evalEvery)) await evaluate(null);
  }
  const stopped = step < total;
  if (!stopped && !abandoned && evaluatedAt !== step) await evaluate(sampler.state.epoch + 1);
  if (consistent) await saveCheckpoint();
  o.start.params.set(params);
  return { params: o.start.params, step, stopped, abandoned, consistent };
}

/** Copy the samples at `indices` into the batch buffers from sample `at` on; returns their count. */
function gather(set: Samples, indices: Uint32Array, pixels: Uint8Array, labels: Uint8Array, at: number): number {
  for (let b = 0; b < indices.length; b++) {
    const i = indices[b];
    pixels.set(set.pixels.subarray(i * CIFAR10_IMAGE_BYTES, (i + 1) * CIFAR10_IMAGE_BYTES), (at + b) * CIFAR10_IMAGE_BYTES);
    labels[at + b] = set.labels[i];
  }
  return indices.length;
}

/** Mean loss and accuracy over a whole set, in batches, through the executor (float64 sums in order). */
export async function evaluateSet(
  executor: Executor, set: Samples, params: Float32Array, step: number, batch: number, version = step,
  onBatch?: (b: { readonly start: number; readonly n: number; readonly contributions: readonly NodeDigest[] }) => void,
): Promise<{ loss: number; accuracy: number }> {
  let lossSum = 0;
  let denomSum = 0;
  let correct = 0;
  for (let start = 0; start < set.count; start += batch) {
    const n = Math.min(batch, set.count - start);
    const r = await executor.run({
      mode: 'eval', step, version, params,
      pixels: set.pixels.subarray(start * CIFAR10_IMAGE_BYTES, (start + n) * CIFAR10_IMAGE_BYTES),
      labels: set.labels.subarray(start, start + n),
      batch: n,
    });
    lossSum += r.lossSum;
    denomSum += r.denomSum;
    correct += r.correct;
    if (r.contributions) onBatch?.({ start, n, contributions: r.contributions });
  }
  return { loss: lossSum / denomSum, accuracy: correct / set.count };
}
