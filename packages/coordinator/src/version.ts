/** gradhub's version: the coordinator package's, read once from its package.json (dist/ and src/ sit beside it). */
import * as fs from 'node:fs';

export const GRADHUB_VERSION: string = (JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
