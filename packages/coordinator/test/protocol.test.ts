import { describe, expect, it } from 'vitest';
import { gradhub } from '@gradhub/proto';
import { isGradhubError, xxh64 } from '@gradhub/core';
import { resultHeader } from '@gradhub/worker';
import {
  FROM_WORKER, PROTOCOL_VERSION, ProtocolError, SMALL_FRAME_BYTES, WireCode, closeCodeFor, decodeFrame, encode, encodeParams, frameLimits,
} from '../src/protocol.js';

const MAX = 1 << 20;

function fails(frame: Uint8Array, code: gradhub.ErrorCode, max = MAX, accept = FROM_WORKER): ProtocolError {
  try {
    decodeFrame(frame, max, accept);
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    const e = err as ProtocolError;
    expect(gradhub.ErrorCode[e.wireCode]).toBe(gradhub.ErrorCode[code]);
    expect(e.closeCode).toBe(4000 + code);
    expect(isGradhubError(e, 'E_PROTOCOL')).toBe(true);
    return e;
  }
  throw new Error('decodeFrame accepted the frame');
}

describe('protocol', () => {
  it('round-trips an Envelope with the current version; bytes stay views of the frame', () => {
    const grad = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const frame = encode({ result: { seq: 3, step: 2, version: 1, node: { lo: 1, hi: 2 }, part: { offset: 0, length: 2 }, grad, lossSum: 1.25, denomSum: 4, correct: 2 } });
    const d = decodeFrame(frame, MAX, FROM_WORKER);
    expect(d.kind).toBe('result');
    if (d.kind !== 'result') return;
    expect(d.msg.seq).toBe(3);
    expect(d.msg.lossSum).toBe(1.25);
    expect([...d.msg.grad!]).toEqual([...grad]);
    expect(d.msg.grad!.buffer).toBe(frame.buffer);
    expect(PROTOCOL_VERSION).toBe(1);
  });

  it('refuses oversize frames before parsing them, and small kinds past 64 KiB', () => {
    const frame = encode({ heartbeat: {} });
    fails(frame, WireCode.OVERSIZE_FRAME, frame.length - 1);
    // A Hello with a huge name: parseable, but not a frame a Hello may be.
    fails(encode({ hello: { protocolVersion: 1, name: 'x'.repeat(SMALL_FRAME_BYTES) } }), WireCode.OVERSIZE_FRAME);
    // A Result of the same size is fine.
    expect(decodeFrame(encode({ result: { grad: new Uint8Array(SMALL_FRAME_BYTES) } }), MAX, FROM_WORKER).kind).toBe('result');
  });

  it('refuses malformed frames, empty envelopes and other versions', () => {
    fails(new Uint8Array([0xff, 0xff, 0xff]), WireCode.MALFORMED_FRAME);
    fails(new Uint8Array([0x0a, 0x05, 0x01]), WireCode.MALFORMED_FRAME); // truncated length-delimited field
    fails(gradhub.Envelope.encode({ protocolVersion: 1 }).finish(), WireCode.MALFORMED_FRAME);
    fails(new Uint8Array(0), WireCode.BAD_VERSION);
    fails(gradhub.Envelope.encode({ protocolVersion: 2, heartbeat: {} }).finish(), WireCode.BAD_VERSION);
    fails(gradhub.Envelope.encode({ heartbeat: {} }).finish(), WireCode.BAD_VERSION);
  });

  it('refuses message kinds the other side sends', () => {
    fails(encode({ work: { seq: 1 } }), WireCode.UNEXPECTED_MESSAGE);
    fails(encode({ welcome: { workerId: 1 } }), WireCode.UNEXPECTED_MESSAGE);
    fails(encode({ params: { version: 1 } }), WireCode.UNEXPECTED_MESSAGE);
  });

  it('encodes a Params frame once with its xxHash64 checksum', () => {
    const p = new Float32Array([1, 2, 3, -0, Number.MIN_VALUE]);
    const f = encodeParams(7, p);
    expect(f.version).toBe(7);
    expect([...f.checksum]).toEqual([...xxh64(p)]);
    const env = gradhub.Envelope.decode(f.frame);
    expect(env.protocolVersion).toBe(1);
    expect(env.params!.version).toBe(7);
    expect(Buffer.from(env.params!.data!).equals(Buffer.from(p.buffer))).toBe(true);
    expect([...env.params!.checksum!]).toEqual([...f.checksum]);
  });

  it('sizes the frame limits from the model and the batch', () => {
    const l = frameLimits(1000, 10);
    expect(l.fromWorker).toBe(4000 + 64 * 1024);
    expect(l.fromCoordinator).toBeGreaterThanOrEqual(10 * 3073);
    expect(closeCodeFor(WireCode.BAD_TOKEN)).toBe(4001);
  });

  it("decodes the worker's zero-copy Result (header + gradient fragment) as the same Result", () => {
    const grad = new Float32Array([0.5, -1, 3, Number.MAX_VALUE]);
    const fields = { seq: 9, step: 4, version: 3, node: { lo: 2, hi: 4 }, part: { offset: 0, length: 4 }, lossSum: 2.5, denomSum: 8, correct: 3, computeMs: 12 };
    for (const g of [grad, new Float32Array(40_000)]) {
      const header = resultHeader(fields, g.byteLength);
      const frame = Buffer.concat([header, new Uint8Array(g.buffer)]);
      const d = decodeFrame(frame, MAX, FROM_WORKER);
      expect(d.kind).toBe('result');
      if (d.kind !== 'result') return;
      expect(d.msg).toMatchObject({ ...fields });
      expect(Buffer.from(d.msg.grad!).equals(Buffer.from(g.buffer))).toBe(true);
    }
    const evalFrame = resultHeader(fields, 0);
    const d = decodeFrame(evalFrame, MAX, FROM_WORKER);
    expect(d.kind === 'result' && d.msg.grad!.length).toBe(0);
  });
});
