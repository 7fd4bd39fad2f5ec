/**
 * The dashboard: one HTML page (rendered here, every value escaped) and its static assets.
 *
 * The page is a shell plus what does not change during a run (the run's name and settings); the
 * script `/assets/dashboard.js` (packages/coordinator/static/, plain JavaScript, no framework)
 * opens `/api/events` and draws everything live with uPlot, whose files are served from
 * node_modules (no CDN: the coordinator may have no internet). Assets are read once, when the
 * routes are created, so a broken install fails at start and not at the first visit.
 *
 * Stable hooks for tests and users' scripts: #loss-chart (data-points: train points drawn),
 * #acc-chart (data-evals: test points drawn), table#workers with one tr.worker[data-worker-id]
 * per worker, #split (the step's time split), #settings, #run-state, #step, #connection.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { GradhubError } from '@gradhub/core';
import { escapeHtml, etagOf, type Asset } from './http-util.js';
import { roundShape, wireBytesPerSample, type StatusSnapshot } from './status.js';

/** Path under which each asset is served -> where it is read from. */
function assetSources(): Record<string, { file: string; contentType: string }> {
  const require = createRequire(import.meta.url);
  const own = (name: string): string => fileURLToPath(new URL(`../static/${name}`, import.meta.url));
  const js = 'text/javascript; charset=utf-8';
  const css = 'text/css; charset=utf-8';
  return {
    '/assets/uplot.iife.min.js': { file: require.resolve('uplot/dist/uPlot.iife.min.js'), contentType: js },
    '/assets/uPlot.min.css': { file: require.resolve('uplot/dist/uPlot.min.css'), contentType: css },
    '/assets/dashboard.js': { file: own('dashboard.js'), contentType: js },
    '/assets/dashboard.css': { file: own('dashboard.css'), contentType: css },
  };
}

/** Read every asset of the dashboard (throws E_INTERNAL naming the file when one is missing). */
export function loadDashboardAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const [urlPath, { file, contentType }] of Object.entries(assetSources())) {
    let body: Buffer;
    try {
      body = fs.readFileSync(file);
    } catch (err) {
      throw new GradhubError('E_INTERNAL', `dashboard asset ${file} cannot be read (a broken install?): ${(err as Error).message}`, { cause: err });
    }
    assets.set(urlPath, { body, contentType, etag: etagOf(body) });
  }
  return assets;
}

/** Content-Security-Policy of the page: only our own files, no inline script or style. */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";


/** A setting's value as shown: strings as they are, anything else as JSON. */
/** Bytes for people: 1.2 MB, 34 KB, 512 B; a dash for none. */
export function bytesText(b: number | null): string {
  if (b === null || !Number.isFinite(b)) return '–';
  if (b >= 1e6) return `${(b / 1e6).toFixed(1)} MB`;
  if (b >= 1e3) return `${(b / 1e3).toFixed(1)} KB`;
  return `${Math.round(b)} B`;
}

function settingText(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
}

/** The dashboard page for the run as it is now. */
export function renderDashboard(s: StatusSnapshot): string {
  const rounds = roundShape(s.settings);
  const title = s.name ? `gradhub: ${s.name}` : 'gradhub';
  const settings = Object.entries(s.settings)
    .map(([k, v]) => `        <tr><th scope="row">${escapeHtml(k)}</th><td>${escapeHtml(settingText(v))}</td></tr>`)
    .join('\n');
  const phases = ['compute', 'upload', 'reduce', 'sgd', 'broadcast']
    .map((p) => `          <li class="phase phase-${p}" data-phase="${p}"><span class="swatch"></span>${p === 'sgd' ? 'SGD' : p}<span class="ms">–</span></li>`)
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <link rel="icon" href="data:,">
  <title>${escapeHtml(title)}</title>
  <link rel="stylesheet" href="/assets/uPlot.min.css">
  <link rel="stylesheet" href="/assets/dashboard.css">
</head>
<body>
  <header>
    <h1>gradhub <span id="run-name">${escapeHtml(s.name)}</span></h1>
    <div class="facts">
      <span id="run-state" class="state state-${escapeHtml(s.state)}">${escapeHtml(s.state)}</span>
      <span>${rounds ? 'round' : 'step'} <b id="step">${escapeHtml(s.step)}</b> / <span id="total-steps">${escapeHtml(s.totalSteps)}</span></span>
${rounds ? `      <span id="round-shape">${escapeHtml(rounds.replicas)} replicas × ${escapeHtml(rounds.localSteps)} inner steps a round</span>\n` : ''}      <span>epoch <b id="epoch">${escapeHtml(s.epoch)}</b></span>
      <span>wire <b id="wire">${escapeHtml(bytesText(wireBytesPerSample(s)))}</b> a sample</span>
      <span>elapsed <b id="elapsed">–</b></span>
      <span id="connection" class="connection">connecting…</span>
    </div>
    <div class="run-id">run <code id="run-id">${escapeHtml(s.runId)}</code></div>
  </header>
  <main>
    <section class="charts">
      <figure class="card">
        <figcaption>Loss <span class="hint">train per step, test per epoch</span><span class="latest" id="loss-latest"></span></figcaption>
        <div id="loss-chart" class="chart" data-points="0"></div>
      </figure>
      <figure class="card">
        <figcaption>Accuracy <span class="hint">train per step, test per epoch</span><span class="latest" id="acc-latest"></span></figcaption>
        <div id="acc-chart" class="chart" data-points="0" data-evals="0"></div>
      </figure>
    </section>
    <section class="card">
      <h2>Workers <span class="hint" id="workers-count"></span></h2>
      <table id="workers">
        <thead>
          <tr><th>worker</th><th>runtime</th><th>state</th><th class="num">samples/s</th><th class="num">nodes done</th><th class="num">bytes in</th><th class="num">bytes out</th><th class="num">last seen</th><th>address</th></tr>
        </thead>
        <tbody></tbody>
      </table>
      <p class="empty" id="workers-empty">No worker yet.</p>
    </section>
    <section class="row">
      <div class="card">
        <h2>Last ${rounds ? 'round' : 'step'} <span class="hint" id="split-step"></span></h2>
        <div id="split">
          <div class="bar" id="split-bar"></div>
          <ul class="legend">
${phases}
          </ul>
          <p class="total">total <b id="split-total">–</b></p>
        </div>
      </div>
      <div class="card">
        <h2>Settings</h2>
        <table id="settings">
          <tbody>
${settings}
          </tbody>
        </table>
      </div>
    </section>
  </main>
  <script src="/assets/uplot.iife.min.js"></script>
  <script src="/assets/dashboard.js"></script>
</body>
</html>
`;
}

/** The page of a request without the admin token. */
export function renderUnauthorized(): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">
<title>gradhub: admin token needed</title>
<link rel="stylesheet" href="/assets/dashboard.css"></head>
<body class="unauthorized">
  <main class="card">
    <h1>Admin token needed</h1>
    <p>This coordinator's dashboard is protected. Open <code>/dashboard?token=YOUR_TOKEN</code> once
    (the browser then keeps a cookie), or send <code>Authorization: Bearer YOUR_TOKEN</code>.</p>
  </main>
</body>
</html>
`;
}
