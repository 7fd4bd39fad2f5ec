/**
 * `GET /metrics`: the run's figures in Prometheus' text format, with prom-client.
 *
 * One `Registry` per `RunStatus` (never prom-client's global one, so two runs in one process, or a
 * test next to a run, do not mix). Nearly nothing is counted here: at each scrape the gauges and
 * counters are derived from one `status.snapshot()`, so the figures are the run's own and agree
 * with `/api/status`. The one exception is the step-phase histogram, which observes every step's
 * split as the status publishes it (from the moment the metrics are created: a resumed run's
 * earlier steps are not in it).
 *
 *   gradhub_steps_total                      updates applied (the snapshot's `step`)
 *   gradhub_samples_total                    training samples of those updates (counter `samples`)
 *   gradhub_epoch                            the epoch of the last step (0 before the first)
 *   gradhub_lr                               the learning rate of the last step (see learningRateNow)
 *   gradhub_loss                             batch loss of the last step (NaN before the first)
 *   gradhub_test_loss, gradhub_test_accuracy loss and accuracy (a fraction) of the last evaluation (NaN before)
 *   gradhub_workers_connected                workers whose state is not `gone`
 *   gradhub_workers{runtime}                 the same by runtime: node, browser
 *   gradhub_step_phase_seconds{phase}        histogram of every step's time by phase: compute, upload, reduce, sgd, broadcast
 *   gradhub_bytes_total{direction}           counters `bytes_in` / `bytes_out`
 *   gradhub_wire_bytes_per_sample            (bytes in + out) / training samples so far
 *   gradhub_round_replicas, gradhub_round_local_steps   rounds mode's M and H (0 for synchronous SGD)
 *   gradhub_inner_steps_total                inner SGD steps of the rounds applied (rounds x M x H; 0 for synchronous SGD)
 *   gradhub_rejected_messages_total{code}    counters `rejected.<CODE>`
 *   gradhub_late_results_total               counter `late_results`
 *   gradhub_checkpoint_failures_total{code}  counters `checkpoint_failures.<errno code>`: checkpoint writes that failed (after a retry)
 *   gradhub_metrics_write_failures_total{code} counters `metrics_write_failures.<errno code>`: metrics-file lines not written
 *   gradhub_refused_total{reason}            counters `refused.<reason>`: connections and upgrades refused (net-limits.ts RefusalReason)
 *   gradhub_params_requests_ignored_total    counter `params_requests_ignored`: repeated ParamsRequests not answered
 *   gradhub_worker_sessions_total{event}     counters `workers_joined` / `workers_left` (the workers table keeps few departed rows)
 *   gradhub_results_non_finite_total         counter `results_non_finite` (results with a NaN or infinity, recomputed elsewhere)
 *   gradhub_stalls_total                     counter `stalls` (work taken from a worker past its hold deadline)
 *   gradhub_audits_total{outcome}            counters `audits.passed` / `audits.failed` (mismatches) / `audits.skipped` (not drawn)
 *   gradhub_bans_total                       counter `bans` (workers proven to cheat)
 *   gradhub_rollbacks_total                  counter `rollbacks`; gradhub_rollback_steps_total `rollback_steps` (updates undone);
 *                                            gradhub_rollbacks_beyond_window_total `rollbacks_beyond_window` (distrusted steps already final);
 *                                            gradhub_rollback_anchor_failures_total `rollback_anchor_failed` (anchor not written or read)
 *   gradhub_build_info{version,node}         always 1: gradhub's and Node's versions
 *   process_*, nodejs_*                      prom-client's default metrics of this process (CPU, memory, event loop, GC)
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { roundShape, wireBytesPerSample, type RunStatus, type StatusSnapshot, type StepSplit } from './status.js';
import { GRADHUB_VERSION } from './version.js';

export interface PrometheusMetrics {
  readonly registry: Registry;
  /** The `Content-Type` of `text()`. */
  readonly contentType: string;
  /** The exposition text of every metric, from one snapshot. */
  text(): Promise<string>;
  /** Stop observing the status (the histogram's subscription). */
  close(): void;
}

const PHASES: readonly (keyof StepSplit)[] = ['compute', 'upload', 'reduce', 'sgd', 'broadcast'];
const REJECTED_PREFIX = 'rejected.';
/** The status counters of failed checkpoint writes and metrics-file lines, by errno code. */
export const CHECKPOINT_FAILURES_PREFIX = 'checkpoint_failures.';
export const METRICS_WRITE_FAILURES_PREFIX = 'metrics_write_failures.';
const REFUSED_PREFIX = 'refused.';
const RUNTIMES = ['node', 'browser'] as const;
/** Step phases run from well under a millisecond (SGD of a small model) to seconds (a big cluster step). */
const PHASE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The learning rate now: the last step's (schedules change it), else the run's `lr` setting. */
export function learningRateNow(s: StatusSnapshot): number {
  const last = s.steps.at(-1);
  if (last?.lr !== undefined) return last.lr;
  return typeof s.settings.lr === 'number' ? s.settings.lr : NaN;
}

