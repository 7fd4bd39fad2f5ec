// Generates generated/gradhub.js (static module, ES6) and generated/gradhub.d.ts from gradhub.proto.
//
// Runs the protobufjs-cli entry points with this Node (no shell, no PATH lookup), then makes the
// output loadable as ESM under Node 20: protobufjs has no "exports" map, so the runtime must be
// imported by file ("protobufjs/minimal.js"), and as a default import (it is CommonJS: its named
// exports are not visible to Node's static analysis). The generated files are never edited by hand.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const cliDir = path.dirname(require.resolve('protobufjs-cli/package.json'));
const outDir = path.join(here, 'generated');
const js = path.join(outDir, 'gradhub.js');
const dts = path.join(outDir, 'gradhub.d.ts');

function run(bin, args) {
  const r = spawnSync(process.execPath, [path.join(cliDir, 'bin', bin), ...args], { stdio: 'inherit', cwd: here });
  if (r.status !== 0) {
    console.error(`proto build: ${bin} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

fs.mkdirSync(outDir, { recursive: true });
run('pbjs', [
  '--target', 'static-module', '--wrap', 'es6', '--force-number',
  '--no-verify', '--no-delimited', '--no-beautify',
  '--out', js, path.join(here, 'gradhub.proto'),
]);

let code = fs.readFileSync(js, 'utf8');
const before = code;
code = code.replace(/import \* as \$protobuf from "protobufjs\/minimal";/, 'import $protobuf from "protobufjs/minimal.js";');
if (code === before) {
  console.error('proto build: the generated module does not import "protobufjs/minimal" as expected');
  process.exit(1);
}
fs.writeFileSync(js, code);

run('pbts', ['--no-comments', '--out', dts, js]);
// pbts imports Long with CommonJS syntax that an ESM declaration cannot hold; no field is 64-bit.
let types = fs.readFileSync(dts, 'utf8');
types = types.replace(/^import Long = require\("long"\);\n/m, '');
fs.writeFileSync(dts, types);
console.log(`proto build: wrote ${path.relative(process.cwd(), js)} and ${path.relative(process.cwd(), dts)}`);
