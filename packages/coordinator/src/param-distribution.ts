/**
 * Parameter distribution: which Params parts each worker was sent, and sending it the ones it
 * lacks. The bytes come from a `ParamsEncoder` (protocol.ts): each part of a version is copied
 * into a reused snapshot, hashed (xxHash64) and encoded once, and the same bytes go, as fragments,
 * to every worker (core `streamParts`: a layer, or a block of ~16 MiB of a big layer's rows).
 *
 * - `publish`: a part is final (the trainer's SGD step updated it): encode it and send it now to
 *   the given workers, while the rest of the request is still being reduced.
 * - `sendVersion`: the parts of a version a worker lacks, just before its Work.
 * - `resend`: a worker asked for a version again (ParamsRequest): every part, once per version and
 *   connection (a worker whose copy failed its checksum asks once; asking again for the same
 *   version is ignored, so a few bytes of requests cannot make the coordinator send the model
 *   over and over).
 * - `adoptHeld`: a worker that rejoins saying it still holds a version this side still has (the
 *   current or the previous one), part for part with equal checksums, is not sent it again.
 *
 * To a worker whose session packs tensors (`w.packed`: always, or while its measured bandwidth is
 * below `w.packBelow`) and which held the whole previous version when the first part of a new one
 * went to it, each part goes as the packed XOR with that version (`ParamsEncoder.packedFrame`:
 * often half the bytes or less), unless packing it did not help.
 * Resends are always raw: a worker asks again when its copy failed.
 *
 * A part's snapshot is not overwritten until every socket has taken it (`snapshot.sends`). Once
 * every part of a version went to a worker, `w.paramsVersion` is that version (-1 while it holds
 * a mix of two). When the `keeper` (remote-audit.ts) wants a worker to keep versions for audits,
 * the first part of each new version to it follows a Keep{the version it held whole until then}.
 */
import { bytesEqual, type FlatRange } from '@gradhub/core';
import { packsNow } from '@gradhub/proto';
import { nodeByteCodec } from '@gradhub/proto/node';
import type { WorkerConn } from './membership.js';
import { ParamsEncoder, type ParamsPartFrame } from './protocol.js';
import type { RemoteAudits } from './remote-audit.js';

export class ParamDistribution {
  private readonly encoder: ParamsEncoder;
  /**
   * Per worker: the version whose parts it is being sent, which parts went out (1) and how many,
   * and the version it held whole when the first of them went (packed parts XOR against it; null: none).
   */
  private readonly sentParts = new Map<number, { version: number; sent: Uint8Array; count: number; base: number | null }>();
  /** Per worker: the hand-over of its last queued Params part (a packed part being deflated), while one is pending. */
  private readonly queued = new Map<number, Promise<void>>();
  /** Per worker: the versions it was resent on request (at most the last two: only two are held). */
  private readonly resent = new Map<number, number[]>();
  /** Who keeps a version for audits (Keep after its last part); null: nobody. */
  keeper: Pick<RemoteAudits, 'wantsKeep' | 'keeping' | 'keepFrame'> | null = null;

  /** `linkRate(w)`: the measured bandwidth to `w`, bytes/s, or null when not measured yet. */
  constructor(private readonly parts: readonly FlatRange[], private readonly linkRate: (w: WorkerConn) => number | null = () => null) {
    this.encoder = new ParamsEncoder(parts);
  }

  /** The version being encoded (or last encoded), or null. */
  get version(): number | null {
    return this.encoder.version;
  }

  /** Bytes of a whole version's messages, about (cost estimates). */
  get versionBytes(): number {
    return this.encoder.versionBytes;
  }

  /** Encode the parts of `version` not encoded yet (those not published ahead). */
  encodeAll(version: number, params: Float32Array): void {
    this.encoder.encodeAll(version, params);
  }

  /**
   * Part `index` of `version` is final: encode it and send it to each of `to` (unless a newer
   * version is encoded already). `params` must hold that part's final values.
   */
  publish(version: number, params: Float32Array, index: number, to: readonly WorkerConn[]): void {
    const held = this.encoder.version;
    if (held !== null && version < held) return;
    const f = this.encoder.encodePart(version, params, index);
    for (const w of to) this.sendPart(w, f);
  }

  /**
   * Send `w` the parts of `version` it was not sent yet; null when that version is no longer
   * encoded. `sends` resolve when the socket has taken each; `bytes` resolves to what went out.
   */
  sendVersion(w: WorkerConn, version: number): { sends: Promise<boolean>[]; bytes: Promise<number> } | null {
    const frames = this.encoder.frames(version);
    if (!frames) return null;
    const sends: Promise<boolean>[] = [];
    const bytes: Promise<number>[] = [];
    for (const f of frames) {
      const out = this.sendPart(w, f);
      if (!out) continue;
      bytes.push(out.bytes);
      sends.push(out.sent);
    }
    return { sends, bytes: Promise.all(bytes).then((b) => b.reduce((x, y) => x + y, 0)) };
  }

