// @ts-nocheck
/*
 * gradhub dashboard: draws the run live from GET /api/events (Server-Sent Events).
 *
 * The stream opens with a `snapshot` (the whole run so far), then sends `step`, `eval`, `workers`
 * and `state` events as they happen; after a reconnect the next snapshot replaces everything, so
 * nothing here polls. When the run is over the server sends `end` (the final snapshot) before it
 * closes the stream: the page shows the final state and figures and stops reconnecting (so it
 * does once it saw a done, stopped or failed state and the stream then ends). Redraws are batched to one per animation frame. Plain browser JavaScript,
 * no build step, no framework; charts by uPlot (window.uPlot, served at /assets/uplot.iife.min.js).
 * Every server value reaches the page through textContent, never as HTML.
 *
 * Test hooks: #loss-chart[data-points] is the number of train points drawn, #acc-chart[data-evals]
 * the number of test points drawn; one tr.worker[data-worker-id] per worker in table#workers.
 */
(function () {
  'use strict';

  var PHASES = ['compute', 'upload', 'reduce', 'sgd', 'broadcast'];
  /** Past this many train points, the older half is thinned (every other point), as the server does. */
  var MAX_POINTS = 20000;
  var COLORS = { train: '#7aa2e3', test: '#d9480f' };

  var run = {
    steps: [], // StepPoint {step, epoch, loss, accuracy, samplesPerS}
    evals: [], // EvalPoint {epoch, step, testLoss, testAccuracy}
    workers: [],
    split: null,
    splitStep: 0,
    state: 'waiting',
    step: 0,
    epoch: 0,
    totalSteps: 0,
    startedAt: 0,
    /** Server clock minus this browser's clock, ms (for "last seen" and "elapsed"). */
    clockOffset: 0,
  };
  var dirty = { charts: false, workers: false, facts: false, split: false };
  var frameQueued = false;

  function $(id) {
    return document.getElementById(id);
  }

  function serverNow() {
    return Date.now() + run.clockOffset;
  }

  // ---- formatting ----

  function fmtNumber(v, digits) {
    if (typeof v !== 'number' || !isFinite(v)) return '–';
    return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  }

  function fmtBytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '–';
    var units = ['B', 'KB', 'MB', 'GB', 'TB'];
    var i = 0;
    while (n >= 1000 && i < units.length - 1) {
      n /= 1000;
      i++;
    }
    return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
  }

  function fmtDuration(ms) {
    if (!isFinite(ms) || ms < 0) return '–';
    var s = Math.floor(ms / 1000);
    if (s < 60) return s + ' s';
    var m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + (s % 60) + ' s';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }

  function fmtAgo(ms) {
    if (!isFinite(ms)) return '–';
    if (ms < 1500) return 'now';
    return fmtDuration(ms) + ' ago';
  }

  /** Bytes for people, as the page's first render (dashboard.ts bytesText). */
  function bytesText(b) {
    if (b === null || b === undefined || !isFinite(b)) return '–';
    if (b >= 1e6) return (b / 1e6).toFixed(1) + ' MB';
    if (b >= 1e3) return (b / 1e3).toFixed(1) + ' KB';
    return Math.round(b) + ' B';
  }

  function fmtMs(ms) {
    if (typeof ms !== 'number' || !isFinite(ms)) return '–';
    return ms < 10 ? ms.toFixed(2) + ' ms' : ms < 1000 ? ms.toFixed(1) + ' ms' : (ms / 1000).toFixed(2) + ' s';
  }

  // ---- charts ----

  function makeChart(el, yLabel, fraction) {
    var fmtValue = fraction
      ? function (u, v) { return v == null ? '–' : (v * 100).toFixed(1) + '%'; }
      : function (u, v) { return v == null ? '–' : v.toFixed(4); };
    var opts = {
      width: Math.max(el.clientWidth, 300),
      height: 260,
      scales: { x: { time: false }, y: fraction ? { range: [0, 1] } : {} },
      axes: [
        { label: 'step', stroke: '#555' },
        {
          label: yLabel,
          stroke: '#555',
          size: 60,
          values: fraction
            ? function (u, vals) { return vals.map(function (v) { return (v * 100).toFixed(0) + '%'; }); }
            : undefined,
        },
      ],
      series: [
        { label: 'step', value: function (u, v) { return v == null ? '–' : String(v); } },
        { label: 'train', stroke: COLORS.train, width: 1, value: fmtValue, points: { show: false } },
        {
          label: 'test',
          stroke: COLORS.test,
          width: 2,
          spanGaps: true,
          value: fmtValue,
          points: { show: true, size: 7, fill: COLORS.test, stroke: COLORS.test },
        },
      ],
      cursor: { drag: { x: true, y: false } },
    };
    var chart = new uPlot(opts, [[], [], []], el);
    if (typeof ResizeObserver === 'function') {
      new ResizeObserver(function () {
        var w = Math.max(el.clientWidth, 300);
        if (w !== chart.width) chart.setSize({ width: w, height: 260 });
      }).observe(el);
    }
    return chart;
  }

  /** Align train points (every step) and test points (some steps) on one x axis. */
  function chartData() {
    var x = [];
    var trainLoss = [];
    var trainAcc = [];
    var testLoss = [];
    var testAcc = [];
    var at = new Map();
    run.steps.forEach(function (p, i) {
      at.set(p.step, i);
      x.push(p.step);
      trainLoss.push(p.loss);
      trainAcc.push(p.accuracy);
      testLoss.push(null);
      testAcc.push(null);
    });
    var extra = false;
    run.evals.forEach(function (e) {
      var i = at.get(e.step);
      if (i === undefined) {
        i = x.length;
        x.push(e.step);
        trainLoss.push(null);
        trainAcc.push(null);
        testLoss.push(null);
        testAcc.push(null);
        extra = true;
      }
      testLoss[i] = e.testLoss;
      testAcc[i] = e.testAccuracy;
    });
    if (extra) {
      var order = x.map(function (_, i) { return i; }).sort(function (a, b) { return x[a] - x[b]; });
      var pick = function (arr) { return order.map(function (i) { return arr[i]; }); };
      return { loss: [pick(x), pick(trainLoss), pick(testLoss)], acc: [pick(x), pick(trainAcc), pick(testAcc)] };
    }
    return { loss: [x, trainLoss, testLoss], acc: [x, trainAcc, testAcc] };
  }

  var lossEl = $('loss-chart');
  var accEl = $('acc-chart');
  var lossChart = makeChart(lossEl, 'loss', false);
  var accChart = makeChart(accEl, 'accuracy', true);

  function renderCharts() {
    var d = chartData();
    lossChart.setData(d.loss);
    accChart.setData(d.acc);
    lossEl.dataset.points = String(run.steps.length);
    accEl.dataset.points = String(run.steps.length);
    accEl.dataset.evals = String(run.evals.length);
    var last = run.steps[run.steps.length - 1];
    var test = run.evals[run.evals.length - 1];
    $('loss-latest').textContent = latest(last && fixed(last.loss), test && fixed(test.testLoss));
    $('acc-latest').textContent = latest(last && pct(last.accuracy), test && pct(test.testAccuracy));
  }

  /** Numbers as shown; a value JSON turned into null (NaN) shows as NaN. */
  function fixed(v) {
    return typeof v === 'number' ? v.toFixed(4) : 'NaN';
  }

  function pct(v) {
    return typeof v === 'number' ? (v * 100).toFixed(1) + '%' : 'NaN';
  }

  /** "train 2.3012 · test 2.2710", from whichever exists. */
  function latest(train, test) {
    var parts = [];
    if (train) parts.push('train ' + train);
    if (test) parts.push('test ' + test);
    return parts.join(' · ');
  }

  // ---- workers table ----

  var COLUMNS = ['id', 'runtime', 'state', 'samples-per-s', 'nodes-done', 'bytes-in', 'bytes-out', 'last-seen', 'address'];
  var NUMERIC = { 'samples-per-s': true, 'nodes-done': true, 'bytes-in': true, 'bytes-out': true, 'last-seen': true };
  var rows = new Map(); // worker id -> tr

  function workerRow(id) {
    var tr = rows.get(id);
    if (tr) return tr;
    tr = document.createElement('tr');
    tr.dataset.workerId = id;
    COLUMNS.forEach(function (c) {
      var td = document.createElement('td');
      td.className = 'col-' + c + (NUMERIC[c] ? ' num' : '');
      tr.appendChild(td);
    });
    rows.set(id, tr);
    return tr;
  }

  function setCell(tr, col, text) {
    var td = tr.querySelector('.col-' + col);
    if (td.textContent !== text) td.textContent = text;
  }

  function renderWorkers() {
    var tbody = $('workers').tBodies[0];
    var now = serverNow();
    var live = new Set();
    var connected = 0;
    run.workers.forEach(function (w) {
      live.add(w.id);
      if (w.state !== 'gone') connected++;
      var tr = workerRow(w.id);
      tr.className = 'worker state-' + w.state;
      setCell(tr, 'id', w.id);
      setCell(tr, 'runtime', w.runtime);
      setCell(tr, 'state', w.state);
      setCell(tr, 'samples-per-s', fmtNumber(w.samplesPerS, 0));
      setCell(tr, 'nodes-done', fmtNumber(w.nodesDone, 0));
      setCell(tr, 'bytes-in', fmtBytes(w.bytesIn));
      setCell(tr, 'bytes-out', fmtBytes(w.bytesOut));
      setCell(tr, 'last-seen', fmtAgo(now - w.lastSeen));
      setCell(tr, 'address', w.address || '');
      tbody.appendChild(tr); // keeps the server's order
    });
    rows.forEach(function (tr, id) {
      if (!live.has(id)) {
        tr.remove();
        rows.delete(id);
      }
    });
    $('workers-empty').hidden = run.workers.length > 0;
    $('workers-count').textContent = run.workers.length ? connected + ' connected of ' + run.workers.length : '';
  }

  function renderLastSeen() {
    var now = serverNow();
    run.workers.forEach(function (w) {
      var tr = rows.get(w.id);
      if (tr) setCell(tr, 'last-seen', fmtAgo(now - w.lastSeen));
    });
  }

  // ---- split, facts ----

  var bar = $('split-bar');
  PHASES.forEach(function (p) {
    var seg = document.createElement('div');
    seg.className = 'seg seg-' + p;
    seg.title = p;
    bar.appendChild(seg);
  });

  function renderSplit() {
    var s = run.split;
    var total = 0;
    PHASES.forEach(function (p) {
      total += s ? s[p] || 0 : 0;
    });
    PHASES.forEach(function (p) {
      var ms = s ? s[p] || 0 : NaN;
      bar.querySelector('.seg-' + p).style.width = total > 0 ? (100 * ms) / total + '%' : '0';
      document.querySelector('#split .phase-' + p + ' .ms').textContent = s ? fmtMs(ms) : '–';
    });
    $('split-total').textContent = s ? fmtMs(total) : '–';
    $('split-step').textContent = s ? (run.rounds ? 'round ' : 'step ') + run.splitStep : '';
  }

  function renderFacts() {
    var st = $('run-state');
    st.textContent = run.state;
    st.className = 'state state-' + run.state;
    $('step').textContent = String(run.step);
    $('total-steps').textContent = String(run.totalSteps);
    $('epoch').textContent = String(run.epoch);
    $('wire').textContent = bytesText(run.wireBytesPerSample);
    renderElapsed();
  }

  var endedAt = 0;
  function renderElapsed() {
    if (!run.startedAt) return;
    var end = endedAt || serverNow();
    $('elapsed').textContent = fmtDuration(end - run.startedAt);
  }

  // ---- updates ----

  function render() {
    frameQueued = false;
    if (dirty.charts) renderCharts();
    if (dirty.workers) renderWorkers();
    if (dirty.split) renderSplit();
    if (dirty.facts) renderFacts();
    dirty = { charts: false, workers: false, facts: false, split: false };
  }

  function invalidate(what) {
    what.forEach(function (k) { dirty[k] = true; });
    if (!frameQueued) {
      frameQueued = true;
      requestAnimationFrame(render);
    }
  }

  function thin() {
    if (run.steps.length <= MAX_POINTS) return;
    var half = run.steps.length >> 1;
    var kept = run.steps.slice(0, half).filter(function (_, i) { return i % 2 === 0; });
    run.steps = kept.concat(run.steps.slice(half));
  }

  var ENDED = { done: true, stopped: true, failed: true };
  /** Set once the run is over (an `end` event, or a final state): the stream is not reopened. */
  var ended = false;

  var handlers = {
    snapshot: function (s) {
      run.clockOffset = s.now - Date.now();
      run.steps = s.steps;
      run.evals = s.evals;
      run.workers = s.workers;
      run.split = s.split;
      run.splitStep = s.step;
      run.state = s.state;
      run.step = s.step;
      run.epoch = s.epoch;
      run.totalSteps = s.totalSteps;
      run.startedAt = s.startedAt;
      run.rounds = typeof s.settings.local_steps === 'number';
      var samples = s.counters.samples || 0;
      run.wireBytesPerSample = samples > 0 ? ((s.counters.bytes_in || 0) + (s.counters.bytes_out || 0)) / samples : null;
      endedAt = s.state === 'waiting' || s.state === 'training' ? 0 : s.now;
      invalidate(['charts', 'workers', 'split', 'facts']);
    },
    step: function (e) {
      run.steps.push(e.point);
      thin();
      run.step = e.point.step;
      run.epoch = e.point.epoch;
      run.wireBytesPerSample = e.wireBytesPerSample;
      if (e.split) {
        run.split = e.split;
        run.splitStep = e.point.step;
      }
      invalidate(['charts', 'split', 'facts']);
    },
    eval: function (e) {
      run.evals.push(e.point);
      invalidate(['charts']);
    },
    workers: function (e) {
      run.workers = e.workers;
      invalidate(['workers']);
    },
    end: function (s) {
      handlers.snapshot(s);
      finish();
    },
    state: function (e) {
      run.state = e.state;
      if (ENDED[e.state]) ended = true;
      if (e.step < run.step) {
        // A rollback (a cheater was proven): the steps after e.step are replayed, so their points go.
        run.steps = run.steps.filter(function (p) { return p.step <= e.step; });
        run.evals = run.evals.filter(function (p) { return p.step <= e.step; });
        invalidate(['charts']);
      }
      run.step = e.step;
      endedAt = e.state === 'waiting' || e.state === 'training' ? 0 : serverNow();
      invalidate(['facts']);
    },
  };

  var connection = $('connection');
  function setConnection(text, cls) {
    connection.textContent = text;
    connection.className = 'connection ' + cls;
  }

  var source = new EventSource('/api/events');
  Object.keys(handlers).forEach(function (name) {
    source.addEventListener(name, function (msg) {
      var data;
      try {
        data = JSON.parse(msg.data);
      } catch (err) {
        console.warn('gradhub dashboard: unreadable ' + name + ' event', err);
        return;
      }
      handlers[name](data);
    });
  });
  source.addEventListener('open', function () {
    setConnection('live', 'live');
  });
  /** The run is over: keep what is shown, stop the stream (no reconnecting). */
  function finish() {
    ended = true;
    source.close();
    setConnection('run ended', 'ended');
  }
  source.addEventListener('error', function () {
    // EventSource retries by itself unless the server refused the stream (401, 503...).
    if (ended) finish();
    else if (source.readyState === EventSource.CLOSED) setConnection('disconnected: reload the page', 'closed');
    else setConnection('reconnecting…', 'retrying');
  });

  setInterval(function () {
    renderLastSeen();
    renderElapsed();
  }, 1000);
})();
