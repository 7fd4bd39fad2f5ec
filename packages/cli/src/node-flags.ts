/**
 * The Node flags every gradhub process runs with. They have to be on the command line (V8 reads
 * them at start-up; setting them at run time crashes or does nothing). The local launcher's worker
 * processes (local-cluster.ts) and the benchmarks (bench/) take this list; the bin's shebang
 * (bin/gradhub.js) and the image's ENTRYPOINT (deploy/Dockerfile) spell it out, and
 * test/deploy-manifests.test.ts keeps both equal to it.
 *
 * Why: a gradhub process keeps its tensors in ArrayBuffers and WebAssembly memory, so its JavaScript
 * heap is small (~9 MB), while 40-170 MB of socket data passes through it every step.
 *   --single-threaded-gc         V8's parallel and concurrent GC threads only take cores from the
 *                                compute and the sockets. A 2-core 2-worker step: ~360 -> ~325 ms.
 *   --initial-old-space-size=64  With the default (small) old-generation limit, the young
 *                                generation's growth (its semi-spaces grow to 16 MB under the
 *                                socket traffic) leaves less headroom than one new space, and V8
 *                                starts a full incremental marking (~15-20 ms each on one thread)
 *                                one to three times a step. With 64 MB of room those stop; the
 *                                full GCs left are the ones external memory (received socket
 *                                chunks) asks for. Heap use stays small; see `npm run bench`'s
 *                                coordinator memory rows.
 */
export const NODE_FLAGS: readonly string[] = ['--single-threaded-gc', '--initial-old-space-size=64'];