  /**
   * `w` asked for `version` again: send it every part, unless it was resent that version already
   * ('ignored') or the version is not held ('not-held').
   */
  resend(w: WorkerConn, version: number): 'sent' | 'ignored' | 'not-held' {
    const frames = this.encoder.frames(version);
    if (!frames) return 'not-held';
    const done = this.resent.get(w.id) ?? [];
    if (done.includes(version)) return 'ignored';
    done.push(version);
    if (done.length > 2) done.shift();
    this.resent.set(w.id, done);
    this.sentParts.delete(w.id);
    for (const f of frames) this.sendPart(w, f, true);
    return 'sent';
  }

  /** Take `w`'s word (Hello.held) that it holds a version this side still has; true when it does (nothing is sent). */
  adoptHeld(w: WorkerConn, incarnation: string): boolean {
    const h = w.held;
    if (!h || h.incarnation !== incarnation) return false;
    const frames = this.encoder.frames(h.version);
    const same = frames !== null && frames.length === h.parts.length && frames.every((f, i) => {
      const p = h.parts[i];
      return f.range.offset === p.offset && f.range.length === p.length && bytesEqual(f.checksum, p.checksum);
    });
    if (!same) return false;
    w.paramsVersion = h.version;
    this.sentParts.set(w.id, { version: h.version, sent: new Uint8Array(frames.length).fill(1), count: frames.length, base: null });
    return true;
  }

  /** `w` is gone. */
  forget(workerId: number): void {
    this.sentParts.delete(workerId);
    this.resent.delete(workerId);
    this.queued.delete(workerId);
  }

  /** Whether parts go packed to `w` now: a packing session, and always or while its link measures slow. */
  private packs(w: WorkerConn): boolean {
    // Unmeasured: raw (a worker's first version goes raw anyway: it holds no base).
    return w.packed && packsNow(w.packBelow, this.linkRate(w), false);
  }

  /**
   * Send `w` one part unless it was sent that part of that version already (null then): packed
   * when its session packs now and it held the base whole (raw when `raw`). `sent` resolves once
   * the socket took it, with the bytes that went out. A packed part is deflated off the event loop
   * and handed to the socket when ready; every later part to `w` waits its turn behind it, and so
   * does `w`'s next Work (`whenQueued`), so frames reach the worker in the order they were sent.
   */
  private sendPart(w: WorkerConn, f: ParamsPartFrame, raw = false): { sent: Promise<boolean>; bytes: Promise<number> } | null {
    let rec = this.sentParts.get(w.id);
    let keep: number | null = null;
    if (!rec || rec.version !== f.version) {
      // A new version for this worker: the version it holds whole now is the base of packed parts,
      // and the one it keeps for audits when the keeper wants it to (a Keep goes ahead of this part).
      const whole = rec && w.paramsVersion >= 0 && w.paramsVersion === rec.version ? rec.version : null;
      const base = raw ? null : whole;
      if (whole !== null && this.keeper?.wantsKeep(w)) keep = whole;
      if (!rec) {
        rec = { version: f.version, sent: new Uint8Array(this.parts.length), count: 0, base };
        this.sentParts.set(w.id, rec);
      } else {
        rec.version = f.version;
        rec.sent.fill(0);
        rec.count = 0;
        rec.base = base;
      }
    }
    if (rec.sent[f.index]) return null;
    rec.sent[f.index] = 1;
    rec.count++;
    if (rec.count === this.parts.length) w.paramsVersion = f.version;
    else if (w.paramsVersion !== f.version) w.paramsVersion = -1; // it holds a mix while parts arrive
    const sendFrame = (parts: readonly Uint8Array[]): Promise<boolean> => {
      if (keep !== null && this.keeper) {
        // Ahead of the new version's first part: the worker copies the old one before it is overwritten.
        void w.send(this.keeper.keepFrame(keep));
        this.keeper.keeping(w, keep);
      }
      return w.send(parts);
    };
    const pack = !raw && rec.base !== null && this.packs(w);
    const ahead = this.queued.get(w.id);
    f.snapshot.sends++;
    const release = (): void => {
      f.snapshot.sends--;
    };
    if (!pack && !ahead) {
      const sent = sendFrame(f.parts);
      void sent.finally(release);
      return { sent, bytes: Promise.resolve(f.byteLength) };
    }
    const frame = pack ? this.encoder.packedFrame(f.version, f.index, rec.base!, nodeByteCodec).then((p) => p ?? f) : Promise.resolve(f);
    const turn = Promise.all([ahead, frame]).then(([, fr]) => fr);
    const handed = turn.then(() => undefined, () => undefined);
    this.queued.set(w.id, handed);
    void handed.then(() => {
      if (this.queued.get(w.id) === handed) this.queued.delete(w.id);
    });
    const sent = turn.then((fr) => sendFrame(fr.parts), () => sendFrame(f.parts));
    void sent.finally(release);
    return { sent, bytes: Promise.all([turn.catch(() => f), sent]).then(([fr]) => fr.byteLength) };
  }

  /** Resolves once every Params part sent to `w` so far was handed to its socket (send `w`'s Work after it). */
  whenQueued(workerId: number): Promise<void> | null {
    return this.queued.get(workerId) ?? null;
  }
}
