/**
 * The option parser (options.ts) on its own: every error message it gives, the environment
 * variables and their precedence, the defaults of every command's table, and the typed result.
 */
import { describe, expect, it } from 'vitest';
import { isGradhubError } from '@gradhub/core';
import {
  COORDINATOR_SPECS, TRAIN_SPECS, WORKER_OPTIONS, envName, formatOptions, parseOptions, type OptionSpec,
} from '../src/options.js';
import { EXPORT_OPTIONS } from '../src/export-command.js';

/** The E_USAGE message parsing `argv` (and `env`) against `specs` gives. */
function usageError(argv: readonly string[], specs: readonly OptionSpec[] = TRAIN_SPECS, env: NodeJS.ProcessEnv = {}): string {
  try {
    parseOptions(argv, specs, env);
  } catch (err) {
    expect(isGradhubError(err, 'E_USAGE'), String(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error(`parsing ${argv.join(' ')} did not fail`);
}

describe('parseOptions: defaults', () => {
  it.each([
    ['train', TRAIN_SPECS],
    ['coordinator', COORDINATOR_SPECS],
    ['worker', WORKER_OPTIONS],
    ['export', EXPORT_OPTIONS],
  ] as const)('%s: every option with a default has it, typed by its kind; the others are absent', (_name, specs) => {
    const o = parseOptions([], specs) as Record<string, unknown>;
    for (const s of specs as readonly OptionSpec[]) {
      if (s.default === undefined) {
        expect(o[s.name], s.name).toBeUndefined();
        continue;
      }
      const v = o[s.name];
      if (s.kind === 'sizes') expect(v, s.name).toEqual(String(s.default).split(',').map(Number));
      else if (s.kind === 'int' || s.kind === 'number') expect(v, s.name).toBe(Number(s.default));
      else expect(v, s.name).toBe(s.default);
    }
  });

  it('gives the typed settings the rest of the CLI reads', () => {
    const o = parseOptions(['--model', '3072,16,10', '--batch-size=32', '--nesterov', '--momentum', '0.9', '--backend', 'ts'], TRAIN_SPECS);
    const sizes: number[] = o['model'];
    const batch: number = o['batch-size'];
    const backend: 'wasm' | 'ts' = o['backend'];
    const steps: number | undefined = o['steps'];
    expect({ sizes, batch, backend, steps, nesterov: o['nesterov'], momentum: o['momentum'], host: o['host'], workers: o['workers'] })
      .toEqual({ sizes: [3072, 16, 10], batch: 32, backend: 'ts', steps: undefined, nesterov: true, momentum: 0.9, host: '127.0.0.1', workers: 0 });
    // The coordinator listens on every interface by default; train on loopback.
    expect(parseOptions([], COORDINATOR_SPECS)['host']).toBe('0.0.0.0');
    expect(parseOptions([], COORDINATOR_SPECS)['min-workers']).toBe(1);
  });
});

describe('parseOptions: environment variables', () => {
  it('maps every flag to GRADHUB_ + its name in capitals', () => {
    expect(envName('batch-size')).toBe('GRADHUB_BATCH_SIZE');
    expect(envName('no-shuffle')).toBe('GRADHUB_NO_SHUFFLE');
  });

  it('reads them over the defaults; a flag on the command line wins; empty ones are ignored', () => {
    const env = { GRADHUB_BATCH_SIZE: '128', GRADHUB_NESTEROV: 'true', GRADHUB_LR: '0.5', GRADHUB_SEED: '' };
    const o = parseOptions(['--lr', '0.25'], TRAIN_SPECS, env);
    expect([o['batch-size'], o['nesterov'], o['lr'], o['seed']]).toEqual([128, true, 0.25, 0]);
    expect(parseOptions([], TRAIN_SPECS, { GRADHUB_NESTEROV: 'false' })['nesterov']).toBe(false);
  });

  it('names the variable in its errors', () => {
    expect(usageError([], TRAIN_SPECS, { GRADHUB_BATCH_SIZE: 'x' })).toBe('GRADHUB_BATCH_SIZE expects an integer, got "x"');
    expect(usageError([], TRAIN_SPECS, { GRADHUB_NESTEROV: 'yes' })).toBe('GRADHUB_NESTEROV must be true or false, got "yes"');
    expect(usageError([], TRAIN_SPECS, { GRADHUB_EPOCHS: '0' })).toBe('GRADHUB_EPOCHS must be >= 1, got 0');
    expect(usageError([], TRAIN_SPECS, { GRADHUB_BACKEND: 'gpu' })).toBe('GRADHUB_BACKEND must be one of wasm, ts, got "gpu"');
  });
});

describe('parseOptions: every error message', () => {
  it('an argument that is not an option', () => {
    expect(usageError(['train'])).toBe('unexpected argument "train" (options start with --; see --help)');
  });

  it('an unknown option, with the nearest one when there is one', () => {
    expect(usageError(['--epoch', '3'])).toBe('unknown option --epoch (did you mean --epochs?)');
    expect(usageError(['--zzzzzzzz'])).toBe('unknown option --zzzzzzzz (see --help)');
    // Hidden options are accepted but never suggested.
    expect(parseOptions(['--stop-grace-ms', '10'], TRAIN_SPECS)['stop-grace-ms']).toBe(10);
  });

  it('a flag given a value, and an option without one', () => {
    expect(usageError(['--nesterov=true'])).toBe('--nesterov is a flag and takes no value');
    expect(usageError(['--lr'])).toBe('--lr needs a value (X)');
  });

  it('numbers: not a number, not an integer, below the minimum', () => {
    expect(usageError(['--lr', 'fast'])).toBe('--lr expects a number, got "fast"');
    expect(usageError(['--lr', ''])).toBe('--lr expects a number, got ""');
    expect(usageError(['--batch-size', '1.5'])).toBe('--batch-size expects an integer, got "1.5"');
    expect(usageError(['--batch-size', '0'])).toBe('--batch-size must be >= 1, got 0');
    expect(usageError(['--lr', '-1'])).toBe('--lr must be >= 0, got -1');
    expect(usageError(['--lr', 'Infinity'])).toBe('--lr expects a number, got "Infinity"');
  });

  it('numbers above their bound (one Node timer, one WebAssembly memory, a 32-bit seed, a port)', () => {
    expect(usageError(['--batch-size', '65537'])).toBe('--batch-size must be <= 65536, got 65537');
    expect(usageError(['--workers', '257'])).toBe('--workers must be <= 256, got 257');
    expect(usageError(['--seed', '4294967296'])).toBe('--seed must be <= 4294967295, got 4294967296');
    expect(usageError(['--port', '65536'])).toBe('--port must be <= 65535, got 65536');
    expect(usageError(['--heartbeat-ms', '2147483648'], COORDINATOR_SPECS)).toBe('--heartbeat-ms must be <= 2147483647, got 2147483648');
    expect(usageError(['--grace-ms', '1e12'], WORKER_OPTIONS)).toBe('--grace-ms must be <= 2147483647, got 1000000000000');
    expect(usageError([], TRAIN_SPECS, { GRADHUB_THREADS: '1000' })).toBe('GRADHUB_THREADS must be <= 256, got 1000');
    // The bound itself is fine, and --help states it.
    expect(parseOptions(['--batch-size', '65536', '--seed', '4294967295'], TRAIN_SPECS)['batch-size']).toBe(65536);
    expect(formatOptions(TRAIN_SPECS)).toMatch(/--chunk N .*\(default: 16; at most 65536\)/);
  });

  it('choices, with the nearest one', () => {
    expect(usageError(['--backend', 'wasn'])).toBe('--backend must be one of wasm, ts, got "wasn" (did you mean wasm?)');
    expect(usageError(['--log-level', 'loud'])).toMatch(/^--log-level must be one of fatal, error, warn, info, debug, trace, silent, got "loud"/);
    expect(usageError(['--lr-schedule', 'linear'])).toMatch(/^--lr-schedule must be one of constant, step, cosine, got "linear"/);
    expect(usageError(['--log-format', 'xml'], WORKER_OPTIONS)).toMatch(/^--log-format must be one of text, json, got "xml"/);
  });

  it('layer sizes', () => {
    for (const bad of ['3072', '3072,,10', '3072,0,10', '3072,a,10', '3072,1.5,10']) {
      expect(usageError(['--model', bad])).toBe(`--model expects at least two positive integers like 3072,2048,2048,10, got "${bad}"`);
    }
    expect(parseOptions(['--model', '3072, 64 ,10'], TRAIN_SPECS)['model']).toEqual([3072, 64, 10]);
  });

  it('options of another command are unknown here', () => {
    expect(usageError(['--url', 'ws://x'])).toMatch(/^unknown option --url/);
    expect(usageError(['--workers', '2'], COORDINATOR_SPECS)).toMatch(/^unknown option --workers/);
    expect(usageError(['--min-workers', '2'], TRAIN_SPECS)).toMatch(/^unknown option --min-workers/);
  });
});
