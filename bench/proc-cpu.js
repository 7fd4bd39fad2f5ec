/**
 * CPU time of processes, read from Linux's /proc/PID/stat (user and system time, in ms). Where
 * there is no /proc (macOS, Windows), `readCpu` returns null and the benches leave the figure out.
 */
import * as fs from 'node:fs';

const TICK_MS = 10; // USER_HZ = 100 on every Linux Node runs on

/** @returns {{ user: number, sys: number } | null} CPU ms used so far by `pid` (all its threads). */
export function readCpu(pid) {
  let stat;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command name (which may hold spaces, so cut at its closing parenthesis):
  // state ppid ... utime is the 14th field of the line, stime the 15th.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]) * TICK_MS, sys: Number(f[12]) * TICK_MS };
}

/**
 * Snapshot several processes at once (null off Linux or when one is gone); `cpuPerStep` turns two into ms per step.
 * @param {Record<string, number>} pids name -> pid
 */
export function snapshotCpu(pids) {
  const out = {};
  for (const [name, pid] of Object.entries(pids)) {
    const c = readCpu(pid);
    if (c === null) return null;
    out[name] = c;
  }
  return out;
}

/** Per-step CPU ms between two snapshots (null when either is missing). */
export function cpuPerStep(later, earlier, steps) {
  if (!later || !earlier || steps <= 0) return null;
  const out = {};
  for (const name of Object.keys(later)) {
    out[name] = { user: (later[name].user - earlier[name].user) / steps, sys: (later[name].sys - earlier[name].sys) / steps };
  }
  return out;
}
