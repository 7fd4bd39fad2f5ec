/**
 * `gradhub export`: from a checkpoint written by writeCheckpoint (a file, or its folder meaning the
 * newest one) to an ONNX file ONNX Runtime runs and a safetensors file with the PyTorch names.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CIFAR10_IMAGE_BYTES, CIFAR10_MEAN, CIFAR10_STD, decodeSafetensorsWithMetadata, isGradhubError, modelSpec, parseCifarBatch, pixelsToInput,
  safetensorsToParams, tensorEntries,
} from '@gradhub/core';
import { modelToOnnx, writeCheckpoint, type CheckpointState } from '@gradhub/coordinator';
import { exportCommand } from '../src/export-command.js';
import { CIFAR10_DIR } from '../../../test/fixtures/index.js';

const SIZES = [3072, 16, 10];
const spec = modelSpec(SIZES);
const logger = pino({ level: 'silent' });
const quiet = { env: {}, print: () => {} };

const temps: string[] = [];
function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-export-'));
  temps.push(d);
  return d;
}
afterEach(() => {
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function params(seed: number): Float32Array {
  const p = new Float32Array(spec.paramCount);
  for (let k = 0; k < p.length; k++) p[k] = Math.fround(Math.sin(k * 0.731 + seed) * 0.05);
  return p;
}

function state(step: number, p: Float32Array, normalize = false): CheckpointState {
  return {
    format_version: 1,
    settings: { model: SIZES.join(','), batch: 64, chunk: 16, seed: 0, shuffle: true, normalize, lr: 0.01, momentum: 0, dampening: 0, weight_decay: 0, nesterov: false },
    step, epoch: 0, sampler: { epoch: 0, position: step * 64 }, params: p, optimizer: { momentum_buffer: null }, metrics: [],
  };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isGradhubError(err)) return err.code;
    throw err;
  }
  return 'no error';
}

describe('gradhub export', () => {
  it('writes ONNX from the newest checkpoint of a folder, which ONNX Runtime runs', async () => {
    const dir = tempDir();
    writeCheckpoint(dir, state(10, params(1)), 3);
    writeCheckpoint(dir, state(20, params(2)), 3);
    const out = path.join(tempDir(), 'sub', 'model.onnx');
    const lines: string[] = [];
    const r = await exportCommand(['--format', 'onnx', dir, out], logger, { env: {}, print: (l) => lines.push(l) });
    expect(r).toMatchObject({ format: 'onnx', step: 20, out });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('step 20');
    const bytes = fs.readFileSync(out);
    expect(bytes.equals(Buffer.from(modelToOnnx(spec, params(2), { normalize: false })))).toBe(true);
    expect(fs.readdirSync(path.dirname(out))).toEqual(['model.onnx']);

    const test = parseCifarBatch(fs.readFileSync(path.join(CIFAR10_DIR, 'test_batch.bin')), 'test_batch.bin');
    const x = new Float32Array(4 * CIFAR10_IMAGE_BYTES);
    pixelsToInput(test.pixels, 0, 4, x, false);
    const session = await ort.InferenceSession.create(bytes);
    const res = await session.run({ input: new ort.Tensor('float32', x, [4, CIFAR10_IMAGE_BYTES]) });
    expect(res.logits.dims).toEqual([4, 10]);
    await session.release();
  });

  it('writes safetensors with the PyTorch names and the exact weights from a checkpoint file', async () => {
    const dir = tempDir();
    const file = writeCheckpoint(dir, state(7, params(3)), 3);
    const out = path.join(dir, 'weights.safetensors');
    const r = await exportCommand([`--format=safetensors`, file, out], logger, quiet);
    expect(r).toMatchObject({ format: 'safetensors', step: 7, checkpoint: file });
    const { tensors, metadata } = decodeSafetensorsWithMetadata(fs.readFileSync(out), out);
    expect([...tensors.keys()]).toEqual(tensorEntries(spec).map((t) => t.name));
    expect(metadata).toEqual({ format: 'pt', gradhub_model: '3072,16,10' });
    const back = safetensorsToParams(spec, tensors, out);
    expect(Buffer.from(back.buffer).equals(Buffer.from(params(3).buffer))).toBe(true);
  });

  it('takes the format from the extension or GRADHUB_FORMAT, and keeps the run\'s --normalize in the ONNX graph', async () => {
    const dir = tempDir();
    writeCheckpoint(dir, state(5, params(4), true), 3);
    const onnx = path.join(dir, 'm.onnx');
    expect((await exportCommand([dir, onnx], logger, quiet)).format).toBe('onnx');
    expect(fs.readFileSync(onnx).equals(Buffer.from(modelToOnnx(spec, params(4), { normalize: true })))).toBe(true);
    const st = path.join(dir, 'm.bin');
    expect((await exportCommand([dir, st], logger, { env: { GRADHUB_FORMAT: 'safetensors' }, print: () => {} })).format).toBe('safetensors');
  });

  it('records --normalize in the safetensors metadata, and replaces an existing OUT only with --force', async () => {
    const dir = tempDir();
    writeCheckpoint(dir, state(5, params(4), true), 3);
    const out = path.join(dir, 'm.safetensors');
    await exportCommand([dir, out], logger, quiet);
    const { metadata } = decodeSafetensorsWithMetadata(fs.readFileSync(out), out);
    expect(metadata).toEqual({
      format: 'pt', gradhub_model: '3072,16,10', gradhub_normalize_mean: '0.4914,0.4822,0.4465', gradhub_normalize_std: '0.247,0.2435,0.2616',
    });
    expect(metadata!.gradhub_normalize_mean.split(',').map(Number)).toEqual([...CIFAR10_MEAN]);
    expect(metadata!.gradhub_normalize_std.split(',').map(Number)).toEqual([...CIFAR10_STD]);
    // OUT exists: refused (untouched) without --force, replaced with it.
    fs.writeFileSync(out, 'precious');
    let message = '';
    try {
      await exportCommand([dir, out], logger, quiet);
    } catch (err) {
      expect(isGradhubError(err) && err.code).toBe('E_USAGE');
      message = (err as Error).message;
    }
    expect(message).toContain('--force');
    expect(fs.readFileSync(out, 'utf8')).toBe('precious');
    await exportCommand(['--force', dir, out], logger, quiet);
    expect(decodeSafetensorsWithMetadata(fs.readFileSync(out), out).metadata!.gradhub_model).toBe('3072,16,10');
  });

  it('refuses bad command lines and missing checkpoints with stable codes', async () => {
    const dir = tempDir();
    const out = path.join(dir, 'x.onnx');
    expect(await codeOf(exportCommand(['--format', 'onnx', dir], logger, quiet))).toBe('E_USAGE');
    expect(await codeOf(exportCommand(['--format', 'tflite', dir, out], logger, quiet))).toBe('E_USAGE');
    expect(await codeOf(exportCommand(['--frmat', 'onnx', dir, out], logger, quiet))).toBe('E_USAGE');
    expect(await codeOf(exportCommand([dir, path.join(dir, 'x.bin')], logger, quiet))).toBe('E_USAGE');
    expect(await codeOf(exportCommand([dir, out], logger, quiet))).toBe('E_NO_CHECKPOINT');
    expect(await codeOf(exportCommand([path.join(dir, 'nope.msgpack'), out], logger, quiet))).toBe('E_NO_CHECKPOINT');
    const bad = path.join(dir, 'ckpt-000000001.msgpack');
    fs.writeFileSync(bad, 'not a checkpoint, long enough to have a checksum at its end..');
    expect(await codeOf(exportCommand([bad, out], logger, quiet))).toBe('E_CHECKPOINT_CORRUPT');
    expect(fs.existsSync(out)).toBe(false);
  });

  it('refuses an OUT it cannot write before reading the checkpoint: a folder, a path under a file, a folder nobody writes in', async () => {
    const dir = tempDir();
    const folder = path.join(dir, 'w.safetensors');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(dir, 'afile'), 'x');
    const missing = path.join(dir, 'no-checkpoint-here');
    for (const [out, message] of [
      [folder, /is a folder, not a file/],
      [path.join(dir, 'afile', 'w.safetensors'), /afile is a file, so no folder can be made under it/],
      ['/proc/w.onnx', /cannot write in \/proc \(E[A-Z]+\)/],
    ] as const) {
      const err = await exportCommand(['--force', missing, out], logger, quiet).then(() => null, (e: unknown) => e);
      expect(isGradhubError(err, 'E_OUTPUT_UNWRITABLE'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(message);
    }
    expect(fs.readdirSync(dir).sort()).toEqual(['afile', 'w.safetensors']);
    expect(fs.readdirSync(folder)).toEqual([]);
  });
});
