/**
 * gradhub's version: the cli package's `version` (packages/cli/package.json), read once. `gradhub
 * --version` prints it, run.json records it; exported so that other parts can be told it (the
 * coordinator cannot import the cli package).
 */
import * as fs from 'node:fs';

/** The cli package's package.json sits one folder above dist/ (and src/). */
const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export const GRADHUB_VERSION: string = pkg.version;
