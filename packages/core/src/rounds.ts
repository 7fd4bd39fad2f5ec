/**
 * Rounds: exact local SGD with an outer optimizer (DiLoCo), one replica-round node at a time
 * (docs/design.md "Rounds"). Every worker and the in-process executor run this module, so a
 * replica-round has the same bits wherever it is computed.
 *
 * A round r starts from the parameters theta (version r). Replica m runs H inner steps of the
 * run's torch.optim.SGD (momentum, dampening, weight decay, Nesterov, maximize; its state fresh
 * each round, the lr the schedule's value for round r) on its H inner batches, each inner step the
 * engine's canonical chunk tree over that batch divided once by the batch's denominator
 * (Invariant 1), exactly one synchronous step of a one-batch run. Its pseudo-gradient is
 * theta - local (float32). The replicas are the leaves of the round's tree: a node [lo, hi) of
 * replicas sums its leaves' pseudo-gradients along the canonical tree, S(lo, hi) = S(lo, mid) +
 * S(mid, hi) (float32, left + right), and its sums (loss sum, denominator sum: float64, inner
 * steps in order inside a replica then the tree; correct count) the same way. The trainer divides
 * the root S(0, M) by M once and takes one outer SGD step.
 *
 * The node's samples come replica by replica, each replica's H inner batches in stream order:
 * pixels (N, 3072) uint8, labels (N), `innerBatches` the H x (hi - lo) batch sizes in that order.
 *
 * A non-finite inner gradient (or a batch whose denominator is 0) makes that replica's
 * pseudo-gradient NaN (and its loss sum NaN): the caller's checks treat it as any non-finite
 * result (recomputed elsewhere; the run stops as diverged when trusted compute agrees).
 */
import type { Engine, NodeSums } from './engine.js';
import { createSgdOptimizer, type SgdOptimizer } from './sgd-wasm.js';
import type { SgdOptions } from './sgd.js';
import { addSiblings, treeMid, type TreeNode } from './tree.js';
import { CIFAR10_IMAGE_BYTES } from './cifar.js';
import { internalError } from './errors.js';

/** The round settings of a run (the outer optimizer is the trainer's; these are what a replica needs). */
export interface ReplicaRoundWork {
  /** H: inner steps per replica. */
  readonly localSteps: number;
  /** The inner optimizer's options, `lr` the schedule's value for this round. */
  readonly sgd: SgdOptions;
  /** The node's samples, replica-major, each replica's inner batches in order: (N, 3072) uint8. */
  readonly pixels: Uint8Array;
  /** (N) class indices, in the same order. */
  readonly labels: Uint8Array;
  /** Sizes of the node's inner batches in order: localSteps per replica of the node. */
  readonly innerBatches: ArrayLike<number>;
}

/** Hooks between inner steps (both optional). */
export interface ReplicaRoundHooks {
  /** Called (and awaited) after each inner step: lets a caller yield to its event loop. */
  between?(): Promise<void> | void;
  /** True when the caller no longer wants the result: the node stops early (returns null). */
  cancelled?(): boolean;
}

export interface ReplicaRunner {
  /**
   * S(node) of the pseudo-gradients theta - local_m over the node's replicas, theta being
   * `engine.params` at the call (they hold theta again when it returns). The result lies in
   * `delta` until the next call; the sums are the node's. Null when `hooks.cancelled()` said so.
   */
  run(node: TreeNode, work: ReplicaRoundWork, hooks?: ReplicaRoundHooks): Promise<NodeSums | null>;
  /** The last node's pseudo-gradient sum (paramCount floats). */
  readonly delta: Float32Array;
}

/** Check a node's round work against its node and the engine's batch limit; returns the sample count. */
export function checkReplicaRoundWork(node: TreeNode, work: ReplicaRoundWork, maxBatch: number): number {
  const replicas = node.hi - node.lo;
  const H = work.localSteps;
  if (!Number.isInteger(H) || H < 1) throw internalError(`replica round: local steps ${H}`);
  if (work.innerBatches.length !== replicas * H) throw internalError(`replica round: ${work.innerBatches.length} inner batches for ${replicas} replicas of ${H} steps`);
  let n = 0;
  for (let i = 0; i < work.innerBatches.length; i++) {
    const b = work.innerBatches[i];
    if (!Number.isInteger(b) || b < 1 || b > maxBatch) throw internalError(`replica round: inner batch of ${b} samples (1..${maxBatch})`);
    n += b;
  }
  if (work.pixels.length !== n * CIFAR10_IMAGE_BYTES || work.labels.length !== n) {
    throw internalError(`replica round: ${n} samples need ${n * CIFAR10_IMAGE_BYTES} pixel bytes and ${n} labels, got ${work.pixels.length} and ${work.labels.length}`);
  }
  return n;
}

