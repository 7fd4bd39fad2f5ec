#!/usr/bin/env node
/**
 * The `gradhub` command: argument parsing and wiring only. The entry point creates the pino logger
 * and passes it down; errors with a stable code end the process with a one-line message (exit 2
 * for usage errors, 1 for others); a run stopped by SIGINT or SIGTERM exits 130 or 143 (signals.ts).
 */
import { GradhubError, isGradhubError } from '@gradhub/core';
import { TRAIN_SPECS, COORDINATOR_SPECS, WORKER_OPTIONS, parseOptions, formatOptions } from './options.js';
import { createLogger, defaultLogFormat, type LogFormat } from './logger.js';
import { createProgress } from './progress.js';
import { trainCommand, coordinatorCommand, type TrainOutcome } from './train-command.js';
import { workerCommand } from './worker-command.js';
import { exportCommand, EXPORT_HELP } from './export-command.js';
import { installStopSignals, type StopSignals } from './signals.js';
import { didYouMean } from './suggest.js';
import { GRADHUB_VERSION } from './version.js';

const COMMANDS = ['train', 'coordinator', 'worker', 'export', 'help', 'version'];

const USAGE = `gradhub ${GRADHUB_VERSION}: train one neural network on many machines and browser tabs, bit for bit like PyTorch.

Usage:
  gradhub train [--workers N] [training options]     train on this machine (N local worker processes)
  gradhub coordinator [training options] [--port P] [--token T] [--min-workers N]
                                                     hold the model and wait for workers anywhere
  gradhub worker --url ws://HOST:PORT --token T      lend this machine to a coordinator
  gradhub export [--format onnx|safetensors] [--force] CHECKPOINT OUT
                                                     write a checkpoint's weights for ONNX Runtime / PyTorch
  gradhub help [COMMAND]                             this text, or one command's options
  gradhub --version                                  the version (also -V, gradhub version)

Every train and coordinator run keeps its results in a run folder (--run-dir; default
runs/YYYYMMDD-HHMMSS): run.json (settings, version, command line), metrics.jsonl, checkpoints/,
model.safetensors. Ctrl-C (or SIGTERM) finishes the step in flight, saves a checkpoint and exits
130 (143); a second one quits at once. Continue a run with --resume --run-dir DIR.

Examples:
  npx gradhub train --workers 2                      CIFAR-10 downloaded into ./data, 2 workers
  npx gradhub train --workers 2 --data test/fixtures/cifar10 --model 3072,256,10 --epochs 1
                                                     offline, on the clone's small CIFAR-10 subset
  npx gradhub train --resume --run-dir runs/20261205-131500
                                                     continue a run where it stopped
`;

function help(command: string): string {
  switch (command) {
    case 'train':
      return `gradhub train [options]\n\nTrains on this machine: --workers 0 computes in this process, --workers N starts a\ncoordinator and N worker processes over loopback. Same result, bit for bit, for any N.\n\n${formatOptions(TRAIN_SPECS)}\n`;
    case 'coordinator':
      return `gradhub coordinator [options]\n\nHolds the model, waits for workers (gradhub worker, or a browser tab), trains.\n\n${formatOptions(COORDINATOR_SPECS)}\n`;
    case 'worker':
      return `gradhub worker --url URL --token T [options]\n\nComputes gradients for a coordinator; reconnects when it goes away.\n\n${formatOptions(WORKER_OPTIONS)}\n`;
    case 'export':
      return EXPORT_HELP;
    case 'help':
    case 'version':
      return USAGE;
    default:
      throw new GradhubError('E_USAGE', `no help for "${command}": not a command${didYouMean(command, COMMANDS) || ` (commands: ${COMMANDS.join(', ')})`}`);
  }
}

/** The logger of a training command: text lines clear the progress bar first. */
/** The options with --log-format resolved (the local launcher passes it on to its workers). */
function withLogFormat<O extends { readonly 'log-format': LogFormat | undefined }>(o: O): O & { readonly 'log-format': LogFormat } {
  return { ...o, 'log-format': o['log-format'] ?? defaultLogFormat() };
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === '--version' || command === '-V' || command === 'version') {
    process.stdout.write(`gradhub ${GRADHUB_VERSION}\n`);
    return 0;
  }
  if (command === 'help') {
    process.stdout.write(rest[0] === undefined ? USAGE : help(rest[0]));
    return 0;
  }
  if (!COMMANDS.includes(command)) {
    const hint = didYouMean(command, [...COMMANDS, '--version', '--help']);
    throw new GradhubError('E_USAGE', `unknown command "${command}"${hint || ` (commands: ${COMMANDS.join(', ')}; see gradhub --help)`}`);
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(help(command));
    return 0;
  }
  let stop: StopSignals | null = null;
  const stoppedCode = (outcome: TrainOutcome): number => (outcome === 'stopped' ? (stop?.exitCode() ?? 130) : 0);
  switch (command) {
    case 'train':
    case 'coordinator': {
      const progress = createProgress();
      stop = installStopSignals();
      if (command === 'train') {
        const o = withLogFormat(parseOptions(rest, TRAIN_SPECS, process.env));
        const logger = createLogger(o['log-level'] ?? 'warn', 'gradhub', o['log-format'], () => progress.clear());
        const ctx = { logger, progress, stop, invocation: { command, argv: rest, specs: TRAIN_SPECS, env: process.env } } as const;
        return stoppedCode(await trainCommand(o, ctx));
      }
      const o = withLogFormat(parseOptions(rest, COORDINATOR_SPECS, process.env));
      const logger = createLogger(o['log-level'] ?? 'info', 'gradhub-coordinator', o['log-format'], () => progress.clear());
      const ctx = { logger, progress, stop, invocation: { command, argv: rest, specs: COORDINATOR_SPECS, env: process.env } } as const;
      return stoppedCode(await coordinatorCommand(o, ctx));
    }
    case 'worker': {
      const o = withLogFormat(parseOptions(rest, WORKER_OPTIONS, process.env));
      const logger = createLogger(o['log-level'], 'gradhub-worker', o['log-format']);
      stop = installStopSignals({ ignoreInterrupt: o['exit-with-parent'] });
      await workerCommand(o, logger, stop);
      return stop.exitCode() ?? 0;
    }
    case 'export':
      await exportCommand(rest, createLogger('warn', 'gradhub'));
      return 0;
    default:
      throw new GradhubError('E_USAGE', `unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (isGradhubError(err)) {
      process.stderr.write(`gradhub: ${err.code}: ${err.message}\n`);
      process.exit(err.code === 'E_USAGE' ? 2 : 1);
    }
    process.stderr.write(`gradhub: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
