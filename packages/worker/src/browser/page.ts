/**
 * The volunteer page's script: starts the Web Worker (worker-entry.ts), renders the statuses it
 * posts, and sends the volunteer's pause / resume / leave. Nothing heavy runs here: the engine and
 * the socket live in the worker, so the page stays responsive.
 *
 * Where things come from:
 * - the join token: `?token=` of the address (kept in sessionStorage for reloads of this tab, then
 *   taken out of the address bar), else the `gradhub-join-token` meta tag (a coordinator that lets
 *   anyone who can reach it join), else the volunteer pastes the join link into the form;
 * - the WebSocket path, the worker script and the token check URL: meta tags the coordinator fills
 *   in (volunteer-routes.ts), resolved against this page's address;
 * - `?threads=N`: kernel threads for this tab (passed to the worker script's URL; by default the
 *   worker picks min(cores - 1, its cap) when the page is cross-origin isolated, else 1);
 * - `?slowdown-ms=N`: test hook, sleep N ms before each node (a slow tab); `?debug`: the worker
 *   logs the protocol client's debug lines to the console.
 *
 * DOM APIs only.
 */
import type { PageCommand, VolunteerState, VolunteerStatus, WorkerMessage } from './messages.js';

const TOKEN_KEY = 'gradhub.joinToken';

function meta(name: string): string | null {
  const el = document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`);
  const v = el?.content ?? '';
  return v === '' ? null : v;
}

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`volunteer page: #${id} is missing`);
  return e as T;
}

/** The join token (see the module comment), and the address bar cleaned of it. */
function joinToken(url: URL): string | null {
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    try {
      sessionStorage.setItem(TOKEN_KEY, fromUrl);
    } catch {
      // storage refused: the token still works for this page view
    }
    url.searchParams.delete('token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
    return fromUrl;
  }
  const fromMeta = meta('gradhub-join-token');
  if (fromMeta) return fromMeta;
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** A token from what the volunteer pasted: a join link (…?token=T) or the bare token. */
function tokenFromInput(text: string): string | null {
  const t = text.trim();
  if (t === '') return null;
  try {
    const u = new URL(t, location.href);
    const q = u.searchParams.get('token');
    if (q) return q;
  } catch {
    // not a URL
  }
  return /^[\x21-\x7e]+$/.test(t) && !t.includes('/') ? t : null;
}

const STATE_LABEL: Record<VolunteerState, string> = {
  starting: 'Starting',
  connecting: 'Connecting',
  connected: 'Connected',
  reconnecting: 'Not connected: retrying',
  paused: 'Paused',
  done: 'Training finished',
  left: 'Left the run',
  refused: 'Not allowed to join',
  gone: 'Not connected',
};

function formatRate(v: number): string {
  if (v === 0) return '0';
  return v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1);
}

