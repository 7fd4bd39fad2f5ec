export { parseOptions, formatOptions, TRAINING_OPTIONS, CLUSTER_OPTIONS, WORKER_OPTIONS } from './options.js';
