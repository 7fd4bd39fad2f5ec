// The browser worker's transport (src/browser/socket.ts) against a stand-in WebSocket: one message
// per send, the bytes taken at send(), and `done` paced by bufferedAmount (the backpressure).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { browserClientSocket, type BrowserSocket } from '../src/browser/socket.js';

/** A WebSocket whose buffer drains only when told to. */
class FakeSocket implements BrowserSocket {
  readyState = 1;
  bufferedAmount = 0;
  readonly sent: Uint8Array[] = [];
  readonly closes: { code?: number; reason?: string }[] = [];
  rejectCode = false;

  send(data: Uint8Array<ArrayBuffer>): void {
    this.sent.push(data.slice()); // a browser copies at send()
    this.bufferedAmount += data.byteLength;
  }

  close(code?: number, reason?: string): void {
    if (this.rejectCode && code !== undefined) throw new Error('InvalidAccessError');
    this.closes.push({ code, reason });
    this.readyState = 3;
  }
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('browserClientSocket', () => {
  it('joins parts into one message, copied at send(), and reuses its buffer', () => {
    const ws = new FakeSocket();
    const s = browserClientSocket(ws, 100);
    const grad = new Uint8Array([4, 5, 6]);
    const done = vi.fn();
    s.send([new Uint8Array([1, 2, 3]), grad], done);
    grad.fill(9); // the engine overwrites its gradient with the next node's
    s.send([new Uint8Array([7]), grad], done);
    expect(ws.sent.map((m) => [...m])).toEqual([[1, 2, 3, 4, 5, 6], [7, 9, 9, 9]]);
    expect(done).toHaveBeenCalledTimes(2);
    expect(done).toHaveBeenCalledWith();
  });

  it('calls done once what was queued before the message is down to the high-water mark', async () => {
    const ws = new FakeSocket();
    const s = browserClientSocket(ws, 10);
    const first = vi.fn();
    s.send([new Uint8Array(50)], first);
    expect(first).toHaveBeenCalledTimes(1); // nothing was queued before it: compute the next node meanwhile
    const second = vi.fn();
    s.send([new Uint8Array(50)], second);
    expect(ws.bufferedAmount).toBe(100);
    await vi.advanceTimersByTimeAsync(200);
    expect(second).not.toHaveBeenCalled(); // 50 bytes of the first message still wait
    ws.bufferedAmount = 61;
    await vi.advanceTimersByTimeAsync(200);
    expect(second).not.toHaveBeenCalled();
    ws.bufferedAmount = 60;
    await vi.advanceTimersByTimeAsync(60);
    expect(second).toHaveBeenCalledWith();
  });

  it('fails the send of a closed socket, and a send whose socket closes while draining', async () => {
    const ws = new FakeSocket();
    const s = browserClientSocket(ws, 0);
    s.send([new Uint8Array(8)], () => {});
    const waiting = vi.fn();
    s.send([new Uint8Array(8)], waiting);
    ws.readyState = 3;
    await vi.advanceTimersByTimeAsync(100);
    expect(waiting).toHaveBeenCalledWith(expect.any(Error));
    const late = vi.fn();
    s.send([new Uint8Array(1)], late);
    expect(late).toHaveBeenCalledWith(expect.any(Error));
    expect(ws.sent).toHaveLength(2);
  });

  it('closes with the code and reason, or plainly when the browser refuses them', () => {
    const ws = new FakeSocket();
    browserClientSocket(ws).close(4012, 'HEARTBEAT_TIMEOUT');
    expect(ws.closes).toEqual([{ code: 4012, reason: 'HEARTBEAT_TIMEOUT' }]);
    const picky = new FakeSocket();
    picky.rejectCode = true;
    browserClientSocket(picky).close(1001, 'x');
    expect(picky.closes).toEqual([{ code: undefined, reason: undefined }]);
  });
});
