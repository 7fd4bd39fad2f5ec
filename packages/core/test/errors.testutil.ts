// Shared by the core's tests: assert that a call fails with a GradhubError of a given code.
import { expect } from 'vitest';
import { GradhubError } from '../src/errors.js';

/** Run fn, expect a GradhubError with `code`, return it. */
export function caught(fn: () => unknown, code: string): GradhubError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GradhubError);
    expect((err as GradhubError).code).toBe(code);
    return err as GradhubError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}
