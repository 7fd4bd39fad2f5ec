/**
 * Packed tensors (proto/src/packed.ts with Node's codec): lossless for any float32 bits, smaller
 * where the bytes have the structure packing is for, and every malformed packing refused with its
 * code, leaving the destination as it was.
 */
import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { PACKED_HEAD_BYTES, ProtocolError, WireCode, packFloats, unpackFloats } from '@gradhub/proto';
import { nodeByteCodec } from '@gradhub/proto/node';
import { Rng } from '@gradhub/core';

const bytesOf = (f: Float32Array): Uint8Array => new Uint8Array(f.buffer, f.byteOffset, f.byteLength);

/** Weights like a layer's, about N(0, 0.01). */
function weights(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n);
  // Irwin-Hall: a sum of 4 uniforms, centred, near-normal.
  for (let i = 0; i < n; i++) out[i] = 0.02 * (rng.nextFloat() + rng.nextFloat() + rng.nextFloat() + rng.nextFloat() - 2);
  return out;
}

function unpack(packed: Uint8Array, n: number, dst = new Uint8Array(4 * n), xor = false): Uint8Array {
  unpackFloats([packed], n, nodeByteCodec, dst, xor);
  return dst;
}

describe('packed tensors', () => {
  it('round-trips a pseudo-gradient exactly, in about half its bytes', () => {
    const n = 300_000;
    const theta = weights(n, 1);
    const local = theta.map((w, i) => (i % 5 === 0 ? w : w - 1e-4 * Math.sin(i))); // one round of small updates; some units never move
    const delta = theta.map((w, i) => w - local[i]); // float32 differences: low mantissa bits zero
    const packed = packFloats(bytesOf(delta), nodeByteCodec)!;
    expect(packed).not.toBeNull();
    expect(packed.byteLength).toBeLessThan(0.75 * 4 * n);
    expect(Buffer.from(unpack(packed, n)).equals(Buffer.from(bytesOf(delta)))).toBe(true);
    // Split into pieces (as fragments arrive) decodes the same.
    const pieces = [packed.subarray(0, 5), packed.subarray(5, 40_000), packed.subarray(40_000)];
    const dst = new Uint8Array(4 * n);
    unpackFloats(pieces, n, nodeByteCodec, dst, false);
    expect(Buffer.from(dst).equals(Buffer.from(bytesOf(delta)))).toBe(true);
  });

  it('packs a new version as its XOR with the old one, which the receiver turns back into the new bits', () => {
    const n = 200_000;
    const before = weights(n, 2);
    const after = before.map((w, i) => w - 1e-4 * Math.cos(i) * Math.abs(w) * 10);
    const packed = packFloats(bytesOf(after), nodeByteCodec, bytesOf(before))!;
    expect(packed.byteLength).toBeLessThan(0.7 * 4 * n);
    const dst = new Uint8Array(bytesOf(before.slice())); // the receiver holds the old version
    unpackFloats([packed], n, nodeByteCodec, dst, true);
    expect(Buffer.from(dst).equals(Buffer.from(bytesOf(after)))).toBe(true);
  });

  it('keeps every bit of any float32 pattern (NaN payloads, -0, denormals, infinities)', () => {
    const u = new Uint32Array([0x7fc00001, 0xffffffff, 0x80000000, 0x00000001, 0x7f800000, 0xff800000, 0x3f800000, 0x00800000]);
    const many = new Uint32Array(80_000);
    for (let i = 0; i < many.length; i++) many[i] = u[i % u.length] ^ ((i % 3) << 8);
    const bytes = new Uint8Array(many.buffer);
    const packed = packFloats(bytes, nodeByteCodec);
    expect(packed).not.toBeNull(); // repetitive: it packs
    expect(Buffer.from(unpack(packed!, many.length)).equals(Buffer.from(bytes))).toBe(true);
  });

  it('gives null (send raw) when packing would not make the tensor smaller', () => {
    const rng = new Rng(3);
    const noise = new Uint8Array(4 * 50_000);
    for (let i = 0; i < noise.length; i++) noise[i] = rng.nextBelow(256);
    expect(packFloats(noise, nodeByteCodec)).toBeNull();
  });

  describe('refuses a packing that is not one of n values, and leaves the destination alone', () => {
    const n = 10_000;
    const values = weights(n, 4);
    const good = packFloats(bytesOf(values), nodeByteCodec)!;
    const cases: [string, Uint8Array, number][] = [
      ['shorter than its head', good.subarray(0, PACKED_HEAD_BYTES - 1), n],
      ['flags out of range', Uint8Array.from([0xf0, ...good.subarray(1)]), n],
      ['a plane overrunning the bytes', good.subarray(0, good.byteLength - 1), n],
      ['bytes after the planes', Uint8Array.from([...good, 0]), n],
      ['another value count', good, n + 1],
      ['garbage in a deflated plane', (() => {
        // The top plane (sign and exponent) is the one that surely deflates: garble its start.
        const b = Uint8Array.from(good);
        const view = new DataView(b.buffer);
        expect(b[0] & 0b1000).toBe(0b1000);
        let at = PACKED_HEAD_BYTES;
        for (let k = 0; k < 3; k++) at += view.getUint32(1 + 4 * k, true);
        b.fill(0xff, at, at + 8);
        return b;
      })(), n],
    ];
    for (const [what, bytes, count] of cases) {
      it(what, () => {
        const dst = new Uint8Array(4 * count).fill(7);
        let err: unknown = null;
        try {
          unpackFloats([bytes], count, nodeByteCodec, dst, true);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(ProtocolError);
        expect((err as ProtocolError).wireCode).toBe(WireCode.BAD_GRADIENT_LENGTH);
        expect(dst.every((b) => b === 7)).toBe(true);
      });
    }

    it('an inflate bomb: a plane that would inflate past n bytes stops at n + 1', () => {
      const bomb = deflateRawSync(new Uint8Array(64 << 20)); // 64 MiB of zeros in ~64 KiB
      const head = new Uint8Array(PACKED_HEAD_BYTES);
      const view = new DataView(head.buffer);
      head[0] = 0b0001;
      view.setUint32(1, bomb.byteLength, true);
      for (let k = 1; k < 4; k++) view.setUint32(1 + 4 * k, n, true);
      const msg = new Uint8Array(head.byteLength + bomb.byteLength + 3 * n);
      msg.set(head);
      msg.set(bomb, head.byteLength);
      expect(() => unpackFloats([msg], n, nodeByteCodec, new Uint8Array(4 * n), false)).toThrow(/plane 0 does not inflate/);
    });
  });
});
