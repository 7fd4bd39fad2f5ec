/**
 * The browser worker's transport: a browser WebSocket adapted to the protocol client's
 * `ClientSocket` (client.ts).
 *
 * - A message of several parts (a Result's header and the gradient, straight from the engine's
 *   buffer) is joined into one reused buffer and sent with one `send()`: browsers have no
 *   fragmented sends, and they copy the bytes at `send()`, so the buffer and the engine's gradient
 *   may be overwritten as soon as it returns.
 * - `done` is called once what was queued *before* this message is down to `highWaterBytes`
 *   (`bufferedAmount`, polled: browsers have no drain event). That is the backpressure: the client
 *   computes its next node only then, so computing a node overlaps the transfer of the previous
 *   node's gradient, and at most two results (plus the high-water mark) wait in the browser's
 *   buffer. A socket that closes meanwhile gets `done(err)`.
 * - `close(code, reason)`: browsers accept only 1000 and 3000-4999 and a reason of at most 123
 *   bytes; anything else falls back to a plain close.
 *
 * Browser APIs only; the socket is typed structurally, so tests can pass a stand-in.
 */
import type { ClientSocket } from '../client.js';

/** `done` of a send is called once at most this many bytes queued before it wait in the socket's buffer. */
export const SEND_HIGH_WATER_BYTES = 8 * 1024 * 1024;

/** WebSocket.OPEN (the constant itself is not there outside browsers). */
const OPEN = 1;

/** The parts of a browser WebSocket used here. */
export interface BrowserSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: Uint8Array<ArrayBuffer>): void;
  close(code?: number, reason?: string): void;
}

/**
 * Adapt a browser WebSocket to the client's minimal interface (see the module comment): parts are
 * joined into one message; `done` once what was queued before it is down to `highWaterBytes`.
 */
export function browserClientSocket(ws: BrowserSocket, highWaterBytes = SEND_HIGH_WATER_BYTES): ClientSocket {
  let joined = new Uint8Array(0);

  /** Call `done` once the bytes queued before the last `messageBytes` are down to the high-water mark. */
  function whenDrained(messageBytes: number, done: (err?: Error) => void): void {
    let waitMs = 2;
    const check = (): void => {
      if (ws.readyState !== OPEN) done(new Error('the socket closed before its bytes were sent'));
      else if (ws.bufferedAmount <= highWaterBytes + messageBytes) done();
      else {
        setTimeout(check, waitMs);
        waitMs = Math.min(2 * waitMs, 50);
      }
    };
    check();
  }

  return {
    send(parts, done) {
      if (ws.readyState !== OPEN) {
        done(new Error('socket is not open'));
        return;
      }
      let message: Uint8Array;
      if (parts.length === 1) message = parts[0];
      else {
        let total = 0;
        for (const p of parts) total += p.byteLength;
        if (joined.byteLength < total) joined = new Uint8Array(total);
        let at = 0;
        for (const p of parts) {
          joined.set(p, at);
          at += p.byteLength;
        }
        message = joined.subarray(0, total);
      }
      try {
        // The browser copies the bytes here: `joined` and the engine's gradient may be reused after.
        ws.send(message as Uint8Array<ArrayBuffer>);
      } catch (err) {
        done(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      whenDrained(message.byteLength, done);
    },
    close(code, reason) {
      try {
        ws.close(code, reason);
      } catch {
        ws.close(); // a code or reason the browser does not allow
      }
    },
  };
}
