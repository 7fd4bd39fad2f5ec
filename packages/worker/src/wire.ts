/**
 * Wire frames (proto/gradhub.proto), worker side: the frames a worker takes from the coordinator.
 * The codec itself (size, version, kind checks; fragments; headers), the limits and the error
 * (`ProtocolError`) are @gradhub/proto's, shared with the coordinator. Runs in Node and in
 * browsers (no Node APIs).
 *
 * `decodeFrame` bounds the size, parses one Envelope, checks the protocol version and that the
 * body is a kind a worker accepts; failures throw `ProtocolError` with the proto ErrorCode to answer.
 * `resultHeader` encodes a Result *without* copying the gradient: it returns the frame's bytes up
 * to the gradient, so that the gradient bytes can be sent straight from the engine's buffer as
 * the message's next fragments (protobuf fields may come in any order; `grad` goes last).
 *
 * Messages in fragments: a message may be received as its fragments (ws `binaryType:
 * 'fragments'`). The coordinator streams Params as the Envelope up to `data` followed by the
 * parameter bytes in fragments; `decodeMessage` recognises that shape and hands the bytes on as
 * those fragments (`tail`), so that they are copied once, into the engine; any other shape is
 * joined and decoded by `decodeFrame`, with the same checks. `fragments` cuts a tensor for sending.
 */
import {
  FROM_COORDINATOR, decodeFrame as decodeFrameAs, decodeMessage as decodeMessageAs,
  type Decoded, type DecodedMessage,
} from '@gradhub/proto';

export {
  FRAGMENT_BYTES, MAX_FRAGMENTS, PROTOCOL_VERSION, ProtocolError, SMALL_FRAME_BYTES, WireCode,
  closeCodeFor, encode, fragments, frameLimits, paramCountOf, resultHeader, splitTrailingBytes, wireCodeName,
} from '@gradhub/proto';
export type { Body, BodyKind, BodyOf, Decoded, DecodedMessage } from '@gradhub/proto';

/** Decode and validate one frame from the coordinator. Throws ProtocolError. */
export function decodeFrame(frame: Uint8Array, maxFrameBytes: number): Decoded {
  return decodeFrameAs(frame, maxFrameBytes, FROM_COORDINATOR, 'worker');
}

/** Decode and validate one message given as its fragments: the checks of `decodeFrame`, without joining streamed parameters. Throws ProtocolError. */
export function decodeMessage(pieces: readonly Uint8Array[], maxFrameBytes: number): DecodedMessage {
  return decodeMessageAs(pieces, maxFrameBytes, FROM_COORDINATOR, 'worker');
}
