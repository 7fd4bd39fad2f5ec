/**
 * gradhub's version, one for every package of the monorepo (they are released together): read once
 * by the coordinator from its package.json, which also reports it in /metrics and the run report.
 * `gradhub --version` prints it, run.json and the metrics file's run line record it.
 */
export { GRADHUB_VERSION } from '@gradhub/coordinator';
