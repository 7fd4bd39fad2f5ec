// Volunteers that hold slots and do nothing: COUNT WebSockets to URL with TOKEN (the public join
// token) from LOCAL, never saying Hello; each one closed or refused is opened again a second
// later, until stdin closes or SIGTERM. Prints one JSON line every 500 ms and at the end:
// {"accepted": upgrades accepted, "refused": {status: count}, "open": WebSockets open now}.
//   node ws-idle.mjs URL TOKEN LOCAL COUNT
import WebSocket from 'ws';

const [url, token, local, countText] = process.argv.slice(2);
const count = Number(countText);
const figures = { accepted: 0, refused: {}, errors: 0, open: 0 };
let stopping = false;
const sockets = new Set();

function open() {
  if (stopping) return;
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, localAddress: local, perMessageDeflate: false });
  sockets.add(ws);
  let accepted = false;
  ws.on('open', () => {
    accepted = true;
    figures.accepted++;
    figures.open++;
  });
  ws.on('unexpected-response', (_req, res) => {
    figures.refused[res.statusCode] = (figures.refused[res.statusCode] ?? 0) + 1;
    res.resume();
    ws.terminate();
  });
  ws.on('error', () => figures.errors++);
  ws.on('close', () => {
    sockets.delete(ws);
    if (accepted) figures.open--;
    setTimeout(open, 1000);
  });
}

const say = () => process.stdout.write(JSON.stringify(figures) + '\n');
const stop = () => {
  if (stopping) return;
  stopping = true;
  say();
  for (const ws of sockets) ws.terminate();
  setTimeout(() => process.exit(0), 100);
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop).resume();
setInterval(say, 500).unref();
let started = 0;
const burst = setInterval(() => {
  for (let i = 0; i < 50 && started < count; i++, started++) open();
  if (started >= count) clearInterval(burst);
}, 20);
