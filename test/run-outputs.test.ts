/**
 * What a run shows, as a user runs it (real `gradhub` processes, real sockets, real files, on a
 * small synthetic CIFAR-10 set in the binary format): `train --workers 0` serves the dashboard,
 * /api and /metrics (scraped while it trains); the run ends with the event stream's `end` event and
 * a self-contained HTML report; the metrics file's line shapes; a resume line; --export's --force
 * check and --normalize metadata; a cluster run's JSON log lines carry no key twice.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { decodeSafetensorsWithMetadata } from '@gradhub/core';
import { runCli, startCli, sha256, tempDir, readJsonl } from './helpers.js';
import { waitFor } from './cluster-helpers.js';

/** A synthetic CIFAR-10 set in the official binary format: records of 1 label byte + 3072 pixel bytes. */
function syntheticCifar(dir: string, train = 120, test = 40): string {
  fs.mkdirSync(dir, { recursive: true });
  let x = 12345;
  const next = (): number => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x >>> 24;
  };
  const batch = (n: number): Buffer => {
    const b = Buffer.alloc(n * 3073);
    for (let i = 0; i < n; i++) {
      const label = i % 10;
      b[i * 3073] = label;
      // Each class brightens its own band of pixels: something to learn.
      for (let p = 0; p < 3072; p++) b[i * 3073 + 1 + p] = (next() >> 1) + ((p >> 8) % 10 === label ? 120 : 0);
    }
    return b;
  };
  fs.writeFileSync(path.join(dir, 'data_batch_1.bin'), batch(train));
  fs.writeFileSync(path.join(dir, 'test_batch.bin'), batch(test));
  fs.writeFileSync(path.join(dir, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n');
  return dir;
}

const SMALL = ['--model', '3072,16,10', '--batch-size', '20', '--chunk', '5', '--lr', '0.01', '--no-download'];

interface Reply {
  status: number;
  body: string;
}

function get(url: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** Open /api/events and keep what arrives; `ended` resolves when the server ends the stream. */
function openEvents(url: string): Promise<{ text: () => string; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let text = '';
      const ended = new Promise<void>((done) => res.on('end', done).on('close', done));
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      resolve({ text: () => text, ended });
    }).on('error', reject);
  });
}

/** Prometheus samples by name (labels as one string), from the text format. */
function scrape(text: string): Map<string, { labels: string; value: number }[]> {
  const out = new Map<string, { labels: string; value: number }[]>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    out.set(m[1], [...(out.get(m[1]) ?? []), { labels: m[2] ?? '', value: Number(m[3]) }]);
  }
  return out;
}

/** The embedded data of a report. */
function reportData(file: string): { version: string; endedAt: number; run: { state: string; step: number; steps: { step: number }[]; evals: unknown[]; workers: { runtime: string }[]; settings: Record<string, unknown> } } {
  const html = fs.readFileSync(file, 'utf8');
  const m = /<script type="application\/json" id="gradhub-report-data">(.*?)<\/script>/s.exec(html);
  expect(m, 'the report embeds its data').not.toBeNull();
  return JSON.parse(m![1]);
}

/**
 * The top-level keys of one JSON object line, read from the raw text (JSON.parse would keep one
 * of two equal keys and hide the other).
 */
function topLevelKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      let j = i + 1;
      while (line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(line.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = c === '{' && depth === 1;
    } else if (c === '}' || c === ']') {
      depth--;
    } else if (c === ',' && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

describe('what a run shows', () => {
  it('train --workers 0: the dashboard and a real /metrics while it trains; at the end the stream says so and the report, metrics and export are written', async () => {
    const dir = tempDir('shows');
    const data = syntheticCifar(path.join(dir, 'data'));
    const metrics = path.join(dir, 'm.jsonl');
    const report = path.join(dir, 'out', 'report.html');
    const exported = path.join(dir, 'w.safetensors');
    const child = startCli(['train', '--workers', '0', '--data', data, ...SMALL, '--epochs', '100000', '--normalize',
      '--metrics', metrics, '--report', report, '--export', exported]);
    const exited = new Promise<void>((resolve) => child.on('exit', () => setImmediate(resolve)));
    try {
      const url = (await waitFor(() => /dashboard: (http:\/\/127\.0\.0\.1:\d+)\/dashboard/.exec(child.output().stdout), 60_000, 'the dashboard address'))[1];
      // Real steps and an evaluation (6 steps an epoch) before the scrape.
      await waitFor(() => fs.existsSync(metrics) && readJsonl<{ kind: string }>(metrics).filter((l) => l.kind === 'epoch').length >= 1, 60_000, 'an evaluation');

      const page = await get(`${url}/dashboard`);
      expect(page.status).toBe(200);
      expect(page.body).toContain('id="loss-chart"');
      const m = await get(`${url}/metrics`);
      expect(m.status).toBe(200);
      const s = scrape(m.body);
      expect(s.get('gradhub_steps_total')![0].value).toBeGreaterThanOrEqual(6);
      const computeCount = s.get('gradhub_step_phase_seconds_count')!.find((x) => x.labels === 'phase="compute"')!.value;
      expect(computeCount).toBeGreaterThanOrEqual(6);
      expect(s.get('gradhub_step_phase_seconds_bucket')!.find((x) => x.labels === 'le="+Inf",phase="compute"')!.value).toBe(computeCount);
      expect(s.get('gradhub_lr')![0].value).toBe(0.01);
      expect(s.get('gradhub_epoch')![0].value).toBeGreaterThanOrEqual(1);
      expect(s.get('gradhub_test_accuracy')![0].value).toBeGreaterThanOrEqual(0);
      expect(Number.isFinite(s.get('gradhub_test_loss')![0].value)).toBe(true);
      expect(s.get('gradhub_workers')).toEqual([{ labels: 'runtime="node"', value: 0 }, { labels: 'runtime="browser"', value: 0 }]);
      expect(s.get('gradhub_build_info')![0]).toEqual({ labels: expect.stringContaining(`node="${process.version}"`), value: 1 });
      expect(s.get('process_resident_memory_bytes')![0].value).toBeGreaterThan(0);

      const events = await openEvents(`${url}/api/events`);
      await waitFor(() => events.text().includes('event: snapshot'), 30_000, 'the event stream');
      child.kill('SIGINT');
      await events.ended;
      const end = /event: end\ndata: (.*)\n/.exec(events.text());
      expect(end, 'an end event before the stream closed').not.toBeNull();
      expect(JSON.parse(end![1]).state).toBe('stopped');
      await exited;
    } finally {
      child.kill('SIGKILL');
    }
    const r = child.output();
    expect([0, 130], r.stderr).toContain(r.code);

    // The report: self-contained (no script or style from elsewhere, no address to fetch), with the run's data.
    const html = fs.readFileSync(report, 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+stylesheet|https?:\/\//);
    expect(html).toContain('<svg');
    expect(html).toContain('id="split"');
    const d = reportData(report);
    const lines = readJsonl<Record<string, unknown>>(metrics);
    const stepLines = lines.filter((l) => l.kind === 'step');
    expect(d.run.state).toBe('stopped');
    expect(d.run.steps.map((p) => p.step)).toEqual(stepLines.map((l) => l.step));
    expect(d.run.evals.length).toBe(lines.filter((l) => l.kind === 'epoch').length);
    expect(d.run.settings.normalize).toBe(true);
    // The closing summary names the report among the run's files.
    expect(r.stdout).toMatch(new RegExp(`^  report: +${report.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));

    // The metrics file's line shapes (docs/design.md "Contracts: Metrics JSONL").
    expect(Object.keys(lines[0])).toEqual(['kind', 'model', 'batch', 'chunk', 'seed', 'shuffle', 'normalize', 'lr', 'momentum', 'dampening', 'weight_decay', 'nesterov', 'epochs', 'steps', 'version', 'time']);
    expect(lines[0]).toMatchObject({ kind: 'run', model: '3072,16,10', batch: 20, normalize: true, epochs: 100000, steps: null, version: d.version });
    for (const l of lines.slice(1)) {
      expect(Object.keys(l)).toEqual(l.kind === 'step'
        ? ['kind', 'step', 'epoch', 'loss', 'accuracy', 'samples_per_s', 'lr', 'time']
        : ['kind', 'epoch', 'step', 'test_loss', 'test_accuracy', 'samples', 'eval_ms', 'time']);
    }
    const times = lines.map((l) => l.time as number);
    expect(times.every((t, i) => Number.isInteger(t) && (i === 0 || t >= times[i - 1]))).toBe(true);
    expect(Math.abs(times[0] - Date.now())).toBeLessThan(600_000);

    // The export of a --normalize run says how its inputs were normalised.
    const meta = decodeSafetensorsWithMetadata(fs.readFileSync(exported), exported).metadata!;
    expect(meta.gradhub_normalize_mean).toBe('0.4914,0.4822,0.4465');
    expect(meta.gradhub_normalize_std).toBe('0.247,0.2435,0.2616');

    // Another run onto the same --export is refused before it trains; the model stays.
    const before = sha256(exported);
    const again = await runCli(['train', '--workers', '0', '--data', data, ...SMALL, '--steps', '2', '--export', exported]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('E_USAGE');
    expect(again.stderr).toContain('--force');
    expect(sha256(exported)).toBe(before);
    const forced = await runCli(['train', '--workers', '0', '--data', data, ...SMALL, '--steps', '2', '--export', exported, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(sha256(exported)).not.toBe(before);
    expect(decodeSafetensorsWithMetadata(fs.readFileSync(exported), exported).metadata).toEqual({ format: 'pt', gradhub_model: '3072,16,10' });
  });

  it('--port serves the dashboard of train --workers 0 where asked; a failed run still writes its report', async () => {
    const dir = tempDir('port');
    const data = syntheticCifar(path.join(dir, 'data'));
    // A port taken by someone else: a clear E_LISTEN, and the report says the run failed.
    const taken = http.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const report = path.join(dir, 'failed.html');
      const r = await runCli(['train', '--workers', '0', '--data', data, ...SMALL, '--steps', '2', '--port', String(port), '--report', report]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('E_LISTEN');
      expect(reportData(report).run.state).toBe('failed');
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
    // The same port, free now: the dashboard is there.
    const r = await runCli(['train', '--workers', '0', '--data', data, ...SMALL, '--steps', '2', '--port', String(port), '--report', path.join(dir, 'done.html')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`dashboard: http://127.0.0.1:${port}/dashboard`);
    const d = reportData(path.join(dir, 'done.html'));
    expect(d.run.state).toBe('done');
    expect(d.run.step).toBe(2);
  });

  it('a resumed run appends a resume line and no step twice', async () => {
    const dir = tempDir('resume-line');
    const data = syntheticCifar(path.join(dir, 'data'));
    const metrics = path.join(dir, 'm.jsonl');
    const common = ['train', '--workers', '0', '--data', data, ...SMALL, '--checkpoint-dir', path.join(dir, 'ck'), '--checkpoint-every', '2', '--metrics', metrics];
    const first = await runCli([...common, '--steps', '4']);
    expect(first.code, first.stderr).toBe(0);
    const second = await runCli([...common, '--steps', '8', '--resume']);
    expect(second.code, second.stderr).toBe(0);
    const lines = readJsonl<{ kind: string; step?: number }>(metrics);
    expect(lines.map((l) => l.kind).filter((k) => k === 'run' || k === 'resume')).toEqual(['run', 'resume']);
    expect(lines[0].kind).toBe('run');
    expect(lines.find((l) => l.kind === 'resume')).toMatchObject({ kind: 'resume', step: 4 });
    expect(lines.filter((l) => l.kind === 'step').map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('a cluster run: no JSON log line carries a key twice, and the report holds the workers', async () => {
    const dir = tempDir('logs');
    const data = syntheticCifar(path.join(dir, 'data'));
    const report = path.join(dir, 'report.html');
    const r = await runCli(['train', '--workers', '2', '--data', data, ...SMALL, '--steps', '6', '--log-level', 'debug', '--report', report]);
    expect(r.code, r.stderr).toBe(0);
    const json = r.stderr.split('\n').filter((l) => l.startsWith('{'));
    expect(json.length).toBeGreaterThan(10);
    const joined = json.filter((l) => l.includes('"msg":"worker joined"'));
    expect(joined.length).toBeGreaterThanOrEqual(2);
    for (const line of json) {
      const keys = topLevelKeys(line);
      expect(keys.filter((k, i) => keys.indexOf(k) !== i), line).toEqual([]);
    }
    // The logger's name is the logger's: the worker's own name is `workerName`.
    for (const line of joined) {
      expect(JSON.parse(line)).toMatchObject({ name: 'gradhub', workerName: expect.any(String) });
    }
    const d = reportData(report);
    expect(d.run.state).toBe('done');
    expect(d.run.workers.filter((w) => w.runtime === 'node').length).toBe(2);
  });

  it('topLevelKeys reads the keys as written, duplicates included', () => {
    expect(topLevelKeys('{"name":"a","x":{"name":1,"y":[{"z":2}]},"s":"q\\"uo,\\"te","name":"b"}')).toEqual(['name', 'x', 's', 'name']);
  });
});
