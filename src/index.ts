/**
 * nlfit: exact, parallel, bit-reproducible nonlinear least squares for Node.js.
 *
 *   import { fit } from 'nlfit';
 *   const r = await fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 1, b: 1, c: 0 } });
 *   console.log(r.summary());
 */
export { fit, fitMany, Engine, getDefaultEngine, configureDefaultEngine } from './fit.js';
export type { FitManyOptions } from './batch/options.js';
export type { FitManyResult } from './batch/fitMany.js';
export type { EngineOptions, FitOptions, ModelSpec, Strategy } from './options.js';
export { FitResult, type FitTiming, type Band, type BandOptions, type PointsInput } from './solver/result.js';
export { ModelError } from './errors.js';
export { compileModel, freeIdentifiers, type CompiledModel } from './model/compile.js';
export { catalogModel, catalogNames, type CatalogModel } from './model/catalog.js';
export type { ModuleModelSpec } from './model/moduleSpec.js';
export { kBlockSize } from './exec/layout.js';
export type { DataInput, ProgressEvent } from './options.js';
export type { FitExecution } from './solver/result.js';
export { estimateMemory, decide, availableMemory, readCgroupLimit, PressureMonitor, formatBytes } from './memory/index.js';
export type { MemoryBudget, Decision, PressureReading } from './memory/index.js';
export { memorySource } from './data/sources/memory.js';
export { openSource } from './data/sources/lazy.js';
export type { ColumnSource, OpenSourceOptions } from './data/source.js';
export { kWorkflows, kGoals, sizeTolerance, type Workflow, type Goal } from './workflow.js';
export { localGroup } from './distributed/local.js';
export { DistributedError } from './distributed/session.js';
export type { Communicator } from './distributed/communicator.js';
export type { DistributedReport } from './solver/result.js';
export { mpiAvailable } from './distributed/mpi.js';
