/**
 * The memory layer: what a fit costs (estimate), what the machine and its
 * container allow (limits), the strategy that follows (decide) and the
 * pressure monitor that reshapes chunks during a fit (monitor).
 */
export { formatBytes } from './format.js';
export {
  availableMemory,
  readCgroupLimit,
  type AvailableMemory,
  type AvailableMemoryOptions,
  type CgroupPaths,
  type CgroupReading,
  type MemoryEnvironment,
  type MemorySource,
} from './limits.js';
export {
  estimateMemory,
  predictPeakRss,
  kDefaultSafetyFactor,
  kIdleRssBytes,
  kMinChunkPoints,
  kWorkerRssBytes,
  type EstimateOptions,
  type ExecutionStrategy,
  type MemoryBudget,
} from './estimate.js';
export { decide, type DataLocation, type Decision, type DecisionConfig, type DecideOptions } from './decide.js';
export {
  applyPressure,
  PressureMonitor,
  type PressureAction,
  type PressureLevel,
  type PressureMonitorOptions,
  type PressureReading,
  type PressureSample,
} from './monitor.js';
export { pressureRelief, type Chunking, type ReliefOptions } from './relief.js';
