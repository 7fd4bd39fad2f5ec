/**
 * CIFAR-10 on disk: find the official binary files, download them when absent and allowed, load them.
 *
 * `loadCifar10(dir)` looks for `data_batch_N.bin` (N = 1..5) and `test_batch.bin` in `dir`, then in
 * `dir/cifar-10-batches-bin` (the folder the official archive unpacks to). It reads every training
 * batch present, in N order, counting records by file size, so a short batch (like the 1,280-image one
 * in the repository's `test/fixtures/cifar10`) is read as it is. `batches.meta.txt` gives the class names (the
 * standard names when it is absent).
 *
 * When no folder holds the files and `download` is on, the official archive is streamed from
 * `url` to a temp file in `dir` (with progress), its md5 checked, unpacked into a staging folder in
 * `dir` (regular files and folders only) and moved to `dir/cifar-10-batches-bin` file by file, so an
 * interrupted download never leaves a half-written batch under a real name. Every failure is a
 * GradhubError saying what to do: E_DATA_MISSING (absent and not downloadable), E_DATA_CHECKSUM
 * (bad archive), E_DATA_TRUNCATED / E_DATA_CORRUPT (a bad file, named).
 */
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Logger } from 'pino';
import * as tar from 'tar';
import {
  CIFAR10_CLASS_NAMES, ErrorCode, GradhubError, concatBatches, isGradhubError, parseCifarBatch, parseClassNames,
  type CifarDataset,
} from '@gradhub/core';

/** The official binary release (https://www.cs.toronto.edu/~kriz/cifar.html). */
export const CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
/** md5 of that archive, as published on the CIFAR-10 page. */
export const CIFAR10_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';
/** The folder the archive unpacks to. */
export const CIFAR10_ARCHIVE_DIR = 'cifar-10-batches-bin';
const TRAIN_FILES = [1, 2, 3, 4, 5].map((n) => `data_batch_${n}.bin`);
const TEST_FILE = 'test_batch.bin';
const META_FILE = 'batches.meta.txt';

export interface LoadCifarOptions {
  /** Download the official archive into `dir` when the files are absent. */
  readonly download: boolean;
  /** Progress and warnings (none when absent). */
  readonly logger?: Logger;
  /** Called as download bytes arrive: (bytes received, total bytes or 0 when the server does not say). */
  readonly progress?: (received: number, total: number) => void;
  /** Archive URL. Default CIFAR10_URL. */
  readonly url?: string;
  /** Expected md5 (hex) of the archive. Default CIFAR10_MD5. */
  readonly md5?: string;
  /** Give up when no byte arrives for this long, in ms. Default 60000. */
  readonly idleTimeoutMs?: number;
}

export interface Cifar10 {
  /** The training batches present, joined in order. */
  readonly train: CifarDataset;
  readonly test: CifarDataset;
  /** 10 class names, index = label. */
  readonly classNames: string[];
  /** The folder the files were read from (`dir` or `dir/cifar-10-batches-bin`). */
  readonly dir: string;
}

