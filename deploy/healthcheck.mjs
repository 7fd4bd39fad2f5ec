// The image's HEALTHCHECK (deploy/Dockerfile), one script for both roles:
//   gradhub coordinator: healthy when GET /healthz on its port answers 2xx within 2.5 s. The port and
//     host come from the coordinator's own command line (--port P / --port=P, --host) or from the
//     GRADHUB_PORT / GRADHUB_HOST variables that mirror them, else the default 8080;
//   gradhub worker (or any other command): healthy while it runs. A worker has no HTTP endpoint; it
//     reconnects by itself and exits after --grace-ms when its coordinator is gone, and the container's
//     restart policy takes it from there.
// The role is read from the command line of the container's gradhub process (/proc/*/cmdline), so no
// extra variable is needed. Exit 0: healthy, 1: unhealthy (Docker's HEALTHCHECK contract).
import { readdirSync, readFileSync } from 'node:fs';

function gradhubArgv() {
  const pids = ['1', ...readdirSync('/proc').filter((p) => /^\d+$/.test(p) && p !== '1' && p !== String(process.pid))];
  for (const pid of pids) {
    let argv;
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a.length > 0);
    } catch {
      continue;
    }
    const main = argv.findIndex((a) => a.endsWith('/packages/cli/bin/gradhub.js') || a.endsWith('/packages/cli/dist/main.js'));
    if (main >= 0) return argv.slice(main + 1);
  }
  return null;
}

function option(argv, name) {
  for (let i = argv.length - 1; i >= 0; i--) {
    if (argv[i] === `--${name}` && i + 1 < argv.length) return argv[i + 1];
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  const env = process.env[`GRADHUB_${name.toUpperCase().replace(/-/g, '_')}`];
  return env === undefined || env === '' ? undefined : env;
}

const argv = gradhubArgv();
if (argv === null) {
  console.error('healthcheck: no gradhub process found');
  process.exit(1);
}
if (argv[0] !== 'coordinator') process.exit(0);

const port = option(argv, 'port') ?? '8080';
let host = option(argv, 'host') ?? '127.0.0.1';
if (host === '0.0.0.0' || host === '::' || host === '') host = '127.0.0.1';
const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/healthz`;
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(2500) });
  if (!res.ok) {
    console.error(`healthcheck: ${url} answered ${res.status}`);
    process.exit(1);
  }
  process.exit(0);
} catch (err) {
  console.error(`healthcheck: ${url}: ${err.message}`);
  process.exit(1);
}
