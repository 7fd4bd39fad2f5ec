/**
 * Wire faults (gradhub.proto `ErrorCode`), both sides: the codes, their close codes and names, and
 * `ProtocolError`, the one error a peer's broken frame raises on either side (the coordinator's
 * membership answers it with Error + close; the worker's client the same). Runs in Node and in
 * browsers: no Node or DOM API.
 *
 * Codes that nobody sends yet are kept, not removed: `NON_FINITE_GRADIENT` is not a fault (the
 * reducer recomputes a non-finite node elsewhere and counts it without telling the worker); a
 * later change sends it to the worker and counts it, so its number stays reserved for that.
 */
import { ErrorCode, GradhubError } from '@gradhub/core';
import { gradhub } from '../generated/gradhub.js';

/** The wire error codes (proto `ErrorCode`). */
export const WireCode = gradhub.ErrorCode;
export type WireCode = gradhub.ErrorCode;

/** The close code that follows an Error or Reject frame carrying `code`. */
export function closeCodeFor(code: WireCode): number {
  return 4000 + code;
}

/** The name of a wire error code, e.g. 'BAD_TOKEN'. */
export function wireCodeName(code: number): string {
  return gradhub.ErrorCode[code] ?? `code ${code}`;
}

/**
 * A peer broke the wire protocol (a GradhubError E_PROTOCOL). `wireCode` is what to tell it (in an
 * Error frame); `closeCode` (4000 + wireCode) how to close its socket.
 */
export class ProtocolError extends GradhubError {
  readonly wireCode: WireCode;
  readonly closeCode: number;

  constructor(wireCode: WireCode, message: string) {
    super(ErrorCode.E_PROTOCOL, `${wireCodeName(wireCode)}: ${message}`);
    this.wireCode = wireCode;
    this.closeCode = closeCodeFor(wireCode);
  }
}