export function createPrometheusMetrics(status: RunStatus): PrometheusMetrics {
  const registry = new Registry();
  const registers = [registry];
  // Set for the length of one text() call, so that every metric of a scrape reads the same moment.
  let current: StatusSnapshot | null = null;
  const snap = (): StatusSnapshot => current ?? status.snapshot();
  const counter = (s: StatusSnapshot, name: string): number => s.counters[name] ?? 0;

  new Counter({
    name: 'gradhub_steps_total', help: 'Updates (SGD steps) applied to the model.', registers,
    collect() { this.reset(); this.inc(snap().step); },
  });
  new Counter({
    name: 'gradhub_samples_total', help: 'Training samples of the updates applied.', registers,
    collect() { this.reset(); this.inc(counter(snap(), 'samples')); },
  });
  new Gauge({
    name: 'gradhub_wire_bytes_per_sample', help: "Bytes on the coordinator's sockets (both ways) per training sample so far (NaN before the first).", registers,
    collect() { this.set(wireBytesPerSample(snap()) ?? NaN); },
  });
  new Gauge({
    name: 'gradhub_round_replicas', help: 'Rounds mode: replicas per round, M (0: synchronous SGD).', registers,
    collect() { this.set(roundShape(snap().settings)?.replicas ?? 0); },
  });
  new Gauge({
    name: 'gradhub_round_local_steps', help: 'Rounds mode: inner steps per replica and round, H (0: synchronous SGD).', registers,
    collect() { this.set(roundShape(snap().settings)?.localSteps ?? 0); },
  });
  new Counter({
    name: 'gradhub_inner_steps_total', help: 'Rounds mode: inner SGD steps of the rounds applied, rounds x M x H (0: synchronous SGD).', registers,
    collect() {
      const r = roundShape(snap().settings);
      this.reset();
      this.inc(r ? snap().step * r.replicas * r.localSteps : 0);
    },
  });
  new Gauge({
    name: 'gradhub_epoch', help: 'Epoch of the last step, counted from 1 (0 before the first step).', registers,
    collect() { this.set(snap().epoch); },
  });
  new Gauge({
    name: 'gradhub_lr', help: 'Learning rate of the last step.', registers,
    collect() { this.set(learningRateNow(snap())); },
  });
  new Gauge({
    name: 'gradhub_loss', help: 'Batch loss of the last step (NaN before the first).', registers,
    collect() { const s = snap().steps; this.set(s.length ? s[s.length - 1].loss : NaN); },
  });
  new Gauge({
    name: 'gradhub_test_loss', help: 'Test-set loss of the last evaluation (NaN before the first).', registers,
    collect() { const e = snap().evals; this.set(e.length ? e[e.length - 1].testLoss : NaN); },
  });
  new Gauge({
    name: 'gradhub_test_accuracy', help: 'Test-set accuracy of the last evaluation, a fraction (NaN before the first).', registers,
    collect() { const e = snap().evals; this.set(e.length ? e[e.length - 1].testAccuracy : NaN); },
  });
  new Gauge({
    name: 'gradhub_workers_connected', help: 'Workers connected now (any state but gone).', registers,
    collect() { this.set(snap().workers.filter((w) => w.state !== 'gone').length); },
  });
  new Gauge({
    name: 'gradhub_workers', help: 'Workers connected now (any state but gone), by runtime.', labelNames: ['runtime'], registers,
    collect() {
      const live = snap().workers.filter((w) => w.state !== 'gone');
      for (const runtime of RUNTIMES) this.set({ runtime }, live.filter((w) => w.runtime === runtime).length);
    },
  });
  const phases = new Histogram({
    name: 'gradhub_step_phase_seconds', help: "Every step's time by phase, seconds.", labelNames: ['phase'], buckets: PHASE_BUCKETS, registers,
  });
  for (const phase of PHASES) phases.zero({ phase });
  const unsubscribe = status.subscribe((e) => {
    if (e.type !== 'step' || !e.split) return;
    for (const phase of PHASES) phases.observe({ phase }, e.split[phase] / 1000);
  });
  new Counter({
    name: 'gradhub_bytes_total', help: 'Bytes received from (in) and sent to (out) workers.', labelNames: ['direction'], registers,
    collect() {
      const s = snap();
      this.reset();
      this.inc({ direction: 'in' }, counter(s, 'bytes_in'));
      this.inc({ direction: 'out' }, counter(s, 'bytes_out'));
    },
  });
  new Counter({
    name: 'gradhub_rejected_messages_total', help: 'Messages from workers rejected, by error code.', labelNames: ['code'], registers,
    collect() {
      const s = snap();
      this.reset();
      for (const [name, n] of Object.entries(s.counters)) {
        if (name.startsWith(REJECTED_PREFIX)) this.inc({ code: name.slice(REJECTED_PREFIX.length) }, n);
      }
    },
  });
  const byCode = (name: string, help: string, prefix: string): void => {
    new Counter({
      name, help, labelNames: ['code'], registers,
      collect() {
        const s = snap();
        this.reset();
        for (const [key, n] of Object.entries(s.counters)) if (key.startsWith(prefix)) this.inc({ code: key.slice(prefix.length) }, n);
      },
    });
  };
  byCode('gradhub_checkpoint_failures_total', 'Checkpoint writes that failed after a retry (the run went on), by error code.', CHECKPOINT_FAILURES_PREFIX);
  byCode('gradhub_metrics_write_failures_total', 'Metrics-file lines that could not be written (the run went on), by error code.', METRICS_WRITE_FAILURES_PREFIX);
  new Counter({
    name: 'gradhub_refused_total', help: 'Connections, requests and WebSocket upgrades refused, by reason.', labelNames: ['reason'], registers,
    collect() {
      const s = snap();
      this.reset();
      for (const [name, n] of Object.entries(s.counters)) {
        if (name.startsWith(REFUSED_PREFIX)) this.inc({ reason: name.slice(REFUSED_PREFIX.length) }, n);
      }
    },
  });
  new Counter({
    name: 'gradhub_params_requests_ignored_total', help: 'ParamsRequests for a version the connection was already resent: ignored.', registers,
    collect() { this.reset(); this.inc(counter(snap(), 'params_requests_ignored')); },
  });
  new Counter({
    name: 'gradhub_worker_sessions_total', help: 'Worker sessions that joined and that left.', labelNames: ['event'], registers,
    collect() {
      const s = snap();
      this.reset();
      this.inc({ event: 'joined' }, counter(s, 'workers_joined'));
      this.inc({ event: 'left' }, counter(s, 'workers_left'));
    },
  });
  new Counter({
    name: 'gradhub_late_results_total', help: 'Late or duplicate results dropped (honest stragglers).', registers,
    collect() { this.reset(); this.inc(counter(snap(), 'late_results')); },
  });
  new Counter({
    name: 'gradhub_results_non_finite_total', help: 'Results with a NaN or infinity (the node is recomputed on another worker).', registers,
    collect() { this.reset(); this.inc(counter(snap(), 'results_non_finite')); },
  });
  new Counter({
    name: 'gradhub_stalls_total', help: 'Times a worker held its work past its deadline (the work went to others).', registers,
    collect() { this.reset(); this.inc(counter(snap(), 'stalls')); },
  });
  new Counter({
    name: 'gradhub_audits_total', help: "Untrusted workers' results recomputed and compared (passed, failed: a mismatch), or not drawn for an audit (skipped).", labelNames: ['outcome'], registers,
    collect() {
      this.reset();
      for (const outcome of ['passed', 'failed', 'skipped']) this.inc({ outcome }, counter(snap(), `audits.${outcome}`));
    },
  });
  for (const [name, key, help] of [
    ['gradhub_bans_total', 'bans', 'Workers banned for the run: an audit proved a result of theirs wrong.'],
    ['gradhub_rollbacks_total', 'rollbacks', 'Times training went back to the state before a proven cheater\'s first distrusted result and replayed.'],
    ['gradhub_rollback_steps_total', 'rollback_steps', 'Updates undone by rollbacks (and replayed).'],
    ['gradhub_rollbacks_beyond_window_total', 'rollbacks_beyond_window', "A proven cheater's distrusted steps older than the rollback window and its anchor (final)."],
    ['gradhub_rollback_anchor_failures_total', 'rollback_anchor_failed', 'Rollback anchor writes or reads that failed (the window was memory only meanwhile).'],
  ] as const) {
    new Counter({ name, help, registers, collect() { this.reset(); this.inc(counter(snap(), key)); } });
  }

  new Gauge({ name: 'gradhub_build_info', help: "Always 1: gradhub's version and Node's.", labelNames: ['version', 'node'], registers })
    .set({ version: GRADHUB_VERSION, node: process.version }, 1);
  collectDefaultMetrics({ register: registry });

  return {
    registry,
    contentType: registry.contentType,
    async text(): Promise<string> {
      current = status.snapshot();
      try {
        return await registry.metrics();
      } finally {
        current = null;
      }
    },
    close: unsubscribe,
  };
}
