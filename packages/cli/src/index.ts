// @gradhub/cli: the gradhub command; the option table, the version and the run-folder paths for tests, deploy scripts and benches.
export { parseOptions, formatOptions, envName, envTable, TRAINING_OPTIONS, CLUSTER_OPTIONS, WORKER_OPTIONS, type OptionSpec } from './options.js';
export { NODE_FLAGS } from './node-flags.js';
export { privateSocketDir, SOCKET_NAME } from './socket-dir.js';
export { GRADHUB_VERSION } from './version.js';
export { runPaths, type RunPaths } from './run-dir.js';
