/** Which results are audited: probation, the base rate, trusted workers, the rate's bounds, the detection figure. */
import { describe, expect, it } from 'vitest';
import { AUDITS_TO_ESTABLISH, AUDIT_PROBATION, DEFAULT_AUDIT_RATE, auditChance, auditRateProblem, detectionProbability, shouldAudit } from '../src/audit-policy.js';

describe('audit policy', () => {
  it('audits every result of a new untrusted session, then the base rate', () => {
    for (let n = 0; n < AUDIT_PROBATION; n++) expect(auditChance({ results: n, audited: n }, false, DEFAULT_AUDIT_RATE)).toBe(1);
    expect(auditChance({ results: AUDIT_PROBATION, audited: AUDIT_PROBATION }, false, DEFAULT_AUDIT_RATE)).toBe(DEFAULT_AUDIT_RATE);
    expect(shouldAudit({ results: 100, audited: 9 }, false, 0.05, 0.0499)).toBe(true);
    expect(shouldAudit({ results: 100, audited: 9 }, false, 0.05, 0.05)).toBe(false);
  });

  it('halves the base rate for a session established by AUDITS_TO_ESTABLISH sampled audits past probation (BOINC\'s adaptive replication)', () => {
    const est = AUDIT_PROBATION + AUDITS_TO_ESTABLISH;
    expect(auditChance({ results: 500, audited: est - 1 }, false, DEFAULT_AUDIT_RATE)).toBe(DEFAULT_AUDIT_RATE);
    expect(auditChance({ results: 500, audited: est }, false, DEFAULT_AUDIT_RATE)).toBe(DEFAULT_AUDIT_RATE / 2);
    // Probation still first, and 1 still means every result.
    expect(auditChance({ results: 0, audited: 0 }, false, DEFAULT_AUDIT_RATE)).toBe(1);
    expect(auditChance({ results: 5000, audited: 5000 }, false, 1)).toBe(1);
    // A session drawn at the base rate reaches its standing after about AUDITS_TO_ESTABLISH / rate results.
    let h = { results: 0, audited: 0 };
    let draws = 0;
    for (let i = 0; i < 2000; i++) {
      const draw = ((i * 7919) % 1000) / 1000; // a fixed, evenly spread sequence of draws
      if (shouldAudit(h, false, DEFAULT_AUDIT_RATE, draw)) h = { results: h.results + 1, audited: h.audited + 1 };
      else h = { results: h.results + 1, audited: h.audited };
      draws++;
    }
    expect(draws).toBe(2000);
    // Over 2,000 results: 4 + 20 at the base rate (about 400 results), then 2.5%: about 4% in all.
    expect(h.audited / h.results).toBeGreaterThan(0.03);
    expect(h.audited / h.results).toBeLessThan(0.045);
  });

  it('never audits trusted workers; 0 turns audits off, 1 audits everything', () => {
    expect(auditChance({ results: 0, audited: 0 }, true, 1)).toBe(0);
    expect(auditChance({ results: 0, audited: 0 }, false, 0)).toBe(0);
    expect(shouldAudit({ results: 1000, audited: 1000 }, false, 1, 0.999999)).toBe(true);
  });

  it('checks --audit-rate and states the detection probability', () => {
    expect(auditRateProblem(0.05)).toBeNull();
    expect(auditRateProblem(1.5)).toMatch(/--audit-rate/);
    expect(auditRateProblem(Number.NaN)).toMatch(/--audit-rate/);
    // A cheater corrupting every result, one result a step, caught within 60 steps at 0.05: 95.4%.
    expect(detectionProbability(0.05, 1, 1, 60)).toBeCloseTo(1 - 0.95 ** 60, 12);
    expect(detectionProbability(0.05, 1, 1, 60)).toBeGreaterThan(0.95);
  });
});
