import { defineConfig } from 'vitest/config';
import { common } from './vitest.config.js';

/**
 * The fast tier, `npm run test:unit`: the tests of pure modules (numerics, kernels and their
 * helper threads, protocol, reducer, scheduler, trainer, checkpoints, file formats, deploy files).
 * None opens a socket, starts a process or a browser: test/unit-guard.ts makes any that tries fail.
 * Everything else (servers, clusters, CLI runs, Chromium) runs in the full `npm test` only.
 * A new test file runs in `npm test`; list it here too when it is one of these.
 */
export const UNIT_TESTS = [
  'packages/core/test/*.test.ts',
  'packages/coordinator/test/abandon.test.ts',
  'packages/coordinator/test/assignments.test.ts',
  'packages/coordinator/test/atomic-write.test.ts',
  'packages/coordinator/test/checkpoint.test.ts',
  'packages/coordinator/test/lr-schedule-training.test.ts',
  'packages/coordinator/test/metrics.test.ts',
  'packages/coordinator/test/net-limits.test.ts',
  'packages/coordinator/test/report.test.ts',
  'packages/coordinator/test/safetensors-export.test.ts',
  'packages/coordinator/test/onnx-export.test.ts',
  'packages/coordinator/test/protocol.test.ts',
  'packages/coordinator/test/reducer.test.ts',
  'packages/coordinator/test/scheduler.test.ts',
  'packages/coordinator/test/status.test.ts',
  'packages/coordinator/test/trainer.test.ts',
  'packages/worker/test/browser-socket.test.ts',
  'packages/worker/test/client.test.ts',
  'proto/test/packed.test.ts',
  'packages/cli/test/export-command.test.ts',
  'packages/cli/test/join-lines.test.ts',
  'packages/cli/test/log-format.test.ts',
  'packages/cli/test/options.test.ts',
  'packages/cli/test/progress.test.ts',
  'packages/cli/test/run-dir.test.ts',
  'packages/cli/test/signals.test.ts',
  'packages/cli/test/suggest.test.ts',
  'test/deploy-manifests.test.ts',
];

export default defineConfig({
  test: {
    ...common,
    include: UNIT_TESTS,
    setupFiles: ['test/unit-guard.ts'],
    // The files of one worker share its module cache (a third less CPU): these tests hold no global
    // state between files. The full run (`npm test`) keeps every file in a fresh module graph.
    isolate: false,
  },
});
