// What the attackers that join say: a Hello with a token, as the protocol's codec encodes it.
import { encode, gradhub } from '@gradhub/proto';

export function hello(token, name) {
  return encode({ hello: { protocolVersion: gradhub.ProtocolVersion.CURRENT, token, runtime: gradhub.Runtime.NODE, name, capabilities: { threads: 1, simd: false, maxBatch: 0, backend: 'attacker' } } });
}

/** The body kind and message of a frame from the coordinator (whole messages: small models only). */
export function decode(data) {
  const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
  const env = gradhub.Envelope.decode(bytes);
  return { kind: env.body, msg: env[env.body], bytes: bytes.byteLength };
}
