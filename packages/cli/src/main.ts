#!/usr/bin/env node
/**
 * The `gradhub` command: argument parsing and wiring only. The entry point creates the pino logger
 * and passes it down; errors with a stable code end the process with a one-line message.
 */
import { GradhubError } from '@gradhub/core';
import { TRAINING_OPTIONS, CLUSTER_OPTIONS, WORKER_OPTIONS, THREADS_OPTION, parseOptions, formatOptions, type OptionSpec } from './options.js';
import { createLogger } from './logger.js';
import { createProgress } from './progress.js';
import { trainCommand, coordinatorCommand } from './train-command.js';
import { workerCommand } from './worker-command.js';
import { exportCommand, EXPORT_HELP } from './export-command.js';

const TRAIN_SPECS: readonly OptionSpec[] = [
  { name: 'workers', kind: 'int', arg: 'N', default: 0, min: 0, help: '0: compute in this process; N: start a coordinator and N local worker processes' },
  { ...THREADS_OPTION, help: 'threads computing each kernel call: of this process (--workers 0), of each local worker (--workers N); same bits for any N' },
  ...TRAINING_OPTIONS,
  ...CLUSTER_OPTIONS.filter((s) => s.name !== 'min-workers' && s.name !== 'token')
    .map((s) => (s.name === 'host' ? { ...s, default: '127.0.0.1' } : s)),
];
const COORDINATOR_SPECS: readonly OptionSpec[] = [...TRAINING_OPTIONS, ...CLUSTER_OPTIONS];

const USAGE = `gradhub: train one neural network on many machines and browser tabs, bit for bit like PyTorch.

Usage:
  gradhub train [--workers N] [training options]     train on this machine (N local worker processes)
  gradhub coordinator [training options] [--port P] [--token T] [--min-workers N]
                                                     hold the model and wait for workers anywhere
  gradhub worker --url ws://HOST:PORT --token T      lend this machine to a coordinator
  gradhub export [--format onnx|safetensors] [--force] CHECKPOINT OUT
                                                     write a checkpoint's weights for ONNX Runtime / PyTorch
  gradhub help [COMMAND]                             this text, or one command's options

Examples:
  npx gradhub train --workers 2                      CIFAR-10 downloaded into ./data, 2 workers
  npx gradhub train --workers 2 --data ../shared/data/cifar10-sample --model 3072,256,10 --epochs 1
`;

function help(command?: string): string {
  switch (command) {
    case 'train':
      return `gradhub train [options]\n\nTrains on this machine: --workers 0 computes in this process, --workers N starts a\ncoordinator and N worker processes over loopback. Same result, bit for bit, for any N.\n\n${formatOptions(TRAIN_SPECS)}\n`;
    case 'coordinator':
      return `gradhub coordinator [options]\n\nHolds the model, waits for workers (gradhub worker, or a browser tab), trains.\n\n${formatOptions(COORDINATOR_SPECS)}\n`;
    case 'worker':
      return `gradhub worker --url URL --token T [options]\n\nComputes gradients for a coordinator; reconnects when it goes away.\n\n${formatOptions(WORKER_OPTIONS)}\n`;
    case 'export':
      return EXPORT_HELP;
    default:
      return USAGE;
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(help(command === 'help' ? rest[0] : undefined));
    return 0;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(help(command));
    return 0;
  }
  const controller = new AbortController();
  let interrupts = 0;
  process.on('SIGINT', () => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write('\nstopping after this step (Ctrl-C again to quit at once)\n');
    controller.abort();
  });
  process.on('SIGTERM', () => controller.abort());
  switch (command) {
    case 'train': {
      const o = parseOptions(rest, TRAIN_SPECS, process.env);
      const logger = createLogger((o['log-level'] as string | undefined) ?? 'warn', 'gradhub');
      await trainCommand(o, logger, createProgress(), controller.signal);
      return 0;
    }
    case 'coordinator': {
      const o = parseOptions(rest, COORDINATOR_SPECS, process.env);
      const logger = createLogger((o['log-level'] as string | undefined) ?? 'info', 'gradhub-coordinator');
      await coordinatorCommand(o, logger, createProgress(), controller.signal);
      return 0;
    }
    case 'worker': {
      const o = parseOptions(rest, WORKER_OPTIONS, process.env);
      const logger = createLogger(o['log-level'] as string, 'gradhub-worker');
      await workerCommand(o, logger, controller.signal);
      return 0;
    }
    case 'export':
      await exportCommand(rest, createLogger('warn', 'gradhub'));
      return 0;
    default:
      throw new GradhubError('E_USAGE', `unknown command "${command}" (commands: train, coordinator, worker, export, help)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof GradhubError) {
      process.stderr.write(`gradhub: ${err.code}: ${err.message}\n`);
      process.exit(err.code === 'E_USAGE' ? 2 : 1);
    }
    process.stderr.write(`gradhub: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
