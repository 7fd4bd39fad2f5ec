// @gradhub/coordinator: what the CLI, the benches and the cross-package tests use; the rest is internal
// (the package's own tests import the files they test).
export { type Executor } from './executor.js';
export { createInProcessExecutor } from './in-process-executor.js';
export { nullMetrics, openMetricsFile, type MetricsLine, type MetricsSink } from './metrics.js';
export { LR_SETTING_KEYS, bitSettings, outerSgd, runSettings, type RoundSettings, type TrainSettings } from './settings.js';
export {
  runTraining,
  totalSteps,
  type EvalReport,
  type Samples,
  type StepReport,
  type TrainResult,
  type TrainStart,
} from './trainer.js';
export { loadCifar10 } from './dataset.js';
export {
  checkSettingsMatch,
  readCheckpoint,
  readLatestCheckpoint,
  writeCheckpoint,
  type CheckpointState,
} from './checkpoint.js';
export { saveCheckpoint, type CheckpointOutcome, type CheckpointRetry } from './checkpoint-saver.js';
export { RunStatus, type WorkerRow } from './status.js';
export { CHECKPOINT_FAILURES_PREFIX, METRICS_WRITE_FAILURES_PREFIX } from './prometheus.js';
export { modelToOnnx } from './onnx-export.js';
export { createHttpRoutes, type HttpRoutes } from './http-routes.js';
export { startHttpServer, type HttpServer } from './server.js';
export { startCluster, type Cluster } from './cluster.js';
export { createVolunteerRoutes } from './volunteer-routes.js';
export { GRADHUB_VERSION } from './version.js';
export { writeReport } from './report.js';
export { modelToSafetensors } from './safetensors-export.js';
export { writeFileAtomic } from './atomic-write.js';
export { Auditor } from './audit.js';
export { RollbackAnchor } from './anchor.js';
export { auditRateProblem } from './audit-policy.js';
