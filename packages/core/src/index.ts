// @gradhub/core: pure numerics, no I/O. One export line per module.
export * from './kernels/types.js';
export * from './tree.js';
export * from './model.js';
export * from './rng.js';
export * from './init.js';
export * from './sampler.js';
export * from './sgd.js';
export * from './engine.js';
export * from './errors.js';
export * from './cifar.js';
export * from './safetensors.js';
export * from './mathdet.js';
export * from './losses.js';
export * from './hash.js';
export * from './kernels/oracle.js';
export * from './kernels/wasm.js';
export * from './kernels/wasm-threads.js';
