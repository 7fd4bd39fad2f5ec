#!/usr/bin/env -S node --single-threaded-gc --initial-old-space-size=64
// The `gradhub` command (npx gradhub): runs the built CLI. This file is committed so that npm links
// the bin at install time, before `npm run build` has produced dist/.
// The Node flags are gradhub's NODE_FLAGS (src/node-flags.ts says why; a test keeps them equal).
import { existsSync } from 'node:fs';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('gradhub: the CLI is not built yet: run `npm run build` in the repository first\n');
  process.exit(1);
}
await import(main.href);
