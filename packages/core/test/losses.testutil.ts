// Helpers shared by the loss tests (not a test file itself).
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { REFERENCE_DIR } from '../../../test/fixtures/index.js';

/** Parses a file of test/fixtures/reference/ (the PyTorch reference numbers). */
export function loadRef<T>(file: string): T {
  return JSON.parse(readFileSync(path.join(REFERENCE_DIR, file), 'utf8')) as T;
}

/** |a - e| <= rtol*|e| + atol elementwise, failing with a message that names the first bad element. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (!(Math.abs(a - e) <= rtol * Math.abs(e) + atol)) expect.fail(`${what}[${i}]: got ${a}, expected ${e} (diff ${a - e})`);
  }
}

/** A nested list of the reference JSON; non-finite numbers are the strings "NaN", "Infinity", "-Infinity". */
export type Nested = number | string | Nested[];

/** A reference number (the JSON has no NaN or infinities, so they are written as strings). */
export function refNumber(v: number | string): number {
  return typeof v === 'number' ? v : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : Number.NaN;
}

/** Flatten a nested list row-major, with its shape. */
export function flat(v: Nested): { data: number[]; shape: number[] } {
  const shape: number[] = [];
  let cur: Nested = v;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  const data: number[] = [];
  const walk = (x: Nested): void => {
    if (Array.isArray(x)) x.forEach(walk);
    else data.push(refNumber(x));
  };
  walk(v);
  return { data, shape };
}
