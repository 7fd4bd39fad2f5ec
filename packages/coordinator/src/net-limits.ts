/**
 * The coordinator's connection limits as pure accounting: how many sockets of each class, and
 * from each remote address, may be open at once; how the limits are fitted under the process's
 * file-descriptor limit; and a log that says "refused N times" once per reason and window
 * instead of once per refusal. No sockets here: server.ts asks and reports, this module counts.
 *
 * Classes of sockets (docs/design.md "Limits under a flood"):
 * - `http`: every TCP connection (or Unix socket connection) until it becomes a WebSocket: raw
 *   sockets that have not sent a whole request, dashboard and API requests, event streams.
 *   Capped overall (`maxHttp`) and per remote address (`maxHttpPerAddress`). When the overall cap
 *   is reached, a newcomer from an address holding fewer sockets than the heaviest one takes a
 *   socket of the heaviest (`evictionFor`): a flood from a few addresses cannot keep anyone else
 *   out, only share the cap with them.
 * - `trusted`: WebSockets opened with the trusted token (workers the operator runs). Capped
 *   overall (`maxTrusted`), never per address: these slots are reserved for them, so volunteers
 *   cannot lock them out.
 * - `volunteer`: WebSockets opened with the public join token. Capped overall (`maxVolunteers`)
 *   and per address (`maxVolunteersPerAddress`).
 *
 * The sum of the three overall caps is kept below the file-descriptor limit minus a reserve
 * (`planLimits`), so checkpoints, the data files and the dashboard always find a descriptor.
 */

export type SocketClass = 'http' | 'trusted' | 'volunteer';

export interface NetLimits {
  /** Most sockets not (yet) WebSockets, overall. */
  readonly maxHttp: number;
  /** Most such sockets from one remote address. */
  readonly maxHttpPerAddress: number;
  /** Most WebSockets opened with the trusted token. */
  readonly maxTrusted: number;
  /** Most WebSockets opened with the join token, overall. */
  readonly maxVolunteers: number;
  /** Most WebSockets opened with the join token from one remote address. */
  readonly maxVolunteersPerAddress: number;
}

/** The defaults before fitting under the descriptor limit (see planLimits). */
export const DEFAULT_NET_LIMITS: NetLimits = {
  maxHttp: 256,
  maxHttpPerAddress: 32,
  maxTrusted: 256,
  maxVolunteers: 1024,
  maxVolunteersPerAddress: 16,
};

/** File descriptors assumed when the process's limit cannot be read (the usual Linux soft limit). */
export const DEFAULT_FD_LIMIT = 1024;

/** Descriptors kept out of the socket budget: min(128, a quarter of the limit). */
export function fdReserve(fdLimit: number): number {
  return Math.min(128, Math.floor(fdLimit / 4));
}

/** Why a socket was refused: the `reason` label of gradhub_refused_total. */
export type RefusalReason =
  | 'sockets' | 'sockets_per_address' | 'trusted_full' | 'volunteers_full' | 'volunteers_per_address'
  | 'evicted' | 'bad_token' | 'origin' | 'not_found' | 'timeout' | 'bad_request' | 'oversize_frame';

/**
 * The limits to use: `requested` (defaults for what is absent), scaled down together (each at
 * least 1, per-address caps no larger than their overall cap) when their overall sum exceeds
 * `fdLimit - fdReserve(fdLimit)`. `fitted` says whether they were scaled.
 */
export function planLimits(fdLimit: number, requested: Partial<NetLimits> = {}): { limits: NetLimits; budget: number; fitted: boolean } {
  const want: NetLimits = { ...DEFAULT_NET_LIMITS, ...requested };
  for (const [k, v] of Object.entries(want)) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(fdLimit) || fdLimit < 16) throw new RangeError(`the file-descriptor limit must be an integer >= 16, got ${fdLimit}`);
  const budget = fdLimit - fdReserve(fdLimit);
  const sum = want.maxHttp + want.maxTrusted + want.maxVolunteers;
  if (sum <= budget) return { limits: want, budget, fitted: false };
  const scale = budget / sum;
  const maxHttp = Math.max(1, Math.floor(want.maxHttp * scale));
  const maxTrusted = Math.max(1, Math.floor(want.maxTrusted * scale));
  const maxVolunteers = Math.max(1, Math.floor(want.maxVolunteers * scale));
  return {
    limits: {
      maxHttp, maxTrusted, maxVolunteers,
      maxHttpPerAddress: Math.min(want.maxHttpPerAddress, maxHttp),
      maxVolunteersPerAddress: Math.min(want.maxVolunteersPerAddress, maxVolunteers),
    },
    budget,
    fitted: true,
  };
}

/**
 * Open sockets by class and by (class, address). `take` either counts a socket in and returns
 * null, or returns why it may not be opened (and counts nothing); `give` counts one out.
 */
