// Every test run gets its own temporary directory: TMPDIR points there for the test files and every
// process they start (CLI runs, workers, Chromium profiles, the local launcher's socket), and it
// is removed when the run ends, so repeated runs leave nothing behind in the system's /tmp.
// GRADHUB_KEEP_TMP=1 keeps it (its path is printed) to look at what a failing test wrote.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export default function setup(): () => void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradhub-test-run-'));
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = dir;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    if (process.env.GRADHUB_KEEP_TMP) console.log(`test files kept in ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  };
}
