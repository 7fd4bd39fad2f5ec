import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CIFAR10_CLASS_NAMES, CIFAR10_IMAGE_BYTES, CIFAR10_MEAN, CIFAR10_RECORD_BYTES, CIFAR10_STD,
  concatBatches, parseCifarBatch, parseClassNames, pixelsToInput,
} from '../src/cifar.js';
import { caught } from './errors.testutil.js';
import { CIFAR10_DIR } from '../../../test/fixtures/index.js';
import { INTERNAL } from '../../../test/support/errors.js';

const read = (name: string): Uint8Array => readFileSync(path.join(CIFAR10_DIR, name));

/** One record: label, then every pixel of plane c set to planeValue[c]. */
function record(label: number, planeValue: [number, number, number]): Uint8Array {
  const r = new Uint8Array(CIFAR10_RECORD_BYTES);
  r[0] = label;
  for (let c = 0; c < 3; c++) r.fill(planeValue[c], 1 + c * 1024, 1 + (c + 1) * 1024);
  return r;
}

describe('parseCifarBatch on the CIFAR-10 fixture', () => {
  const train = parseCifarBatch(read('data_batch_1.bin'), 'data_batch_1.bin');
  const test = parseCifarBatch(read('test_batch.bin'), 'test_batch.bin');

  it('counts records by file size and reads the known first labels', () => {
    expect(train.count).toBe(1280);
    expect(test.count).toBe(500);
    expect(train.labels.length).toBe(1280);
    expect(train.pixels.length).toBe(1280 * 3072);
    expect([...train.labels.subarray(0, 10)]).toEqual([6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
    expect([...test.labels.subarray(0, 10)]).toEqual([3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
  });

  it('matches the per-class counts of the fixture README', () => {
    const hist = (labels: Uint8Array): number[] => {
      const h = new Array<number>(10).fill(0);
      for (const l of labels) h[l]++;
      return h;
    };
    expect(hist(train.labels)).toEqual([132, 130, 125, 123, 121, 112, 141, 127, 127, 142]);
    expect(hist(test.labels)).toEqual([57, 41, 51, 49, 40, 48, 54, 47, 57, 56]);
  });

  it('keeps each record\'s 3072 pixel bytes in file order', () => {
    const bytes = read('test_batch.bin');
    for (const i of [0, 1, 499]) {
      const want = bytes.subarray(i * 3073 + 1, (i + 1) * 3073);
      expect(Buffer.compare(test.pixels.subarray(i * 3072, (i + 1) * 3072), want)).toBe(0);
    }
  });

  it('parses the class names of batches.meta.txt', () => {
    const names = parseClassNames(new TextDecoder().decode(read('batches.meta.txt')), 'batches.meta.txt');
    expect(names).toEqual(['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
    expect(names).toEqual(CIFAR10_CLASS_NAMES);
  });
});

describe('parseCifarBatch errors', () => {
  it('rejects a size that is not a whole number of records, naming the file', () => {
    const bytes = new Uint8Array(2 * CIFAR10_RECORD_BYTES + 100);
    const err = caught(() => parseCifarBatch(bytes, '/data/data_batch_3.bin'), 'E_DATA_TRUNCATED');
    expect(err.message).toContain('/data/data_batch_3.bin');
    expect(err.message).toContain(`${bytes.length} bytes`);
    expect(err.message).toMatch(/2 whole records and 100 bytes left over/);
  });

  it('rejects an empty file', () => {
    caught(() => parseCifarBatch(new Uint8Array(0), 'empty.bin'), 'E_DATA_TRUNCATED');
  });

  it('rejects a label outside 0..9, naming the file and the record', () => {
    const bytes = new Uint8Array(3 * CIFAR10_RECORD_BYTES);
    bytes[2 * CIFAR10_RECORD_BYTES] = 10;
    const err = caught(() => parseCifarBatch(bytes, 'bad.bin'), 'E_DATA_CORRUPT');
    expect(err.message).toContain('bad.bin');
    expect(err.message).toContain('record 2');
    expect(err.message).toContain('label 10');
  });

  it('rejects a class list that is not 10 names', () => {
    const err = caught(() => parseClassNames('cat\ndog\n', 'meta.txt'), 'E_DATA_CORRUPT');
    expect(err.message).toContain('meta.txt');
    expect(parseClassNames(`${CIFAR10_CLASS_NAMES.join('\r\n')}\r\n\r\n`, 'm')).toEqual(CIFAR10_CLASS_NAMES);
  });
});

describe('concatBatches', () => {
  it('joins labels and pixels in order', () => {
    const a = parseCifarBatch(new Uint8Array([...record(1, [1, 2, 3]), ...record(2, [4, 5, 6])]), 'a');
    const b = parseCifarBatch(record(7, [7, 8, 9]), 'b');
    const ab = concatBatches([a, b]);
    expect(ab.count).toBe(3);
    expect([...ab.labels]).toEqual([1, 2, 7]);
    expect(ab.pixels[2 * 3072 + 2048]).toBe(9);
    expect(ab.pixels[1 * 3072]).toBe(4);
    expect(concatBatches([a])).toBe(a);
    expect(concatBatches([]).count).toBe(0);
  });
});

describe('pixelsToInput', () => {
  it('gives fround(byte / 255) for every byte value, as ToTensor does', () => {
    const pixels = new Uint8Array(3072);
    for (let j = 0; j < 3072; j++) pixels[j] = j & 255;
    const out = new Float32Array(3072);
    pixelsToInput(pixels, 0, 1, out, false);
    for (let j = 0; j < 3072; j++) {
      const b = j & 255;
      expect(out[j]).toBe(Math.fround(b / 255));
      expect(Math.round(out[j] * 255)).toBe(b);
    }
    expect(out[255]).toBe(1);
    expect(out[0]).toBe(0);
    expect(out[1]).toBe(0.003921568859368563); // torch.tensor(1, dtype=torch.uint8).float() / 255
  });

  it('normalizes per channel with float32 ops: fround(fround(x - mean[c]) / std[c])', () => {
    const rec = record(0, [0, 128, 255]);
    const ds = parseCifarBatch(new Uint8Array([...record(0, [9, 9, 9]), ...rec]), 'n');
    const out = new Float32Array(3072 + 5).fill(-7);
    pixelsToInput(ds.pixels, 1, 1, out, true);
    const f = Math.fround;
    const want = [0, 128, 255].map((b, c) => f(f(f(b / 255) - f(CIFAR10_MEAN[c])) / f(CIFAR10_STD[c])));
    for (let c = 0; c < 3; c++) {
      for (const p of [0, 500, 1023]) expect(out[c * 1024 + p]).toBe(want[c]);
    }
    expect(want[0]).toBeCloseTo(-0.4914 / 0.247, 5);
    expect(out[3072]).toBe(-7); // extra room left alone
  });

  it('takes samples [start, start + count)', () => {
    const pixels = new Uint8Array(3 * CIFAR10_IMAGE_BYTES);
    pixels.fill(10, 0, 3072);
    pixels.fill(20, 3072, 6144);
    pixels.fill(30, 6144);
    const out = new Float32Array(2 * 3072);
    pixelsToInput(pixels, 1, 2, out, false);
    expect(out[0]).toBe(Math.fround(20 / 255));
    expect(out[3071]).toBe(Math.fround(20 / 255));
    expect(out[3072]).toBe(Math.fround(30 / 255));
    expect(() => pixelsToInput(pixels, 2, 2, out, false)).toThrow(INTERNAL);
    expect(() => pixelsToInput(pixels, 0, 3, out, false)).toThrow(INTERNAL);
    expect(() => pixelsToInput(pixels, -1, 1, out, false)).toThrow(INTERNAL);
  });
});
