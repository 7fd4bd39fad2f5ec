/**
 * The tests' one polling helper: wait until a probe answers, with a deadline that says what it
 * waited for. Every test that waits for something to happen (a line of output, a step in a metrics
 * file, a worker to leave, a container's /api/status) waits here.
 */

/** Thrown by a probe of pollUntil to stop polling at once (waiting longer cannot help). */
export class PollAbort extends Error {}

export interface PollOptions {
  /** The state the test was waiting on, added to the timeout's message. */
  readonly describe?: () => string | Promise<string>;
  /** Time between probes, ms (default 100). */
  readonly everyMs?: number;
  /** Stop waiting (reject) when this settles first, e.g. the process that was to do it exited. */
  readonly abort?: Promise<{ readonly stderr?: string }>;
}

/**
 * Poll `probe` (sync or async) until it returns something truthy; probe errors count as "not yet"
 * (a coordinator restarting refuses connections), except PollAbort. Rejects after `ms` with `what`,
 * the last probe error and `describe()`, or at once when `abort` settles.
 */
export async function pollUntil<T>(
  probe: () => T | null | undefined | false | Promise<T | null | undefined | false>, ms: number, what: string, opts: PollOptions = {},
): Promise<T> {
  const t0 = Date.now();
  let lastError = '';
  let aborted: { stderr?: string } | null = null;
  void opts.abort?.then((r) => (aborted = r ?? {}), () => (aborted = {}));
  for (;;) {
    if (aborted !== null) throw new Error(`process ended while waiting for ${what}: ${(aborted as { stderr?: string }).stderr ?? ''}`);
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      if (err instanceof PollAbort) throw err;
      lastError = (err as Error).message;
    }
    if (Date.now() - t0 > ms) {
      const state = opts.describe ? await opts.describe() : '';
      throw new Error(`timed out after ${ms} ms waiting for ${what}${state ? `; ${state}` : ''}${lastError ? `; last error: ${lastError}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, opts.everyMs ?? 100));
  }
}
