/**
 * The executor of `gradhub train --workers 0`: the same engine a worker runs, called on the root
 * node [0, nChunks) of each batch, in this process. No sockets; the same bits as any cluster.
 *
 * A round ('round') is the root node [0, M) of its replicas, run by core's replica runner (the
 * module every worker runs): the same bits as any split of the replicas over workers.
 *
 * The engine computes synchronously, so each call first yields to the event loop once (a
 * setImmediate): without it a run would never let the process serve its dashboard, /metrics,
 * timers or signals (Ctrl-C) until the last step. It costs microseconds a step.
 */
import { CIFAR_PIXELS, createEngine, createReplicaRunner, type Backend, type ModelSpec, type ReplicaRunner } from '@gradhub/core';
import type { Executor, StepInput, StepSums } from './executor.js';

export interface InProcessOptions {
  readonly spec: ModelSpec;
  readonly backend: Backend;
  readonly maxBatch: number;
  readonly chunk: number;
  readonly normalize: boolean;
}

/** The returned grad is the engine's (or the replica runner's) buffer: valid until the next `run`. */
export function createInProcessExecutor(opts: InProcessOptions): Executor {
  const engine = createEngine(opts);
  let version = -1;
  let runner: Promise<ReplicaRunner> | null = null;
  return {
    async run(input: StepInput): Promise<StepSums> {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (input.version !== version) {
        engine.params.set(input.params);
        version = input.version;
      }
      const r = input.round;
      if (input.mode === 'round' && r) {
        const rr = await (runner ??= createReplicaRunner(engine));
        const t0 = performance.now();
        const sums = await rr.run({ lo: 0, hi: r.replicas }, {
          localSteps: r.localSteps, sgd: r.sgd, pixels: input.pixels.subarray(0, input.batch * CIFAR_PIXELS), labels: input.labels.subarray(0, input.batch), innerBatches: r.innerBatches,
        }, { between: () => new Promise<void>((resolve) => setImmediate(resolve)) });
        const computeMs = performance.now() - t0;
        return { ...sums!, grad: rr.delta, timing: { broadcastMs: 0, computeMs, uploadMs: 0, reduceMs: 0 } };
      }
      const train = input.mode === 'train';
      const t0 = performance.now();
      const sums = engine.computeSums(input.pixels, input.labels, input.batch, train);
      const computeMs = performance.now() - t0;
      return { ...sums, grad: train ? engine.grads : null, timing: { broadcastMs: 0, computeMs, uploadMs: 0, reduceMs: 0 } };
    },
    async close(): Promise<void> {},
  };
}
