import { defineConfig } from 'vitest/config';

// One vitest run over every package's test/ folder and the cluster tests in test/.
export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    // A temporary directory per run (TMPDIR), removed at the end: test/global-setup.ts.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // 2-core machines: cluster tests start several processes each; keep files from fighting.
    maxWorkers: 2,
  },
});
