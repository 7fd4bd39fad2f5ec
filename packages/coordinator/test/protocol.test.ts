import { describe, expect, it } from 'vitest';
import { gradhub } from '@gradhub/proto';
import { isGradhubError, xxh64 } from '@gradhub/core';
import { decodeMessage as workerDecode, fragments as workerFragments, resultHeader } from '@gradhub/worker';
import {
  FRAGMENT_BYTES, FROM_WORKER, PROTOCOL_VERSION, ParamsEncoder, ProtocolError, SMALL_FRAME_BYTES, WireCode, closeCodeFor, decodeFrame, decodeMessage,
  encode, encodeParams, fragments, frameLimits, splitTrailingBytes,
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
    const frame = Buffer.concat(f.parts);
    expect(frame.byteLength).toBe(f.byteLength);
    const env = gradhub.Envelope.decode(frame);
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

  it('decodes a Result streamed as header + gradient fragments without joining them, with the same checks', () => {
    const fields = { seq: 9, step: 4, version: 3, node: { lo: 2, hi: 4 }, part: { offset: 0, length: 300_000 }, lossSum: 2.5, denomSum: 8, correct: 3, computeMs: 12 };
    const g = Float32Array.from({ length: 300_000 }, (_, i) => i * 0.5);
    const bytes = new Uint8Array(g.buffer);
    const header = resultHeader(fields, bytes.byteLength);
    const tail = workerFragments(bytes);
    expect(tail.length).toBe(Math.ceil(bytes.byteLength / FRAGMENT_BYTES));
    const d = decodeMessage([header, ...tail], 2 << 20, FROM_WORKER);
    expect(d.kind).toBe('result');
    expect(d.msg).toMatchObject(fields);
    expect(d.tail).toHaveLength(tail.length);
    d.tail!.forEach((p, i) => expect(p).toBe(tail[i])); // the received fragments themselves: no copy
    // Other cuts of the same bytes are joined and decoded as one frame: the same Result.
    const whole = Buffer.concat([header, bytes]);
    for (const cut of [[5], [header.length - 1], [header.length + 3, header.length + 100]]) {
      const parts = [0, ...cut, whole.length].slice(1).map((end, i, ends) => whole.subarray(i === 0 ? 0 : ends[i - 1], end));
      const j = decodeMessage(parts, 2 << 20, FROM_WORKER);
      expect(j.tail).toBeNull();
      expect(j.kind === 'result' && Buffer.from(j.msg.grad!).equals(bytes)).toBe(true);
    }
    expect(decodeMessage([whole], 2 << 20, FROM_WORKER).tail).toBeNull();
    // The checks: size, version, kind.
    const failsWith = (parts: Uint8Array[], code: gradhub.ErrorCode, max = 2 << 20) => {
      try {
        decodeMessage(parts, max, FROM_WORKER);
      } catch (err) {
        expect((err as ProtocolError).wireCode).toBe(code);
        return;
      }
      throw new Error('accepted');
    };
    failsWith([header, ...tail], WireCode.OVERSIZE_FRAME, whole.length - 1);
    const v2 = Uint8Array.from(header);
    v2[1] = 2; // protocol_version 2
    failsWith([v2, ...tail], WireCode.BAD_VERSION);
    failsWith([header, ...tail.slice(0, -1)], WireCode.MALFORMED_FRAME); // not the streaming shape: joined, and truncated
    expect(() => decodeMessage([header, ...tail], 2 << 20, ['hello'])).toThrow(ProtocolError);
    // An empty message is an empty frame:
    failsWith([], WireCode.BAD_VERSION);
    // The splitter only takes the exact streaming shape.
    expect(splitTrailingBytes(header, bytes.byteLength, 7, 6)).not.toBeNull();
    expect(splitTrailingBytes(header, bytes.byteLength + 1, 7, 6)).toBeNull();
    expect(splitTrailingBytes(header, bytes.byteLength, 5, 3)).toBeNull();
    expect(splitTrailingBytes(header.subarray(0, header.length - 1), bytes.byteLength, 7, 6)).toBeNull();
  });

  it('streams Params as header + parameter fragments the worker decodes without joining', () => {
    const p = Float32Array.from({ length: 200_000 }, (_, i) => Math.sin(i));
    const f = encodeParams(4, p);
    expect(f.parts.length).toBe(1 + fragments(new Uint8Array(p.buffer)).length);
    const d = workerDecode([...f.parts], 4 << 20);
    expect(d.kind).toBe('params');
    if (d.kind !== 'params') return;
    expect(d.msg.version).toBe(4);
    expect([...d.msg.checksum!]).toEqual([...xxh64(p)]);
    expect(Buffer.concat(d.tail!).equals(Buffer.from(p.buffer))).toBe(true);
    d.tail!.forEach((t, i) => expect(t).toBe(f.parts[i + 1]));
  });

  it('reuses parameter snapshots, never one that a send still reads', () => {
    const enc = new ParamsEncoder();
    const p = new Float32Array([1, 2, 3]);
    const a = enc.encode(1, p);
    const b = enc.encode(2, p);
    expect(b.snapshot).not.toBe(a.snapshot); // the previous version stays readable
    const c = enc.encode(3, p);
    expect(c.snapshot).toBe(a.snapshot); // two snapshots in turn
    c.snapshot.sends++; // a slow socket still sending version 3
    enc.encode(4, p);
    const e = enc.encode(5, p);
    expect(e.snapshot).not.toBe(c.snapshot);
    expect([...c.snapshot.data]).toEqual([1, 2, 3]);
    expect(Buffer.concat(e.parts).equals(Buffer.from(encode({ params: { version: 5, checksum: xxh64(p), data: new Uint8Array(p.buffer) } })))).toBe(true);
    expect(enc.frame).toBe(e);
  });
});
