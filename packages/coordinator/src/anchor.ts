/**
 * The rollback anchor (docs/design.md "Audits and exact rollback"): one state kept on disk, older
 * than the in-memory window (snapshots.ts), so that a cheater caught late is still undone exactly.
 * The trainer writes the state after `a - 1` updates here when that snapshot leaves memory and
 * `a` is the oldest step with a result that can still be proven a lie (an unaudited or pending
 * result of an untrusted session that is live or still has audits pending: audit.ts
 * `oldestOpenStep`); a rollback whose target is older than the window restarts from it.
 *
 * File (one, replaced atomically): `u32 LE n`, n bytes of JSON (step, sampler, evaluatedAt,
 * metricsMark, hasMomentum, paramCount), then paramCount float32 parameters and, with
 * hasMomentum, paramCount float32 momentum values (little-endian, as in memory).
 * A write that fails (ENOSPC, EACCES...) is reported to the caller, which goes on with the window
 * in memory only; the file is removed when the run ends (`remove`).
 */
import * as fs from 'node:fs';
import { internalError, type SamplerState } from '@gradhub/core';
import { writeFileAtomic } from './atomic-write.js';
import type { Snapshot } from './snapshots.js';

interface AnchorHeader {
  readonly step: number;
  readonly sampler: SamplerState;
  readonly evaluatedAt: number;
  readonly metricsMark: number;
  readonly hasMomentum: boolean;
  readonly paramCount: number;
}

export class RollbackAnchor {
  private header: AnchorHeader | null = null;

  constructor(readonly file: string, private readonly paramCount: number) {}

  /** Updates applied in the state kept, or null when none is. */
  get step(): number | null {
    return this.header?.step ?? null;
  }

  /** Keep `s` (replacing the state kept). Throws the file system's error; the old state is then kept. */
  save(s: Snapshot): void {
    if (s.params.length !== this.paramCount) throw internalError('RollbackAnchor.save: wrong size');
    const header: AnchorHeader = { step: s.step, sampler: { ...s.sampler }, evaluatedAt: s.evaluatedAt, metricsMark: s.metricsMark, hasMomentum: s.hasMomentum, paramCount: this.paramCount };
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(json.length);
    const bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    writeFileAtomic(this.file, [len, json, bytes(s.params), ...(s.hasMomentum ? [bytes(s.momentum)] : [])]);
    this.header = header;
  }

  /** The state kept, read back into `into` (its buffers are overwritten). Throws when the file is gone or wrong. */
  load(into: Snapshot): Snapshot {
    if (!this.header) throw internalError('RollbackAnchor.load: nothing kept');
    const buf = fs.readFileSync(this.file);
    const n = buf.readUInt32LE(0);
    const header = JSON.parse(buf.subarray(4, 4 + n).toString('utf8')) as AnchorHeader;
    const floats = this.paramCount * (header.hasMomentum ? 2 : 1);
    if (header.step !== this.header.step || header.paramCount !== this.paramCount || buf.length !== 4 + n + 4 * floats) {
      throw internalError(`rollback anchor ${this.file}: not the state written (step ${header.step}, ${buf.length} bytes)`);
    }
    const at = 4 + n;
    const view = (k: number): Float32Array => {
      const out = new Float32Array(this.paramCount);
      new Uint8Array(out.buffer).set(buf.subarray(at + 4 * this.paramCount * k, at + 4 * this.paramCount * (k + 1)));
      return out;
    };
    into.params.set(view(0));
    if (header.hasMomentum) into.momentum.set(view(1));
    into.step = header.step;
    into.hasMomentum = header.hasMomentum;
    into.sampler = { ...header.sampler };
    into.evaluatedAt = header.evaluatedAt;
    into.metricsMark = header.metricsMark;
    return into;
  }

  /** Forget the state kept and remove its file (the run's end). */
  remove(): void {
    this.header = null;
    fs.rmSync(this.file, { force: true });
  }
}
