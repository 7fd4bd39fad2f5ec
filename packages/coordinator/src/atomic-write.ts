/**
 * The one way gradhub writes a file that must never be seen half-written (checkpoints, exported
 * weights, run.json, the report): the bytes go to a temp file in the same folder
 * (`.<name without extension>.<pid>.tmp`), are fsynced, and the temp file is renamed over the real
 * name; then the folder is fsynced so the rename survives a crash. Missing folders are created. On
 * any failure the temp file is removed and the error rethrown: the old file, if any, is untouched.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The temp file `writeFileAtomic` uses for `file` (checkpoint.ts recognises stale ones by it). */
export function tempFileFor(file: string): string {
  const base = path.basename(file);
  const dot = base.lastIndexOf('.');
  const stem = dot > 0 ? base.slice(0, dot) : base;
  return path.join(path.dirname(file), `.${stem}.${process.pid}.tmp`);
}

/** Write `data` (one buffer, several in order, or text) to `file` atomically and durably. */
export function writeFileAtomic(file: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  const dir = path.dirname(path.resolve(file));
  fs.mkdirSync(dir, { recursive: true });
  const tmp = tempFileFor(file);
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      const parts = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
      for (const p of parts) writeAll(fd, p);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dir);
}

function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
}

/** fsync a folder (so a rename in it is durable); a no-op where folders cannot be opened (Windows). */
function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch (err) {
    // Some platforms refuse fsync on a folder: the rename is still atomic there.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF') throw err;
  } finally {
    fs.closeSync(fd);
  }
}
