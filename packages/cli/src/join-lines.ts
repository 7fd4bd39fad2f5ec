/**
 * What `gradhub coordinator` prints so that other machines can join: one `npx gradhub worker` line
 * per address they can reach it at. A coordinator listening on every address (0.0.0.0, ::) cannot
 * name 127.0.0.1 to others: it lists the machine's own non-internal interface addresses
 * (os.networkInterfaces()), IPv4 first (IPv6 link-local addresses are left out: they need a zone).
 */
import * as os from 'node:os';

type Interfaces = NodeJS.Dict<os.NetworkInterfaceInfo[]>;

/** URL host parts (IPv6 in brackets) at which others reach a server listening on `host`. */
export function reachableHosts(host: string, interfaces: Interfaces = os.networkInterfaces()): string[] {
  if (host !== '0.0.0.0' && host !== '::') return [host.includes(':') ? `[${host}]` : host];
  const v4: string[] = [];
  const v6: string[] = [];
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv4') v4.push(a.address);
      else if (host === '::' && !/^fe80:/i.test(a.address)) v6.push(`[${a.address}]`);
    }
  }
  const all = [...new Set([...v4, ...v6])];
  return all.length > 0 ? all : ['127.0.0.1'];
}

/**
 * The lines a coordinator prints for people: where the dashboard is, the command workers run on
 * other machines (one per reachable address), the volunteers' page, and a generated trusted token.
 */
export function joinLines(o: {
  readonly listenHost: string; readonly port: number; readonly tls: boolean; readonly token: string; readonly hosts: readonly string[];
  /** A trusted token generated at start, shown so the operator can start trusted workers (absent: not shown). */
  readonly trustedToken?: string;
}): string[] {
  const ws = o.tls ? 'wss' : 'ws';
  const http = o.tls ? 'https' : 'http';
  const first = o.hosts[0];
  const listen = o.listenHost.includes(':') ? `[${o.listenHost}]` : o.listenHost;
  return [
    `coordinator listening on ${listen}:${o.port}`,
    `  dashboard:  ${http}://${first}:${o.port}/dashboard`,
    `  volunteers: ${http}://${first}:${o.port}/join?token=${encodeURIComponent(o.token)}`,
    '  workers join with (run in a clone of gradhub after `npm ci && npm run build`: gradhub is not on the npm registry):',
    ...o.hosts.map((h) => `    npx gradhub worker --url ${ws}://${h}:${o.port} --token ${o.token}${o.tls ? ' --ca CERT.pem' : ''}`),
    ...(o.trustedToken === undefined ? [] : [`  workers you run yourself get slots of their own with the trusted token instead: --token ${o.trustedToken}`]),
  ];
}
