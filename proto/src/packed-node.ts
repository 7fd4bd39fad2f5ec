/// <reference types="node" />
/**
 * The `ByteCodec` of packed tensors (packed.ts) over Node's zlib: raw deflate at level 1 with the
 * run-length strategy (fast; the planes it is given are mostly runs), and an inflate that never
 * produces more than the size it is told. Node only: `@gradhub/proto/node`.
 */
import * as zlib from 'node:zlib';
import type { ByteCodec } from './packed.js';

export const nodeByteCodec: ByteCodec = {
  deflate(bytes) {
    return zlib.deflateRawSync(bytes, { level: 1, strategy: zlib.constants.Z_RLE });
  },
  inflate(bytes, size) {
    // maxOutputLength makes a bomb fail at size + 1 bytes instead of filling memory.
    const out = zlib.inflateRawSync(bytes, { maxOutputLength: Math.max(1, size) });
    if (out.byteLength !== size) throw new RangeError(`inflated to ${out.byteLength} bytes, not ${size}`);
    return out;
  },
};
