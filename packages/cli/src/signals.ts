/**
 * Ctrl-C (SIGINT) and SIGTERM, the way torchrun and tqdm users expect them:
 *
 * - Before a command says it can stop cleanly (`graceful`), a signal ends the process at once: there
 *   is nothing to save yet (a download in progress never leaves a half-written file under a real name).
 * - Once graceful, the first signal aborts `signal`: the command finishes the step in flight (or
 *   abandons it after a few seconds), writes its checkpoint and files, and the process exits with
 *   128 + the signal's number (130 for SIGINT, 143 for SIGTERM; see `exitCode`). The command prints
 *   one line at once saying so (`graceful`'s `notice`).
 * - A second signal ends the process at once, with that signal's code.
 *
 * A worker started by the local launcher ignores SIGINT (`ignoreInterrupt`): Ctrl-C at a terminal
 * reaches the whole process group, and the launcher, not each worker, decides how the run stops (its
 * workers leave when it closes the cluster, or when their IPC channel to it closes).
 */

/** 128 + the signal's number, the shell's convention. */
export const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
export type StopSignalName = keyof typeof SIGNAL_EXIT_CODES;

export interface StopSignals {
  /** Aborted by the first signal once graceful; its reason is the signal's name. */
  readonly signal: AbortSignal;
  /** 130 or 143 when a signal stopped the command, else null. */
  exitCode(): number | null;
  /** From now on stop cleanly; `notice(signalName)` writes the one line that says what happens. */
  graceful(notice: (name: StopSignalName) => void): void;
  /** Remove the handlers. */
  dispose(): void;
}

export interface StopSignalOptions {
  /** Ends the process (process.exit). */
  readonly exit?: (code: number) => void;
  /** Where the immediate-exit line goes (stderr). */
  readonly write?: (line: string) => void;
  /** Leave SIGINT to the parent process (a launcher's worker). */
  readonly ignoreInterrupt?: boolean;
  /** The process to listen on (tests pass an EventEmitter). */
  readonly target?: Pick<NodeJS.Process, 'on' | 'off'>;
}

export function installStopSignals(opts: StopSignalOptions = {}): StopSignals {
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const write = opts.write ?? ((line: string) => void process.stderr.write(line + '\n'));
  const target = opts.target ?? process;
  const controller = new AbortController();
  let notice: ((name: StopSignalName) => void) | null = null;
  let code: number | null = null;
  const on = (name: StopSignalName): void => {
    if (name === 'SIGINT' && opts.ignoreInterrupt) return;
    if (code !== null || notice === null) {
      if (code === null) write(`gradhub: ${name}: stopped`);
      exit(SIGNAL_EXIT_CODES[name]);
      return;
    }
    code = SIGNAL_EXIT_CODES[name];
    notice(name);
    controller.abort(name);
  };
  const onInt = (): void => on('SIGINT');
  const onTerm = (): void => on('SIGTERM');
  target.on('SIGINT', onInt);
  target.on('SIGTERM', onTerm);
  return {
    signal: controller.signal,
    exitCode: () => code,
    graceful(n) {
      notice = n;
    },
    dispose() {
      target.off('SIGINT', onInt);
      target.off('SIGTERM', onTerm);
    },
  };
}
