/** atomic-write.ts: a file is replaced whole or not at all, and no temp file is left behind. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempFileFor, writeFileAtomic } from '../src/atomic-write.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-atomic-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('writeFileAtomic', () => {
  it('writes text, one buffer or several in order, creating missing folders', () => {
    const file = path.join(dir, 'a/b/x.bin');
    writeFileAtomic(file, [new Uint8Array([1, 2]), new Uint8Array([3])]);
    expect([...fs.readFileSync(file)]).toEqual([1, 2, 3]);
    writeFileAtomic(file, 'hi');
    expect(fs.readFileSync(file, 'utf8')).toBe('hi');
    expect(fs.readdirSync(path.dirname(file))).toEqual(['x.bin']);
  });

  it('names its temp file after the target, in the same folder', () => {
    expect(tempFileFor('/d/ckpt-000000005.msgpack')).toBe(`/d/.ckpt-000000005.${process.pid}.tmp`);
    expect(tempFileFor('/d/run.json')).toBe(`/d/.run.${process.pid}.tmp`);
  });

  it('leaves the old file and no temp file when the write fails', () => {
    const file = path.join(dir, 'keep.txt');
    writeFileAtomic(file, 'old');
    // The rename cannot replace a folder: the write fails after the temp file was written.
    const blocked = path.join(dir, 'blocked');
    fs.mkdirSync(path.join(blocked, 'inner'), { recursive: true });
    expect(() => writeFileAtomic(blocked, 'new')).toThrow();
    expect(fs.existsSync(tempFileFor(blocked))).toBe(false);
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
  });
});
