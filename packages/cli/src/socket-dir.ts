/**
 * The private directory for a coordinator's Unix socket that local workers connect to (the local
 * launcher, local-cluster.ts, and bench/cluster.js): made fresh under TMPDIR by mkdtemp (0700 on
 * POSIX, so only this user can reach the socket), removed by its user at the end.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The socket's file name inside the directory of privateSocketDir. */
export const SOCKET_NAME = 'coordinator.sock';
/** Longest Unix socket path every platform takes (sun_path is 108 bytes on Linux, 104 on macOS). */
const MAX_SOCKET_PATH = 100;

/** A new directory only this user can enter, for the local workers' socket; null where none fits. */
export function privateSocketDir(): string | null {
  if (process.platform === 'win32') return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-'));
  if (path.join(dir, SOCKET_NAME).length > MAX_SOCKET_PATH) {
    fs.rmSync(dir, { recursive: true, force: true });
    return null;
  }
  return dir;
}
