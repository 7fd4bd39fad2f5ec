#!/usr/bin/env node
/**
 * Build the WebAssembly SIMD kernels from source: packages/core/assembly/*.ts (AssemblyScript)
 * -> packages/core/src/kernels/wasm-bytes.ts (generated, gitignored), which embeds the modules as
 * base64 so that Node and a browser bundle load the same bytes with no I/O at run time.
 *
 * Two variants of the same source, compiled with the same options:
 *   KERNEL_WASM_BASE64          imports a plain memory (the single-thread backend, wasm.ts);
 *   KERNEL_WASM_SHARED_BASE64   imports a SHARED memory (--sharedMemory, which needs the threads
 *                               feature; maximum 65,536 pages), so that several threads run
 *                               instances of it on one memory (wasm-threads.ts). It uses no
 *                               atomic instruction: the hosts synchronise in JavaScript.
 *
 * Features: SIMD on, relaxed SIMD off (--disable relaxed-simd, and checked below: the module
 * must not contain any relaxed instruction, e.g. a fused multiply-add; docs/design.md "Invariant 3: canonical reduction tree"). Each
 * module imports its memory (env.memory) and nothing else; the build is reproducible (same bytes).
 *
 * Usage: node scripts/build-wasm.js [--wat FILE] [--hash-wat FILE] [--names]   (`npm run build:wasm`)
 *   --wat FILE   also write the text format, to read what the kernels compile to;
 *   --hash-wat FILE  the same for the xxh64 module;
 *   --names      keep function names in the module (for `node --print-wasm-code`); off by default.
 *
 * The kernel module also exports `xxh64` (the parameter checksum of bytes already in its memory);
 * the algorithm, assembly/xxh64-core.ts, is shared with a third, separate module: the XXH64
 * parameter checksum of any bytes (assembly/xxh64.ts) -> src/hash-wasm-bytes.ts
 * (generated, gitignored) as HASH_WASM_BASE64. Scalar i64 only (no SIMD, so it runs on any
 * WebAssembly engine), no imports, its own fixed memory of HASH_PAGES pages (exported), no data
 * segments, no start function, and small: src/hash.ts instantiates it synchronously on first use.
 */
import asc from 'assemblyscript/asc';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'assembly', 'index.ts');
const outTs = join(root, 'src', 'kernels', 'wasm-bytes.ts');
const hashEntry = join(root, 'assembly', 'xxh64.ts');
const hashOutTs = join(root, 'src', 'hash-wasm-bytes.ts');
/** Pages of the hash module's own memory: 1 KiB header + a 256 KiB chunk (see assembly/xxh64.ts). */
const HASH_PAGES = 5;
/** Synchronous instantiation (new WebAssembly.Module on the main thread) must stay small. */
const HASH_MAX_BYTES = 4096;

/**
 * Instructions that must never appear: relaxed SIMD (implementation-defined results, e.g.
 * f32x4.relaxed_madd, which may or may not fuse). Plain WebAssembly has no FMA at all.
 */
const FORBIDDEN = /\.relaxed_/;

/** The kernel module's functions, as src/kernels/wasm.ts (KernelExports), src/sgd-wasm.ts and src/grad-pool.ts call them. */
const KERNEL_EXPORTS = ['init', 'linearForward', 'linearBackwardInput', 'linearBackwardWeight', 'sgdStep', 'f32Check', 'f32Add', 'xxh64'];

/**
 * Compile one AssemblyScript entry with the options every module here shares (optimised, no
 * asserts, the stub runtime, no relaxed SIMD, no abort import) plus its own `flags`; the binary and
 * its text format, from memory (nothing is written by asc).
 */
async function ascModule(source, name, flags, debugNames) {
  const outputs = new Map();
  const stderr = asc.createMemoryStream();
  const { error } = await asc.main([
    source,
    '--outFile', `${name}.wasm`,
    '--textFile', `${name}.wat`,
    '--optimizeLevel', '3',
    '--shrinkLevel', '0',
    '--noAssert',
    '--runtime', 'stub',
    '--disable', 'relaxed-simd',
    '--use', 'abort=',
    ...flags,
    ...(debugNames ? ['--debug'] : []),
  ], {
    stderr,
    writeFile: (file, contents) => { outputs.set(file, contents); },
  });
  if (error) throw new Error(`asc failed (${name}): ${error.message}\n${stderr.toString()}`);
  const wasm = outputs.get(`${name}.wasm`);
  const wat = outputs.get(`${name}.wat`);
  if (!(wasm instanceof Uint8Array) || typeof wat !== 'string') throw new Error(`asc produced no ${name} module`);
  return { wasm, wat };
}

/** The kernel module: imports its memory (shared for threads), SIMD on. */
function compile(debugNames, shared) {
  return ascModule(entry, 'kernels', [
    '--importMemory', '--noExportMemory', '--initialMemory', '1', '--enable', 'simd',
    ...(shared ? ['--sharedMemory', '--maximumMemory', '65536', '--enable', 'threads'] : []),
  ], debugNames);
}

