export * from './executor.js';
export * from './in-process-executor.js';
export * from './metrics.js';
export * from './settings.js';
export * from './trainer.js';
export * from './dataset.js';
export * from './checkpoint.js';
export * from './status.js';
