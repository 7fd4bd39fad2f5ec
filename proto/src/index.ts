/**
 * @gradhub/proto: the wire protocol. `gradhub` is the module generated from gradhub.proto
 * (generated/, built by build.js before `tsc -b`, never edited by hand); the rest is hand-written
 * and shared by both sides: the framing (codec.ts), packed tensors (packed.ts; Node's codec for them in packed-node.ts, `@gradhub/proto/node`), the size limits (limits.ts) and the faults
 * with their one error type, ProtocolError (faults.ts).
 */
export { gradhub } from '../generated/gradhub.js';
export {
  FROM_COORDINATOR,
  FROM_WORKER,
  PROTOCOL_VERSION,
  decodeFrame,
  decodeMessage,
  encode,
  fragments,
  paramsHeader,
  resultHeader,
  splitTrailingBytes,
  type Body,
  type BodyKind,
  type BodyOf,
  type Decoded,
  type DecodedMessage,
} from './codec.js';
export { ProtocolError, WireCode, closeCodeFor, wireCodeName } from './faults.js';
export { PACKED_HEAD_BYTES, packFloats, packFloatsAsync, packsNow, unpackFloats, type ByteCodec } from './packed.js';
export {
  FRAGMENT_BYTES,
  FRAME_SLACK_BYTES,
  MAX_FRAGMENTS,
  SMALL_FRAME_BYTES,
  frameLimits,
  paramCountOf,
  type FrameLimits,
} from './limits.js';
