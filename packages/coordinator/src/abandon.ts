/**
 * Stopping a run that waits: after a stop (Ctrl-C, SIGTERM: the trainer's `signal`), the step in
 * flight may finish within a grace period; past it the trainer stops waiting for it. An executor
 * can wait for a long time (a cluster whose workers are all gone waits for new ones), and the
 * person who pressed Ctrl-C should not wait with it.
 */

/**
 * `work`'s value, or null when `signal` aborts and `work` has not settled `graceMs` after that (or
 * after now, when it is already aborted). With no signal or an infinite grace it is `work` itself.
 * A rejection of `work` after it was given up is swallowed (its owner closes the executor, which
 * fails it).
 */
export function unlessAbandoned<T>(work: Promise<T>, signal: AbortSignal | undefined, graceMs = Infinity): Promise<T | null> {
  if (!signal || !Number.isFinite(graceMs)) return work;
  return new Promise<T | null>((resolve, reject) => {
    let timer: NodeJS.Timeout | null = null;
    let settled = false;
    const giveUp = (): void => {
      timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        work.catch(() => {});
        resolve(null);
      }, graceMs);
    };
    const onAbort = (): void => giveUp();
    if (signal.aborted) giveUp();
    else signal.addEventListener('abort', onAbort, { once: true });
    const finish = (): void => {
      settled = true;
      if (timer) clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    work.then(
      (v) => {
        if (settled) return;
        finish();
        resolve(v);
      },
      (e: unknown) => {
        if (settled) return;
        finish();
        reject(e);
      },
    );
  });
}
