/**
 * Every file and folder a run writes, checked before any data is read: a run must fail at its
 * start, never after hours of training (an --export that cannot be written would lose the weights).
 *
 * A folder target (--run-dir, --checkpoint-dir) must be a folder or not exist yet; a file target
 * (--export, --metrics, --report) must be a file or not exist yet. Either way the nearest folder
 * that exists on its path must be a folder we can write in: probed by creating and removing a temp
 * file there (permissions, read-only mounts, ACLs and root all answer the same way). Missing folders
 * are created later, when the run starts; nothing is left behind by the check. Each failure is a
 * GradhubError E_OUTPUT_UNWRITABLE saying what is wrong and what to do.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { GradhubError } from '@gradhub/core';

/** What a target should be. */
export type OutputKind = 'file' | 'folder';

/**
 * Throws E_OUTPUT_UNWRITABLE unless `target` (named `label` in messages, e.g. "--export") can be
 * written as a `kind`. A file written atomically (`replaced`: a temp file renamed over it) must be a
 * regular file, never a device such as /dev/null; one appended to (the metrics file) may be one.
 */
export function checkWritable(target: string, kind: OutputKind, label: string, replaced = true): void {
  const fail = (what: string, todo: string): never => {
    throw new GradhubError('E_OUTPUT_UNWRITABLE', `${label} ${target}: ${what}; ${todo} (nothing was written)`);
  };
  const st = statOrNull(target, fail);
  if (st) {
    if (kind === 'file' && st.isDirectory()) fail('is a folder, not a file', `give a file name, e.g. ${path.join(target, 'model.safetensors')}`);
    if (kind === 'folder' && !st.isDirectory()) fail('is a file, not a folder', 'give a folder (it is created when missing)');
    if (kind === 'file' && replaced && !st.isFile()) fail('is not a regular file (it would be replaced by one)', 'give a regular file name');
  }
  if (st && kind === 'file' && !replaced) return checkFileWritable(target, fail);
  // The folder the target goes in (or, for a folder, itself): its nearest existing ancestor must be a writable folder.
  const start = kind === 'folder' ? path.resolve(target) : path.dirname(path.resolve(target));
  let dir = start;
  for (;;) {
    const d = statOrNull(dir, fail);
    if (d) {
      if (!d.isDirectory()) fail(`${dir} is a file, so no folder can be made under it`, 'choose a path whose folders are folders');
      break;
    }
    const up = path.dirname(dir);
    if (up === dir) fail(`no folder of ${start} exists`, 'choose a path on a mounted file system');
    dir = up;
  }
  const problem = probeWrite(dir);
  if (problem) fail(`cannot write in ${dir} (${problem})`, 'choose a folder you can write to, or fix its permissions');
  if (st && kind === 'file') checkFileWritable(target, fail);
}

/** An existing file we may write (its folder aside). */
function checkFileWritable(file: string, fail: (what: string, todo: string) => never): void {
  try {
    fs.accessSync(file, fs.constants.W_OK);
  } catch (e) {
    fail(`cannot be written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'choose another file, or fix its permissions');
  }
}

/** Stats of `p`, null when it (or a folder on its way) does not exist; other errors fail. */
function statOrNull(p: string, fail: (what: string, todo: string) => never): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    return fail(`cannot be used (${code ?? (e as Error).message})`, 'choose another path');
  }
}

/** Create and remove a temp file in `dir`: null when that works, else the error's code. */
function probeWrite(dir: string): string | null {
  const probe = path.join(dir, `.gradhub-probe-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = fs.openSync(probe, 'wx');
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
  fs.closeSync(fd);
  try {
    fs.unlinkSync(probe);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
  return null;
}
