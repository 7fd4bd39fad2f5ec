/**
 * @gradhub/proto: the wire protocol. `gradhub` is the module generated from gradhub.proto
 * (generated/, built by build.js before `tsc -b`, never edited by hand); the rest is hand-written
 * and shared by both sides: the framing (codec.ts), the size limits (limits.ts) and the faults
 * with their one error type, ProtocolError (faults.ts).
 */
export { gradhub } from '../generated/gradhub.js';
export * from './codec.js';
export * from './faults.js';
export * from './limits.js';
