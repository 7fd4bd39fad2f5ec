export { parseOptions, formatOptions, TRAINING_OPTIONS, CLUSTER_OPTIONS, WORKER_OPTIONS } from './options.js';
export { NODE_FLAGS } from './node-flags.js';
export { privateSocketDir, SOCKET_NAME } from './socket-dir.js';