/** Refuse a module that the kernels' contract forbids, or that needs more than env.memory. */
function check(wasm, wat, shared) {
  const bad = wat.split('\n').filter((line) => FORBIDDEN.test(line));
  if (bad.length > 0) throw new Error(`forbidden instructions in the kernel module:\n${bad.slice(0, 5).join('\n')}`);
  const mod = new WebAssembly.Module(wasm);
  const imports = WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}:${i.kind}`);
  if (imports.length !== 1 || imports[0] !== 'env.memory:memory') {
    throw new Error(`kernel module must import only env.memory, got ${imports.join(', ')}`);
  }
  const exports = WebAssembly.Module.exports(mod).map((e) => `${e.name}:${e.kind}`);
  for (const name of KERNEL_EXPORTS) {
    if (!exports.includes(`${name}:function`)) throw new Error(`kernel module lacks export ${name} (has ${exports.join(', ')})`);
  }
  if (/\(data\b/.test(wat)) throw new Error('kernel module must have no data segments (the host owns all of memory)');
  if (/\(start\b/.test(wat)) throw new Error('kernel module must have no start function (each thread instantiates it on the same memory)');
  const memImport = wat.split('\n').find((line) => line.includes('(import "env" "memory"')) ?? '';
  if (/\bshared\b/.test(memImport) !== shared) throw new Error(`kernel module's memory import is not ${shared ? '' : 'un'}shared: ${memImport.trim()}`);
}

/** The hash module: its own fixed memory of HASH_PAGES pages (exported), no SIMD. */
function compileHash(debugNames) {
  return ascModule(hashEntry, 'xxh64', [
    '--initialMemory', String(HASH_PAGES), '--maximumMemory', String(HASH_PAGES), '--disable', 'simd',
  ], debugNames);
}

/** Refuse a hash module that src/hash.ts could not instantiate synchronously with no imports. */
function checkHash(wasm, wat) {
  if (wasm.length > HASH_MAX_BYTES) throw new Error(`xxh64 module is ${wasm.length} bytes (> ${HASH_MAX_BYTES})`);
  const mod = new WebAssembly.Module(wasm);
  const imports = WebAssembly.Module.imports(mod);
  if (imports.length !== 0) throw new Error(`xxh64 module must import nothing, got ${imports.map((i) => `${i.module}.${i.name}`).join(', ')}`);
  const exports = WebAssembly.Module.exports(mod).map((e) => `${e.name}:${e.kind}`).sort();
  for (const want of ['finish:function', 'init:function', 'memory:memory', 'stripes:function']) {
    if (!exports.includes(want)) throw new Error(`xxh64 module lacks export ${want} (has ${exports.join(', ')})`);
  }
  if (/\(data\b/.test(wat)) throw new Error('xxh64 module must have no data segments');
  if (/\(start\b/.test(wat)) throw new Error('xxh64 module must have no start function');
  const mem = new WebAssembly.Instance(mod).exports.memory;
  if (mem.buffer.byteLength !== HASH_PAGES * 65536) throw new Error(`xxh64 memory is ${mem.buffer.byteLength} bytes, want ${HASH_PAGES} pages`);
}

async function main() {
  const watIndex = process.argv.indexOf('--wat');
  const names = process.argv.includes('--names');
  const { wasm, wat } = await compile(names, false);
  check(wasm, wat, false);
  const shared = await compile(names, true);
  check(shared.wasm, shared.wat, true);
  const text = [
    '// Generated by packages/core/scripts/build-wasm.js from packages/core/assembly/*.ts. Do not edit.',
    `// ${wasm.length} bytes, SIMD on, relaxed SIMD off; plain memory.`,
    `export const KERNEL_WASM_BASE64 =\n  '${Buffer.from(wasm).toString('base64')}';`,
    `// ${shared.wasm.length} bytes, SIMD on, relaxed SIMD off; shared memory (threads).`,
    `export const KERNEL_WASM_SHARED_BASE64 =\n  '${Buffer.from(shared.wasm).toString('base64')}';`,
    '',
  ].join('\n');
  await mkdir(dirname(outTs), { recursive: true });
  await writeFile(outTs, text);
  if (watIndex > 0 && process.argv[watIndex + 1]) await writeFile(process.argv[watIndex + 1], wat);
  process.stdout.write(`build-wasm: ${wasm.length} + ${shared.wasm.length} (shared memory) bytes -> ${outTs}\n`);
  const hash = await compileHash(names);
  checkHash(hash.wasm, hash.wat);
  const hashText = [
    '// Generated by packages/core/scripts/build-wasm.js from packages/core/assembly/xxh64.ts. Do not edit.',
    `// ${hash.wasm.length} bytes, scalar i64, no imports, own memory of ${HASH_PAGES} pages (exported).`,
    `export const HASH_WASM_BASE64 =\n  '${Buffer.from(hash.wasm).toString('base64')}';`,
    '',
  ].join('\n');
  await writeFile(hashOutTs, hashText);
  const hashWat = process.argv.indexOf('--hash-wat');
  if (hashWat > 0 && process.argv[hashWat + 1]) await writeFile(process.argv[hashWat + 1], hash.wat);
  process.stdout.write(`build-wasm: ${hash.wasm.length} bytes (xxh64) -> ${hashOutTs}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
