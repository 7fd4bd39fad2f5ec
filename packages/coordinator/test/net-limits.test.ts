/**
 * The connection limits' accounting (net-limits.ts), without sockets: caps per class and per
 * address, fitting under the open-file limit, the rate-limited refusal log, reading the limit.
 */
import { describe, expect, it } from 'vitest';
import {
  ConnectionLedger, DEFAULT_NET_LIMITS, RefusalLog, fdReserve, parseProcLimits, planLimits, readFdLimit,
} from '../src/net-limits.js';

describe('planLimits', () => {
  it('keeps the defaults when they fit under the limit minus the reserve', () => {
    const p = planLimits(65536);
    expect(p.fitted).toBe(false);
    expect(p.limits).toEqual(DEFAULT_NET_LIMITS);
    expect(p.budget).toBe(65536 - 128);
  });

  it('scales every overall cap down together under a small limit, per-address caps no larger than them', () => {
    for (const fd of [16, 64, 256, 1024, 1600]) {
      const p = planLimits(fd);
      const { maxHttp, maxTrusted, maxVolunteers, maxHttpPerAddress, maxVolunteersPerAddress } = p.limits;
      expect(p.fitted, `ulimit -n ${fd}`).toBe(true);
      expect(p.budget).toBe(fd - fdReserve(fd));
      expect(maxHttp + maxTrusted + maxVolunteers, `ulimit -n ${fd}`).toBeLessThanOrEqual(Math.max(p.budget, 3));
      for (const v of [maxHttp, maxTrusted, maxVolunteers]) expect(v).toBeGreaterThanOrEqual(1);
      expect(maxHttpPerAddress).toBeLessThanOrEqual(maxHttp);
      expect(maxVolunteersPerAddress).toBeLessThanOrEqual(maxVolunteers);
    }
    // ulimit -n 1024: 896 sockets at most, trusted workers keep slots of their own.
    const p = planLimits(1024);
    expect(p.budget).toBe(896);
    expect(p.limits.maxTrusted).toBeGreaterThanOrEqual(100);
  });

  it('takes requested caps and refuses nonsense', () => {
    expect(planLimits(65536, { maxVolunteers: 10 }).limits.maxVolunteers).toBe(10);
    expect(() => planLimits(65536, { maxHttp: 0 })).toThrow(/maxHttp/);
    expect(() => planLimits(65536, { maxTrusted: 1.5 })).toThrow(/maxTrusted/);
    expect(() => planLimits(8)).toThrow(/file-descriptor limit/);
  });

  it('reserves min(128, a quarter) of the descriptors', () => {
    expect(fdReserve(1024)).toBe(128);
    expect(fdReserve(256)).toBe(64);
    expect(fdReserve(1_048_576)).toBe(128);
  });
});

