import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import * as tar from 'tar';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isGradhubError, type GradhubError } from '@gradhub/core';
import { CIFAR10_ARCHIVE_DIR, loadCifar10 } from '../src/dataset.js';
import { CIFAR10_DIR as SAMPLE } from '../../../test/fixtures/index.js';

const temps: string[] = [];
async function tempDir(): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), 'gradhub-dataset-'));
  temps.push(d);
  return d;
}
afterEach(async () => {
  for (const d of temps.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>, code: string): Promise<GradhubError> {
  try {
    await p;
  } catch (err) {
    if (!isGradhubError(err)) throw err;
    expect(err.code).toBe(code);
    return err;
  }
  throw new Error(`expected ${code}, the promise resolved`);
}

/** `n` records whose labels are i % 10 and whose pixels are all `fill`. */
function records(n: number, fill: number): Buffer {
  const b = Buffer.alloc(n * 3073, fill);
  for (let i = 0; i < n; i++) b[i * 3073] = i % 10;
  return b;
}

/** A pino logger writing JSON lines into `lines`. */
function captureLogger(lines: { level: number; msg: string }[]): pino.Logger {
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  return pino({ level: 'debug' }, stream);
}

describe('loadCifar10 from local files', () => {
  it('reads the CIFAR-10 fixture folder as it is', async () => {
    const data = await loadCifar10(SAMPLE, { download: false });
    expect(data.train.count).toBe(1280);
    expect(data.test.count).toBe(500);
    expect([...data.train.labels.subarray(0, 10)]).toEqual([6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
    expect([...data.test.labels.subarray(0, 10)]).toEqual([3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    expect(data.classNames).toEqual(['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
    expect(path.resolve(data.dir)).toBe(path.resolve(SAMPLE));
  });

  it('finds the files in DIR/cifar-10-batches-bin (the archive layout), following symlinks', async () => {
    const root = await tempDir();
    const sub = path.join(root, CIFAR10_ARCHIVE_DIR);
    await fsp.mkdir(sub);
    for (const f of ['data_batch_1.bin', 'test_batch.bin', 'batches.meta.txt']) await fsp.symlink(path.join(SAMPLE, f), path.join(sub, f));
    const data = await loadCifar10(root, { download: false });
    expect(data.dir).toBe(sub);
    expect(data.train.count).toBe(1280);
    expect(data.test.count).toBe(500);
  });

  it('reads every data_batch_N.bin present in N order, and falls back to the standard class names', async () => {
    const root = await tempDir();
    await fsp.writeFile(path.join(root, 'data_batch_2.bin'), records(2, 22));
    await fsp.writeFile(path.join(root, 'data_batch_1.bin'), records(3, 11));
    await fsp.writeFile(path.join(root, 'data_batch_4.bin'), records(1, 44));
    await fsp.writeFile(path.join(root, 'test_batch.bin'), records(2, 99));
    const lines: { level: number; msg: string }[] = [];
    const data = await loadCifar10(root, { download: false, logger: captureLogger(lines) });
    expect(data.train.count).toBe(6);
    expect([...data.train.labels]).toEqual([0, 1, 2, 0, 1, 0]);
    expect([0, 1, 2, 3, 4, 5].map((i) => data.train.pixels[i * 3072])).toEqual([11, 11, 11, 22, 22, 44]);
    expect(data.classNames[9]).toBe('truck');
    expect(lines.some((l) => l.level === 40 && /absent/.test(l.msg))).toBe(true); // data_batch_3 gap
    expect(lines.some((l) => l.level === 40 && /batches\.meta\.txt/.test(l.msg))).toBe(true);
  });

  it('says what to do when the files are missing and downloading is off', async () => {
    const root = await tempDir();
    await fsp.writeFile(path.join(root, 'data_batch_1.bin'), records(1, 0));
    const err = await rejection(loadCifar10(root, { download: false }), 'E_DATA_MISSING');
    expect(err.message).toContain(`CIFAR-10 is not in ${root}`);
    expect(err.message).toContain('--data DIR');
    expect(err.message).toContain('test/fixtures/cifar10');
    expect(err.message).toContain('but no test_batch.bin');
    expect(err.message).toContain('downloading is off');
    const none = await rejection(loadCifar10(path.join(root, 'nope'), { download: false }), 'E_DATA_MISSING');
    expect(none.message).toContain('--data DIR');
  });

  it('names a truncated file', async () => {
    const root = await tempDir();
    await fsp.writeFile(path.join(root, 'data_batch_1.bin'), records(3, 1));
    await fsp.writeFile(path.join(root, 'test_batch.bin'), records(2, 1).subarray(0, 3073 + 1000));
    const err = await rejection(loadCifar10(root, { download: false }), 'E_DATA_TRUNCATED');
    expect(err.message).toContain(path.join(root, 'test_batch.bin'));
  });

  it('names a file with a bad label', async () => {
    const root = await tempDir();
    const bad = records(3, 1);
    bad[2 * 3073] = 200;
    await fsp.writeFile(path.join(root, 'data_batch_1.bin'), bad);
    await fsp.writeFile(path.join(root, 'test_batch.bin'), records(2, 1));
    const err = await rejection(loadCifar10(root, { download: false }), 'E_DATA_CORRUPT');
    expect(err.message).toContain(path.join(root, 'data_batch_1.bin'));
    expect(err.message).toContain('record 2');
  });
});

describe('loadCifar10 download (local http server, never the network)', () => {
  let server: http.Server;
  let base = '';
  let archive: Buffer;
  let md5 = '';
  let requests = 0;

  beforeAll(async () => {
    // A small archive laid out like the official one: cifar-10-batches-bin/{data_batch_1,2,test_batch}.bin + meta.
    const src = await fsp.mkdtemp(path.join(os.tmpdir(), 'gradhub-archive-'));
    const inner = path.join(src, CIFAR10_ARCHIVE_DIR);
    await fsp.mkdir(inner);
    await fsp.writeFile(path.join(inner, 'data_batch_1.bin'), records(5, 7));
    await fsp.writeFile(path.join(inner, 'data_batch_2.bin'), records(4, 8));
    await fsp.writeFile(path.join(inner, 'test_batch.bin'), records(3, 9));
    await fsp.copyFile(path.join(SAMPLE, 'batches.meta.txt'), path.join(inner, 'batches.meta.txt'));
    const file = path.join(src, 'cifar.tar.gz');
    await tar.c({ gzip: true, file, cwd: src, portable: true }, [CIFAR10_ARCHIVE_DIR]);
    archive = await fsp.readFile(file);
    await fsp.rm(src, { recursive: true, force: true });
    md5 = createHash('md5').update(archive).digest('hex');

    server = http.createServer((req, res) => {
      requests++;
      if (req.url === '/cifar-10-binary.tar.gz') {
        res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': archive.length });
        // Two writes, so progress is reported more than once.
        res.write(archive.subarray(0, 1000));
        setTimeout(() => res.end(archive.subarray(1000)), 10);
      } else if (req.url === '/short.tar.gz') {
        res.writeHead(200, { 'content-length': archive.length });
        res.end(archive.subarray(0, 100));
        req.socket.destroy();
      } else if (req.url === '/stall.tar.gz') {
        res.writeHead(200, { 'content-length': archive.length });
        res.write(archive.subarray(0, 100)); // and never more
      } else {
        res.writeHead(404).end('not found');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** The entries of dir, recursively, as relative paths. */
  const tree = (dir: string): string[] => (fs.readdirSync(dir, { recursive: true }) as string[]).sort();

  it('downloads, verifies the md5, unpacks into DIR/cifar-10-batches-bin and loads, with progress', async () => {
    const root = path.join(await tempDir(), 'data'); // does not exist yet
    const seen: [number, number][] = [];
    const lines: { level: number; msg: string }[] = [];
    const data = await loadCifar10(root, {
      download: true, url: `${base}/cifar-10-binary.tar.gz`, md5, logger: captureLogger(lines),
      progress: (received, total) => seen.push([received, total]),
    });
    expect(data.dir).toBe(path.join(root, CIFAR10_ARCHIVE_DIR));
    expect(data.train.count).toBe(9);
    expect(data.test.count).toBe(3);
    expect(data.train.pixels[5 * 3072]).toBe(8); // data_batch_2 after data_batch_1
    expect(data.classNames[0]).toBe('airplane');
    expect(seen.length).toBeGreaterThan(1);
    expect(seen[seen.length - 1]).toEqual([archive.length, archive.length]);
    // Nothing but the unpacked folder is left behind: no temp archive, no staging folder.
    expect(tree(root)).toEqual([
      CIFAR10_ARCHIVE_DIR, ...['batches.meta.txt', 'data_batch_1.bin', 'data_batch_2.bin', 'test_batch.bin'].map((f) => path.join(CIFAR10_ARCHIVE_DIR, f)),
    ]);
    expect(lines.some((l) => /downloading/.test(l.msg))).toBe(true);

    // A second load finds the files and does not download again.
    const before = requests;
    expect((await loadCifar10(root, { download: true, url: `${base}/cifar-10-binary.tar.gz`, md5 })).train.count).toBe(9);
    expect(requests).toBe(before);
  });

  it('refuses an archive with the wrong md5 and leaves nothing behind', async () => {
    const root = await tempDir();
    const err = await rejection(
      loadCifar10(root, { download: true, url: `${base}/cifar-10-binary.tar.gz`, md5: '0'.repeat(32) }),
      'E_DATA_CHECKSUM',
    );
    expect(err.message).toContain(`has md5 ${md5}, expected ${'0'.repeat(32)}`);
    expect(err.message).toContain('--data DIR');
    expect(tree(root)).toEqual([]);
  });

  it('turns HTTP errors, cut connections, stalls and refused connections into E_DATA_MISSING saying what to do', async () => {
    const root = await tempDir();
    const notFound = await rejection(loadCifar10(root, { download: true, url: `${base}/missing.tar.gz`, md5 }), 'E_DATA_MISSING');
    expect(notFound.message).toContain(`downloading it from ${base}/missing.tar.gz failed: HTTP 404`);
    expect(notFound.message).toContain('--data DIR pointing at a folder with the CIFAR-10 binary files (e.g. test/fixtures/cifar10, the small subset in the gradhub repository)');
    expect(notFound.message).toContain('allow network access');

    await rejection(loadCifar10(root, { download: true, url: `${base}/short.tar.gz`, md5 }), 'E_DATA_MISSING');

    const stall = await rejection(loadCifar10(root, { download: true, url: `${base}/stall.tar.gz`, md5, idleTimeoutMs: 200 }), 'E_DATA_MISSING');
    expect(stall.message).toContain('no data for 200 ms');

    // A port nobody listens on (bind one, then close it).
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const refused = await rejection(loadCifar10(root, { download: true, url: `http://127.0.0.1:${port}/x.tar.gz`, md5 }), 'E_DATA_MISSING');
    expect(refused.message).toContain('failed');
    expect(tree(root)).toEqual([]);
  });
});
