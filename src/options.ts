/**
 * The fit options: their types, defaults and the one function that validates
 * them. Everything a fit needs is checked here, before any work starts, and
 * turned into a NormalizedFit the rest of the library can trust.
 */
import { availableParallelism } from 'node:os';
import { closestName, invalidInput, invalidRange, invalidType } from './errors.js';
import { catalogModel, isCatalogName, type CatalogModel } from './model/catalog.js';
import { compileModel, freeIdentifiers, p0Names, type CompiledModel } from './model/compile.js';
import {
  checkModuleVariables,
  isModuleModelSpec,
  moduleStartingValues,
  normalizeModuleModel,
  type ModuleModel,
  type ModuleModelSpec,
} from './model/moduleSpec.js';
import { checkColumn, toFloat64Column, type ColumnInput } from './data/columns.js';
import { normalizeExportSpec, type ExportSpec, type NormalizedExport } from './data/exportSpec.js';
import type { ColumnSource } from './data/source.js';
import { isCommunicator, type Communicator } from './distributed/communicator.js';
import type { PressureReading } from './memory/index.js';
import { normalizeMultistart, type MultistartSpec } from './solver/multistart.js';
import { kDefaultStarts, resolveWorkflow, sizeTolerance, type Goal, type Workflow, type WorkflowPlan } from './workflow.js';

/** A model: an expression, a catalog name ('gaussian', 'poly3'), a catalog spec, or a JavaScript function in a module. */
export type ModelSpec = string | { name: string; degree?: number } | ModuleModelSpec;

export type Strategy = 'auto' | 'standard' | 'chunked' | 'streaming';

/** Data a fit reads: named in-memory columns, or where to read them (src/data/sources). */
export type DataInput = Record<string, ColumnInput> | string | ColumnSource | AsyncIterable<Record<string, ArrayLike<number>>> | object;

/** What fit() reports while it runs (onProgress). */
export type ProgressEvent =
  /** A pass over the data has been told to the solver: `iteration` accepted steps so far. */
  | { type: 'pass'; pass: number; iteration: number; /** Cost at the best point so far. */ cost: number; /** LM parameter of the last step. */ damping: number; elapsedMs: number }
  | { type: 'pass-progress'; /** Fraction of the current pass's blocks done (pooled and streaming passes). */ fraction: number; elapsedMs: number }
  | ({ type: 'pressure' } & PressureReading & { applied: { chunkSize: number; chunksInFlight: number } | null })
  /** The checkpoint file now holds the solver at `iteration` after `nfev` passes (the `written`-th write of this fit). */
  | { type: 'checkpoint'; path: string; iteration: number; nfev: number; written: number };

/**
 * Where and how often to save the solver (src/solver/checkpoint.ts). With
 * `resume: true` a fit continues from `path` when the file exists (after
 * checking that it was written for the same data and options) and starts
 * fresh when it does not.
 */
export interface CheckpointSpec {
  path: string;
  /** Accepted iterations between writes. Default 10. */
  everyIterations?: number;
  /** Continue from `path` if it exists. Default false (an existing file is overwritten by the first write). */
  resume?: boolean;
}

export interface NormalizedCheckpoint {
  path: string;
  everyIterations: number;
  resume: boolean;
}

export const kDefaultCheckpointIterations = 10;

