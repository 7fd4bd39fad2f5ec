/**
 * Which results are audited (recomputed on trusted compute and compared bit for bit: audit.ts).
 * Pure: a worker's history and a random draw in, a yes or no out.
 *
 * The draw is made by the coordinator after a result has arrived and been applied, so a worker
 * cannot know which of its results will be checked. As BOINC's adaptive replication does, a new
 * session is checked more than an established one: its first `AUDIT_PROBATION` results always
 * (a worker that cheats from the start is caught on its first result), then each result with the
 * base rate (`--audit-rate`, default `DEFAULT_AUDIT_RATE`) until `AUDITS_TO_ESTABLISH` of them were
 * drawn, then with half the base rate. Results of trusted workers (the operator's, joined with the
 * trusted token) are never audited: they are the trusted compute. A rate of 0 turns audits off
 * (probation too); 1 audits every result.
 *
 * Why 0.05: an audit recomputes the node on the coordinator (or a trusted worker), so the extra
 * compute is the chance times the compute audited: 5% for a session's first few hundred results,
 * 2.5% once established, which keeps the whole (probation included) under 5% for sessions that
 * stay a while. A cheater that corrupts a fraction f of its results is caught at each corrupted
 * result with probability 0.05 f, or 0.025 f once established, independently (docs/design.md
 * "Audits and exact rollback" gives the window this buys). Building that standing costs the
 * cheater about 400 honest results first; what it gets in afterwards is still undone when caught,
 * as long as the rollback window reaches back (the anchor keeps it there while it is connected).
 */

/** Base audit rate: the share of an established untrusted worker's results recomputed. */
export const DEFAULT_AUDIT_RATE = 0.05;

/** Results of a new untrusted session that are all audited, before the base rate applies. */
export const AUDIT_PROBATION = 4;

/** Sampled audits (past probation) after which a session is established: half the base rate from then on. */
export const AUDITS_TO_ESTABLISH = 20;

/** What the auditor knows about one worker session. */
export interface AuditHistory {
  /** Results (node contributions) of this session so far, before the one being decided. */
  readonly results: number;
  /** Of them, audited (decided or pending). */
  readonly audited: number;
}

/** The probability that the next result of a session with history `h` is audited. */
export function auditChance(h: AuditHistory, trusted: boolean, rate: number): number {
  if (trusted || rate <= 0) return 0;
  if (rate >= 1 || h.results < AUDIT_PROBATION) return 1;
  return h.audited >= AUDIT_PROBATION + AUDITS_TO_ESTABLISH ? rate / 2 : rate;
}

/** Audit the next result? `draw` is uniform in [0, 1) (the coordinator's, drawn after the result arrived). */
export function shouldAudit(h: AuditHistory, trusted: boolean, rate: number, draw: number): boolean {
  return draw < auditChance(h, trusted, rate);
}

/** Checks `--audit-rate`: a number in [0, 1]. Returns the message of what is wrong, or null. */
export function auditRateProblem(rate: number): string | null {
  return Number.isFinite(rate) && rate >= 0 && rate <= 1 ? null : `--audit-rate must be a number from 0 to 1, got ${rate}`;
}

/**
 * Probability that a cheater corrupting a fraction `f` of its results, with `r` results a step,
 * is caught within `steps` steps of a corrupted result (that result included), at audit chance
 * `rate` (the base rate; half of it for an established session): 1 - (1 - rate x f)^(r x steps).
 */
export function detectionProbability(rate: number, f: number, resultsPerStep: number, steps: number): number {
  return 1 - (1 - rate * f) ** (resultsPerStep * steps);
}
