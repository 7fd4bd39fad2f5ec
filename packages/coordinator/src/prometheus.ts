/**
 * `GET /metrics`: the run's figures in Prometheus' text format, with prom-client.
 *
 * One `Registry` per `RunStatus` (never prom-client's global one, so two runs in one process, or a
 * test next to a run, do not mix). Nothing is counted here: at each scrape every metric is derived
 * from one `status.snapshot()`, so the figures are the run's own and agree with `/api/status`.
 *
 *   gradhub_steps_total                      updates applied (the snapshot's `step`)
 *   gradhub_samples_total                    training samples of those updates (counter `samples`)
 *   gradhub_loss                             batch loss of the last step (NaN before the first)
 *   gradhub_test_accuracy                    test accuracy of the last evaluation, a fraction (NaN before)
 *   gradhub_workers_connected                workers whose state is not `gone`
 *   gradhub_step_phase_seconds{phase}        the last step's time split: compute, upload, reduce, sgd, broadcast
 *   gradhub_bytes_total{direction}           counters `bytes_in` / `bytes_out`
 *   gradhub_rejected_messages_total{code}    counters `rejected.<CODE>`
 *   gradhub_late_results_total               counter `late_results`
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { RunStatus, StatusSnapshot, StepSplit } from './status.js';

export interface PrometheusMetrics {
  readonly registry: Registry;
  /** The `Content-Type` of `text()`. */
  readonly contentType: string;
  /** The exposition text of every metric, from one snapshot. */
  text(): Promise<string>;
}

const PHASES: readonly (keyof StepSplit)[] = ['compute', 'upload', 'reduce', 'sgd', 'broadcast'];
const REJECTED_PREFIX = 'rejected.';

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
    name: 'gradhub_loss', help: 'Batch loss of the last step (NaN before the first).', registers,
    collect() { const s = snap().steps; this.set(s.length ? s[s.length - 1].loss : NaN); },
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
    name: 'gradhub_step_phase_seconds', help: "The last step's time by phase, seconds.", labelNames: ['phase'], registers,
    collect() {
      this.reset();
      const split = snap().split;
      if (split) for (const phase of PHASES) this.set({ phase }, split[phase] / 1000);
    },
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
  new Counter({
    name: 'gradhub_late_results_total', help: 'Late or duplicate results dropped (honest stragglers).', registers,
    collect() { this.reset(); this.inc(counter(snap(), 'late_results')); },
  });

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
  };
}
