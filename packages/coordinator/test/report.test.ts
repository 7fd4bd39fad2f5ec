/**
 * The run report as a pure function: from a real RunStatus's snapshot to one HTML page whose every
 * text is escaped, whose embedded data reads back as the snapshot, and that holds no outside
 * reference; and writeReport's file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderReport, writeReport } from '../src/report.js';
import { RunStatus } from '../src/status.js';

function status(): RunStatus {
  const s = new RunStatus({ runId: 'r1', name: 'evil </script><b>name</b>', settings: { model: '3072,8,10', note: '</script><script>alert(1)</script>' }, totalSteps: 4 });
  s.upsertWorker({ id: 'w<1>', runtime: 'browser', samplesPerS: 12.4, nodesDone: 3, samplesDone: 60, bytesIn: 2e6, bytesOut: 1e6, lastSeen: 0, state: 'idle', address: '<addr>' });
  for (let k = 1; k <= 4; k++) {
    s.setSplit({ compute: 10 * k, upload: 2, reduce: 1, sgd: 0.5, broadcast: 3 });
    s.addStep({ step: k, epoch: 1, loss: k === 3 ? NaN : 2.3 - k / 10, accuracy: k / 10, samplesPerS: 100 });
  }
  s.addEval({ epoch: 1, step: 4, testLoss: 1.9, testAccuracy: 0.3 });
  s.setState('stopped');
  return s;
}

const embedded = (html: string): { format: number; version: string; endedAt: number; run: unknown } =>
  JSON.parse(/<script type="application\/json" id="gradhub-report-data">(.*?)<\/script>/s.exec(html)![1]);

describe('renderReport', () => {
  it('escapes every text, embeds the snapshot as JSON and references nothing outside the file', () => {
    const snap = status().snapshot();
    const html = renderReport(snap, { endedAt: snap.startedAt + 61_000, version: '1.2.3' });
    expect(html).not.toContain('<b>name</b>');
    expect(html).not.toContain('<script>alert(1)');
    expect(html).toContain('evil &lt;/script&gt;&lt;b&gt;name&lt;/b&gt;');
    expect(html).toContain('data-worker-id="w&lt;1&gt;"');
    expect(html.match(/<script/g)).toHaveLength(1); // the data block only: nothing runs
    expect(html).not.toMatch(/\bsrc=|<link|https?:\/\//);
    const data = embedded(html);
    expect(data).toEqual({ format: 1, version: '1.2.3', endedAt: snap.startedAt + 61_000, run: JSON.parse(JSON.stringify(snap)) });
    expect(html).toContain('1 min 1 s');
    expect(html).toMatch(/<span id="run-state" class="state state-stopped">stopped<\/span>/);
    // The split: the mean of the 4 steps' compute (10, 20, 30, 40 ms) and the last step's.
    expect(html).toMatch(/<tr data-phase="compute">.*<td class="num">25\.0 ms<\/td>.*<td class="num">40\.0 ms<\/td><\/tr>/);
    // Charts: 4 train points (the NaN one breaks the line), 1 test point.
    expect(html).toMatch(/<svg [^>]*data-points="4" data-evals="1"/);
    const lossPath = /<figure class="card" id="loss-chart">[\s\S]*?<path d="([^"]*)"/.exec(html)![1];
    expect(lossPath.match(/M/g)).toHaveLength(2);
  });

  it('a run with no step yet still renders (settings, no curves); writeReport writes the file', () => {
    const s = new RunStatus({ runId: 'r2', name: 'n', settings: { lr: 0.1 }, totalSteps: 10 });
    s.setState('failed');
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-report-')), 'sub', 'report.html');
    writeReport(file, s.snapshot(), { endedAt: Date.now() });
    const html = fs.readFileSync(file, 'utf8');
    expect(html).toContain('no steps');
    expect(html).toContain('<th scope="row">lr</th><td>0.1</td>');
    expect((embedded(html).run as { state: string }).state).toBe('failed');
    expect(fs.readdirSync(path.dirname(file))).toEqual(['report.html']);
  });
});
