import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { Packr, Unpackr } from 'msgpackr';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { isGradhubError, modelSpec, type GradhubError } from '@gradhub/core';
import {
  checkSettingsMatch, checkpointFileName, listCheckpoints, readCheckpoint, readLatestCheckpoint, writeCheckpoint,
  type CheckpointState,
} from '../src/checkpoint.js';
import { saveCheckpoint } from '../src/checkpoint-saver.js';

const temps: string[] = [];
function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-ckpt-'));
  temps.push(d);
  return d;
}
afterEach(() => {
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function thrown(fn: () => unknown, code: string): GradhubError {
  try {
    fn();
  } catch (err) {
    if (!isGradhubError(err)) throw err;
    expect(err.code).toBe(code);
    return err;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

const SIZES = [3072, 8, 10];
const SETTINGS = {
  model: SIZES.join(','), batch: 64, chunk: 16, seed: 3, shuffle: true, normalize: false,
  lr: 0.01, momentum: 0.9, dampening: 0, weight_decay: 5e-4, nesterov: false,
};
const COUNT = modelSpec(SIZES).paramCount;

/** A state whose floats include the awkward ones: -0, subnormals, NaN payloads, infinities. */
function makeState(step: number, momentum = true): CheckpointState {
  const params = new Float32Array(COUNT);
  for (let k = 0; k < COUNT; k++) params[k] = Math.fround(Math.sin(k * 12.9898 + step) * 0.05);
  params[0] = -0;
  params[1] = 1.4e-45;
  params[2] = Number.POSITIVE_INFINITY;
  new Uint32Array(params.buffer)[3] = 0x7fc01234; // a NaN with a payload
  const buf = momentum ? params.map((v) => Math.fround(v * 0.5)) : null;
  return {
    format_version: 1,
    settings: SETTINGS,
    step,
    epoch: Math.floor(step / 10),
    sampler: { epoch: Math.floor(step / 10), position: (step % 10) * 64 },
    params,
    optimizer: { momentum_buffer: buf },
    metrics: [{ kind: 'step', step, epoch: 1, loss: 2.3, accuracy: 0.1, samples_per_s: 1000 }],
  };
}

const bytesOf = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function captureLogger(lines: Record<string, unknown>[]): pino.Logger {
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  return pino({ level: 'debug' }, stream);
}

describe('writeCheckpoint / readCheckpoint', () => {
  it('round-trips bit for bit, with null and non-null momentum buffers', () => {
    const dir = tempDir();
    for (const momentum of [true, false]) {
      const state = makeState(7, momentum);
      const file = writeCheckpoint(dir, state, 3);
      expect(path.basename(file)).toBe('ckpt-000000007.msgpack');
      const back = readCheckpoint(file);
      expect(bytesOf(back.params).equals(bytesOf(state.params))).toBe(true);
      if (momentum) expect(bytesOf(back.optimizer.momentum_buffer!).equals(bytesOf(state.optimizer.momentum_buffer!))).toBe(true);
      else expect(back.optimizer.momentum_buffer).toBeNull();
      expect(back.params.byteOffset).toBe(0);
      expect(back.params.buffer.byteLength).toBe(COUNT * 4); // own copy, aligned
      expect(back.settings).toEqual(SETTINGS);
      expect({ step: back.step, epoch: back.epoch, sampler: back.sampler, metrics: back.metrics })
        .toEqual({ step: 7, epoch: 0, sampler: { epoch: 0, position: 448 }, metrics: state.metrics });
    }
  });

  it('stores floats as raw little-endian bytes in a standard msgpack map, followed by the sha256 of the payload', () => {
    const dir = tempDir();
    const state = makeState(1);
    const bytes = fs.readFileSync(writeCheckpoint(dir, state, 1));
    const payload = bytes.subarray(0, bytes.length - 32);
    expect(createHash('sha256').update(payload).digest().equals(bytes.subarray(bytes.length - 32))).toBe(true);
    const obj = new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(payload);
    expect(obj.params).toBeInstanceOf(Uint8Array);
    expect(obj.params.length).toBe(COUNT * 4);
    expect(obj.params.readFloatLE(4 * 100)).toBe(state.params[100]);
    expect(obj.optimizer.momentum_buffer.length).toBe(COUNT * 4);
    expect(obj.format_version).toBe(1);
    // The file is little more than the two buffers: no number arrays.
    expect(bytes.length).toBeLessThan(2 * COUNT * 4 + 1000);
  });

  it('accepts model sizes as an array too', () => {
    const dir = tempDir();
    const state = { ...makeState(2), settings: { ...SETTINGS, model: SIZES } };
    expect(readCheckpoint(writeCheckpoint(dir, state, 1)).settings.model).toEqual(SIZES);
  });

  it('refuses to write an inconsistent state, writing nothing', () => {
    const dir = tempDir();
    const good = makeState(3);
    expect(() => writeCheckpoint(dir, { ...good, params: new Float32Array(5) }, 1)).toThrow(/params hold 5 floats, model 3072,8,10 has/);
    expect(() => writeCheckpoint(dir, { ...good, optimizer: { momentum_buffer: new Float32Array(5) } }, 1)).toThrow(/momentum_buffer holds 5/);
    expect(() => writeCheckpoint(dir, { ...good, settings: { batch: 64 } }, 1)).toThrow(/settings.model/);
    expect(() => writeCheckpoint(dir, { ...good, step: -1 }, 1)).toThrow(/step/);
    expect(() => writeCheckpoint(dir, good, 0)).toThrow(/keepLast/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('atomic write', () => {
  it('leaves no partial file when the write fails before the rename, and keeps the older checkpoints', () => {
    const dir = tempDir();
    writeCheckpoint(dir, makeState(4), 3);
    // Simulated failure: the final name is taken by a folder, so the rename fails after the temp
    // file was written and fsynced.
    fs.mkdirSync(path.join(dir, checkpointFileName(5)));
    fs.writeFileSync(path.join(dir, checkpointFileName(5), 'x'), 'occupied');
    expect(() => writeCheckpoint(dir, makeState(5), 3)).toThrow();
    expect(fs.readdirSync(dir).sort()).toEqual([checkpointFileName(4), checkpointFileName(5)]);
    expect(fs.readdirSync(dir).some((n) => n.endsWith('.tmp'))).toBe(false);
    expect(readLatestCheckpoint(dir)!.step).toBe(4);
  });

  it('ignores a temp file left by a crash mid-write and removes it on the next write', () => {
    const dir = tempDir();
    writeCheckpoint(dir, makeState(4), 3);
    const crashed = path.join(dir, '.ckpt-000000005.99999.tmp');
    const half = fs.readFileSync(path.join(dir, checkpointFileName(4)));
    fs.writeFileSync(crashed, half.subarray(0, half.length >> 1));
    const latest = readLatestCheckpoint(dir)!;
    expect(latest.step).toBe(4);
    expect(latest.skipped).toEqual([]);
    writeCheckpoint(dir, makeState(5), 3);
    expect(fs.existsSync(crashed)).toBe(false);
  });
});

describe('keep last N', () => {
  it('keeps the newest N and deletes older ones', () => {
    const dir = tempDir();
    for (const step of [10, 20, 30, 40, 50]) writeCheckpoint(dir, makeState(step, false), 2);
    expect(fs.readdirSync(dir).sort()).toEqual([checkpointFileName(40), checkpointFileName(50)]);
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([50, 40]);
    writeCheckpoint(dir, makeState(60, false), 1);
    expect(fs.readdirSync(dir)).toEqual([checkpointFileName(60)]);
  });

  it('never deletes the file just written, and drops stale checkpoints from an abandoned future', () => {
    const dir = tempDir();
    writeCheckpoint(dir, makeState(10, false), 3);
    writeCheckpoint(dir, makeState(20, false), 3);
    // Step 20 turned out corrupt; the run resumed from 10 and now writes 15.
    fs.truncateSync(path.join(dir, checkpointFileName(20)), 100);
    expect(readLatestCheckpoint(dir)!.step).toBe(10);
    writeCheckpoint(dir, makeState(15, false), 1);
    expect(fs.readdirSync(dir)).toEqual([checkpointFileName(15)]);
  });
});

describe('readLatestCheckpoint', () => {
  it('returns null for an empty or missing folder', () => {
    const dir = tempDir();
    expect(readLatestCheckpoint(dir)).toBeNull();
    expect(readLatestCheckpoint(path.join(dir, 'absent'))).toBeNull();
  });

  it('returns the newest checkpoint', () => {
    const dir = tempDir();
    for (const step of [1, 2, 3]) writeCheckpoint(dir, makeState(step), 5);
    const latest = readLatestCheckpoint(dir)!;
    expect(latest.step).toBe(3);
    expect(latest.file).toBe(path.join(dir, checkpointFileName(3)));
    expect(latest.skipped).toEqual([]);
    expect(bytesOf(latest.params).equals(bytesOf(makeState(3).params))).toBe(true);
  });

  /** Corruptions of a valid file, each with what the error must say. */
  const corruptions: [string, (bytes: Buffer) => Buffer, RegExp][] = [
    ['truncated', (b) => b.subarray(0, b.length - 1000), /checksum does not match/],
    ['truncated to almost nothing', (b) => b.subarray(0, 10), /too short/],
    ['a flipped bit', (b) => { const c = Buffer.from(b); c[c.length >> 1] ^= 1; return c; }, /checksum does not match/],
    ['empty', () => Buffer.alloc(0), /too short/],
  ];
  for (const [what, damage, re] of corruptions) {
    it(`falls back from a ${what} newest file to the next older valid one, reporting it`, () => {
      const dir = tempDir();
      writeCheckpoint(dir, makeState(1), 5);
      writeCheckpoint(dir, makeState(2), 5);
      const newest = path.join(dir, checkpointFileName(2));
      fs.writeFileSync(newest, damage(fs.readFileSync(newest)));
      const lines: Record<string, unknown>[] = [];
      const latest = readLatestCheckpoint(dir, captureLogger(lines))!;
      expect(latest.step).toBe(1);
      expect(latest.skipped).toHaveLength(1);
      expect(latest.skipped[0].code).toBe('E_CHECKPOINT_CORRUPT');
      expect(latest.skipped[0].message).toContain(newest);
      expect(latest.skipped[0].message).toMatch(re);
      expect(lines.some((l) => l.level === 40 && l.file === newest && l.code === 'E_CHECKPOINT_CORRUPT')).toBe(true);
      expect(lines.some((l) => l.level === 40 && String(l.msg).includes(path.join(dir, checkpointFileName(1))))).toBe(true);
      thrown(() => readCheckpoint(newest), 'E_CHECKPOINT_CORRUPT');
    });
  }

  /** A file with a valid checksum around a payload that is wrong inside. */
  function sealed(record: unknown): Buffer {
    const payload = record instanceof Uint8Array ? Buffer.from(record) : new Packr({ useRecords: false }).pack(record);
    return Buffer.concat([payload, createHash('sha256').update(payload).digest()]);
  }
  const valid = (): Record<string, unknown> => {
    const s = makeState(9);
    return { ...s, params: bytesOf(s.params), optimizer: { momentum_buffer: bytesOf(s.optimizer.momentum_buffer!) } };
  };
  const bad: [string, () => Buffer, RegExp][] = [
    ['bad msgpack', () => sealed(Buffer.from([0xc1, 0xc1, 0xc1])), /not valid msgpack/],
    ['a non-map payload', () => sealed([1, 2, 3]), /not a msgpack map/],
    ['a wrong format_version', () => sealed({ ...valid(), format_version: 2 }), /format_version is 2, this gradhub reads 1/],
    ['missing params', () => sealed({ ...valid(), params: undefined }), /params is missing/],
    ['params as a number array', () => sealed({ ...valid(), params: [1, 2, 3] }), /params is missing or not float32 bytes/],
    ['a params length mismatch', () => sealed({ ...valid(), params: Buffer.alloc(40) }), /params hold 10 floats, model 3072,8,10 has 24674/],
    ['a momentum length mismatch', () => sealed({ ...valid(), optimizer: { momentum_buffer: Buffer.alloc(8) } }), /momentum_buffer holds 2 floats/],
    ['a missing optimizer', () => sealed({ ...valid(), optimizer: undefined }), /momentum_buffer is missing/],
    ['a missing sampler', () => sealed({ ...valid(), sampler: undefined }), /sampler/],
    ['a missing step', () => sealed({ ...valid(), step: undefined }), /step is missing/],
    ['missing settings.model', () => sealed({ ...valid(), settings: { batch: 64 } }), /settings.model is missing/],
  ];
  for (const [what, make, re] of bad) {
    it(`reports ${what} as E_CHECKPOINT_CORRUPT naming the file`, () => {
      const dir = tempDir();
      writeCheckpoint(dir, makeState(1), 5);
      const file = path.join(dir, checkpointFileName(9));
      fs.writeFileSync(file, make());
      const err = thrown(() => readCheckpoint(file), 'E_CHECKPOINT_CORRUPT');
      expect(err.message).toContain(file);
      expect(err.message).toMatch(re);
      expect(err.message.length).toBeLessThan(600);
      const latest = readLatestCheckpoint(dir)!;
      expect(latest.step).toBe(1);
      expect(latest.skipped.map((e) => e.message)).toEqual([err.message]);
    });
  }

  it('throws when every checkpoint is corrupt, rather than starting over silently', () => {
    const dir = tempDir();
    writeCheckpoint(dir, makeState(1), 5);
    writeCheckpoint(dir, makeState(2), 5);
    for (const c of listCheckpoints(dir)) fs.truncateSync(c.file, 50);
    const err = thrown(() => readLatestCheckpoint(dir), 'E_CHECKPOINT_CORRUPT');
    expect(err.message).toContain(`every checkpoint in ${dir} is corrupt`);
    expect(err.message).toContain(checkpointFileName(1));
    expect(err.message).toContain(checkpointFileName(2));
  });
});

describe('checkSettingsMatch', () => {
  it('passes for equal settings (key order does not matter)', () => {
    const reversed = Object.fromEntries(Object.entries(SETTINGS).reverse());
    expect(() => checkSettingsMatch(SETTINGS, reversed)).not.toThrow();
  });

  it('lists every differing setting with both values and the flags that restore them', () => {
    const now = { ...SETTINGS, batch: 32, lr: 0.02, model: '3072,16,10', nesterov: true, shuffle: false };
    const err = thrown(() => checkSettingsMatch(SETTINGS, now, { file: 'ckpt-000000100.msgpack' }), 'E_RESUME_MISMATCH');
    expect(err.message).toContain('from ckpt-000000100.msgpack');
    expect(err.message).toContain('batch (checkpoint 64, now 32)');
    expect(err.message).toContain('lr (checkpoint 0.01, now 0.02)');
    expect(err.message).toContain('model (checkpoint 3072,8,10, now 3072,16,10)');
    expect(err.message).toContain('nesterov (checkpoint false, now true)');
    expect(err.message).toContain('shuffle (checkpoint true, now false)');
    expect(err.message).toContain('--batch-size 64');
    expect(err.message).toContain('--model 3072,8,10');
    expect(err.message).toContain('--lr 0.01');
    expect(err.message).not.toContain('seed');
  });

  it('reports settings present on one side only, and honours ignore', () => {
    const err = thrown(() => checkSettingsMatch({ ...SETTINGS, steps: 100 }, { ...SETTINGS, label_smoothing: 0.1 }), 'E_RESUME_MISMATCH');
    expect(err.message).toContain('label_smoothing (checkpoint (absent), now 0.1)');
    expect(err.message).toContain('steps (checkpoint 100, now (absent))');
    expect(() => checkSettingsMatch({ ...SETTINGS, steps: 100 }, { ...SETTINGS, steps: 200 }, { ignore: ['steps'] })).not.toThrow();
  });
});

describe('saveCheckpoint: a failed write never ends the run', () => {
  /** A folder holding a checkpoint's name: the rename onto it fails (EISDIR), as a full disk would fail the write. */
  const block = (dir: string, step: number): string => {
    const p = path.join(dir, checkpointFileName(step));
    fs.mkdirSync(path.join(p, 'x'), { recursive: true });
    return p;
  };

  it('reports the failure after one retry, with its code and one warn line; older checkpoints and no temp file are left', async () => {
    const dir = tempDir();
    writeCheckpoint(dir, makeState(5), 3);
    const before = fs.readFileSync(path.join(dir, checkpointFileName(5)));
    block(dir, 10);
    const lines: Record<string, unknown>[] = [];
    const outcome = await saveCheckpoint(dir, makeState(10), 3, captureLogger(lines), { backoffMs: 1 });
    expect(outcome).toMatchObject({ step: 10, ok: false, code: 'EISDIR' });
    const warns = lines.filter((l) => l.level === 40);
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ step: 10, code: 'EISDIR', msg: expect.stringMatching(/checkpoint of step 10 not written \(EISDIR\)/) });
    expect(fs.readFileSync(path.join(dir, checkpointFileName(5)))).toEqual(before);
    expect(fs.readdirSync(dir).sort()).toEqual([checkpointFileName(5), checkpointFileName(10)]);
    // The next checkpoint point writes, and keeps the older one.
    const next = await saveCheckpoint(dir, makeState(15), 3, captureLogger([]), { backoffMs: 1 });
    expect(next).toEqual({ step: 15, ok: true, file: path.join(dir, checkpointFileName(15)) });
    expect(readLatestCheckpoint(dir)!.step).toBe(15);
  });

  it('a retry after the backoff writes when the obstacle is gone', async () => {
    const dir = tempDir();
    const obstacle = block(dir, 7);
    const lines: Record<string, unknown>[] = [];
    // The first try runs before saveCheckpoint returns its promise; the retry waits for the backoff.
    const pending = saveCheckpoint(dir, makeState(7), 3, captureLogger(lines), { backoffMs: 50 });
    fs.rmSync(obstacle, { recursive: true });
    expect(await pending).toEqual({ step: 7, ok: true, file: path.join(dir, checkpointFileName(7)) });
    expect(lines.filter((l) => l.level === 40)).toEqual([]);
    expect(lines.some((l) => l.msg === 'checkpoint written on a retry')).toBe(true);
    expect(readCheckpoint(path.join(dir, checkpointFileName(7))).step).toBe(7);
  });

  it('a folder replaced by a file: ENOTDIR or EEXIST, reported, not thrown', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'ck');
    fs.writeFileSync(file, 'not a folder');
    const outcome = await saveCheckpoint(file, makeState(3), 3, captureLogger([]), { backoffMs: 1 });
    expect(outcome.ok).toBe(false);
    expect(['ENOTDIR', 'EEXIST']).toContain(!outcome.ok && outcome.code);
    expect(fs.readFileSync(file, 'utf8')).toBe('not a folder');
    expect(fs.readdirSync(dir)).toEqual(['ck']);
  });

  it('an inconsistent state is still a bug: E_INTERNAL is thrown', async () => {
    const dir = tempDir();
    const bad = { ...makeState(2), params: new Float32Array(3) };
    await expect(saveCheckpoint(dir, bad, 3, captureLogger([]))).rejects.toMatchObject({ code: 'E_INTERNAL' });
  });
});
