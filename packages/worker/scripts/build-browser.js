// Builds the browser worker into dist/browser/ (BROWSER_ASSETS_DIR):
//   worker.js   the dedicated Web Worker (src/browser/worker-entry.ts: core + protocol client)
//   kernel-thread.js   a helper thread of the threaded kernels, started by worker.js when the page
//               is cross-origin isolated (src/browser/kernel-thread.ts: core's runKernelHelper)
//   page.js     the volunteer page's script (src/browser/page.ts)
//   volunteer.html, volunteer.css   the page (static/), filled in by the coordinator when served
// plus a source map for each script.
//
//   node scripts/build-browser.js [--no-typecheck]
//
// First type-checks src/browser against the DOM lib (tsconfig.browser.json: the package's own
// tsconfig has Node's types and leaves src/browser out), then bundles with esbuild: IIFE (a
// classic worker script works in every browser), target es2022, minified, linked source maps.
// `@gradhub/core` is bundled from its TypeScript sources (no dependency on `tsc -b` output), the
// protocol module from proto/dist (the pbjs build, then tsc -b, first: npm run build does both). protobufjs'
// `@protobufjs/inquire` (an `eval("require")` that finds nothing in a browser anyway) is replaced
// by a stub, so the bundle has no eval and the page's CSP needs no 'unsafe-eval'.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, '..');
const outDir = path.join(pkg, 'dist', 'browser');
const coreSrc = path.resolve(pkg, '../core/src/index.ts');
const require = createRequire(import.meta.url);
const typecheck = !process.argv.includes('--no-typecheck');

function fail(msg) {
  console.error(`build:browser: ${msg}`);
  process.exit(1);
}

if (typecheck) {
  const tsc = require.resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(pkg, 'tsconfig.browser.json')], { stdio: 'inherit', cwd: pkg });
  if (r.status !== 0) fail('type errors in src/browser (tsconfig.browser.json)');
}

/** Resolve @gradhub/core to its sources, and stub @protobufjs/inquire. */
const browserResolve = {
  name: 'gradhub-browser-resolve',
  setup(build) {
    build.onResolve({ filter: /^@gradhub\/core$/ }, () => ({ path: coreSrc }));
    build.onResolve({ filter: /^@protobufjs\/inquire$/ }, () => ({ path: 'inquire', namespace: 'gradhub-stub' }));
    build.onLoad({ filter: /.*/, namespace: 'gradhub-stub' }, () => ({
      contents: 'module.exports = function inquire() { return null; };',
      loader: 'js',
    }));
  },
};

/** Write a file atomically (temp + rename): a coordinator starting meanwhile reads old or new, never half. */
function writeAtomic(file, bytes) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, file);
}

fs.mkdirSync(outDir, { recursive: true });

let result;
try {
  result = await esbuild.build({
    entryPoints: {
      worker: path.join(pkg, 'src/browser/worker-entry.ts'),
      'kernel-thread': path.join(pkg, 'src/browser/kernel-thread.ts'),
      page: path.join(pkg, 'src/browser/page.ts'),
    },
    outdir: outDir,
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: 'linked',
    sourcesContent: true,
    legalComments: 'linked',
    metafile: true,
    write: false,
    logLevel: 'warning',
    plugins: [browserResolve],
  });
} catch (err) {
  fail(`esbuild failed: ${err.message}`);
}

for (const f of result.outputFiles) writeAtomic(f.path, f.contents);
for (const f of ['volunteer.html', 'volunteer.css']) writeAtomic(path.join(outDir, f), fs.readFileSync(path.join(pkg, 'static', f)));

const sizes = Object.entries(result.metafile.outputs)
  .filter(([f]) => f.endsWith('.js'))
  .map(([f, o]) => `${path.basename(f)} ${(o.bytes / 1024).toFixed(0)} KiB`);
console.log(`build:browser: ${path.relative(process.cwd(), outDir) || '.'}: ${sizes.join(', ')}`);
