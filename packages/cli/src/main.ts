#!/usr/bin/env node
/**
 * The `gradhub` command: argument parsing and wiring only. The entry point creates the pino logger
 * and passes it down; errors with a stable code end the process with a one-line message (exit 2
 * for usage errors, 1 for others); a run stopped by SIGINT or SIGTERM exits 130 or 143 (signals.ts).
 */
import { GradhubError, isGradhubError } from '@gradhub/core';
import {
  TRAINING_OPTIONS, CLUSTER_OPTIONS, WORKER_OPTIONS, THREADS_OPTION, parseOptions, formatOptions, type OptionSpec, type ParsedOptions,
} from './options.js';
import { createLogger, defaultLogFormat, type LogFormat } from './logger.js';
import { createProgress } from './progress.js';
import { trainCommand, coordinatorCommand, type TrainOutcome } from './train-command.js';
import { workerCommand } from './worker-command.js';
import { exportCommand, EXPORT_HELP } from './export-command.js';
import { installStopSignals, type StopSignals } from './signals.js';
import { didYouMean } from './suggest.js';
import { GRADHUB_VERSION } from './version.js';

const TRAIN_SPECS: readonly OptionSpec[] = [
  { name: 'workers', kind: 'int', arg: 'N', default: 0, min: 0, help: '0: compute in this process; N: start a coordinator and N local worker processes' },
  { ...THREADS_OPTION, help: 'threads computing each kernel call: of this process (--workers 0), of each local worker (--workers N); same bits for any N' },
  ...TRAINING_OPTIONS,
  ...CLUSTER_OPTIONS.filter((s) => s.name !== 'min-workers' && s.name !== 'token')
    .map((s) => (s.name === 'host' ? { ...s, default: '127.0.0.1' } : s)),
];
const COORDINATOR_SPECS: readonly OptionSpec[] = [...TRAINING_OPTIONS, ...CLUSTER_OPTIONS];

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
function logFormatOf(o: ParsedOptions): LogFormat {
  // The resolved format is passed on (the local launcher gives it to its workers).
  o['log-format'] ??= defaultLogFormat();
  return o['log-format'] as LogFormat;
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
      const specs = command === 'train' ? TRAIN_SPECS : COORDINATOR_SPECS;
      const o = parseOptions(rest, specs, process.env);
      const progress = createProgress();
      const logger = createLogger((o['log-level'] as string | undefined) ?? (command === 'train' ? 'warn' : 'info'),
        command === 'train' ? 'gradhub' : 'gradhub-coordinator', logFormatOf(o), () => progress.clear());
      stop = installStopSignals();
      const ctx = { logger, progress, stop, invocation: { command, argv: rest, specs, env: process.env } } as const;
      return stoppedCode(await (command === 'train' ? trainCommand(o, ctx) : coordinatorCommand(o, ctx)));
    }
    case 'worker': {
      const o = parseOptions(rest, WORKER_OPTIONS, process.env);
      const logger = createLogger(o['log-level'] as string, 'gradhub-worker', logFormatOf(o));
      stop = installStopSignals({ ignoreInterrupt: o['exit-with-parent'] === true });
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
