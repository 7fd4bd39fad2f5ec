import { describe, expect, it } from 'vitest';
import { ProtocolError as ProtoProtocolError, gradhub, paramCountOf } from '@gradhub/proto';
import { isGradhubError, modelSpec, xxh64 } from '@gradhub/core';
import { decodeMessage as workerDecode, fragments as workerFragments, resultHeader } from '@gradhub/worker';
import {
  FRAGMENT_BYTES, FROM_WORKER, PROTOCOL_VERSION, ParamsEncoder, ProtocolError, SMALL_FRAME_BYTES, WireCode, closeCodeFor, decodeFrame, decodeMessage,
  encode, encodeParamsPart, fragments, frameLimits, splitTrailingBytes,
} from '../src/protocol.js';
import { INTERNAL } from '../../../test/support/errors.js';

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
    expect(PROTOCOL_VERSION).toBe(3);
  });

  it('refuses oversize frames before parsing them, and small kinds past 64 KiB', () => {
    const frame = encode({ heartbeat: {} });
    fails(frame, WireCode.OVERSIZE_FRAME, frame.length - 1);
    // A Hello with a huge name: parseable, but not a frame a Hello may be.
    fails(encode({ hello: { protocolVersion: PROTOCOL_VERSION, name: 'x'.repeat(SMALL_FRAME_BYTES) } }), WireCode.OVERSIZE_FRAME);
    // A Result of the same size is fine.
    expect(decodeFrame(encode({ result: { grad: new Uint8Array(SMALL_FRAME_BYTES) } }), MAX, FROM_WORKER).kind).toBe('result');
  });

  it('refuses malformed frames, empty envelopes and other versions', () => {
    fails(new Uint8Array([0xff, 0xff, 0xff]), WireCode.MALFORMED_FRAME);
    fails(new Uint8Array([0x0a, 0x05, 0x01]), WireCode.MALFORMED_FRAME); // truncated length-delimited field
    fails(gradhub.Envelope.encode({ protocolVersion: PROTOCOL_VERSION }).finish(), WireCode.MALFORMED_FRAME);
    fails(new Uint8Array(0), WireCode.BAD_VERSION);
    fails(gradhub.Envelope.encode({ protocolVersion: 1, heartbeat: {} }).finish(), WireCode.BAD_VERSION);
    fails(gradhub.Envelope.encode({ heartbeat: {} }).finish(), WireCode.BAD_VERSION);
  });

  it('refuses message kinds the other side sends', () => {
    fails(encode({ work: { seq: 1 } }), WireCode.UNEXPECTED_MESSAGE);
    fails(encode({ welcome: { workerId: 1 } }), WireCode.UNEXPECTED_MESSAGE);
    fails(encode({ params: { version: 1 } }), WireCode.UNEXPECTED_MESSAGE);
  });

  it('encodes a Params part once with its xxHash64 checksum', () => {
    const p = new Float32Array([9, 1, 2, 3, -0, Number.MIN_VALUE, 8]);
    const snapshot = { data: new Float32Array(p.length), sends: 0 };
    const f = encodeParamsPart(7, 2, { offset: 1, length: 5 }, p, snapshot);
    expect(f.version).toBe(7);
    expect(f.index).toBe(2);
    const slice = p.subarray(1, 6);
    expect([...f.checksum]).toEqual([...xxh64(slice)]);
    const frame = Buffer.concat(f.parts);
    expect(frame.byteLength).toBe(f.byteLength);
    const env = gradhub.Envelope.decode(frame);
    expect(env.protocolVersion).toBe(PROTOCOL_VERSION);
    expect(env.params!.version).toBe(7);
    expect(env.params!.part).toMatchObject({ offset: 1, length: 5 });
    expect(Buffer.from(env.params!.data!).equals(Buffer.from(slice.buffer, slice.byteOffset, slice.byteLength))).toBe(true);
    expect([...env.params!.checksum!]).toEqual([...f.checksum]);
    expect(snapshot.data[0]).toBe(0); // only the part is copied
    expect(() => encodeParamsPart(7, 0, { offset: 3, length: 5 }, p, snapshot)).toThrow(INTERNAL);
  });

  it('sizes the frame limits from the model and the batch', () => {
    const l = frameLimits(1000, 10);
    expect(l.fromWorker).toBe(4000 + 64 * 1024);
    expect(l.fromCoordinator).toBeGreaterThanOrEqual(10 * 3073);
    expect(closeCodeFor(WireCode.BAD_TOKEN)).toBe(4001);
    // The worker counts the model's parameters from Welcome's sizes as core does.
    for (const sizes of [[3072, 2048, 2048, 10], [3072, 24, 10], [5, 1]]) expect(paramCountOf(sizes)).toBe(modelSpec(sizes).paramCount);
    expect(frameLimits(modelSpec([3072, 24, 10]).paramCount, 40)).toEqual(frameLimits(paramCountOf([3072, 24, 10]), 40));
  });

  it('one fault type on both sides: the worker decodes with the same ProtocolError as the coordinator', () => {
    expect(ProtocolError).toBe(ProtoProtocolError);
    const frame = encode({ work: { seq: 1 } });
    expect(() => decodeFrame(frame, MAX, FROM_WORKER)).toThrow(ProtoProtocolError);
    try {
      workerDecode([encode({ hello: {} })], MAX);
      throw new Error('the worker accepted a Hello');
    } catch (err) {
      expect(err).toBeInstanceOf(ProtoProtocolError);
      expect((err as ProtocolError).wireCode).toBe(WireCode.UNEXPECTED_MESSAGE);
      expect((err as ProtocolError).message).toBe('UNEXPECTED_MESSAGE: a hello message is not accepted by a worker');
    }
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
    v2[1] = 1; // protocol_version 1
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
    const f = encodeParamsPart(4, 0, { offset: 0, length: p.length }, p, { data: new Float32Array(p.length), sends: 0 });
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
    const enc = new ParamsEncoder([{ offset: 0, length: 3 }]);
    const p = new Float32Array([1, 2, 3]);
    const [a] = enc.encodeAll(1, p);
    const [b] = enc.encodeAll(2, p);
    expect(b.snapshot).not.toBe(a.snapshot); // the previous version stays readable
    const [c] = enc.encodeAll(3, p);
    expect(c.snapshot).toBe(a.snapshot); // two snapshots in turn
    c.snapshot.sends++; // a slow socket still sending version 3
    enc.encodeAll(4, p);
    const [e] = enc.encodeAll(5, p);
    expect(e.snapshot).not.toBe(c.snapshot);
    expect([...c.snapshot.data]).toEqual([1, 2, 3]);
    const got = gradhub.Envelope.decode(Buffer.concat(e.parts)).params!;
    expect(got.version).toBe(5);
    expect(got.part).toMatchObject({ offset: 0, length: 3 });
    expect([...got.checksum!]).toEqual([...xxh64(p)]);
    expect(Buffer.from(got.data!).equals(Buffer.from(p.buffer))).toBe(true);
    expect(enc.frame(5, 0)).toBe(e);
    expect(enc.frame(4, 0)!.version).toBe(4); // the previous version stays readable
    expect(enc.frame(3, 0)).toBeNull();
    expect(() => enc.encodeAll(4, p)).toThrow(INTERNAL); // versions never go back
  });

  it('encodes each layer of a version once, when it is final, into one snapshot', () => {
    const layout = [{ offset: 0, length: 4 }, { offset: 4, length: 2 }, { offset: 6, length: 3 }];
    const enc = new ParamsEncoder(layout);
    const p = Float32Array.from({ length: 9 }, (_, i) => i + 1);
    const f1 = enc.encodePart(1, p, 1);
    expect(enc.frame(1, 0)).toBeNull();
    p[4] = 99; // a later change of an encoded part is not picked up: it was final
    expect(enc.encodePart(1, p, 1)).toBe(f1);
    const all = enc.encodeAll(1, p);
    expect(all[1]).toBe(f1);
    expect(all.map((f) => f.snapshot)).toEqual([f1.snapshot, f1.snapshot, f1.snapshot]);
    expect([...f1.snapshot.data]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    all.forEach((f, i) => expect([...f.checksum]).toEqual([...xxh64(f1.snapshot.data.subarray(layout[i].offset, layout[i].offset + layout[i].length))]));
    expect(enc.versionBytes).toBeGreaterThan(4 * 9);
    // While version 2 streams out part by part, version 1 stays whole and readable (a reassigned node needs it).
    const p2 = p.map((x) => x + 100);
    enc.encodePart(2, p2, 2);
    expect(enc.frames(2)).toBeNull(); // not complete yet
    expect(enc.frames(1)).toEqual(all);
    expect([...all[0].snapshot.data]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    enc.encodeAll(2, p2);
    enc.encodePart(3, p2, 0);
    expect(enc.frames(1)).toBeNull(); // only one version back
    expect(enc.frames(2)!.map((f) => f.version)).toEqual([2, 2, 2]);
  });
});
