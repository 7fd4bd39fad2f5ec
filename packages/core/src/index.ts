// @gradhub/core: pure numerics, no I/O. One export line per module.
export { type Backend } from './kernels/types.js';
export {
  children,
  chunkCount,
  coverRange,
  isTreeNode,
  leafCount,
  leafSamples,
  nodeSamples,
  parentOf,
  treeFold,
  treeMid,
  type LeafShape,
  type TreeNode,
} from './tree.js';
export { modelSpec, streamParts, tensorEntries, type FlatRange, type ModelSpec } from './model.js';
export { Rng } from './rng.js';
export { initParams } from './init.js';
export { Sampler, batchesPerEpoch, type SamplerState } from './sampler.js';
export { validateSgd, type SgdOptions } from './sgd.js';
export { checkReplicaRoundWork, createReplicaRunner, type ReplicaRoundHooks, type ReplicaRoundWork, type ReplicaRunner } from './rounds.js';
export { createSgdOptimizer, type SgdPartialStep } from './sgd-wasm.js';
export {
  LR_SCHEDULE_KINDS,
  isConstantLr,
  lrSchedule,
  resolveLrSchedule,
  validateLrSchedule,
  type LrScheduleKind,
  type LrScheduleOptions,
} from './lr-schedule.js';
export { createEngine, engineFloats, type Engine, type NodeSums } from './engine.js';
export { ErrorCode, GradhubError, internalError, isGradhubError } from './errors.js';
export {
  CIFAR10_CLASS_NAMES,
  CIFAR10_IMAGE_BYTES,
  CIFAR10_MEAN,
  CIFAR10_STD,
  CIFAR_PIXELS,
  concatBatches,
  parseCifarBatch,
  parseClassNames,
  pixelsToInput,
  type CifarDataset,
} from './cifar.js';
export {
  decodeSafetensors,
  decodeSafetensorsWithMetadata,
  paramsToSafetensors,
  safetensorsToParams,
} from './safetensors.js';
export { bytesEqual, bytesToHex, xxh64, xxh64Hex, xxh64Reference, xxh64UsesWasm } from './hash.js';
export { createOracleBackend } from './kernels/oracle.js';
export { createWasmBackend, wasmSimdSupported } from './kernels/wasm.js';
export {
  MAX_KERNEL_THREADS,
  createThreadedWasmBackend,
  runKernelHelper,
  wasmThreadsSupported,
  type KernelThreadInit,
  type KernelThreadSpawner,
} from './kernels/wasm-threads.js';
export { createGradPool, type GradPool } from './grad-pool.js';