/** Find, download if needed and allowed, and load CIFAR-10 from `dir`. */
export async function loadCifar10(dir: string, opts: LoadCifarOptions): Promise<Cifar10> {
  const log = opts.logger?.child({ module: 'dataset' });
  let found = await findCifarDir(dir);
  if (found.dir === null) {
    const url = opts.url ?? CIFAR10_URL;
    if (!opts.download) {
      throw missing(dir, found.notes, 'downloading is off', 'or allow the download (no --no-download) with network access');
    }
    log?.info({ url, dir }, 'CIFAR-10 not found: downloading');
    try {
      await downloadAndExtract(dir, url, opts.md5 ?? CIFAR10_MD5, opts.progress, opts.idleTimeoutMs ?? 60_000);
    } catch (err) {
      if (isGradhubError(err)) throw err;
      throw missing(dir, found.notes, `downloading it from ${url} failed: ${describe(err)}`, 'or allow network access and run again', err);
    }
    found = await findCifarDir(dir);
    if (found.dir === null) {
      throw missing(dir, found.notes, `the archive from ${url} did not hold ${CIFAR10_ARCHIVE_DIR}/${TEST_FILE} and data_batch_*.bin`, 'or check the download URL');
    }
    log?.info({ dir: found.dir }, 'CIFAR-10 downloaded');
  }
  const dataDir = found.dir;
  if (found.gaps.length > 0) log?.warn({ dir: dataDir, missing: found.gaps }, 'some training batches are absent: using the ones present');

  const batches: CifarDataset[] = [];
  for (const name of found.trainFiles) batches.push(parseCifarBatch(await readData(path.join(dataDir, name)), path.join(dataDir, name)));
  const testPath = path.join(dataDir, TEST_FILE);
  const test = parseCifarBatch(await readData(testPath), testPath);
  const train = concatBatches(batches);

  const metaPath = path.join(dataDir, META_FILE);
  let classNames: string[];
  try {
    classNames = parseClassNames(await fsp.readFile(metaPath, 'utf8'), metaPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    log?.warn({ file: metaPath }, 'no batches.meta.txt: using the standard CIFAR-10 class names');
    classNames = [...CIFAR10_CLASS_NAMES];
  }
  log?.info({ dir: dataDir, train: train.count, test: test.count, files: found.trainFiles }, 'CIFAR-10 loaded');
  return { train, test, classNames, dir: dataDir };
}

interface Found {
  /** The folder holding the files, or null. */
  dir: string | null;
  /** The training files there, in order. */
  trainFiles: string[];
  /** Training files absent between present ones (e.g. data_batch_2.bin when 1 and 3 are there). */
  gaps: string[];
  /** What incomplete folders held, for the error message. */
  notes: string[];
}

/** The first of `dir`, `dir/cifar-10-batches-bin` holding test_batch.bin and at least one data_batch_N.bin. */
async function findCifarDir(dir: string): Promise<Found> {
  const notes: string[] = [];
  for (const candidate of [dir, path.join(dir, CIFAR10_ARCHIVE_DIR)]) {
    let names: Set<string>;
    try {
      names = new Set(await fsp.readdir(candidate));
    } catch {
      continue;
    }
    const trainFiles = TRAIN_FILES.filter((f) => names.has(f));
    const hasTest = names.has(TEST_FILE);
    if (hasTest && trainFiles.length > 0) {
      const last = TRAIN_FILES.indexOf(trainFiles[trainFiles.length - 1]);
      const gaps = TRAIN_FILES.slice(0, last).filter((f) => !names.has(f));
      return { dir: candidate, trainFiles, gaps, notes };
    }
    if (hasTest || trainFiles.length > 0) {
      notes.push(`${candidate} has ${[...trainFiles, ...(hasTest ? [TEST_FILE] : [])].join(', ')} but no ${hasTest ? 'data_batch_N.bin' : TEST_FILE}`);
    }
  }
  return { dir: null, trainFiles: [], gaps: [], notes };
}

function missing(dir: string, notes: string[], why: string, orWhat: string, cause?: unknown): GradhubError {
  return new GradhubError(
    ErrorCode.E_DATA_MISSING,
    `CIFAR-10 is not in ${dir}: looked for data_batch_1..5.bin and ${TEST_FILE} there and in ${path.join(dir, CIFAR10_ARCHIVE_DIR)}` +
      `${notes.length > 0 ? ` (${notes.join('; ')})` : ''}, and ${why}. Pass --data DIR pointing at a folder with the ` +
      `CIFAR-10 binary files (e.g. test/fixtures/cifar10, the small subset in the gradhub repository), ${orWhat}.`,
    cause === undefined ? undefined : { cause },
  );
}

async function readData(file: string): Promise<Uint8Array> {
  try {
    return await fsp.readFile(file);
  } catch (err) {
    throw new GradhubError(ErrorCode.E_DATA_MISSING, `cannot read ${file}: ${describe(err)}. Fix its permissions or replace the file.`, { cause: err });
  }
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `${err.message}${cause}`;
}

/** Stream `url` into a temp file in `dir` checking md5, then unpack its cifar-10-batches-bin/ into `dir`. */
async function downloadAndExtract(
  dir: string, url: string, md5: string, progress: LoadCifarOptions['progress'], idleTimeoutMs: number,
): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.cifar-10-binary.tar.gz.${process.pid}.part`);
  const staging = await fsp.mkdtemp(path.join(dir, '.cifar-10-extract-'));
  try {
    const got = await download(url, tmp, progress, idleTimeoutMs);
    if (got !== md5.toLowerCase()) {
      throw new GradhubError(
        ErrorCode.E_DATA_CHECKSUM,
        `the CIFAR-10 archive downloaded from ${url} has md5 ${got}, expected ${md5}: the download is broken or not the ` +
          `official file (it was deleted). Run again to retry, or pass --data DIR pointing at a folder with the CIFAR-10 ` +
          `binary files (e.g. test/fixtures/cifar10, the small subset in the gradhub repository).`,
      );
    }
    // Unpack regular files and folders only (no links), then move each file to its real name.
    await tar.x({
      file: tmp,
      cwd: staging,
      strict: true,
      filter: (_p, entry) => !('type' in entry) || entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'Directory',
    });
    const src = path.join(staging, CIFAR10_ARCHIVE_DIR);
    const names = await fsp.readdir(src).catch(() => [] as string[]);
    if (names.length > 0) {
      const dst = path.join(dir, CIFAR10_ARCHIVE_DIR);
      await fsp.mkdir(dst, { recursive: true });
      for (const name of names) await fsp.rename(path.join(src, name), path.join(dst, name));
    }
  } finally {
    await fsp.rm(tmp, { force: true });
    await fsp.rm(staging, { recursive: true, force: true });
  }
}

/** GET url into file; returns the md5 (hex) of the bytes. Throws on HTTP errors, short bodies and stalls. */
async function download(url: string, file: string, progress: LoadCifarOptions['progress'], idleTimeoutMs: number): Promise<string> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(new Error(`no data for ${idleTimeoutMs} ms`)), idleTimeoutMs);
  };
  arm();
  const fh = await fsp.open(file, 'w');
  try {
    const res = await fetch(url, { signal: controller.signal });
    if (!res.ok || res.body === null) throw new Error(`HTTP ${res.status} ${res.statusText}`);
    const total = Number(res.headers.get('content-length') ?? 0) || 0;
    const hash = createHash('md5');
    let received = 0;
    progress?.(0, total);
    for await (const chunk of res.body) {
      arm();
      hash.update(chunk);
      for (let off = 0; off < chunk.length;) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
      received += chunk.length;
      progress?.(received, total);
    }
    if (total > 0 && received !== total) throw new Error(`the connection closed after ${received} of ${total} bytes`);
    await fh.sync();
    return hash.digest('hex');
  } catch (err) {
    throw controller.signal.aborted && controller.signal.reason instanceof Error ? controller.signal.reason : err;
  } finally {
    clearTimeout(timer);
    await fh.close();
  }
}