export interface FitOptions {
  /**
   * Expression (`'a*exp(-b*x)+c'`), catalog model (`'exponential'`, `{ name: 'polynomial', degree: 3 }`),
   * or a JavaScript function for what expressions cannot say:
   * `{ module: '/abs/model.mjs', export: 'decay', kind: 'point', params: ['a', 'b'], variables: ['x'] }`
   * (src/model/moduleSpec.ts; p0 is required, derivatives by finite differences unless `jacobian` names one).
   */
  model: ModelSpec;
  /**
   * Named columns of equal length: `y` is the response, `sigma` (optional) its
   * standard deviations, every other column a variable. Or where to read them:
   * a CSV path, `{ x: 'x.npy', y: 'y.bin' }`, `{ path: 'data.npy', columns: ['x', 'y'] }`,
   * an async iterable of column chunks, or a ColumnSource.
   */
  data: DataInput;
  /** Starting values by name, or an array in parameter order. Optional for catalog models (guessed from the data; a partial object overrides the guess). */
  p0?: Record<string, number> | ArrayLike<number>;
  /** Covariance as given by sigma, not rescaled by the reduced chi-square (scipy's absolute_sigma). Default false. */
  absoluteSigma?: boolean;
  /** Relative reduction of the sum of squares at which to stop (MINPACK's ftol). Default 1e-12 (scipy: 1.49012e-8). */
  ftol?: number;
  /** Relative change of the scaled parameters at which to stop (MINPACK's xtol). Default 1e-12 (scipy: 1.49012e-8). */
  xtol?: number;
  /** Orthogonality of residual and Jacobian at which to stop. Default 0 (scipy). */
  gtol?: number;
  /** Most passes over the data (each evaluates residuals and Jacobian). Default 100 * (nParams + 1). */
  maxFev?: number;
  /** Initial trust-region radius factor (MINPACK's factor). Default 100. */
  stepFactor?: number;
  /** Worker threads this fit may use at once (at most the engine's). Default: all of the engine's. */
  threads?: number;
  /** Points per pool task, rounded up to whole blocks of 512. Never changes the result. */
  chunkSize?: number;
  /** 'standard' (calling thread), 'chunked' (worker pool), 'streaming' (read from the source every pass) or 'auto' (by size and memory). Never changes the result. */
  strategy?: Strategy;
  /** A named bundle of strategy and tolerances (src/workflow.ts). Naming one selects the tolerance table by data size. */
  workflow?: Workflow;
  /** 'fast' (looser tolerances), 'quality' (tighter), 'memory_efficient' (stream file data). */
  goal?: Goal;
  /** Memory the fit may use, in MB, above what the process uses when it starts (capped by the container). */
  memoryLimitMb?: number;
  /** Fraction of the available memory the fit plans to use (default 0.75). */
  safetyFactor?: number;
  /** Called after each pass and on memory pressure. */
  onProgress?: (event: ProgressEvent) => void;
  /** Derived columns, computed natively as the data is read: `{ y: 'log(counts)', x: 't*1e-3' }` (expressions over the source columns). */
  transform?: Record<string, string>;
  /** A row filter over the (transformed) columns: `'x > 0 && y < 1e6'`; rows where it is not true are dropped and counted. */
  where?: string;
  /** Write the fitted values and residuals of every point to a CSV (`.csv.gz`: gzip), chunk by chunk. */
  export?: ExportSpec;
  /** Parameters held at their p0 values: not fitted, not in the covariance. */
  fixed?: string[];
  /** Parameters defined by expressions of others, as lmfit's expr: `{ b3: '2*b2' }`. */
  expr?: Record<string, string>;
  /** Most accepted steps (status 'max_iterations' when reached). */
  maxIterations?: number;
  /**
   * Most wall time in ms, checked between passes: the fit then ends
   * gracefully with the best point so far (status 'max_time',
   * success: false). Compare timeoutMs.
   */
  maxTimeMs?: number;
  /**
   * A hard deadline in ms for the whole fit: when it passes, the fit stops
   * at once, in the middle of a pass if need be (pooled and streamed passes
   * between blocks, inline passes too), and rejects with an error named
   * 'TimeoutError' (after writing the checkpoint if one is set). Compare
   * maxTimeMs, which returns a result.
   */
  timeoutMs?: number;
  /** 'raise' (default): NaN in the data is an error; 'omit': rows with a NaN in a column the fit reads are dropped (scipy's nan_policy). */
  nanPolicy?: 'raise' | 'omit';
  /** Bounds: `{ b: [0, Infinity] }` by name, or `[lower, upper]` (numbers or arrays in parameter order), as scipy's. */
  bounds?: Record<string, [number | null, number | null]> | [number | ArrayLike<number>, number | ArrayLike<number>];
  /** A robust loss (scipy's least_squares definitions): 'linear' (default), 'soft_l1', 'huber', 'cauchy', 'arctan'. */
  loss?: LossName;
  /** The residual scale of a robust loss (scipy's f_scale). Default 1. */
  fScale?: number;
  /**
   * Variable scales, as scipy's x_scale: 'jac' (default: MINPACK's running
   * Jacobian column norms) or the characteristic scale of each parameter
   * (an array in parameter order or an object by name): the trust region is
   * then a sphere in x / xScale.
   */
  xScale?: 'jac' | ArrayLike<number> | Record<string, number>;
  /** Several starts, the best kept: `n` or `{ n, sampler: 'sobol' | 'lhs', seed, spread }`. */
  multistart?: number | { n: number; sampler?: 'sobol' | 'lhs'; seed?: number; spread?: number };
  /**
   * Cancels the fit: a pooled or streamed pass stops between blocks of 512
   * points, an inline pass (which holds the calling thread; at most 65,536
   * points, about a millisecond, unless strategy 'standard' is forced) at
   * its end. The fit then rejects with an error named 'AbortError' whose
   * cause is the signal's reason, after writing the checkpoint if one is set.
   */
  signal?: AbortSignal;
  /** Save the solver to a file as the fit goes, and resume from it: `{ path, everyIterations, resume }`. Not with multistart. */
  checkpoint?: CheckpointSpec;
  /**
   * One fit across the ranks of an MPI job (launch the same program under
   * `mpirun -n N` or `srun`): each rank reads only its slice of the data (whole
   * blocks), reduces it on its own pool, and the ranks combine their subtree
   * roots in the canonical tree, so every rank holds the same parameters, bit
   * for bit those of a single process. 'mpi' needs the MPI addon (docs/hpc.md);
   * a Communicator plugs in another transport (localGroup() for tests).
   */
  distributed?: 'mpi' | Communicator | false;
}

export const kLosses = ['linear', 'soft_l1', 'huber', 'cauchy', 'arctan'] as const;
export type LossName = (typeof kLosses)[number];

/** The transform and where options, checked for shape (their expressions compile in src/data/derive.ts); null if neither is given. */
export function checkDeriveOptions(options: Record<string, unknown>): { transform?: Record<string, string>; where?: string } | null {
  const { transform, where } = options;
  if (transform === undefined && where === undefined) return null;
  const out: { transform?: Record<string, string>; where?: string } = {};
  if (transform !== undefined) {
    if (transform === null || typeof transform !== 'object' || Array.isArray(transform)) {
      throw invalidType('transform', "object of column name -> expression ({ y: 'log(counts)' })", transform);
    }
    for (const [name, expression] of Object.entries(transform)) {
      if (typeof expression !== 'string') throw invalidType(`transform.${name}`, 'expression string', expression);
    }
    out.transform = transform as Record<string, string>;
  }
  if (where !== undefined) {
    if (typeof where !== 'string') throw invalidType('where', "condition string ('x > 0 && y < 1e6')", where);
    out.where = where;
  }
  return out;
}

const kKnownOptions = [
  'model', 'data', 'p0', 'absoluteSigma', 'ftol', 'xtol', 'gtol', 'maxFev', 'stepFactor',
  'threads', 'chunkSize', 'strategy', 'workflow', 'goal', 'memoryLimitMb', 'safetyFactor', 'onProgress',
  'transform', 'where', 'export', 'fixed', 'expr', 'maxIterations', 'maxTimeMs', 'timeoutMs', 'nanPolicy',
  'bounds', 'loss', 'fScale', 'multistart', 'xScale', 'signal', 'checkpoint', 'distributed',
] as const;

