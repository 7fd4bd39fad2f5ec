/**
 * The run report: one self-contained HTML file written when a run ends (done, stopped or failed),
 * that opens in any browser without a server or a network: inline CSS, the curves as inline SVG,
 * no script to run. It shows the loss and accuracy curves (train per step, test per evaluation),
 * the final figures, the settings, the per-worker table and the step-time split (the mean over the
 * steps this coordinator ran, and the last step's).
 *
 * The figures are also embedded as JSON, for scripts: `<script type="application/json"
 * id="gradhub-report-data">` holds `{"format":1,"version":...,"endedAt":ms,"run":<StatusSnapshot>}`
 * (`<` escaped as \u003c so the data cannot end the element). Every text reaches the page escaped.
 *
 * `renderReport` is pure (a snapshot in, a string out); `writeReport` writes it atomically.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { escapeHtml } from './http-util.js';
import type { StatusSnapshot, StepSplit } from './status.js';
import { GRADHUB_VERSION } from './version.js';
import { writeFileAtomic } from './atomic-write.js';

export interface ReportInfo {
  /** When the run ended, Unix ms. */
  readonly endedAt: number;
  /** gradhub's version. Default GRADHUB_VERSION. */
  readonly version?: string;
}

const PHASES: readonly (keyof StepSplit)[] = ['compute', 'upload', 'reduce', 'sgd', 'broadcast'];
const PHASE_COLORS: Record<keyof StepSplit, string> = { compute: '#3b82f6', upload: '#f59e0b', reduce: '#10b981', sgd: '#8b5cf6', broadcast: '#ef4444' };
const TRAIN_COLOR = '#7aa2e3';
const TEST_COLOR = '#d9480f';

