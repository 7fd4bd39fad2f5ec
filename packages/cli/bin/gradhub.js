#!/usr/bin/env -S node --single-threaded-gc
// The `gradhub` command (npx gradhub): runs the built CLI. This file is committed so that npm links
// the bin at install time, before `npm run build` has produced dist/.
// --single-threaded-gc: gradhub's heaps are small (tensors live in ArrayBuffers and WebAssembly
// memory), so V8's parallel GC threads only compete with the compute and the sockets; measured on a
// 2-core machine, a 2-worker cluster step took ~10% less time and the coordinator ~20% less CPU.
import { existsSync } from 'node:fs';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('gradhub: the CLI is not built yet: run `npm run build` in the repository first\n');
  process.exit(1);
}
await import(main.href);
