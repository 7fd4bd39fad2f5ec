export { parseOptions, formatOptions, TRAINING_OPTIONS, CLUSTER_OPTIONS, WORKER_OPTIONS } from './options.js';
export { NODE_FLAGS } from './node-flags.js';
export { privateSocketDir, SOCKET_NAME } from './socket-dir.js';
export { GRADHUB_VERSION } from './version.js';
export { runPaths, type RunPaths } from './run-dir.js';