function main(): void {
  const url = new URL(location.href);
  const slowdownMs = Number(url.searchParams.get('slowdown-ms') ?? '0');
  const token = joinToken(url);
  const body = document.body;
  const ui = {
    state: el('state'),
    runId: el('run-id'),
    speed: el('speed'),
    speedDetail: el('speed-detail'),
    contributed: el('contributed'),
    contributedDetail: el('contributed-detail'),
    loss: el('loss'),
    lossDetail: el('loss-detail'),
    message: el('message'),
    tech: el('tech'),
    pause: el<HTMLButtonElement>('pause'),
    leave: el<HTMLButtonElement>('leave'),
    joinForm: el<HTMLFormElement>('join-form'),
    joinInput: el<HTMLInputElement>('join-input'),
    joinError: el('join-error'),
  };

  ui.joinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = tokenFromInput(ui.joinInput.value);
    if (!t) {
      ui.joinError.textContent = 'That is not a join link or a token.';
      return;
    }
    try {
      sessionStorage.setItem(TOKEN_KEY, t);
    } catch {
      // storage refused: a reload asks again
    }
    location.reload();
  });

  if (!token) {
    body.dataset.state = 'needs-token';
    ui.state.textContent = 'Not connected';
    ui.message.textContent = 'Paste the join link (or the join token) the run\'s organiser gave you.';
    ui.joinForm.hidden = false;
    ui.pause.disabled = true;
    ui.leave.disabled = true;
    return;
  }

  const wsUrl = new URL(meta('gradhub-ws-path') ?? '/ws', location.href);
  wsUrl.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  wsUrl.searchParams.set('token', token);
  const authPath = meta('gradhub-auth-path');
  const workerUrl = new URL(meta('gradhub-worker-script') ?? 'volunteer/worker.js', location.href);
  // `?threads=N` on the page: the kernel threads this tab may use (the worker caps and checks it).
  const threads = url.searchParams.get('threads');
  if (threads !== null && /^\d+$/.test(threads)) workerUrl.searchParams.set('threads', threads);

  const worker = new Worker(workerUrl, { name: 'gradhub-worker' });
  const send = (c: PageCommand): void => worker.postMessage(c);
  let last: VolunteerStatus | null = null;

  worker.addEventListener('message', (ev: MessageEvent<WorkerMessage>) => {
    const m = ev.data;
    if (m.type === 'failure') {
      body.dataset.state = 'failed';
      ui.state.textContent = 'Stopped by an error';
      ui.message.textContent = `The worker stopped: ${m.message}. Reload the page to try again.`;
      ui.pause.disabled = true;
      return;
    }
    last = m;
    render(m);
  });
  worker.addEventListener('error', (ev) => {
    body.dataset.state = 'failed';
    ui.state.textContent = 'Stopped by an error';
    ui.message.textContent = `The worker could not run: ${ev.message || 'it failed to load'}. Reload the page to try again.`;
    ui.pause.disabled = true;
  });

  ui.pause.addEventListener('click', () => {
    if (!last) return;
    send({ type: last.state === 'paused' || last.state === 'gone' ? 'resume' : 'pause' });
  });
  ui.leave.addEventListener('click', () => {
    ui.leave.disabled = true;
    ui.pause.disabled = true;
    send({ type: 'leave' });
  });

  send({
    type: 'start',
    url: wsUrl.href,
    token,
    name: `browser: ${navigator.userAgent.replace(/\s+/g, ' ').slice(0, 120)}`,
    authUrl: authPath ? new URL(authPath, location.href).href : null,
    slowdownMs: Number.isFinite(slowdownMs) && slowdownMs > 0 ? slowdownMs : 0,
    debug: url.searchParams.has('debug'),
  });

  function render(s: VolunteerStatus): void {
    body.dataset.state = s.state;
    body.dataset.work = String(s.workReceived);
    body.dataset.contributed = String(s.samplesContributed);
    ui.state.textContent = STATE_LABEL[s.state];
    ui.message.textContent = s.retryInMs !== null ? `${s.message} Next try in ${Math.ceil(s.retryInMs / 1000)} s.` : s.message;
    ui.runId.textContent = s.runId ?? '—';
    ui.speed.textContent = formatRate(s.samplesPerS);
    ui.speedDetail.textContent = s.computeSamplesPerS === null ? 'samples/s over the last 10 s' : `samples/s over the last 10 s (${formatRate(s.computeSamplesPerS)} while computing)`;
    ui.contributed.textContent = s.samplesContributed.toLocaleString('en-US');
    ui.contributedDetail.textContent = `training samples (${s.nodesDone.toLocaleString('en-US')} results sent)`;
    if (s.tabLoss) {
      ui.loss.textContent = s.tabLoss.value.toFixed(4);
      ui.lossDetail.textContent = `mean over this tab's ${s.tabLoss.samples} samples of step ${s.tabLoss.step}`;
    } else {
      ui.loss.textContent = '—';
      ui.lossDetail.textContent = 'mean over this tab\'s samples of its latest step';
    }
    const parts = [s.workerId !== null ? `worker ${s.workerId}` : null, s.backend === 'wasm' ? 'WebAssembly SIMD' : 'TypeScript kernels', s.crossOriginIsolated ? 'cross-origin isolated' : 'not cross-origin isolated'];
    ui.tech.textContent = parts.filter((p) => p !== null).join(' · ');
    const final = s.state === 'done' || s.state === 'left' || s.state === 'refused';
    if (s.tokenRefused && ui.joinForm.hidden) {
      // The stored token is no good: forget it, and let the volunteer paste a new link.
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch {
        // nothing stored
      }
      ui.joinForm.hidden = false;
    }
    ui.pause.textContent = s.state === 'paused' || s.state === 'gone' ? 'Resume' : 'Pause';
    ui.pause.disabled = final;
    ui.leave.disabled = final;
  }
}

main();
