/**
 * `gradhub export --format onnx|safetensors CHECKPOINT OUT`: the trained model leaves the cluster.
 *
 * CHECKPOINT is a checkpoint file (`ckpt-*.msgpack`) or a --checkpoint-dir folder, meaning its newest
 * valid checkpoint (a corrupt newer one is skipped with a warning, as on --resume). OUT gets
 *   onnx:        an ONNX model ONNX Runtime runs (input "input" float (N, 3072) = byte / 255, output
 *                "logits"; a run with --normalize exports a graph that normalises by itself);
 *   safetensors: `layers.{i}.weight` / `layers.{i}.bias` as PyTorch names them (what --export writes).
 * --format may be left out when OUT ends in .onnx or .safetensors. OUT is written atomically (a temp
 * file renamed), and equal checkpoints give equal files. An existing OUT is an E_USAGE error unless
 * --force (then it is replaced).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { ErrorCode, GradhubError, modelSpec, type ModelSpec } from '@gradhub/core';
import { modelToOnnx, modelToSafetensors, writeFileAtomic, readCheckpoint, readLatestCheckpoint, type CheckpointState } from '@gradhub/coordinator';
import { checkWritable } from './output-checks.js';
import { formatOptions, parseOptions, type OptionSpec } from './options.js';

export const EXPORT_FORMATS = ['onnx', 'safetensors'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const EXPORT_OPTIONS = [
  { name: 'format', kind: 'string', arg: 'FORMAT', help: 'onnx (for ONNX Runtime) or safetensors (for PyTorch); default: from OUT\'s extension' },
  { name: 'force', kind: 'boolean', default: false, help: 'replace OUT when it exists (without it: an error, OUT untouched)' },
] as const satisfies readonly OptionSpec[];

/** `gradhub export --help`. */
export const EXPORT_HELP = `gradhub export [--format onnx|safetensors] [--force] CHECKPOINT OUT

Writes the weights of a checkpoint (a ckpt-*.msgpack file, or a --checkpoint-dir folder: its newest
valid checkpoint) as an ONNX model for ONNX Runtime or as safetensors for PyTorch.
ONNX: input "input" float32 (N, 3072) = pixel bytes / 255 (planes R, G, B), output "logits" (N, 10);
a run trained with --normalize exports a graph that applies the CIFAR-10 mean/std itself.
Safetensors: a run trained with --normalize records that mean and std in __metadata__
(gradhub_normalize_mean, gradhub_normalize_std). An existing OUT is replaced only with --force.

${formatOptions(EXPORT_OPTIONS)}
`;

export interface ExportResult {
  readonly format: ExportFormat;
  /** The checkpoint file the weights came from. */
  readonly checkpoint: string;
  readonly step: number;
  readonly out: string;
  readonly bytes: number;
}

export interface ExportIo {
  /** Environment for the GRADHUB_* variables (GRADHUB_FORMAT). Default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Where the one-line summary goes. Default stdout. */
  readonly print?: (line: string) => void;
}

/**
 * Run `gradhub export` with the arguments after the command name. Throws GradhubError: E_USAGE (bad
 * arguments), E_OUTPUT_UNWRITABLE (OUT is a folder, or cannot be written), E_NO_CHECKPOINT (no such
 * file, or a folder without checkpoints), E_CHECKPOINT_CORRUPT.
 */
