/// <reference types="node" />
/**
 * The `ByteCodec` of packed tensors (packed.ts) over Node's zlib: raw deflate at level 1 with the
 * run-length strategy (fast; the planes it is given are mostly runs), also on the thread pool, and
 * an inflate that never produces more than the size it is told. Node only: `@gradhub/proto/node`.
 */
import * as zlib from 'node:zlib';
import type { ByteCodec } from './packed.js';

const DEFLATE = { level: 1, strategy: zlib.constants.Z_RLE };

export const nodeByteCodec: ByteCodec = {
  deflate(bytes) {
    return zlib.deflateRawSync(bytes, DEFLATE);
  },
  deflateAsync(bytes) {
    // On libuv's thread pool: the 4 planes of a tensor deflate at once, beside the event loop.
    return new Promise((resolve, reject) => zlib.deflateRaw(bytes, DEFLATE, (err, out) => (err ? reject(err) : resolve(out))));
  },
  inflate(bytes, size) {
    // maxOutputLength makes a bomb fail at size + 1 bytes instead of filling memory.
    const out = zlib.inflateRawSync(bytes, { maxOutputLength: Math.max(1, size) });
    if (out.byteLength !== size) throw new RangeError(`inflated to ${out.byteLength} bytes, not ${size}`);
    return out;
  },
};