describe('ConnectionLedger', () => {
  const limits = { maxHttp: 4, maxHttpPerAddress: 2, maxTrusted: 2, maxVolunteers: 3, maxVolunteersPerAddress: 2 };

  it('caps http sockets per address and overall, and frees a slot when one closes', () => {
    const l = new ConnectionLedger(limits);
    expect(l.take('http', 'a')).toBeNull();
    expect(l.take('http', 'a')).toBeNull();
    expect(l.take('http', 'a')).toBe('sockets_per_address');
    expect(l.take('http', 'b')).toBeNull();
    expect(l.take('http', 'c')).toBeNull();
    expect(l.take('http', 'd')).toBe('sockets');
    expect(l.count('http')).toBe(4);
    l.give('http', 'a');
    expect(l.count('http', 'a')).toBe(1);
    expect(l.take('http', 'd')).toBeNull();
  });

  it('keeps trusted slots apart: volunteers filling theirs lock no trusted worker out, and trusted ones have no per-address cap', () => {
    const l = new ConnectionLedger(limits);
    expect(l.take('volunteer', 'x')).toBeNull();
    expect(l.take('volunteer', 'x')).toBeNull();
    expect(l.take('volunteer', 'x')).toBe('volunteers_per_address');
    expect(l.take('volunteer', 'y')).toBeNull();
    expect(l.take('volunteer', 'z')).toBe('volunteers_full');
    expect(l.take('trusted', 'x')).toBeNull();
    expect(l.take('trusted', 'x')).toBeNull();
    expect(l.take('trusted', 'x')).toBe('trusted_full');
    expect(l.count('volunteer')).toBe(3);
    expect(l.count('trusted')).toBe(2);
  });

  it('when the overall cap is full, names the heaviest address for a newcomer holding less, never an even share', () => {
    const l = new ConnectionLedger({ ...limits, maxHttp: 6, maxHttpPerAddress: 4 });
    for (let i = 0; i < 4; i++) l.take('http', 'flood');
    l.take('http', 'b');
    l.take('http', 'c');
    expect(l.take('http', 'honest')).toBe('sockets');
    expect(l.evictionFor('honest')).toBe('flood');
    l.give('http', 'flood');
    expect(l.take('http', 'honest')).toBeNull();
    expect(l.evictionFor('flood')).toBeNull(); // flood holds 3: nobody holds 2 more than it does
    expect(l.evictionFor('d')).toBe('flood');
    l.give('http', 'flood');
    l.give('http', 'flood');
    l.take('http', 'd');
    l.take('http', 'd');
    // Everyone holds one or two: a newcomer with none takes from a holder of two.
    expect(['flood', 'd']).toContain(l.evictionFor('e'));
    expect(l.evictionFor('b')).toBeNull();
  });

  it('has no per-address cap where the caller says so (the Unix socket), only the overall one', () => {
    const l = new ConnectionLedger(limits);
    for (let i = 0; i < 4; i++) expect(l.take('http', 'unix', false)).toBeNull();
    expect(l.take('http', 'unix', false)).toBe('sockets');
    for (let i = 0; i < 3; i++) expect(l.take('volunteer', 'unix', false)).toBeNull();
    expect(l.take('volunteer', 'unix', false)).toBe('volunteers_full');
  });

  it('ignores a give without a take and forgets addresses with nothing open', () => {
    const l = new ConnectionLedger(limits);
    l.give('http', 'nobody');
    expect(l.count('http')).toBe(0);
    l.take('http', 'a');
    l.take('volunteer', 'a');
    expect(l.addresses).toBe(2);
    l.give('http', 'a');
    l.give('volunteer', 'a');
    expect(l.addresses).toBe(0);
  });
});

describe('RefusalLog', () => {
  it('says the first refusal at once, then one line per window with the count, per reason', () => {
    const lines: [string, number][] = [];
    const log = new RefusalLog((reason, count) => lines.push([reason, count]), 5000);
    log.note('sockets', {}, 0);
    for (let t = 1; t <= 999; t++) log.note('sockets', {}, t);
    log.note('origin', {}, 10);
    expect(lines).toEqual([['sockets', 1], ['origin', 1]]);
    log.flush(4999);
    expect(lines).toHaveLength(2);
    log.flush(5000);
    expect(lines).toEqual([['sockets', 1], ['origin', 1], ['sockets', 999]]);
    // Quiet since: the next one is said at once again.
    log.note('sockets', {}, 20_000);
    expect(lines.at(-1)).toEqual(['sockets', 1]);
    // A refusal past the window writes what was pending first.
    log.note('sockets', {}, 20_001);
    log.note('sockets', {}, 30_000);
    expect(lines.slice(-2)).toEqual([['sockets', 1], ['sockets', 1]]);
    log.flush(Number.POSITIVE_INFINITY);
    expect(lines.filter(([r]) => r === 'origin')).toHaveLength(1);
  });

  it('writes at most (time / window + 1) x 2 lines a reason however many refusals come', () => {
    let n = 0;
    const log = new RefusalLog(() => n++, 5000);
    for (let t = 0; t < 60_000; t++) {
      log.note('sockets', {}, t);
      if (t % 1000 === 0) log.flush(t);
    }
    expect(n).toBeLessThanOrEqual(2 * (60_000 / 5000 + 1));
  });
});

describe('the open-file limit', () => {
  it('reads the soft limit of /proc/self/limits', () => {
    const text = 'Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 1048576              files     \n';
    expect(parseProcLimits(text)).toBe(1024);
    expect(parseProcLimits('Max open files            unlimited            unlimited            files\n')).toBeNull();
    expect(parseProcLimits(null)).toBeNull();
  });

  it('reads this process\'s limit (Linux: /proc), or says it cannot', () => {
    const got = readFdLimit((p) => (p === '/proc/self/limits' ? 'Max open files            4096                 4096                 files\n' : null));
    const hasGetrlimit = typeof (process as unknown as { getrlimit?: unknown }).getrlimit === 'function';
    if (!hasGetrlimit) expect(got).toBe(4096);
    else expect(got).toBeGreaterThan(0);
    if (!hasGetrlimit) expect(readFdLimit(() => null)).toBeNull();
  });
});