export async function exportCommand(argv: string[], logger: Logger, io: ExportIo = {}): Promise<ExportResult> {
  const env = io.env ?? process.env;
  const print = io.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const { flags, positionals } = splitArgs(argv);
  const o = parseOptions(flags, EXPORT_OPTIONS, env);
  if (positionals.length !== 2) {
    throw new GradhubError(
      ErrorCode.E_USAGE,
      `export takes CHECKPOINT and OUT, got ${positionals.length} argument${positionals.length === 1 ? '' : 's'}` +
        `${positionals.length > 0 ? ` (${positionals.map((p) => `"${p}"`).join(' ')})` : ''}: gradhub export --format onnx|safetensors CHECKPOINT OUT`,
    );
  }
  const [source, out] = positionals;
  const format = chooseFormat(o['format'], out);
  checkWritable(out, 'file', 'OUT');
  if (!o['force'] && fs.existsSync(out)) {
    throw new GradhubError(ErrorCode.E_USAGE, `OUT ${out} exists: pass --force to replace it, or choose another file`);
  }
  const log = logger.child({ module: 'export' });

  const ckpt = loadCheckpoint(source, logger);
  const spec = specOf(ckpt.state.settings.model, ckpt.file);
  const normalize = ckpt.state.settings.normalize === true;
  const bytes = format === 'onnx'
    ? modelToOnnx(spec, ckpt.state.params, { normalize })
    : modelToSafetensors(spec, ckpt.state.params, { normalize });
  writeFileAtomic(out, bytes);
  log.info({ format, checkpoint: ckpt.file, step: ckpt.state.step, out, bytes: bytes.length, normalize }, 'model exported');
  print(`exported step ${ckpt.state.step} of ${ckpt.file} to ${out} (${format}, ${bytes.length} bytes, model ${spec.sizes.join(',')}${!normalize ? '' : format === 'onnx' ? ', the graph normalises its input' : ', trained with --normalize: normalise inputs before use (mean and std are in its metadata)'})`);
  return { format, checkpoint: ckpt.file, step: ckpt.state.step, out, bytes: bytes.length };
}

/** Options (with their values) apart from positional arguments. */
function splitArgs(argv: readonly string[]): { flags: string[]; positionals: string[] } {
  const byName = new Map<string, OptionSpec>(EXPORT_OPTIONS.map((s) => [s.name, s]));
  const flags: string[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('--')) {
      positionals.push(a);
      continue;
    }
    flags.push(a);
    const spec = byName.get(a.slice(2));
    if (spec !== undefined && spec.kind !== 'boolean' && i + 1 < argv.length) flags.push(argv[++i]);
  }
  return { flags, positionals };
}

function chooseFormat(flag: string | undefined, out: string): ExportFormat {
  if (flag !== undefined) {
    if ((EXPORT_FORMATS as readonly string[]).includes(flag)) return flag as ExportFormat;
    throw new GradhubError(ErrorCode.E_USAGE, `--format must be onnx or safetensors, got "${flag}"`);
  }
  const ext = path.extname(out).toLowerCase();
  if (ext === '.onnx') return 'onnx';
  if (ext === '.safetensors') return 'safetensors';
  throw new GradhubError(ErrorCode.E_USAGE, `--format onnx|safetensors is needed (OUT "${out}" ends in neither .onnx nor .safetensors)`);
}

function loadCheckpoint(source: string, logger: Logger): { state: CheckpointState; file: string } {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(source);
  } catch (err) {
    throw new GradhubError(ErrorCode.E_NO_CHECKPOINT, `CHECKPOINT ${source} does not exist (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): give a ckpt-*.msgpack file or the --checkpoint-dir of a run`);
  }
  if (stat.isDirectory()) {
    const latest = readLatestCheckpoint(source, logger);
    if (latest === null) {
      throw new GradhubError(ErrorCode.E_NO_CHECKPOINT, `${source} holds no checkpoint (ckpt-*.msgpack): is it the --checkpoint-dir of a run that wrote one?`);
    }
    return { state: latest, file: latest.file };
  }
  return { state: readCheckpoint(source), file: source };
}

/** The model of a checkpoint's settings.model ("3072,32,10" or [3072, 32, 10]; readCheckpoint checked it). */
function specOf(model: unknown, file: string): ModelSpec {
  const sizes = Array.isArray(model) ? model.map(Number) : String(model).split(',').map((s) => Number(s.trim()));
  try {
    return modelSpec(sizes);
  } catch (err) {
    throw new GradhubError(ErrorCode.E_CHECKPOINT_CORRUPT, `${file}: settings.model ${JSON.stringify(model)} is not a model: ${(err as Error).message}`);
  }
}

