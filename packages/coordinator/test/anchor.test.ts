/** The rollback anchor: one state on disk, read back bit for bit; a file that is not the state written is refused. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RollbackAnchor } from '../src/anchor.js';
import { tempFileFor } from '../src/atomic-write.js';
import type { Snapshot } from '../src/snapshots.js';

const N = 1000;
const snapshot = (step: number, hasMomentum: boolean): Snapshot => ({
  step, hasMomentum, evaluatedAt: 3, metricsMark: 1234,
  params: new Float32Array(N).map((_, i) => Math.sin(i + step)),
  momentum: new Float32Array(N).map((_, i) => (hasMomentum ? Math.cos(i) : 0)),
  sampler: { epoch: 1, position: 17 } as unknown as Snapshot['sampler'],
});
const blank = (): Snapshot => ({ step: -1, hasMomentum: true, evaluatedAt: 0, metricsMark: 0, params: new Float32Array(N), momentum: new Float32Array(N), sampler: { epoch: 0, position: 0 } as unknown as Snapshot['sampler'] });

describe('rollback anchor', () => {
  it('keeps one state and reads it back bit for bit, with or without a momentum buffer; remove deletes the file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-anchor-'));
    const a = new RollbackAnchor(path.join(dir, 'rollback-anchor.bin'), N);
    expect(a.step).toBe(null);
    for (const m of [true, false]) {
      const s = snapshot(m ? 5 : 9, m);
      a.save(s);
      expect(a.step).toBe(s.step);
      const back = a.load(blank());
      expect(Buffer.from(back.params.buffer).equals(Buffer.from(s.params.buffer))).toBe(true);
      if (m) expect(Buffer.from(back.momentum.buffer).equals(Buffer.from(s.momentum.buffer))).toBe(true);
      expect(back).toMatchObject({ step: s.step, hasMomentum: m, evaluatedAt: 3, metricsMark: 1234, sampler: s.sampler });
    }
    expect(fs.readdirSync(dir)).toEqual(['rollback-anchor.bin']); // one file, no temp left
    a.remove();
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(a.step).toBe(null);
  });

  it('refuses a file that is not the state it wrote (truncated), and a save that cannot be written keeps the old state', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-anchor-'));
    const file = path.join(dir, 'rollback-anchor.bin');
    const a = new RollbackAnchor(file, N);
    a.save(snapshot(4, true));
    fs.truncateSync(file, 100);
    expect(() => a.load(blank())).toThrow(/not the state written|Unexpected|JSON/);
    a.save(snapshot(4, true));
    // The write's temp file taken by a folder: the save fails (even as root), the state kept stays.
    fs.mkdirSync(tempFileFor(file));
    expect(() => a.save(snapshot(8, true))).toThrow(/EISDIR/);
    expect(a.step).toBe(4);
    expect(a.load(blank()).step).toBe(4);
  });
});
