#!/usr/bin/env node
// Keeps each package's public surface deliberate (`npm run lint`, the first step of `npm test`):
// - no `export *` in a package's sources: an index lists by name what it offers, so an internal
//   class never becomes API by accident;
// - no file outside a package reaches into its src/ by a relative path: other packages, tests and
//   benches import `@gradhub/<name>` (the package's index), and a package's own tests import its files.
// Prints each offence as FILE:LINE and exits 1 when there is one.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts', '*.js', '*.mjs'], { cwd: root, encoding: 'utf8' })
  .split('\n').filter((f) => f && !f.includes('node_modules/') && !f.includes('/dist/') && !f.includes('/generated/') && fs.existsSync(path.join(root, f)));

/** The package folder a file belongs to (proto, packages/<name>), or null (test/, bench/, deploy/...). */
function packageOf(file) {
  if (file.startsWith('proto/')) return 'proto';
  const m = /^packages\/[^/]+/.exec(file);
  return m ? m[0] : null;
}

const offences = [];
for (const file of files) {
  const pkg = packageOf(file);
  const lines = fs.readFileSync(path.join(root, file), 'utf8').split('\n');
  lines.forEach((line, i) => {
    const where = `${file}:${i + 1}`;
    if (pkg && /\/src\//.test(`/${file}`) && /^\s*export\s+\*\s+from\s/.test(line)) {
      offences.push(`${where}: \`export *\` in a package's sources; list the names it offers instead`);
    }
    for (const m of line.matchAll(/(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const target = path.normalize(path.join(path.dirname(file), m[1]));
      const targetPkg = packageOf(target);
      if (targetPkg && targetPkg !== pkg && /^(proto|packages\/[^/]+)\/src\//.test(target)) {
        offences.push(`${where}: reaches into ${targetPkg}/src; import '@gradhub/${path.basename(targetPkg)}' instead`);
      }
    }
  });
}
if (offences.length > 0) {
  process.stderr.write(`check-exports: ${offences.length} offence(s):\n${offences.map((o) => `  ${o}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write(`check-exports: ${files.length} files, no \`export *\` in package sources, no reach into another package's src/\n`);
