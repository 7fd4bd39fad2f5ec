/**
 * A kernel helper thread in the browser: the Web Worker (kernel-thread.js in the browser build)
 * that the browser worker (worker-entry.ts) starts for each helper of the threaded WebAssembly
 * backend. Its first message is the KernelThreadInit (the shared memory and the compiled module,
 * passed by postMessage: the page must be cross-origin isolated); it runs @gradhub/core's
 * runKernelHelper until the backend is closed, then ends. It blocks in Atomics.wait between
 * commands, which Web Workers may do.
 *
 * Web Worker and WebAssembly APIs only (no Node, no DOM).
 */
import { runKernelHelper, type KernelThreadInit } from '@gradhub/core';

/** The parts of the dedicated worker scope used here. */
interface HelperScope {
  addEventListener(type: 'message', listener: (ev: MessageEvent<KernelThreadInit>) => void, options?: { once?: boolean }): void;
  close(): void;
}

const scope = globalThis as unknown as HelperScope;
scope.addEventListener('message', (ev) => {
  try {
    runKernelHelper(ev.data);
  } finally {
    scope.close();
  }
}, { once: true });
