import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { modelSpec } from '../src/model.js';
import { caught } from './errors.testutil.js';
import { REFERENCE_DIR } from '../../../test/fixtures/index.js';
import {
  decodeSafetensors, decodeSafetensorsWithMetadata, encodeSafetensors, inferModelSizes,
  paramsToSafetensors, safetensorsToParams,
} from '../src/safetensors.js';

const REF = path.join(REFERENCE_DIR, 'cifar_trajectory');
const readRef = (name: string): Uint8Array => readFileSync(path.join(REF, name));
const visible = JSON.parse(readFileSync(path.join(REF, 'visible.json'), 'utf8')) as {
  files: Record<'init' | 'final', { path: string; sha256: string }>;
  tensors: { name: string; shape: number[] }[];
  num_params: number;
};
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');


/** A file with a hand-written header (padded to 8) and `dataBytes` zero bytes of data. */
function rawFile(header: unknown, dataBytes: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLen + dataBytes);
  new DataView(out.buffer).setUint32(0, headerLen, true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  return out;
}

describe('encodeSafetensors / decodeSafetensors', () => {
  const a = new Float32Array([1.5, -0, Number.MIN_VALUE, 3.4028234663852886e38, -2.5, 0.1]);
  const b = new Float32Array([7]);

  it('round-trips bit for bit, in order, with metadata', () => {
    const bytes = encodeSafetensors([{ name: 'w', shape: [2, 3], data: a }, { name: 'b', shape: [1], data: b }], { format: 'pt', k: 'v' });
    const headerLen = new DataView(bytes.buffer).getUint32(0, true);
    expect(headerLen % 8).toBe(0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + headerLen));
    const json =
      '{"__metadata__":{"format":"pt","k":"v"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},' +
      '"b":{"dtype":"F32","shape":[1],"data_offsets":[24,28]}}';
    expect(headerLen).toBe(Math.ceil(json.length / 8) * 8);
    expect(text).toBe(json.padEnd(headerLen, ' '));
    expect(bytes.length).toBe(8 + headerLen + 28);
    const { tensors, metadata } = decodeSafetensorsWithMetadata(bytes, 'x.safetensors');
    expect(metadata).toEqual({ format: 'pt', k: 'v' });
    expect([...tensors.keys()]).toEqual(['w', 'b']);
    const w = tensors.get('w')!;
    expect(w.shape).toEqual([2, 3]);
    expect(new Uint8Array(w.data.buffer)).toEqual(new Uint8Array(a.buffer));
    expect(Object.is(w.data[1], -0)).toBe(true);
    expect(w.data.byteOffset).toBe(0); // own aligned copy
    expect(w.data.buffer.byteLength).toBe(24);
    bytes.fill(0); // not a view of the input
    expect(w.data[0]).toBe(1.5);
  });

  it('writes no __metadata__ when none is given, and equal inputs give equal bytes', () => {
    const t = [{ name: 'x', shape: [6], data: a }];
    const bytes = encodeSafetensors(t);
    expect(new TextDecoder().decode(bytes).includes('__metadata__')).toBe(false);
    expect(decodeSafetensorsWithMetadata(bytes, 'x').metadata).toBeNull();
    expect(sha256(encodeSafetensors(t))).toBe(sha256(bytes));
  });

  it('handles empty tensors and an empty file', () => {
    const bytes = encodeSafetensors([{ name: 'e', shape: [0, 4], data: new Float32Array(0) }]);
    expect(decodeSafetensors(bytes, 'e').get('e')!.shape).toEqual([0, 4]);
    expect(decodeSafetensors(encodeSafetensors([]), 'none').size).toBe(0);
  });

  it('rejects inconsistent input to the encoder', () => {
    expect(() => encodeSafetensors([{ name: 'x', shape: [2, 2], data: a }])).toThrow(/holds 4 values, data has 6/);
    expect(() => encodeSafetensors([{ name: 'x', shape: [6], data: a }, { name: 'x', shape: [1], data: b }])).toThrow(/duplicate/);
    expect(() => encodeSafetensors([{ name: '__metadata__', shape: [1], data: b }])).toThrow(/invalid/);
  });
});

