#!/usr/bin/env node
// Rewrites the environment-variable tables of deploy/README.md from the CLI's option table
// (packages/cli/src/options.ts, built). Run after changing an option: `npm run build` first.
import * as fs from 'node:fs';
import { TRAINING_OPTIONS, CLUSTER_OPTIONS, WORKER_OPTIONS, envTable } from '@gradhub/cli';

const file = new URL('../README.md', import.meta.url);
const commands = { coordinator: [...TRAINING_OPTIONS, ...CLUSTER_OPTIONS], worker: WORKER_OPTIONS };
let text = fs.readFileSync(file, 'utf8');
for (const [command, specs] of Object.entries(commands)) {
  const re = new RegExp(`(<!-- env-table:${command}:begin -->\\n)[\\s\\S]*?(\\n<!-- env-table:${command}:end -->)`);
  if (!re.test(text)) throw new Error(`deploy/README.md lacks the ${command} table markers`);
  text = text.replace(re, (_m, a, b) => a + envTable(specs) + b);
}
fs.writeFileSync(file, text);
console.log('deploy/README.md: tables rewritten');