export const kDefaultTolerance = 1e-12;
/** Above this many points 'auto' uses the pool. */
export const kInlineMaxPoints = 1 << 16;
export const kReservedColumns = ['y', 'sigma'] as const;

/** The columns a fit reads, float64 in shared memory; vars in bytecode order. */
export interface MemoryColumns {
  vars: Float64Array[];
  y: Float64Array;
  sigma: Float64Array | null;
}

export interface NormalizedFit {
  /** The compiled expression; null for a JavaScript model (`module`). */
  model: CompiledModel | null;
  /** A JavaScript model, or null for an expression. */
  module: ModuleModel | null;
  catalog: CatalogModel | null;
  paramNames: string[];
  p0: Float64Array;
  /** The data in memory, or null when it is read from `source`. */
  memory: MemoryColumns | null;
  /** The opened source when the data was given as files or a stream (the caller closes it). */
  source: ColumnSource | null;
  /** Source column names the model reads, in bytecode order. */
  varNames: string[];
  weighted: boolean;
  nPoints: number;
  absoluteSigma: boolean;
  solver: { ftol: number; xtol: number; gtol: number; maxFev: number; factor: number; lower?: Float64Array; upper?: Float64Array; diag?: Float64Array };
  /** A robust loss (native code and fScale), or null for least squares. */
  loss: { name: LossName; code: number; fScale: number } | null;
  /** Multi-start: the starts to run (row 0 is p0), or null. */
  multistart: MultistartSpec | null;
  threads: number;
  chunkSize: number | null;
  plan: WorkflowPlan;
  memoryLimitMb: number | null;
  safetyFactor: number;
  onProgress: ((event: ProgressEvent) => void) | null;
  export: NormalizedExport | null;
  /** Parameters held at their p0 values (compiled in as constants), in p0 order. */
  fixed: Array<{ name: string; value: number }>;
  /** Parameters defined by an expression of others (lmfit's expr), compiled into the model. */
  definitions: Record<string, string>;
  /** Stop after this many accepted steps (status 'max_iterations'). */
  maxIterations: number | null;
  /** Stop after this much wall time (status 'max_time'), checked between passes. */
  maxTimeMs: number | null;
  /** Reject with a TimeoutError after this much wall time, interrupting a pass. */
  timeoutMs: number | null;
  /** Cancels the fit (checked between passes and chunks). */
  signal: AbortSignal | null;
  checkpoint: NormalizedCheckpoint | null;
  /** One fit across ranks: 'mpi', a Communicator (src/distributed/communicator.ts), or null for one process. */
  distributed: 'mpi' | Communicator | null;
  /** How the source columns became the fit's (part of a checkpoint's identity). */
  derive: { transform: Record<string, string> | null; where: string | null; nanPolicy: 'raise' | 'omit' };
}

/** Data already opened by the caller (fit() opens files and streams, which is asynchronous). */
export interface OpenedData {
  source: ColumnSource;
  /** Rows of x and y for a catalog model's first guess (a sample when the data is large). */
  sample: { x: Float64Array; y: Float64Array } | null;
}

function suggest(name: string, known: readonly string[]): string {
  const close = closestName(name, known);
  return close === undefined ? '' : ` (did you mean '${close}'?)`;
}

function tolerance(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw invalidType(field, 'finite number >= 0', value);
  if (!Number.isFinite(value) || value < 0) throw invalidRange(field, 'finite number >= 0', value);
  return value;
}

function positiveInteger(value: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw invalidType(field, 'positive integer', value);
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw invalidRange(field, max === Number.MAX_SAFE_INTEGER ? 'positive integer' : `integer from 1 to ${max}`, value);
  }
  return value;
}

export interface EngineOptions {
  /** Worker threads in the pool (default: the available parallelism). */
  threads?: number;
  /**
   * fit() and fitMany() calls that run at once; later ones wait in the queue
   * (default: 2 x threads, so the pool stays busy while a fit steps its solver).
   */
  maxConcurrentFits?: number;
  /**
   * Calls that may wait; one more rejects at once with a QueueFullError
   * (code 'ERR_NLFIT_QUEUE_FULL'). Default 256; 0 refuses every call that
   * cannot start at once.
   */
  maxQueue?: number;
  /**
   * Megabytes the running fits may reserve together, each the copies it makes
   * of its in-memory columns; a fit that would exceed it waits (one fit alone
   * always runs). Default: 75% of the memory available at the first fit.
   */
  memoryLimitMb?: number;
}

export interface NormalizedEngineOptions {
  threads: number;
  maxConcurrentFits: number;
  maxQueue: number;
  memoryLimitMb: number | null;
}

const kMaxEngineThreads = 1024;
const kEngineOptions = ['threads', 'maxConcurrentFits', 'maxQueue', 'memoryLimitMb'] as const;
const kDefaultMaxQueue = 256;
/** Fits per thread the default maxConcurrentFits admits. */
const kFitsPerThread = 2;

/** Validates Engine options and fills in the defaults; throws TypeError/RangeError naming the field. */
export function normalizeEngineOptions(input: unknown): NormalizedEngineOptions {
  if (input === null || typeof input !== 'object') throw invalidType('engine options', 'object', input);
  for (const key of Object.keys(input)) {
    if (!(kEngineOptions as readonly string[]).includes(key)) {
      const hint = suggest(key, kEngineOptions);
      throw new TypeError(`Unknown engine option '${key}'${hint || ` (known: ${kEngineOptions.join(', ')})`}`);
    }
  }
  const options = input as EngineOptions;
  const threads = options.threads === undefined ? availableParallelism() : positiveInteger(options.threads, 'threads', kMaxEngineThreads);
  const maxConcurrentFits = options.maxConcurrentFits === undefined ? kFitsPerThread * threads : positiveInteger(options.maxConcurrentFits, 'maxConcurrentFits');
  let maxQueue = kDefaultMaxQueue;
  if (options.maxQueue !== undefined) {
    if (typeof options.maxQueue !== 'number') throw invalidType('maxQueue', 'integer >= 0', options.maxQueue);
    if (!Number.isSafeInteger(options.maxQueue) || options.maxQueue < 0) throw invalidRange('maxQueue', 'integer >= 0', options.maxQueue);
    maxQueue = options.maxQueue;
  }
  return { threads, maxConcurrentFits, maxQueue, memoryLimitMb: memoryOptions({ memoryLimitMb: options.memoryLimitMb }).memoryLimitMb };
}