describe('the PyTorch reference files (cifar_trajectory)', () => {
  const spec = modelSpec([3072, 32, 10]);

  for (const stage of ['init', 'final'] as const) {
    it(`decodes visible_${stage}.safetensors with the shapes of visible.json`, () => {
      const bytes = readRef(visible.files[stage].path);
      expect(sha256(bytes)).toBe(visible.files[stage].sha256); // the file is the one the checksums describe
      const { tensors, metadata } = decodeSafetensorsWithMetadata(bytes, visible.files[stage].path);
      expect([...tensors.entries()].map(([name, t]) => ({ name, shape: t.shape }))).toEqual(visible.tensors);
      expect(metadata?.stage).toBe(stage);
      expect(inferModelSizes(tensors)).toEqual([3072, 32, 10]);

      const flat = safetensorsToParams(spec, tensors, visible.files[stage].path);
      expect(flat.length).toBe(visible.num_params);
      expect(flat.every(Number.isFinite)).toBe(true);
      // Re-encoding with the same metadata gives the very same bytes: the writer matches the reference's
      // layout (key order, no whitespace, space padding to 8), so its sha256 in visible.json holds.
      expect(sha256(paramsToSafetensors(spec, flat, metadata!))).toBe(visible.files[stage].sha256);
    });
  }

  it('holds PyTorch default init in visible_init (|w| <= 1/sqrt(fan_in)) and moved weights in visible_final', () => {
    const init = decodeSafetensors(readRef('visible_init.safetensors'), 'init');
    const final = decodeSafetensors(readRef('visible_final.safetensors'), 'final');
    const w0 = init.get('layers.0.weight')!.data;
    const bound = 1 / Math.sqrt(3072);
    expect(w0.every((v) => Math.abs(v) <= bound * (1 + 1e-6))).toBe(true);
    expect(Math.max(...w0.subarray(0, 5000).map(Math.abs))).toBeGreaterThan(0.9 * bound);
    const w1 = init.get('layers.1.weight')!.data;
    expect(w1.every((v) => Math.abs(v) <= (1 + 1e-6) / Math.sqrt(32))).toBe(true);
    let moved = 0;
    for (const [name, t] of init) {
      const f = final.get(name)!.data;
      for (let k = 0; k < t.data.length; k++) if (f[k] !== t.data[k]) moved++;
    }
    expect(moved).toBeGreaterThan(90_000);
  });

  it('refuses a file that does not fit --model, naming the tensor, both shapes and the --model that fits', () => {
    const tensors = decodeSafetensors(readRef('visible_init.safetensors'), 'visible_init.safetensors');
    const err = caught(() => safetensorsToParams(modelSpec([3072, 64, 10]), tensors, 'visible_init.safetensors'), 'E_MODEL_MISMATCH');
    expect(err.message).toContain('"layers.0.weight" has shape [32, 3072]');
    expect(err.message).toContain('--model 3072,64,10 needs [64, 3072]');
    expect(err.message).toContain('fits --model 3072,32,10');

    const deeper = caught(() => safetensorsToParams(modelSpec([3072, 32, 32, 10]), tensors), 'E_MODEL_MISMATCH');
    expect(deeper.message).toMatch(/layers\.1\.weight.*\[10, 32\].*\[32, 32\]/);

    const shallower = caught(() => safetensorsToParams(modelSpec([3072, 32]), tensors, 'f'), 'E_MODEL_MISMATCH');
    expect(shallower.message).toContain('"layers.1.weight", "layers.1.bias" are not part of --model 3072,32');

    const partial = new Map(tensors);
    partial.delete('layers.1.bias');
    const missing = caught(() => safetensorsToParams(spec, partial, 'f'), 'E_MODEL_MISMATCH');
    expect(missing.message).toContain('no tensor "layers.1.bias"');
    expect(missing.message).toContain('do not form a gradhub MLP');
  });
});

describe('decodeSafetensors rejects corrupt files with E_SAFETENSORS_CORRUPT', () => {
  const good = encodeSafetensors([{ name: 'a', shape: [2], data: new Float32Array([1, 2]) }, { name: 'b', shape: [1], data: new Float32Array([3]) }]);
  const cases: [string, Uint8Array, RegExp][] = [
    ['shorter than 8 bytes', good.subarray(0, 5), /shorter than the 8-byte header length/],
    ['header length beyond the file', (() => { const x = good.slice(); new DataView(x.buffer).setUint32(0, 1e6, true); return x; })(), /header length 1000000 is beyond/],
    ['huge u64 header length', (() => { const x = good.slice(); new DataView(x.buffer).setUint32(4, 1, true); return x; })(), /is beyond/],
    ['truncated data', good.subarray(0, good.length - 2), /beyond the 10-byte data buffer/],
    ['trailing data', new Uint8Array([...good, 0, 0, 0, 0]), /data buffer is 16 bytes but the tensors cover 12/],
    ['bad JSON', rawFile('{"a": {', 0), /not UTF-8 JSON/],
    ['invalid UTF-8', (() => { const x = rawFile('{"\u00e9":1}', 0); x[10] = 0xff; return x; })(), /not UTF-8 JSON/],
    ['not an object', rawFile('[1, 2]', 0), /not a JSON object/],
    ['non-F32 dtype', rawFile({ h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] } }, 4), /dtype F16; gradhub reads only F32/],
    ['F64 dtype', rawFile({ h: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, 8), /dtype F64/],
    ['overlapping offsets', rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12), /overlap/],
    ['a gap', rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /gap in the data buffer/],
    ['offsets out of range', rawFile({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), /beyond the 8-byte data buffer/],
    ['size not matching the shape', rawFile({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), /needs 12/],
    ['bad shape', rawFile({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, 0), /invalid shape/],
    ['bad offsets', rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, 4), /invalid data_offsets/],
    ['non-string metadata', rawFile({ __metadata__: { a: 1 } }, 0), /"__metadata__"."a" is not a string/],
  ];
  for (const [what, bytes, re] of cases) {
    it(what, () => {
      const err = caught(() => decodeSafetensors(bytes, 'model.safetensors'), 'E_SAFETENSORS_CORRUPT');
      expect(err.message).toMatch(/^model\.safetensors: not a valid safetensors file: /);
      expect(err.message).toMatch(re);
    });
  }

  it('copies out of a Node Buffer (whose slice() is a view of a shared pool)', () => {
    const t = decodeSafetensors(Buffer.from(good), 'x').get('b')!;
    expect(t.data.buffer.byteLength).toBe(4);
    expect(t.data[0]).toBe(3);
  });

  it('reads a file inside a larger buffer (non-zero byteOffset)', () => {
    const big = new Uint8Array(good.length + 3);
    big.set(good, 3);
    expect([...decodeSafetensors(big.subarray(3), 'x').get('a')!.data]).toEqual([1, 2]);
  });
});
