/**
 * @gradhub/proto: the wire protocol. `gradhub` is the module generated from gradhub.proto
 * (generated/, built by build.js before `tsc -b`, never edited by hand); the codec (codec.ts) is
 * the hand-written framing both sides share.
 */
export { gradhub } from '../generated/gradhub.js';
export * from './codec.js';
