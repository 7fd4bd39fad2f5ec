/**
 * Parameter-checksum throughput: XXH64 (`xxh64`, WebAssembly, and `xxh64Reference`, plain
 * TypeScript) over a parameter-sized buffer (42 MB: the 3072-2048-2048-10 MLP's float32 params),
 * seed 0, single thread. The two run interleaved (A/B in one process, one round each per
 * repetition) after a warm-up; each figure is the median over the repetitions. Run after
 * `npm run build`:
 *
 *   node bench/hash.js [--mb 42] [--reps 9]
 *
 * `benchHash(options)` returns the rows.
 */
import { pathToFileURL } from 'node:url';
import { xxh64, xxh64Reference, xxh64UsesWasm } from '@gradhub/core';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** @param {{ mb?: number, reps?: number }} [o] */
export function benchHash(o = {}) {
  const bytes = Math.round((o.mb ?? 42) * 1e6) & ~3;
  const reps = o.reps ?? 9;
  const data = new Float32Array(bytes / 4);
  let s = 1;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 31 - 1;
  }
  const impls = [
    ['xxh64 (wasm)', xxh64],
    ['xxh64Reference (ts)', xxh64Reference],
  ];
  const copy = new Uint8Array(bytes);
  const src = new Uint8Array(data.buffer);
  const ms = new Map(impls.map(([name]) => [name, []]));
  const copyMs = [];
  for (const [, fn] of impls) for (let i = 0; i < 2; i++) fn(data); // warm-up (tier-up)
  let agree = true;
  for (let r = 0; r < reps; r++) {
    const sums = [];
    for (const [name, fn] of impls) {
      const t = performance.now();
      sums.push(fn(data).join(','));
      ms.get(name).push(performance.now() - t);
    }
    if (sums[0] !== sums[1]) agree = false;
    const t = performance.now();
    copy.set(src);
    copyMs.push(performance.now() - t);
  }
  const row = (name, m) => ({ name, mb: bytes / 1e6, ms: +m.toFixed(2), mb_per_s: Math.round(bytes / 1e6 / (m / 1e3)) });
  return {
    wasm: xxh64UsesWasm(),
    agree,
    rows: [...impls.map(([name]) => row(name, median(ms.get(name)))), row('memcpy (Uint8Array.set)', median(copyMs))],
  };
}

function argValue(args, name) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const r = benchHash({ mb: Number(argValue(args, '--mb') ?? 42), reps: Number(argValue(args, '--reps') ?? 9) });
  console.log(`xxh64 on WebAssembly: ${r.wasm}; wasm == ts: ${r.agree}`);
  for (const x of r.rows) console.log(`${x.name.padEnd(26)} ${String(x.mb).padStart(6)} MB  ${x.ms.toFixed(2).padStart(8)} ms  ${String(x.mb_per_s).padStart(6)} MB/s`);
}
