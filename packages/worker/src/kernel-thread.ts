/**
 * A kernel helper thread of the threaded WebAssembly backend, in Node: the script that
 * `spawnNodeKernelThread` (node-worker.ts) starts as a `worker_threads` Worker, with the
 * KernelThreadInit as its workerData. It runs @gradhub/core's runKernelHelper (instantiate the
 * kernels on the shared memory, then compute slices of kernel calls) until the backend is closed,
 * and then ends. Not exported from the package's index: loading it is starting a helper.
 */
import { isMainThread, workerData } from 'node:worker_threads';
import { runKernelHelper, type KernelThreadInit } from '@gradhub/core';

if (!isMainThread) runKernelHelper(workerData as KernelThreadInit);
