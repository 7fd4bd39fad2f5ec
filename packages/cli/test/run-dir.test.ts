/** The run folder's rules, on real folders. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isGradhubError } from '@gradhub/core';
import {
  createRunDir, defaultRunDirName, newRunRecord, planRunDir, readRunRecord, resumedOptions, runPaths, writeRunRecord,
} from '../src/run-dir.js';
import { TRAINING_OPTIONS, explicitOptions, parseOptions } from '../src/options.js';

const temps: string[] = [];
afterAll(() => temps.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
function temp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-rundir-'));
  temps.push(d);
  return d;
}
const usage = (f: () => unknown, re: RegExp): void => {
  try {
    f();
  } catch (e) {
    expect(isGradhubError(e, 'E_USAGE'), String(e)).toBe(true);
    expect((e as Error).message).toMatch(re);
    return;
  }
  throw new Error('no error');
};

describe('run folders', () => {
  it('are named after the local start time, with -2, -3 when the name is taken', () => {
    const d = new Date(2026, 11, 5, 13, 15, 0);
    expect(defaultRunDirName(d)).toBe(path.join('runs', '20261205-131500'));
    const cwd = process.cwd();
    process.chdir(temp());
    try {
      expect([createRunDir(null, d), createRunDir(null, d), createRunDir(null, d)])
        .toEqual(['', '-2', '-3'].map((s) => path.join('runs', `20261205-131500${s}`)));
    } finally {
      process.chdir(cwd);
    }
  });

  it('plan: new, resume, first start, and the folders they refuse', () => {
    const root = temp();
    const run = path.join(root, 'run');
    fs.mkdirSync(run);
    const o = parseOptions(['--batch-size', '8'], TRAINING_OPTIONS);
    writeRunRecord(run, newRunRecord({ gradhubVersion: '9.9.9', command: 'train', argv: ['--batch-size', '8'], started: new Date(), options: o, settings: { batch: 8 } }));
    const other = path.join(root, 'other');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'notes.txt'), 'x');
    expect(planRunDir(undefined, false, undefined)).toEqual({ kind: 'new', dir: null });
    expect(planRunDir(path.join(root, 'fresh'), false, undefined)).toEqual({ kind: 'new', dir: path.join(root, 'fresh') });
    expect(planRunDir(run, true, undefined)).toMatchObject({ kind: 'resume', dir: run, record: { gradhub_version: '9.9.9' } });
    expect(planRunDir(path.join(root, 'fresh'), true, undefined)).toEqual({ kind: 'first', dir: path.join(root, 'fresh') });
    expect(planRunDir(undefined, true, path.join(root, 'ck'))).toEqual({ kind: 'new', dir: null });
    usage(() => planRunDir(other, true, undefined), /not a gradhub run folder/);
    usage(() => planRunDir(run, false, undefined), /already holds a run/);
    usage(() => planRunDir(path.join(other, 'notes.txt'), false, undefined), /is a file/);
    usage(() => planRunDir(undefined, true, undefined), /--resume needs --run-dir/);
    fs.writeFileSync(path.join(other, 'run.json'), '{"format":"something-else","options":{}}');
    usage(() => readRunRecord(other), /not a gradhub run record/);
    expect(runPaths(run).checkpoints).toBe(path.join(run, 'checkpoints'));
  });

  it('a resumed run takes its options from run.json unless given again; paths stay where they were', () => {
    const record = newRunRecord({
      gradhubVersion: '0', command: 'train', argv: [], started: new Date(),
      options: parseOptions(['--batch-size', '8', '--epochs', '3', '--data', 'd', '--init-from', 'w.st', '--token', 'secret'], [...TRAINING_OPTIONS, { name: 'token', kind: 'string', help: '' }]),
      settings: {},
    });
    expect(record.options).not.toHaveProperty('token');
    const argv = ['--resume', '--run-dir', 'r', '--epochs', '5'];
    const o = resumedOptions(parseOptions(argv, TRAINING_OPTIONS), explicitOptions(argv, TRAINING_OPTIONS), { ...record, cwd: '/work/a' }, TRAINING_OPTIONS, '/work/b');
    expect(o['batch-size']).toBe(8);
    expect(o['epochs']).toBe(5);
    expect(o['data']).toBe(path.join('..', 'a', 'd'));
    expect(o['init-from']).toBeUndefined();
    // The environment counts as given again.
    const env = { GRADHUB_BATCH_SIZE: '16' };
    const e = resumedOptions(parseOptions(argv, TRAINING_OPTIONS, env), explicitOptions(argv, TRAINING_OPTIONS, env), record, TRAINING_OPTIONS);
    expect(e['batch-size']).toBe(16);
  });
});
