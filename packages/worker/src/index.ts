// @gradhub/worker: the protocol client and the worker session shared by every runtime, and the Node worker.
export { PROTOCOL_VERSION, decodeMessage, encode, fragments, resultHeader } from './wire.js';
export { type ClientEvent, type OutgoingResult, type ResultHook } from './client.js';
export {
  createNodeBackend,
  spawnNodeKernelThread,
  startNodeWorker,
  wsClientSocket,
  type NodeWorkerHandle,
  type NodeWorkerOptions,
} from './node-worker.js';
export { BROWSER_ASSETS_DIR, BROWSER_ASSET_FILES } from './browser-assets.js';