function resolveModel(spec: unknown): { source: string; catalog: CatalogModel | null; module: ModuleModel | null } {
  if (isModuleModelSpec(spec)) {
    const module = normalizeModuleModel(spec);
    return { source: module.source, catalog: null, module };
  }
  if (typeof spec === 'string') {
    if (spec.trim() === '') throw invalidInput('model', 'the expression is empty');
    if (isCatalogName(spec)) {
      const catalog = catalogModel(spec);
      return { source: catalog.expression, catalog, module: null };
    }
    return { source: spec, catalog: null, module: null };
  }
  if (spec !== null && typeof spec === 'object' && typeof (spec as { name?: unknown }).name === 'string') {
    const catalog = catalogModel(spec as { name: string; degree?: number });
    return { source: catalog.expression, catalog, module: null };
  }
  throw invalidType('model', 'expression string, catalog model or module model ({ module, export, params, variables })', spec);
}

function finiteNumber(value: unknown, field: string): number {
  if (typeof value !== 'number') throw invalidType(field, 'finite number', value);
  if (!Number.isFinite(value)) throw invalidRange(field, 'finite number', value);
  return value;
}

/** Parameter names and starting values from the model and p0. */
function resolveParams(
  source: string,
  catalog: CatalogModel | null,
  p0: unknown,
  columnNames: string[],
  guess: () => number[],
  fixedCount = 0,
): { names: string[]; values: number[] } {
  if (catalog) {
    const names = catalog.params;
    if (p0 === undefined) return { names, values: guess() };
    if (isArrayLikeOfValues(p0)) {
      if (p0.length !== names.length) {
        throw invalidRange('p0', `${names.length} values (${names.join(', ')})`, p0);
      }
      return { names, values: Array.from({ length: names.length }, (_, i) => finiteNumber(p0[i], `p0[${i}]`)) };
    }
    if (typeof p0 === 'object' && p0 !== null) {
      const given = p0 as Record<string, unknown>;
      for (const key of Object.keys(given)) {
        if (!names.includes(key)) {
          throw invalidInput('p0', `'${key}' is not a parameter of the ${catalog.name} model (its parameters: ${names.join(', ')})`);
        }
      }
      const missing = names.filter((name) => given[name] === undefined);
      const guessed = missing.length > 0 ? guess() : [];
      return {
        names,
        values: names.map((name, i) => (given[name] === undefined ? guessed[i]! : finiteNumber(given[name], `p0.${name}`))),
      };
    }
    throw invalidType('p0', 'object of parameter values or array', p0);
  }
  if (p0 === undefined) {
    throw invalidInput('p0', 'starting values are required for an expression model (only catalog models guess them)');
  }
  if (isArrayLikeOfValues(p0)) {
    const names = freeIdentifiers(source).filter((name) => !columnNames.includes(name));
    if (p0.length !== names.length) {
      throw invalidRange(
        'p0',
        `${names.length} values, one per parameter in order of appearance (${names.join(', ')})`,
        p0,
      );
    }
    return { names, values: names.map((name, i) => finiteNumber(p0[i], `p0[${i}] (${name})`)) };
  }
  if (typeof p0 === 'object' && p0 !== null) {
    const names = p0Names(p0, fixedCount);
    if (names.length === 0) throw invalidInput('p0', 'no parameters given');
    const given = p0 as Record<string, unknown>;
    return { names, values: names.map((name) => finiteNumber(given[name], `p0.${name}`)) };
  }
  throw invalidType('p0', 'object of parameter values or array', p0);
}

function isArrayLikeOfValues(value: unknown): value is ArrayLike<unknown> {
  return Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
}

/**
 * Validates fit options against an engine of `engineThreads` workers.
 * Throws TypeError/RangeError (or ModelError for expressions) naming the field.
 */