export class ConnectionLedger {
  private readonly total: Record<SocketClass, number> = { http: 0, trusted: 0, volunteer: 0 };
  private readonly byAddress = new Map<string, number>();

  constructor(readonly limits: NetLimits) {}

  /** `perAddress` false: no per-address cap (the Unix socket: only this machine's user can reach it). */
  take(cls: SocketClass, address: string, perAddress = true): RefusalReason | null {
    const key = `${cls} ${address}`;
    const here = this.byAddress.get(key) ?? 0;
    switch (cls) {
      case 'http':
        if (perAddress && here >= this.limits.maxHttpPerAddress) return 'sockets_per_address';
        if (this.total.http >= this.limits.maxHttp) return 'sockets';
        break;
      case 'trusted':
        if (this.total.trusted >= this.limits.maxTrusted) return 'trusted_full';
        break;
      case 'volunteer':
        if (this.total.volunteer >= this.limits.maxVolunteers) return 'volunteers_full';
        if (perAddress && here >= this.limits.maxVolunteersPerAddress) return 'volunteers_per_address';
        break;
    }
    this.total[cls]++;
    this.byAddress.set(key, here + 1);
    return null;
  }

  give(cls: SocketClass, address: string): void {
    const key = `${cls} ${address}`;
    const here = this.byAddress.get(key) ?? 0;
    if (here <= 0) return;
    this.total[cls]--;
    if (here === 1) this.byAddress.delete(key);
    else this.byAddress.set(key, here - 1);
  }

  /**
   * The overall http cap is reached and a socket from `address` wants in: the address whose
   * oldest http socket should make room (the one holding the most, when it holds at least two
   * more than `address` does), or null (nobody holds more than their share: refuse the newcomer).
   */
  evictionFor(address: string): string | null {
    const mine = this.count('http', address);
    let heaviest: string | null = null;
    let most = mine + 1;
    for (const [key, n] of this.byAddress) {
      if (n > most && key.startsWith('http ')) {
        most = n;
        heaviest = key.slice(5);
      }
    }
    return heaviest;
  }

  /** Open sockets of a class (overall, or from one address). */
  count(cls: SocketClass, address?: string): number {
    return address === undefined ? this.total[cls] : this.byAddress.get(`${cls} ${address}`) ?? 0;
  }

  /** Addresses with at least one open socket (any class): the map's size stays bounded by the caps. */
  get addresses(): number {
    return this.byAddress.size;
  }
}

/**
 * A warning per refusal would let a flood fill the log (and the disk): this says the first
 * refusal of a reason at once, then at most one line per reason every `windowMs` with how many
 * there were since the last line. `flush(now)` (called on a timer) writes what is pending once
 * its window has passed; `now` is injected so the logic is tested without clocks.
 */
export class RefusalLog {
  private readonly pending = new Map<string, { count: number; lastAt: number; fields: Record<string, unknown> }>();

  constructor(
    private readonly write: (reason: string, count: number, fields: Record<string, unknown>) => void,
    private readonly windowMs = 5000,
  ) {}

  note(reason: string, fields: Record<string, unknown>, now: number): void {
    const p = this.pending.get(reason);
    if (!p || now - p.lastAt >= this.windowMs) {
      if (p && p.count > 0) this.write(reason, p.count, p.fields);
      this.write(reason, 1, fields);
      this.pending.set(reason, { count: 0, lastAt: now, fields });
      return;
    }
    p.count++;
    p.fields = fields;
  }

  /** Write the pending count of every reason whose window has passed. */
  flush(now: number): void {
    for (const [reason, p] of this.pending) {
      if (now - p.lastAt < this.windowMs) continue;
      if (p.count > 0) this.write(reason, p.count, p.fields);
      this.pending.delete(reason);
    }
  }
}

/**
 * The process's soft limit of open files: `process.getrlimit('nofile')` where Node has it, else
 * Linux's /proc/self/limits, else null (the caller assumes DEFAULT_FD_LIMIT). `readText` reads a
 * file (injected: this module does no I/O of its own).
 */
export function readFdLimit(readText: (path: string) => string | null): number | null {
  const getrlimit = (process as unknown as { getrlimit?: (r: string) => { soft?: number | null } }).getrlimit;
  if (typeof getrlimit === 'function') {
    try {
      const soft = getrlimit('nofile').soft;
      if (typeof soft === 'number' && Number.isFinite(soft) && soft > 0) return soft;
    } catch {
      // fall through to /proc
    }
  }
  return parseProcLimits(readText('/proc/self/limits'));
}

/** The soft "Max open files" of a /proc/PID/limits text ("unlimited" and absent: null). */
export function parseProcLimits(text: string | null): number | null {
  if (text === null) return null;
  const m = /^Max open files\s+(\d+)\s/m.exec(text);
  return m ? Number(m[1]) : null;
}
