// A join/leave storm: SESSIONS volunteer sessions to URL with TOKEN from LOCAL, CONCURRENCY at a
// time: each opens a WebSocket, says Hello, waits for Welcome (or a Reject) and closes. Prints one
// JSON line at the end: {"welcomed": sessions that joined, "rejected": Rejects, "failed": others}.
//   node join-storm.mjs URL TOKEN LOCAL SESSIONS CONCURRENCY
import WebSocket from 'ws';
import { decode, hello } from './hello.mjs';

const [url, token, local, sessionsText, concurrencyText] = process.argv.slice(2);
const figures = { welcomed: 0, rejected: 0, failed: 0 };
let left = Number(sessionsText);

function session() {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, localAddress: local, perMessageDeflate: false, maxPayload: 0 });
    let settled = false;
    const end = (what) => {
      if (settled) return;
      settled = true;
      figures[what]++;
      ws.terminate();
      resolve();
    };
    ws.on('open', () => ws.send(hello(token, 'storm')));
    ws.on('message', (data) => {
      const m = decode(data);
      if (m.kind === 'welcome') {
        ws.close(1000);
        settled = true;
        figures.welcomed++;
        ws.once('close', resolve);
        setTimeout(() => (ws.terminate(), resolve()), 2000).unref();
      } else if (m.kind === 'reject') end('rejected');
    });
    ws.on('error', () => end('failed'));
    ws.on('close', () => end('failed'));
  });
}

async function lane() {
  while (left > 0) {
    left--;
    await session();
  }
}
await Promise.all(Array.from({ length: Number(concurrencyText) }, lane));
process.stdout.write(JSON.stringify(figures) + '\n');
process.exit(0);