export function normalizeFitOptions(input: unknown, engineThreads: number, opened: OpenedData | null = null): NormalizedFit {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw invalidType('fit options', 'object', input);
  }
  const options = input as Record<string, unknown>;
  checkKnownKeys(options);
  if (options.model === undefined) throw invalidInput('model', 'a model is required');
  const { source, catalog, module } = resolveModel(options.model);

  const table = opened ? sourceTable(opened) : memoryTable(options.data);
  const columnNames = table.names.filter((name) => !(kReservedColumns as readonly string[]).includes(name));
  const nPoints = table.nPoints;
  const weighted = table.names.includes('sigma');

  const guess = (): number[] => {
    if (!table.names.includes('x')) throw invalidInput('data', `the ${catalog!.name} model needs a column 'x'`);
    const sample = table.sample();
    return catalog!.guess(sample.x, sample.y);
  };
  nanPolicy(options.nanPolicy);
  if (module && options.expr !== undefined) {
    throw invalidInput('expr', 'applies to expression models; a JavaScript model computes its parameters itself (use fixed for held values)');
  }
  const definitions = parseDefinitions(options.expr, columnNames);
  const definedNames = Object.keys(definitions);
  const resolved = module
    ? moduleStartingValues(module, options.p0)
    : resolveParams(source, catalog, options.p0, [...columnNames, ...definedNames], guess, Array.isArray(options.fixed) ? options.fixed.length : 0);
  const given = resolved.names.map((name, i) => ({ name, value: resolved.values[i]! }));
  const defined = new Set(definedNames);
  for (const { name } of given) {
    if (defined.has(name) && !catalog) {
      throw invalidInput(`p0.${name}`, `'${name}' is defined by expr.${name}, so it has no starting value of its own; leave it out of p0`);
    }
  }
  const params = given.filter(({ name }) => !defined.has(name));
  const fixedNames = new Set(parseFixed(options.fixed, params.map((p) => p.name)));
  const fixed = params.filter(({ name }) => fixedNames.has(name));
  const free = params.filter(({ name }) => !fixedNames.has(name));
  if (free.length === 0) throw invalidInput('fixed', 'every parameter is fixed or defined by expr: nothing is left to fit');
  const paramNames = free.map((p) => p.name);
  const p0Values = free.map((p) => p.value);

  if (module) checkModuleVariables(module, columnNames);
  const model = module ? null : compileExpression(source, paramNames, columnNames, fixed, definitions);
  const varNames = model ? model.variableNames : module!.variables;
  if (nPoints < paramNames.length) {
    throw invalidInput('data', `${nPoints} points cannot determine ${paramNames.length} parameters`);
  }
  const memory = table.column
    ? { vars: varNames.map(table.column), y: table.column('y'), sigma: weighted ? table.column('sigma') : null }
    : null;
  const absoluteSigma = options.absoluteSigma ?? false;
  if (typeof absoluteSigma !== 'boolean') throw invalidType('absoluteSigma', 'boolean', absoluteSigma);
  const p = paramNames.length;
  const maxFev = options.maxFev === undefined ? 100 * (p + 1) : positiveInteger(options.maxFev, 'maxFev');
  const factor = options.stepFactor === undefined ? 100 : tolerance(options.stepFactor, 'stepFactor', 100);
  if (!(factor > 0)) throw invalidRange('stepFactor', 'number > 0', factor);
  const threads = options.threads === undefined ? engineThreads : positiveInteger(options.threads, 'threads');
  if (threads > engineThreads) {
    throw invalidRange('threads', `at most the engine's ${engineThreads} threads (create new Engine({ threads: ${threads} }) for more)`, threads);
  }
  const chunkSize = options.chunkSize === undefined ? null : positiveInteger(options.chunkSize, 'chunkSize');
  const plan = resolveWorkflow(options.workflow, options.goal, options.strategy);
  // Exact defaults unless a workflow or goal asked for the size table.
  const sized = plan.toleranceStep === null ? null : sizeTolerance(nPoints, plan.toleranceStep);
  const { memoryLimitMb, safetyFactor } = memoryOptions(options);
  const onProgress = options.onProgress ?? null;
  if (onProgress !== null && typeof onProgress !== 'function') throw invalidType('onProgress', 'function', onProgress);
  const multistart = normalizeMultistart(options.multistart ?? (plan.multistart ? kDefaultStarts : undefined));
  const checkpoint = normalizeCheckpoint(options.checkpoint);
  if (checkpoint && multistart) {
    throw invalidInput(
      'checkpoint',
      `cannot be combined with multistart${options.multistart === undefined ? ` (turned on by ${options.workflow !== undefined ? `workflow '${String(options.workflow)}'` : `goal '${String(options.goal)}'`})` : ''}: a checkpoint holds one solver, and a multi-start fit runs several`,
    );
  }
  const derive = checkDeriveOptions(options);
  return {
    model,
    module,
    catalog,
    paramNames,
    p0: Float64Array.from(p0Values),
    memory,
    source: opened ? opened.source : null,
    varNames,
    weighted,
    nPoints,
    absoluteSigma,
    solver: {
      ftol: tolerance(options.ftol, 'ftol', sized ?? kDefaultTolerance),
      xtol: tolerance(options.xtol, 'xtol', sized ?? kDefaultTolerance),
      gtol: tolerance(options.gtol, 'gtol', sized ?? 0),
      maxFev,
      factor,
      ...parseBounds(options.bounds, paramNames, [...fixed.map((f) => f.name), ...definedNames]),
      ...parseXScale(options.xScale, paramNames),
    },
    loss: parseLoss(options.loss, options.fScale),
    multistart,
    threads,
    chunkSize,
    plan,
    memoryLimitMb,
    safetyFactor,
    onProgress: onProgress as ((event: ProgressEvent) => void) | null,
    fixed,
    definitions,
    maxIterations: options.maxIterations === undefined ? null : positiveInteger(options.maxIterations, 'maxIterations'),
    maxTimeMs: options.maxTimeMs === undefined ? null : positiveNumber(options.maxTimeMs, 'maxTimeMs'),
    timeoutMs: timeoutOption(options.timeoutMs),
    export: options.export === undefined ? null : normalizeExportSpec(options.export, { variables: varNames, weighted }),
    signal: abortSignal(options.signal),
    checkpoint,
    derive: { transform: derive?.transform ?? null, where: derive?.where ?? null, nanPolicy: nanPolicy(options.nanPolicy) },
    distributed: distributedOption(options.distributed, plan),
  };
}

/** Compiles an expression model and rejects parameters it cannot move. */
function compileExpression(
  source: string,
  paramNames: string[],
  columnNames: string[],
  fixed: Array<{ name: string; value: number }>,
  definitions: Record<string, string>,
): CompiledModel {
  const model = compileModel(source, {
    params: paramNames,
    columns: columnNames,
    reserved: kReservedColumns,
    constants: Object.fromEntries(fixed.map(({ name, value }) => [name, value])),
    definitions,
  });
  const unused = paramNames.filter((_, i) => !model.usesParam[i]);
  if (unused.length > 0) {
    throw invalidInput('p0', `${unused.map((n) => `'${n}'`).join(', ')} ${unused.length === 1 ? 'does' : 'do'} not appear in the model ${JSON.stringify(source)}`);
  }
  const flat = paramNames.filter((_, i) => !model.hasDerivative[i]);
  if (flat.length > 0) {
    throw invalidInput(
      'model',
      `${flat.map((n) => `'${n}'`).join(', ')} ${flat.length === 1 ? 'appears' : 'appear'} only inside comparisons or logical operators, where the derivative is zero everywhere: the fit cannot move ${flat.length === 1 ? 'it' : 'them'} (fix ${flat.length === 1 ? 'it' : 'them'} as a number or use a smooth form)`,
    );
  }
  return model;
}

