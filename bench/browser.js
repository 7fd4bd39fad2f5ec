/**
 * The browser worker's single-tab train step: bench/train-step.js's own measurement (forward +
 * loss + backward + SGD through the core's engine, WebAssembly SIMD backend), bundled with esbuild
 * and run in a dedicated Web Worker of one headless Chromium tab (Debian's /usr/bin/chromium,
 * driven by playwright-core), on a page served cross-origin isolated like the volunteer page.
 * Same code, same model, same inputs as the Node figure: the difference is the runtime.
 *
 *   node bench/browser.js [--quick]      prints the rows for batch 64 and 256
 *
 * Needs a built @gradhub/core (npm run build) and Chromium; throws with a clear message without it.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const here = path.dirname(fileURLToPath(import.meta.url));

/** The Web Worker: train-step.js's benchTrainStep, answering one request per message. */
const WORKER_ENTRY = `
import { benchTrainStep } from './train-step.js';
self.onmessage = async (ev) => {
  try {
    self.postMessage({ ok: true, result: await benchTrainStep(ev.data) });
  } catch (err) {
    self.postMessage({ ok: false, message: String((err && err.stack) || err) });
  }
};
`;

const PAGE = `<!doctype html><meta charset="utf-8"><title>gradhub browser bench</title>
<script>
  const worker = new Worker('/bench-worker.js');
  window.runBench = (o) => new Promise((resolve, reject) => {
    worker.onmessage = (ev) => (ev.data.ok ? resolve(ev.data.result) : reject(new Error(ev.data.message)));
    worker.onerror = (ev) => reject(new Error(ev.message || 'the bench worker failed to load'));
    worker.postMessage(o);
  });
</script>`;

let bundle = null;
async function workerBundle() {
  if (bundle) return bundle;
  const esbuild = await import('esbuild');
  const out = await esbuild.build({
    stdin: { contents: WORKER_ENTRY, resolveDir: here, sourcefile: 'bench-worker.js', loader: 'js' },
    bundle: true, format: 'iife', platform: 'browser', target: 'es2022', minify: true, write: false, logLevel: 'error',
  });
  bundle = Buffer.from(out.outputFiles[0].contents);
  return bundle;
}

/** Serve the page and the worker, cross-origin isolated (COOP/COEP), on 127.0.0.1. */
async function serve(worker) {
  const isolated = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cross-Origin-Resource-Policy': 'same-origin', 'Cache-Control': 'no-store' };
  const server = http.createServer((req, res) => {
    if (req.url === '/') res.writeHead(200, { ...isolated, 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
    else if (req.url === '/bench-worker.js') res.writeHead(200, { ...isolated, 'Content-Type': 'text/javascript; charset=utf-8' }).end(worker);
    else res.writeHead(404).end();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/**
 * One batch size in one fresh tab.
 * @param {{ batch: number, sizes?: number[], reps?: number, chunk?: number }} o
 * @returns the row of bench/train-step.js (model, batch, backend, samples_per_s, gflops, step_ms,
 *   split_ms), plus runtime (the browser's version) and cross_origin_isolated.
 */
export async function benchBrowserTrainStep(o) {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the browser bench needs Debian's Chromium (apt-get install -y chromium)`);
  const { chromium } = await import('playwright-core');
  const server = await serve(await workerBundle());
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-bench-chromium-'));
  let context = null;
  try {
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
    const page = context.pages()[0] ?? (await context.newPage());
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    const isolated = await page.evaluate(() => crossOriginIsolated);
    const request = { sizes: o.sizes ?? [3072, 2048, 2048, 10], batch: o.batch, backend: 'wasm', reps: o.reps ?? 5, chunk: o.chunk ?? 16 };
    const result = await page.evaluate((r) => window.runBench(r), request);
    return { ...result, runtime: `Chromium ${context.browser()?.version() ?? ''}`.trim(), cross_origin_isolated: isolated };
  } finally {
    await context?.close();
    fs.rmSync(profile, { recursive: true, force: true });
    await new Promise((resolve) => server.close(resolve));
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes('--quick');
  for (const batch of [64, 256]) {
    const r = await benchBrowserTrainStep({ batch, reps: quick ? 2 : 5 });
    console.log(`${r.model}  batch ${batch}  ${r.backend} in ${r.runtime} worker: ${r.samples_per_s.toFixed(1)} samples/s, ${r.gflops.toFixed(2)} GFLOP/s, step ${r.step_ms.toFixed(1)} ms`, JSON.stringify(r.split_ms));
  }
}
