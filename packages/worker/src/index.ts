// @gradhub/worker: the protocol client and the worker session shared by every runtime, and the Node worker.
export * from './wire.js';
export * from './client.js';
export * from './session.js';
export * from './node-worker.js';
export * from './browser-assets.js';