function positiveNumber(value: unknown, field: string): number {
  if (typeof value !== 'number') throw invalidType(field, 'number > 0', value);
  if (!(value > 0) || !Number.isFinite(value)) throw invalidRange(field, 'finite number > 0', value);
  return value;
}

/** The expr option: name -> expression string; names must be identifiers and not data columns. */
function parseDefinitions(value: unknown, columns: string[]): Record<string, string> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidType('expr', "object of parameter name -> expression ({ b3: '2*b2' })", value);
  }
  const out: Record<string, string> = {};
  for (const [name, expression] of Object.entries(value)) {
    if (!kColumnName.test(name)) throw invalidInput(`expr.${name}`, 'a defined name must be an identifier (letters, digits, _)');
    if (columns.includes(name) || (kReservedColumns as readonly string[]).includes(name)) {
      throw invalidInput(`expr.${name}`, `'${name}' is a data column, not a parameter`);
    }
    if (typeof expression !== 'string' || expression.trim() === '') throw invalidType(`expr.${name}`, 'expression string', expression);
    out[name] = expression;
  }
  return out;
}

/** The fixed option: names of parameters (from p0) held at their starting values. */
function parseFixed(value: unknown, params: string[]): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalidType('fixed', 'array of parameter names', value);
  const known = new Set(params);
  const seen = new Set<string>();
  value.forEach((name: unknown, i) => {
    if (typeof name !== 'string') throw invalidType(`fixed[${i}]`, 'parameter name', name);
    if (!known.has(name)) {
      throw invalidInput(`fixed[${i}]`, `'${name}' is not a parameter with a starting value (parameters: ${params.join(', ')})${suggest(name, params)}`);
    }
    if (seen.has(name)) throw invalidInput(`fixed[${i}]`, `'${name}' is listed twice`);
    seen.add(name);
  });
  return value as string[];
}

/** nanPolicy: 'raise' (default) or 'omit'. */
export function nanPolicy(value: unknown): 'raise' | 'omit' {
  if (value === undefined || value === 'raise') return 'raise';
  if (value === 'omit') return 'omit';
  if (value === 'propagate') {
    throw invalidRange('nanPolicy', "'raise' or 'omit' ('propagate' would fit NaN residuals: nlfit does not offer it)", value);
  }
  throw invalidRange('nanPolicy', "'raise' or 'omit'", value);
}

function parseXScale(value: unknown, params: string[]): { diag?: Float64Array } {
  if (value === undefined || value === 'jac') return {};
  const scales = new Float64Array(params.length);
  if (isArrayLikeOfValues(value)) {
    if (value.length !== params.length) {
      throw invalidRange('xScale', `'jac' or ${params.length} scales in parameter order (${params.join(', ')})`, value);
    }
    for (let j = 0; j < params.length; j++) scales[j] = positiveNumber(value[j], `xScale[${j}]`);
  } else if (value !== null && typeof value === 'object') {
    const given = value as Record<string, unknown>;
    for (const key of Object.keys(given)) {
      if (!params.includes(key)) throw invalidInput(`xScale.${key}`, `not a fitted parameter (${params.join(', ')})${suggest(key, params)}`);
    }
    for (let j = 0; j < params.length; j++) {
      const v = given[params[j]!];
      if (v === undefined) throw invalidInput('xScale', `no scale for '${params[j]}': give one per fitted parameter, or 'jac'`);
      scales[j] = positiveNumber(v, `xScale.${params[j]}`);
    }
  } else {
    throw invalidType('xScale', "'jac', an array of scales or { name: scale }", value);
  }
  return { diag: scales.map((s) => 1 / s) };
}

function parseLoss(value: unknown, fScaleValue: unknown): NormalizedFit['loss'] {
  const name = value === undefined ? 'linear' : value;
  if (typeof name !== 'string') throw invalidType('loss', `one of ${kLosses.map((l) => `'${l}'`).join(', ')}`, name);
  const code = (kLosses as readonly string[]).indexOf(name);
  if (code < 0) throw invalidRange('loss', `one of ${kLosses.map((l) => `'${l}'`).join(', ')}${suggest(name, kLosses)}`, name);
  let fScale = 1;
  if (fScaleValue !== undefined) fScale = positiveNumber(fScaleValue, 'fScale');
  if (code === 0) {
    if (fScaleValue !== undefined) throw invalidInput('fScale', "applies to a robust loss; with loss 'linear' it would do nothing");
    return null;
  }
  return { name: name as LossName, code, fScale };
}

