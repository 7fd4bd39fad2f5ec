import { configDefaults, defineConfig, type ViteUserConfig } from 'vitest/config';

/**
 * The container tests build Docker images and start containers: they run only when asked, with
 * GRADHUB_TEST_CONTAINERS=1 (`npm run test:containers`, and CI: .ci/run). Otherwise the file is left
 * out of the run (not skipped inside it), so `npm test` neither touches Docker nor counts them.
 */
export const CONTAINER_TESTS = ['test/containers.test.ts'];
export const containerTestsAsked = /^(1|true|yes)$/i.test(process.env.GRADHUB_TEST_CONTAINERS ?? '');

/** What every run shares (the fast tier, vitest.unit.config.ts, too). */
export const common: NonNullable<ViteUserConfig['test']> = {
  // A temporary directory per run (TMPDIR), removed at the end: test/global-setup.ts.
  globalSetup: ['test/global-setup.ts'],
  testTimeout: 60_000,
  hookTimeout: 60_000,
  pool: 'forks',
  // 2-core machines: cluster tests start several processes each; keep files from fighting.
  maxWorkers: 2,
};

// One vitest run over every package's test/ folder and the cluster tests in test/.
// The fast tier (`npm run test:unit`) is vitest.unit.config.ts.
export default defineConfig({
  test: {
    ...common,
    include: ['packages/*/test/**/*.test.ts', 'proto/test/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: [...configDefaults.exclude, ...(containerTestsAsked ? [] : CONTAINER_TESTS)],
  },
});