/** A runner over `engine` (one call at a time; it owns the engine's parameters while it runs). */
export async function createReplicaRunner(engine: Engine, options: { readonly sgdBackend?: 'wasm' | 'ts' } = {}): Promise<ReplicaRunner> {
  const n = engine.params.length;
  const opt: SgdOptimizer = await createSgdOptimizer(n, options.sgdBackend ? { backend: options.sgdBackend } : {});
  const theta = new Float32Array(n);
  const delta = new Float32Array(n);
  /** Right-sibling buffers, one per tree depth below the node (allocated on first use). */
  const scratch: Float32Array[] = [];
  let busy = false;
  /** The engine's parameters are no longer theta (a replica ran since the node began). */
  let dirty = false;

  /** One replica's H inner steps from theta; out = theta - local. */
  const replica = async (work: ReplicaRoundWork, first: number, sampleAt: number, out: Float32Array, hooks: ReplicaRoundHooks | undefined): Promise<NodeSums | null> => {
    opt.params.set(theta);
    opt.state.momentumBuffer = null; // fresh inner optimizer each round (PyTorch: a new torch.optim.SGD)
    let lossSum = 0;
    let denomSum = 0;
    let correct = 0;
    let finite = true;
    let at = sampleAt;
    for (let h = 0; h < work.localSteps; h++) {
      const b = work.innerBatches[first + h];
      if (finite) {
        if (h > 0) engine.params.set(opt.params);
        else if (dirty) engine.params.set(theta);
        dirty = true;
        const s = await engine.computeSumsAsync(
          work.pixels.subarray(at * CIFAR10_IMAGE_BYTES, (at + b) * CIFAR10_IMAGE_BYTES), work.labels.subarray(at, at + b), b, true,
        );
        lossSum += s.lossSum;
        denomSum += s.denomSum;
        correct += s.correct;
        // The optimizer refuses a non-finite gradient and changes nothing (sgd-wasm.ts).
        if (s.denomSum === 0 || !Number.isFinite(s.lossSum) || !opt.step(engine.grads, s.denomSum, work.sgd)) finite = false;
      }
      at += b;
      await hooks?.between?.();
      if (hooks?.cancelled?.()) return null;
    }
    if (!finite) {
      out.fill(NaN);
      return { lossSum: NaN, denomSum, correct };
    }
    const p = opt.params;
    for (let i = 0; i < n; i++) out[i] = theta[i] - p[i];
    return { lossSum, denomSum, correct };
  };

  return {
    delta,
    async run(node, work, hooks) {
      if (busy) throw internalError('ReplicaRunner.run called while a node is in progress');
      busy = true;
      const H = work.localSteps;
      checkReplicaRoundWork(node, work, Number.MAX_SAFE_INTEGER);
      theta.set(engine.params);
      dirty = false;
      // Sample offset of each replica of the node, relative to the node's first sample.
      const starts: number[] = [0];
      for (let j = 0; j < node.hi - node.lo; j++) {
        let s = starts[j];
        for (let h = 0; h < H; h++) s += work.innerBatches[j * H + h];
        starts.push(s);
      }
      const visit = async (lo: number, hi: number, out: Float32Array, depth: number): Promise<NodeSums | null> => {
        const j = lo - node.lo;
        if (hi - lo === 1) return replica(work, j * H, starts[j], out, hooks);
        const mid = treeMid(lo, hi);
        const l = await visit(lo, mid, out, depth + 1);
        if (l === null) return null;
        const tmp = (scratch[depth] ??= new Float32Array(n));
        const r = await visit(mid, hi, tmp, depth + 1);
        if (r === null) return null;
        addSiblings(out, out, tmp);
        return { lossSum: l.lossSum + r.lossSum, denomSum: l.denomSum + r.denomSum, correct: l.correct + r.correct };
      };
      try {
        return await visit(node.lo, node.hi, delta, 0);
      } finally {
        if (dirty) engine.params.set(theta);
        busy = false;
      }
    },
  };
}
