// A joined volunteer that asks for the parameters over and over: joins URL with TOKEN, then for
// SECONDS sends BURST ParamsRequests every 10 ms for the newest version it has seen (from Params
// or Work), never computes, and leaves. Prints one JSON line at the end: {"requests": sent,
// "bytesIn": bytes received, "paramsBytes": bytes of Params frames, "versions": distinct versions
// requested, "seen": distinct versions of the Params received}.
//   node params-flood.mjs URL TOKEN SECONDS [BURST]
import WebSocket from 'ws';
import { encode } from '@gradhub/proto';
import { decode, hello } from './hello.mjs';

const [url, token, secondsText, burstText = '20'] = process.argv.slice(2);
const figures = { requests: 0, bytesIn: 0, paramsBytes: 0, versions: 0, seen: 0, welcomed: false };
const requested = new Set();
const seen = new Set();
let newest = -1;
const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false, maxPayload: 0 });
const done = () => {
  figures.versions = requested.size;
  figures.seen = seen.size;
  process.stdout.write(JSON.stringify(figures) + '\n');
  process.exit(0);
};
ws.on('open', () => ws.send(hello(token, 'params-flood')));
ws.on('message', (data) => {
  const m = decode(data);
  figures.bytesIn += m.bytes;
  if (m.kind === 'welcome') {
    figures.welcomed = true;
    const flood = setInterval(() => {
      if (newest < 0 || ws.readyState !== WebSocket.OPEN) return;
      requested.add(newest);
      const frame = encode({ paramsRequest: { version: newest } });
      for (let i = 0; i < Number(burstText); i++) ws.send(frame);
      figures.requests += Number(burstText);
    }, 10);
    setTimeout(() => {
      clearInterval(flood);
      ws.close(1000);
      setTimeout(done, 500);
    }, Number(secondsText) * 1000);
  } else if (m.kind === 'params') {
    figures.paramsBytes += m.bytes;
    seen.add(m.msg.version);
    newest = Math.max(newest, m.msg.version);
  } else if (m.kind === 'work') {
    newest = Math.max(newest, m.msg.version);
  }
});
ws.on('error', (err) => process.stderr.write(`params-flood: ${err.message}\n`));