/** bounds: by name or scipy's [lower, upper] pair; checked here, enforced inside the solver's step. */
function parseBounds(value: unknown, params: string[], notFitted: string[]): { lower?: Float64Array; upper?: Float64Array } {
  if (value === undefined) return {};
  const p = params.length;
  const lower = new Float64Array(p).fill(-Infinity);
  const upper = new Float64Array(p).fill(Infinity);
  const side = (v: unknown, field: string, fallback: number): number => {
    if (v === null || v === undefined) return fallback;
    if (typeof v !== 'number' || Number.isNaN(v)) throw invalidType(field, 'number (or null for none)', v);
    return v;
  };
  if (Array.isArray(value)) {
    if (value.length !== 2) throw invalidType('bounds', '[lower, upper] (scipy\'s form) or { name: [lower, upper] }', value);
    // scipy's (lb, ub): each a number for every parameter or an array in parameter order.
    const [lb, ub] = value as [unknown, unknown];
    const fill = (spec: unknown, target: Float64Array, field: string, fallback: number): void => {
      if (typeof spec === 'number' || spec === null) {
        target.fill(side(spec, field, fallback));
        return;
      }
      if (!isArrayLikeOfValues(spec) || spec.length !== p) {
        throw invalidType(field, `a number or an array of ${p} numbers in parameter order (${params.join(', ')})`, spec);
      }
      for (let j = 0; j < p; j++) target[j] = side(spec[j], `${field}[${j}]`, fallback);
    };
    fill(lb, lower, 'bounds[0]', -Infinity);
    fill(ub, upper, 'bounds[1]', Infinity);
  } else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [name, pair] of Object.entries(value)) {
      const j = params.indexOf(name);
      if (j < 0) {
        const why = notFitted.includes(name) ? 'it is fixed or defined by expr, so it is not fitted' : `not a fitted parameter (${params.join(', ')})${suggest(name, params)}`;
        throw invalidInput(`bounds.${name}`, why);
      }
      if (!Array.isArray(pair) || pair.length !== 2) throw invalidType(`bounds.${name}`, '[lower, upper] (null for no bound)', pair);
      lower[j] = side(pair[0], `bounds.${name}[0]`, -Infinity);
      upper[j] = side(pair[1], `bounds.${name}[1]`, Infinity);
    }
  } else {
    throw invalidType('bounds', '{ name: [lower, upper] } or [lower, upper]', value);
  }
  for (let j = 0; j < p; j++) {
    const field = `bounds.${params[j]}`;
    if (lower[j] === Infinity || upper[j] === -Infinity) throw invalidInput(field, `[${lower[j]}, ${upper[j]}] leaves no room`);
    if (lower[j]! > upper[j]!) throw invalidInput(field, `the lower bound ${lower[j]} is above the upper bound ${upper[j]}`);
    if (lower[j] === upper[j]) throw invalidInput(field, `lower and upper are both ${lower[j]}: the parameter cannot move; use fixed: ['${params[j]}'] instead`);
  }
  if (lower.every((v) => v === -Infinity) && upper.every((v) => v === Infinity)) return {};
  return { lower, upper };
}

function checkKnownKeys(options: Record<string, unknown>): void {
  for (const key of Object.keys(options)) {
    if (!(kKnownOptions as readonly string[]).includes(key)) {
      throw new TypeError(`Unknown fit option '${key}'${suggest(key, kKnownOptions)}`);
    }
  }
}

function memoryOptions(options: Record<string, unknown>): { memoryLimitMb: number | null; safetyFactor: number } {
  let memoryLimitMb: number | null = null;
  if (options.memoryLimitMb !== undefined) {
    const limit = options.memoryLimitMb;
    // Below 1 MB nothing can run (a worker thread alone takes 10).
    if (typeof limit !== 'number') throw invalidType('memoryLimitMb', 'number of megabytes >= 1', limit);
    if (!Number.isFinite(limit) || limit < 1) throw invalidRange('memoryLimitMb', 'number of megabytes >= 1', limit);
    memoryLimitMb = limit;
  }
  let safetyFactor = 0.75;
  if (options.safetyFactor !== undefined) {
    const f = options.safetyFactor;
    if (typeof f !== 'number') throw invalidType('safetyFactor', 'number in (0, 1]', f);
    if (!(f > 0 && f <= 1)) throw invalidRange('safetyFactor', 'number in (0, 1]', f);
    safetyFactor = f;
  }
  return { memoryLimitMb, safetyFactor };
}

/**
 * The checks that do not need the data, run before fit() opens a file or
 * drains a stream (normalizeFitOptions repeats them with everything else), so
 * a misspelt option fails before a large file is read.
 */
export function precheckFitOptions(options: Record<string, unknown>): void {
  checkKnownKeys(options);
  memoryOptions(options);
  resolveWorkflow(options.workflow, options.goal, options.strategy);
  nanPolicy(options.nanPolicy);
  abortSignal(options.signal);
  timeoutOption(options.timeoutMs);
  normalizeCheckpoint(options.checkpoint);
  distributedOption(options.distributed, null);
}

/**
 * The distributed option: 'mpi' (MPI_COMM_WORLD of the process's launcher:
 * mpirun, srun), a Communicator (a transport of the caller's, or
 * localGroup's for tests), or false/absent for one process; workflow
 * 'hpc_distributed' means 'mpi' unless this says otherwise.
 */
export function distributedOption(value: unknown, plan: WorkflowPlan | null): 'mpi' | Communicator | null {
  if (value === undefined) return plan?.distributed ? 'mpi' : null;
  if (value === false || value === null) return null;
  if (value === 'mpi' || isCommunicator(value)) return value;
  throw invalidType('distributed', "'mpi', a Communicator ({ rank, size, allgather }) or false", value);
}

/** Longest timeoutMs: what a timer can wait (2^31 - 1 ms, about 24.8 days). */
const kMaxTimeoutMs = 2 ** 31 - 1;

/** The timeoutMs option (fit and fitMany): a number of ms, or null when not given. */
export function timeoutOption(value: unknown): number | null {
  if (value === undefined) return null;
  if (typeof value !== 'number') throw invalidType('timeoutMs', 'number > 0', value);
  if (!(value > 0) || value > kMaxTimeoutMs) throw invalidRange('timeoutMs', `number > 0 and <= ${kMaxTimeoutMs}`, value);
  return value;
}

/** The signal option: an AbortSignal, or null when not given. */
export function abortSignal(value: unknown): AbortSignal | null {
  if (value === undefined) return null;
  if (!(value instanceof AbortSignal)) throw invalidType('signal', 'AbortSignal (new AbortController().signal)', value);
  return value;
}