/** The report page of a run (see the module's contract). */
export function renderReport(s: StatusSnapshot, info: ReportInfo): string {
  const version = info.version ?? GRADHUB_VERSION;
  const data = JSON.stringify({ format: 1, version, endedAt: info.endedAt, run: s }).replace(/</g, '\\u003c');
  const lastStep = s.steps[s.steps.length - 1];
  const lastEval = s.evals[s.evals.length - 1];
  const title = `gradhub report${s.name ? `: ${s.name}` : ''}`;
  const facts: [string, string][] = [
    ['state', s.state],
    ['steps', `${s.step} / ${s.totalSteps}`],
    ['epoch', String(s.epoch)],
    ['started', new Date(s.startedAt).toISOString()],
    ['ended', new Date(info.endedAt).toISOString()],
    ['duration', duration(info.endedAt - s.startedAt)],
    ['samples', String(s.counters.samples ?? 0)],
    ['train loss (last step)', lastStep ? fixed(lastStep.loss) : '–'],
    ['train accuracy (last step)', lastStep ? pct(lastStep.accuracy) : '–'],
    ['test loss', lastEval ? `${fixed(lastEval.testLoss)} (epoch ${lastEval.epoch}, step ${lastEval.step})` : '–'],
    ['test accuracy', lastEval ? pct(lastEval.testAccuracy) : '–'],
  ];
  const trainLoss = s.steps.map((p) => [p.step, p.loss] as const);
  const testLoss = s.evals.map((e) => [e.step, e.testLoss] as const);
  const trainAcc = s.steps.map((p) => [p.step, p.accuracy] as const);
  const testAcc = s.evals.map((e) => [e.step, e.testAccuracy] as const);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="gradhub ${escapeHtml(version)}">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
  <h1>gradhub report <span class="name">${escapeHtml(s.name)}</span></h1>
  <p>run <code id="run-id">${escapeHtml(s.runId)}</code> · <span id="run-state" class="state state-${escapeHtml(s.state)}">${escapeHtml(s.state)}</span> · gradhub ${escapeHtml(version)}</p>
</header>
<main>
<section class="card">
  <h2>Run</h2>
  <table id="facts"><tbody>
${facts.map(([k, v]) => `    <tr><th scope="row">${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('\n')}
  </tbody></table>
</section>
<section class="charts">
  <figure class="card" id="loss-chart"><figcaption>Loss <span class="hint">train per step, test per evaluation</span></figcaption>
${svgChart(trainLoss, testLoss, false)}
  </figure>
  <figure class="card" id="acc-chart"><figcaption>Accuracy <span class="hint">train per step, test per evaluation</span></figcaption>
${svgChart(trainAcc, testAcc, true)}
  </figure>
</section>
<section class="card">
  <h2>Step time <span class="hint">${s.splitTotal.steps > 0 ? `mean of ${s.splitTotal.steps} steps` : 'no step timed'}</span></h2>
${splitTable(s)}
</section>
<section class="card">
  <h2>Workers <span class="hint">${s.workers.length === 0 ? 'none: computed in the coordinator\'s process' : `${s.workers.length}`}</span></h2>
${workersTable(s)}
</section>
<section class="card">
  <h2>Settings</h2>
  <table id="settings"><tbody>
${Object.entries(s.settings).map(([k, v]) => `    <tr><th scope="row">${escapeHtml(k)}</th><td>${escapeHtml(typeof v === 'string' ? v : JSON.stringify(v) ?? String(v))}</td></tr>`).join('\n')}
  </tbody></table>
</section>
</main>
<script type="application/json" id="gradhub-report-data">${data}</script>
</body>
</html>
`;
}

/** Render the report and write it to `file` (atomic-write.ts; folders created). */
export function writeReport(file: string, s: StatusSnapshot, info: ReportInfo): void {
  writeFileAtomic(file, renderReport(s, info));
}

function fixed(v: number): string {
  return Number.isFinite(v) ? v.toFixed(4) : String(v);
}

function pct(v: number): string {
  return Number.isFinite(v) ? `${(100 * v).toFixed(2)}%` : String(v);
}

function ms(v: number): string {
  return v < 10 ? `${v.toFixed(2)} ms` : v < 1000 ? `${v.toFixed(1)} ms` : `${(v / 1000).toFixed(2)} s`;
}

function duration(msTotal: number): string {
  const sec = Math.max(0, Math.round(msTotal / 1000));
  if (sec < 60) return `${sec} s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min} min ${sec % 60} s`;
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}

function splitTable(s: StatusSnapshot): string {
  const t = s.splitTotal;
  const mean = (p: keyof StepSplit): number => (t.steps > 0 ? t[p] / t.steps : NaN);
  const meanTotal = PHASES.reduce((a, p) => a + (t.steps > 0 ? mean(p) : 0), 0);
  const last = s.split;
  const lastTotal = last ? PHASES.reduce((a, p) => a + last[p], 0) : 0;
  const bar = meanTotal > 0
    ? `  <div class="bar" id="split-bar">${PHASES.map((p) => `<span class="seg" style="width:${((100 * mean(p)) / meanTotal).toFixed(3)}%;background:${PHASE_COLORS[p]}" title="${p}"></span>`).join('')}</div>\n`
    : '';
  const rows = PHASES.map((p) => `    <tr data-phase="${p}"><th scope="row"><span class="swatch" style="background:${PHASE_COLORS[p]}"></span>${p === 'sgd' ? 'SGD' : p}</th>` +
    `<td class="num">${t.steps > 0 ? ms(mean(p)) : '–'}</td><td class="num">${meanTotal > 0 ? `${((100 * mean(p)) / meanTotal).toFixed(1)}%` : '–'}</td>` +
    `<td class="num">${last ? ms(last[p]) : '–'}</td></tr>`).join('\n');
  return `${bar}  <table id="split"><thead><tr><th>phase</th><th class="num">mean</th><th class="num">share</th><th class="num">last step</th></tr></thead><tbody>
${rows}
    <tr class="total"><th scope="row">total</th><td class="num">${t.steps > 0 ? ms(meanTotal) : '–'}</td><td></td><td class="num">${last ? ms(lastTotal) : '–'}</td></tr>
  </tbody></table>`;
}

function workersTable(s: StatusSnapshot): string {
  if (s.workers.length === 0) return '  <table id="workers"><tbody></tbody></table>';
  const rows = s.workers.map((w) => `    <tr class="worker" data-worker-id="${escapeHtml(w.id)}"><td>${escapeHtml(w.id)}</td><td>${escapeHtml(w.runtime)}</td><td>${escapeHtml(w.state)}</td>` +
    `<td class="num">${Math.round(w.samplesPerS)}</td><td class="num">${w.nodesDone}</td><td class="num">${w.samplesDone}</td>` +
    `<td class="num">${(w.bytesIn / 1e6).toFixed(1)} MB</td><td class="num">${(w.bytesOut / 1e6).toFixed(1)} MB</td><td>${escapeHtml(w.address ?? '')}</td></tr>`).join('\n');
  return `  <table id="workers"><thead><tr><th>worker</th><th>runtime</th><th>state</th><th class="num">samples/s</th><th class="num">nodes done</th><th class="num">samples done</th><th class="num">bytes in</th><th class="num">bytes out</th><th>address</th></tr></thead><tbody>
${rows}
  </tbody></table>`;
}

const W = 640;
const H = 260;
const PAD = { left: 56, right: 12, top: 10, bottom: 30 };

/**
 * A line (train, one point a step) and dots (test) over the step axis, as an SVG element. Points
 * whose value is not finite break the line. `fraction`: the y axis is 0..1, labelled in percent.
 */
function svgChart(train: readonly (readonly [number, number])[], test: readonly (readonly [number, number])[], fraction: boolean): string {
  const all = [...train, ...test].filter(([, y]) => Number.isFinite(y));
  if (all.length === 0) return `  <svg viewBox="0 0 ${W} ${H}" class="chart" role="img" aria-label="no data"><text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="muted">no steps</text></svg>`;
  let x0 = Math.min(...all.map(([x]) => x));
  let x1 = Math.max(...all.map(([x]) => x));
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  let y0 = fraction ? 0 : Math.min(...all.map(([, y]) => y));
  let y1 = fraction ? 1 : Math.max(...all.map(([, y]) => y));
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const px = (x: number): number => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const py = (y: number): number => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const r = (v: number): string => v.toFixed(1);
  let d = '';
  let pen = false;
  for (const [x, y] of train) {
    if (!Number.isFinite(y)) { pen = false; continue; }
    d += `${pen ? 'L' : 'M'}${r(px(x))} ${r(py(y))}`;
    pen = true;
  }
  const yTicks = [0, 0.25, 0.5, 0.75, 1].map((f) => y0 + f * (y1 - y0));
  const xTicks = [0, 0.25, 0.5, 0.75, 1].map((f) => Math.round(x0 + f * (x1 - x0)));
  const yLabel = (v: number): string => (fraction ? `${Math.round(100 * v)}%` : v.toPrecision(3));
  const grid = yTicks.map((v) => `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${r(py(v))}" y2="${r(py(v))}" class="grid"/><text x="${PAD.left - 6}" y="${r(py(v) + 4)}" text-anchor="end">${yLabel(v)}</text>`).join('');
  const xAxis = [...new Set(xTicks)].map((v) => `<text x="${r(px(v))}" y="${H - PAD.bottom + 16}" text-anchor="middle">${v}</text>`).join('');
  const dots = test.filter(([, y]) => Number.isFinite(y)).map(([x, y]) => `<circle cx="${r(px(x))}" cy="${r(py(y))}" r="3.5" fill="${TEST_COLOR}"><title>step ${x}: ${fraction ? pct(y) : fixed(y)}</title></circle>`).join('');
  return `  <svg viewBox="0 0 ${W} ${H}" class="chart" role="img" data-points="${train.length}" data-evals="${test.length}">` +
    `${grid}${xAxis}<text x="${W - PAD.right}" y="${H - 4}" text-anchor="end" class="muted">step</text>` +
    `<path d="${d}" fill="none" stroke="${TRAIN_COLOR}" stroke-width="1.2"/>${dots}` +
    `<g class="legend" transform="translate(${W - PAD.right - 110} ${PAD.top})"><rect x="0" y="0" width="110" height="18" fill="#fff" opacity="0.8"/>` +
    `<line x1="6" x2="26" y1="9" y2="9" stroke="${TRAIN_COLOR}" stroke-width="2"/><text x="30" y="13">train</text>` +
    `<circle cx="74" cy="9" r="3.5" fill="${TEST_COLOR}"/><text x="82" y="13">test</text></g></svg>`;
}

const CSS = `
:root { --fg: #1f2328; --muted: #656d76; --line: #d8dee4; --bg: #f6f8fa; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 24px 32px; background: var(--bg); color: var(--fg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
h1 { font-size: 20px; margin: 0 0 4px; font-weight: 600; }
h1 .name { color: var(--muted); font-weight: 400; margin-left: 6px; }
h2 { font-size: 15px; margin: 0 0 10px; font-weight: 600; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.hint, .muted { color: var(--muted); font-weight: 400; font-size: 12px; margin-left: 6px; fill: var(--muted); }
main { display: grid; gap: 16px; margin-top: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; margin: 0; overflow-x: auto; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
figcaption { font-weight: 600; margin-bottom: 6px; }
svg.chart { width: 100%; height: auto; font-size: 11px; fill: var(--fg); }
svg .grid { stroke: var(--line); stroke-width: 1; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid var(--line); white-space: nowrap; }
th[scope=row] { font-weight: 500; color: var(--muted); }
.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total th, tr.total td { font-weight: 600; }
.bar { display: flex; height: 14px; border-radius: 4px; overflow: hidden; margin-bottom: 8px; background: var(--line); }
.seg { display: block; height: 100%; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.state { font-weight: 600; }
.state-done { color: #1a7f37; } .state-stopped { color: #9a6700; } .state-failed { color: #cf222e; }
`;
