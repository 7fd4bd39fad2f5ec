/** unlessAbandoned: the grace a stopped run gives the step in flight. Real timers, generous margins. */
import { describe, expect, it } from 'vitest';
import { unlessAbandoned } from '../src/abandon.js';

const later = <T>(ms: number, v: T): Promise<T> => new Promise((r) => setTimeout(() => r(v), ms));

describe('unlessAbandoned', () => {
  it('is the work itself without a signal or with an unlimited grace', async () => {
    const work = later(5, 1);
    expect(unlessAbandoned(work, undefined, 10)).toBe(work);
    expect(unlessAbandoned(work, new AbortController().signal)).toBe(work);
  });

  it('gives the work its value when it ends within the grace after the stop', async () => {
    const c = new AbortController();
    const p = unlessAbandoned(later(20, 'done'), c.signal, 10_000);
    c.abort();
    expect(await p).toBe('done');
  });

  it('waits as long as it takes when no stop comes', async () => {
    const c = new AbortController();
    expect(await unlessAbandoned(later(50, 'late'), c.signal, 1)).toBe('late');
  });

  it('gives up (null) a grace period after the stop, and swallows the work failing afterwards', async () => {
    const c = new AbortController();
    let fail!: (e: Error) => void;
    const work = new Promise<number>((_, reject) => (fail = reject));
    const p = unlessAbandoned(work, c.signal, 10);
    c.abort();
    expect(await p).toBeNull();
    fail(new Error('closed')); // no unhandled rejection
    await later(10, 0);
  });

  it('starts the grace at once when already stopped, and passes a failure within it on', async () => {
    const c = new AbortController();
    c.abort();
    expect(await unlessAbandoned(new Promise(() => {}), c.signal, 10)).toBeNull();
    await expect(unlessAbandoned(Promise.reject(new Error('boom')), c.signal, 10_000)).rejects.toThrow('boom');
  });
});