const kCheckpointKeys = ['path', 'everyIterations', 'resume'];

/** The checkpoint option: { path, everyIterations?, resume? }, or null when not given. */
export function normalizeCheckpoint(value: unknown): NormalizedCheckpoint | null {
  if (value === undefined) return null;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidType('checkpoint', "object ({ path: 'fit.ckpt', everyIterations: 10, resume: true })", value);
  }
  const spec = value as Record<string, unknown>;
  for (const key of Object.keys(spec)) {
    if (!kCheckpointKeys.includes(key)) throw new TypeError(`Unknown checkpoint option '${key}'${suggest(key, kCheckpointKeys)}`);
  }
  if (typeof spec.path !== 'string' || spec.path === '') throw invalidType('checkpoint.path', 'non-empty file path', spec.path);
  const everyIterations =
    spec.everyIterations === undefined ? kDefaultCheckpointIterations : positiveInteger(spec.everyIterations, 'checkpoint.everyIterations');
  const resume = spec.resume ?? false;
  if (typeof resume !== 'boolean') throw invalidType('checkpoint.resume', 'boolean', resume);
  return { path: spec.path, everyIterations, resume };
}

/** The data as normalizeFitOptions sees it: names, length, and (in memory) the columns. */
interface DataTable {
  names: string[];
  nPoints: number;
  /** A column as float64 in shared memory (converted once); null for data read from a source. */
  column: ((name: string) => Float64Array) | null;
  /** x and y for a first guess. */
  sample(): { x: Float64Array; y: Float64Array };
}

const kColumnName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * In-memory columns: checks that `data` is an object of named columns of
 * numbers with equal lengths (and a y). Returns it as such, unconverted.
 */
export function checkMemoryColumns(data: unknown): { columns: Record<string, ColumnInput>; nPoints: number } {
  if (data === null || typeof data !== 'object' || Array.isArray(data) || ArrayBuffer.isView(data)) {
    throw invalidType('data', 'object of named columns ({ x, y }), a file path or a data source', data);
  }
  const columnInputs = data as Record<string, unknown>;
  if (columnInputs.y === undefined) throw invalidInput('data', "the response column 'y' is missing");
  let nPoints = -1;
  for (const [name, column] of Object.entries(columnInputs)) {
    if (!kColumnName.test(name)) {
      throw invalidInput(`data.${name}`, 'column names must be identifiers (letters, digits, _)');
    }
    const length = checkColumn(column, `data.${name}`);
    if (nPoints === -1) nPoints = length;
    else if (length !== nPoints) {
      throw invalidInput('data', `columns differ in length: data.${name} has ${length} values, data.${Object.keys(columnInputs)[0]} has ${nPoints}`);
    }
  }
  if (nPoints < 1) throw invalidInput('data', 'the columns are empty');
  return { columns: columnInputs as Record<string, ColumnInput>, nPoints };
}

/** In-memory columns, checked; converts (once each) only the columns the fit reads. */
function memoryTable(data: unknown): DataTable {
  const { columns: columnInputs, nPoints } = checkMemoryColumns(data);
  const converted = new Map<string, Float64Array>();
  const column = (name: string): Float64Array => {
    let values = converted.get(name);
    if (!values) {
      values = toFloat64Column(columnInputs[name], `data.${name}`);
      converted.set(name, values);
    }
    return values;
  };
  return { names: Object.keys(columnInputs), nPoints, column, sample: () => ({ x: column('x'), y: column('y') }) };
}

/** An opened source: its names and length; values stay in the source. */
function sourceTable(opened: OpenedData): DataTable {
  const { source } = opened;
  const names = [...source.columns];
  for (const name of names) {
    if (!kColumnName.test(name)) throw invalidInput(`data.${name}`, `column names must be identifiers (letters, digits, _) (in ${source.description})`);
  }
  if (!names.includes('y')) {
    throw invalidInput('data', `the response column 'y' is missing from ${source.description} (its columns: ${names.join(', ')})`);
  }
  if (source.nRows < 1) throw invalidInput('data', `${source.description} holds no rows`);
  return {
    names,
    nPoints: source.nRows,
    column: null,
    sample: () => {
      if (!opened.sample) throw new Error('nlfit: internal error: no sample of the source was read for the first guess');
      return opened.sample;
    },
  };
}

/**
 * The value checks on the data: y, the variables the model uses and sigma must
 * be finite (sigma > 0 with a finite weight 1/sigma^2). The first pass checks
 * every value it reads, block by block while the block is in cache (the
 * evaluator's audit, native/kernel/columns.hpp); when it flags a block, fit()
 * reads that block's rows and this names the first bad value: the earliest
 * row, and in a row y, then sigma, then the variables.
 */
export function dataValueError(job: NormalizedFit, rows: Readonly<Record<string, Float64Array>>, firstRow: number, count: number): Error {
  const checks: Array<[string, (v: number) => boolean, string]> = [
    ['y', Number.isFinite, 'is not finite'],
    ...(job.weighted ? [['sigma', validSigma, 'is not a finite number > 0 with a finite weight 1/sigma^2'] as [string, (v: number) => boolean, string]] : []),
    ...job.varNames.map((name) => [name, Number.isFinite, 'is not finite'] as [string, (v: number) => boolean, string]),
  ];
  for (let i = 0; i < count; i++) {
    for (const [name, valid, problem] of checks) {
      const value = rows[name]![i]!;
      if (!valid(value)) return invalidInput(`data.${name}`, `value ${value} at index ${firstRow + i} ${problem}`);
    }
  }
  return new Error(`nlfit: internal error: the first pass flagged rows ${firstRow} to ${firstRow + count - 1} but every value is valid`);
}

function validSigma(s: number): boolean {
  return s > 0 && Number.isFinite(s) && Number.isFinite(1 / (s * s));
}
