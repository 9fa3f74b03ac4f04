/**
 * fit(): validate, choose the evaluator, pump the solver, build the result.
 *
 *   import { fit } from 'nlfit';
 *   const r = await fit({ model: 'b1*(1-exp(-b2*x))', data: { x, y }, p0: { b1: 500, b2: 1e-4 } });
 *   console.log(r.params, r.stderr, r.summary());
 */
import { runFitMany, type FitManyResult } from './batch/fitMany.js';
import type { FitManyOptions } from './batch/options.js';
import { sharedFloat64 } from './data/columns.js';
import type { ColumnSource } from './data/source.js';
import { memorySource } from './data/sources/memory.js';
import { isColumnSource, isSourceSpec } from './data/sources/spec.js';
import { fitAborted, invalidInput, withCode } from './errors.js';
import { DistributedEvaluator, rankRange } from './distributed/evaluator.js';
import { exchangeJson, RankSession } from './distributed/session.js';
import { FitCancel } from './exec/cancel.js';
import type { BlockRange, Evaluator, PassColumns, PassModel, RangeEvaluator } from './exec/evaluator.js';
import { EnginePool, releaseFreeMemory } from './exec/engine.js';
import { InlineEvaluator } from './exec/inline.js';
import { jsModelValues, loadJsModel, planJsModel } from './exec/jsModel.js';
import { blockCount, checkLayout, kBlockSize, kLayoutVersion } from './exec/layout.js';
import { PooledEvaluator } from './exec/pooled.js';
import { StreamingEvaluator, type StreamShape } from './exec/streaming.js';
import type { WarmupTask } from './exec/worker.js';
import { availableMemory, decide, PressureMonitor, pressureRelief, type Decision } from './memory/index.js';
import { isCatalogName } from './model/catalog.js';
import { freeIdentifiers } from './model/compile.js';
import { isModuleModelSpec } from './model/moduleSpec.js';
import { loadAddon } from './native.js';
import {
  checkDeriveOptions,
  checkMemoryColumns,
  nanPolicy,
  dataValueError,
  distributedOption,
  normalizeFitOptions,
  precheckFitOptions,
  timeoutOption,
  type EngineOptions,
  type FitOptions,
  type MemoryColumns,
  type NormalizedFit,
  type OpenedData,
} from './options.js';
import type { Checkpointer } from './solver/checkpoint.js';
import { runSolver } from './solver/driver.js';
import { runStarts, startingPoints } from './solver/multistart.js';
import type { ModelValues } from './solver/diagnostics.js';
import { FitResult, type DistributedReport, type FitExport, type MultistartReport } from './solver/result.js';
import { resolveWorkflow } from './workflow.js';
import { fitStatistics } from './solver/statistics.js';

/**
 * Tasks per thread and pass when chunkSize is not given. The pool is the
 * engine's own and the blocks cost the same, so one range per thread balances
 * well and pays the fewest worker round trips (measured: at 1e6 points, four
 * tasks per thread cost 15% more per pass than one).
 */
const kTasksPerThread = 1;
/** Smallest default task, in blocks (32768 points). */
const kMinChunkBlocks = 64;

export class Engine {
  private readonly pool: EnginePool;

  constructor(options: EngineOptions = {}) {
    this.pool = new EnginePool(options);
  }

  /** Worker threads in this engine's pool. */
  get threads(): number {
    return this.pool.threads;
  }

  /** fit() and fitMany() calls running now (at most maxConcurrentFits). */
  get running(): number {
    return this.pool.runningFits;
  }

  /** fit() and fitMany() calls waiting for their turn (at most maxQueue). */
  get queued(): number {
    return this.pool.queuedFits;
  }

  /**
   * Fits a model; see FitOptions. Never throws synchronously: bad input
   * rejects. When maxConcurrentFits fits run, the call waits its turn; when
   * maxQueue calls already wait, it rejects at once with a QueueFullError.
   */
  async fit(options: FitOptions): Promise<FitResult> {
    // A distributed fit joins the other ranks first, so that even a refused
    // admission (an aborted signal, a full queue) reaches them.
    const session = wantsSession(options) ? await openSession(options) : null;
    let release: () => void;
    try {
      release = await this.pool.admit(fitCopyBytes(options), signalOf(options));
    } catch (error) {
      await session?.fail(error);
      throw error;
    }
    try {
      await nextTurn();
      return await runFit(this.pool, options, session);
    } finally {
      release();
    }
  }

  /** Starts the workers now (and loads the addon in each) instead of on the first large fit. */
  async warmup(): Promise<void> {
    const pool = this.pool.workers();
    const task: WarmupTask = { warmup: true };
    await Promise.all(Array.from({ length: this.pool.threads }, () => pool.run(task)));
  }

  /** Fits many small independent curves natively, sharded over the pool; see FitManyOptions. Queued as fit() is. */
  async fitMany(options: FitManyOptions): Promise<FitManyResult> {
    const session = wantsSession(options as unknown as FitOptions) ? await openSession(options as unknown as FitOptions) : null;
    let release: () => void;
    try {
      release = await this.pool.admit(batchCopyBytes(options), signalOf(options));
    } catch (error) {
      await session?.fail(error);
      throw error;
    }
    try {
      await nextTurn();
      return await runFitMany(this.pool, options, session);
    } finally {
      release();
    }
  }

  /**
   * Returns memory the process has freed but the C library still holds to
   * the system (glibc's malloc_trim; false where the library has nothing to
   * ask). The engine does this by itself a second after its last running fit
   * ends; call it to do it now (before sampling RSS, say).
   */
  releaseMemory(): boolean {
    return releaseFreeMemory();
  }

  /**
   * Stops the workers. Queued calls reject (code 'ERR_NLFIT_ENGINE_CLOSED'),
   * and so do later ones; the engine cannot fit afterwards.
   */
  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * Resolves on the event loop's next turn. A fit on the calling thread is a
 * chain of resolved promises, so callers that start such fits back to back
 * would otherwise keep the loop from ever taking the workers' results of
 * the pooled fits that share the engine (measured: a 10,000,000-point fit
 * took 10 times as long beside a loop of 1,000-point fits).
 */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The options' AbortSignal, if they hold one (the options are validated later, by the fit). */
function signalOf(options: unknown): AbortSignal | null {
  const signal = (options as { signal?: unknown } | null)?.signal;
  return signal instanceof AbortSignal ? signal : null;
}

/** Bytes a fit copies one in-memory column into: none for a Float64Array in shared memory, which it reads in place. */
function columnCopyBytes(column: unknown): number {
  if (column instanceof Float64Array && column.buffer instanceof SharedArrayBuffer) return 0;
  if (Array.isArray(column) || column instanceof Float64Array || column instanceof Float32Array) return column.length * Float64Array.BYTES_PER_ELEMENT;
  return 0;
}

/** What a fit reserves of the engine's memory budget: the copies of its in-memory columns (a data source plans its own memory). */
function fitCopyBytes(options: unknown): number {
  const data = (options as { data?: unknown } | null)?.data;
  if (data === null || typeof data !== 'object' || isSourceSpec(data)) return 0;
  return Object.values(data).reduce((bytes: number, column) => bytes + columnCopyBytes(column), 0);
}

/** What a fitMany call reserves: the copies of its x, y, sigma and offsets. */
function batchCopyBytes(options: unknown): number {
  if (options === null || typeof options !== 'object') return 0;
  const { x, y, sigma, offsets } = options as Record<string, unknown>;
  const xBytes = x !== null && typeof x === 'object' && !Array.isArray(x) && !ArrayBuffer.isView(x) ? Object.values(x).reduce((bytes: number, column) => bytes + columnCopyBytes(column), 0) : columnCopyBytes(x);
  return xBytes + columnCopyBytes(y) + columnCopyBytes(sigma) + columnCopyBytes(offsets);
}

let defaultEngine: Engine | undefined;

/** The engine shared by every fit() call, sized to the machine (or as configureDefaultEngine() set it). */
export function getDefaultEngine(): Engine {
  if (!defaultEngine) defaultEngine = new Engine();
  return defaultEngine;
}

/**
 * Sets the options of the engine fit() and fitMany() use, before its first
 * use; throws if it already exists (a fit ran, or getDefaultEngine() was called).
 *
 *   configureDefaultEngine({ threads: 4, maxConcurrentFits: 8, maxQueue: 1000 });
 */
export function configureDefaultEngine(options: EngineOptions): Engine {
  if (defaultEngine) {
    throw new Error('nlfit: configureDefaultEngine() must be called before the default engine is first used (by fit(), fitMany() or getDefaultEngine())');
  }
  defaultEngine = new Engine(options);
  return defaultEngine;
}

/** Fits many curves with the default engine. */
export function fitMany(options: FitManyOptions): Promise<FitManyResult> {
  return getDefaultEngine().fitMany(options);
}

/** Fits with the default engine. */
export function fit(options: FitOptions): Promise<FitResult> {
  return getDefaultEngine().fit(options);
}

/** Rows read per request when a source is loaded into memory. */
const kLoadRows = 1 << 20;
/** Rows of x and y sampled from a large source for a catalog model's first guess: runs of 256. */
const kSampleRuns = 256;
const kSampleRun = 256;

/**
 * One fit. `session`: a distributed fit's conversation with the other ranks;
 * a failure on this rank is announced to them at their next exchange
 * (src/distributed/session.ts), so no rank waits for it.
 */
async function runFit(pool: EnginePool, options: FitOptions, session: RankSession | null): Promise<FitResult> {
  const started = performance.now();
  // An aborted signal stops the fit before any work (the option is validated with the others later).
  const signal = (options as { signal?: unknown } | null)?.signal;
  const checkAborted = (): void => {
    if (signal instanceof AbortSignal && signal.aborted) throw fitAborted(signal);
  };
  let cancel: FitCancel;
  let timeoutMs: number | null;
  try {
    checkAborted();
    checkLayout(loadAddon());
    // From here the signal and timeoutMs act through the fit's cancel buffer
    // (src/exec/cancel.ts); timeoutMs is read now so that its deadline also
    // bounds opening and loading the data.
    timeoutMs = timeoutOption((options as { timeoutMs?: unknown } | null)?.timeoutMs);
    cancel = new FitCancel(signal instanceof AbortSignal ? signal : null, timeoutMs === null ? null : { timeoutMs, startedAt: started, what: 'fit' });
  } catch (error) {
    await session?.fail(error);
    throw error;
  }
  const baselineRss = process.memoryUsage().rss;
  let source: ColumnSource | null = null;
  // A ColumnSource the caller passed is theirs to close; sources fit() opens or derives are closed here.
  let ownsSource = false;
  try {
    let opened: OpenedData | null = null;
    let droppedRows = 0;
    const raw = options as unknown as Record<string, unknown> | null;
    if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
      const derive = checkDeriveOptions(raw);
      const omitNaN = nanPolicy(raw.nanPolicy) === 'omit';
      // A distributed fit reads its rank's slice from a source, even of arrays in memory.
      if (isSourceSpec(raw.data) || derive || omitNaN || session) {
        const bufferBytes = streamBufferBytes(raw);
        precheckFitOptions(raw);
        ownsSource = !isColumnSource(raw.data);
        // The readers load only for data that needs them (cold start of in-memory fits).
        source = isSourceSpec(raw.data)
          ? await (await import('./data/sources/open.js')).openSource(raw.data, { bufferBytes })
          : memorySource(checkMemoryColumns(raw.data).columns as Record<string, Float64Array | Float32Array | number[]>);
        if (derive || omitNaN) {
          const { compileDerive } = await import('./data/derive.js');
          const { deriveSource } = await import('./data/sources/derived.js');
          const spec = { ...(derive ?? {}) };
          const read = readColumnNames(raw.model, source.columns, spec);
          // nanPolicy 'omit' (scipy's): drop the rows with a NaN in a column the fit reads.
          if (omitNaN) spec.where = [...(spec.where ? [`(${spec.where})`] : []), ...read.map((c) => `${c} == ${c}`)].join(' && ');
          const stage = compileDerive(spec, source.columns, read);
          const input = source;
          const inputOwned = ownsSource;
          try {
            const derived = await deriveSource(input, stage, { bufferBytes });
            source = derived.source;
            ownsSource = true;
            droppedRows = derived.dropped;
          } finally {
            if (inputOwned) await input.close();
          }
        }
        // Arrays in memory guess from every row, as without distributed (a file: from a sample).
        const everyRow = session !== null && !isSourceSpec(raw.data) && !derive && !omitNaN;
        opened = { source, sample: wantsGuess(raw) ? await readSample(source, everyRow) : null };
      }
    }
    cancel.throwIfRequested();
    const job = normalizeFitOptions(options, pool.threads, opened);
    // A JavaScript model is imported here first, so a bad module or export fails before any pass.
    const plan = job.module ? planJsModel(job.module, job.paramNames, job.p0, job.fixed, job.solver) : null;
    const model: PassModel = plan ?? { code: job.model!.code, consts: job.model!.consts };
    const jsValues = plan ? jsModelValues(await loadJsModel(plan), plan) : null;
    // A rank holds a range of whole blocks and plans its memory for that slice.
    const range = session ? rankRange(session.rank, session.size, blockCount(job.nPoints)) : null;
    const rowOffset = range ? range.blockStart * kBlockSize : 0;
    const localPoints = range ? Math.max(0, Math.min(job.nPoints, range.blockEnd * kBlockSize) - rowOffset) : job.nPoints;
    const decision = decideFor(job, pool.threads, Math.max(1, localPoints), session !== null);
    let memory = job.memory;
    if (memory === null && decision.strategy !== 'streaming') memory = await loadColumns(job, source!, rowOffset, localPoints);
    cancel.throwIfRequested();
    if (session) await agreeOnFit(session, job);
    // Checkpoints: the data identity is computed when first needed (resuming, or the first write).
    let checkpointer: Checkpointer | null = null;
    let resumeFrom: Uint8Array | null = null;
    if (job.checkpoint && session) {
      // Every rank digests its blocks, together the data's identity; rank 0 reads the file and writes.
      const { Checkpointer: CheckpointFile, rangeDigests, identityFromDigests } = await import('./solver/checkpoint.js');
      const mine = await rangeDigests(job, memory, rowOffset, source, range!.blockStart, range!.blockEnd);
      const identity = identityFromDigests(job, await gatherDigests(session, mine));
      checkpointer = new CheckpointFile(job.checkpoint, job, () => Promise.resolve(identity), job.onProgress, session.rank === 0);
      const state = session.rank === 0 ? await checkpointer.load() : null;
      const sent = await session.exchange(state ?? new Uint8Array(0));
      resumeFrom = sent[0]!.byteLength > 0 ? sent[0]! : null;
      if (resumeFrom && session.rank !== 0) checkpointer.adopt(resumeFrom);
    } else if (job.checkpoint) {
      const { Checkpointer: CheckpointFile, dataIdentity } = await import('./solver/checkpoint.js');
      const columns = memory;
      checkpointer = new CheckpointFile(job.checkpoint, job, () => dataIdentity(job, columns, source), job.onProgress);
      resumeFrom = await checkpointer.load();
    }
    // The monitor measures against the whole budget (the decision planned for
    // safetyFactor of it); relief acts once per 5% of growth (memory/relief.ts).
    // A container at its limit can leave 0 bytes available: measure against at least 1 MiB.
    const monitor = new PressureMonitor({ budgetBytes: Math.max(decision.budget.availableBytes, 1 << 20), baselineRss });
    let pressureEvents = 0;
    const relief = pressureRelief(monitor, {
      minChunkSize: kBlockSize,
      onAction: (reading, next) => {
        pressureEvents += 1;
        job.onProgress?.({ type: 'pressure', ...reading, applied: next });
      },
    });
    const relieve = (shape: StreamShape): StreamShape => {
      const next = relief({ chunkSize: shape.chunkBlocks * kBlockSize, chunksInFlight: shape.chunksInFlight });
      return { chunkBlocks: Math.max(1, Math.floor(next.chunkSize / kBlockSize)), chunksInFlight: next.chunksInFlight };
    };
    const local = chooseEvaluator(pool, job, model, decision, memory, source, relieve, cancel, range);
    const deadlinePassed = (): boolean => job.maxTimeMs !== null && performance.now() >= started + job.maxTimeMs;
    const evaluator = session ? new DistributedEvaluator(local as RangeEvaluator & Evaluator, session, blockCount(job.nPoints), deadlinePassed) : local;
    // A rank's memory holds only its slice: rows for messages and exports are read from the source.
    const rowsFrom = session ? null : memory;
    if (job.onProgress) {
      const report = job.onProgress;
      evaluator.onBlocks = (done, total) => report({ type: 'pass-progress', fraction: done / total, elapsedMs: performance.now() - started });
    }
    const setupMs = performance.now() - started;

    let totalSumOfSquares = NaN;
    let passes = 0;
    const solve = (x0: Float64Array) =>
      runSolver(evaluator, x0, job.solver, {
        cancel,
        checkpoint: checkpointer,
        resumeFrom,
        maxIterations: job.maxIterations,
        deadline: job.maxTimeMs === null || session ? null : started + job.maxTimeMs,
        timeUp: evaluator instanceof DistributedEvaluator ? () => evaluator.stopAgreed : null,
        afterFirstPass: async () => {
          const audit = evaluator.audit!;
          if (audit.firstInvalidBlock >= 0) {
            const first = audit.firstInvalidBlock * kBlockSize;
            const count = Math.min(kBlockSize, job.nPoints - first);
            throw dataValueError(job, await readRows(job, rowsFrom, source, first, count), first, count);
          }
          totalSumOfSquares = audit.totalSumOfSquares;
        },
        onPass: job.onProgress
          ? (_, iteration, cost, damping) => job.onProgress!({ type: 'pass', pass: ++passes, iteration, cost, damping, elapsedMs: performance.now() - started })
          : undefined,
      });
    let run: Awaited<ReturnType<typeof solve>>;
    let multistart: MultistartReport | undefined;
    if (job.multistart) {
      // Every start is a whole fit on the same evaluator; pooled passes interleave on the pool.
      const spec = job.multistart;
      const starts = startingPoints(job.p0, job.solver.lower ?? null, job.solver.upper ?? null, spec);
      // A distributed fit runs its starts one after another: every rank must exchange in the same order.
      const concurrency = evaluator.kind === 'pooled' && !session ? job.threads : 1;
      const outcome = await runStarts(starts, job.p0.length, concurrency, async (x0) => {
        const one = await solve(x0);
        const failed = one.state.status === 'nonfinite_start';
        return { ...one, success: !failed && one.limit === null && one.state.success, cost: failed ? Infinity : (one.state.fnorm * one.state.fnorm) / 2 };
      });
      // A start the cancellation stopped counts as failed there: the fit as a whole was aborted or timed out.
      cancel.throwIfRequested();
      run = outcome.best;
      multistart = {
        starts: spec.n,
        converged: outcome.converged,
        bestIndex: outcome.bestIndex,
        costs: outcome.costs,
        failed: outcome.failed,
        sampler: spec.sampler,
        seed: spec.seed,
      };
    } else {
      run = await solve(job.p0);
    }
    const { state, solverMs, limit } = run;
    if (state.status === 'nonfinite_start') throw await nonFiniteStart(job, rowsFrom, source, jsValues ?? kernelValues(job.model!));

    const statisticsStarted = performance.now();
    const statistics = fitStatistics(
      state.factor,
      state.fnorm,
      job.paramNames.length,
      job.nPoints,
      totalSumOfSquares,
      job.absoluteSigma,
      { robust: job.loss !== null, activeMask: job.solver.lower ? state.activeMask : null },
    );
    const statisticsMs = performance.now() - statisticsStarted;
    // The export reads the data once more, in the fit's blocks, while the source is still open.
    let exported: FitExport | null = null;
    // A distributed fit's file is written once, by rank 0.
    if (job.export && (!session || session.rank === 0)) {
      const { predictWithKernel, writeExport } = await import('./data/export.js');
      const written = await writeExport(job.export, {
        nPoints: job.nPoints,
        readRows: (start, count) => readRows(job, rowsFrom, source, start, count),
        predict: job.model ? predictWithKernel(job.model.code, job.model.consts, state.x) : (vars, count, out) => jsValues!(state.x, vars, count, out),
        variables: job.varNames,
        weighted: job.weighted,
      });
      exported = { path: job.export.path, ...written };
    }
    const shape = executionShape(local, decision);
    let distributedReport: DistributedReport | undefined;
    if (session && evaluator instanceof DistributedEvaluator) {
      // The last exchange: a rank that failed up to here (rank 0's export, say) is reported on every rank.
      await session.exchange(new Uint8Array(0));
      session.close();
      const stats = evaluator.stats;
      distributedReport = {
        transport: session.comm.kind,
        rank: session.rank,
        ranks: session.size,
        blockStart: range!.blockStart,
        blockEnd: range!.blockEnd,
        exchanges: session.exchanges,
        exchangeMs: session.exchangeMs,
        passBytesSent: stats.bytesSent,
      };
    }
    return new FitResult({
      model: job.model ? job.model.source : job.module!.source,
      paramNames: job.paramNames,
      values: state.x,
      p0: job.p0,
      statistics,
      success: limit === null && state.success,
      status: limit ?? state.status,
      message:
        (limit === 'max_iterations'
          ? `Stopped after ${state.iterations} iterations (maxIterations) before a convergence test was met; the parameters are the best point reached.`
          : limit === 'max_time'
            ? `Stopped after ${job.maxTimeMs} ms (maxTimeMs) before a convergence test was met; the parameters are the best point reached.`
            : state.message) +
        (state.nonFiniteTrials > 0
          ? ` ${state.nonFiniteTrials} trial point${state.nonFiniteTrials === 1 ? '' : 's'} gave non-finite model values or derivatives and ${state.nonFiniteTrials === 1 ? 'was' : 'were'} rejected.`
          : ''),
      iterations: state.iterations,
      nfev: state.nfev,
      njev: state.njev,
      threads: evaluator.kind === 'inline' ? 1 : job.threads,
      absoluteSigma: job.absoluteSigma,
      weighted: job.weighted,
      timing: {
        totalMs: performance.now() - started,
        setupMs,
        evaluateMs: evaluator.stats.evaluateMs,
        kernelMs: evaluator.stats.kernelMs,
        solverMs,
        statisticsMs,
      },
      execution: {
        strategy: evaluator.kind === 'inline' ? 'standard' : evaluator.kind === 'pooled' ? 'chunked' : 'streaming',
        reason: job.chunkSize === null ? decision.reason : `${decision.reason}; chunkSize ${job.chunkSize} points as given`,
        chunkSize: shape.chunkSize,
        chunksInFlight: shape.chunksInFlight,
        memoryPressure: decision.memoryPressure,
        pressureEvents,
        dataSource: source ? source.kind : 'memory',
        droppedRows,
        ...(distributedReport ? { distributed: distributedReport } : {}),
      },
      exported,
      program: job.model ?? { values: jsValues!, variableNames: job.varNames },
      ...(job.solver.lower ? { activeMask: state.activeMask } : {}),
      ...(checkpointer ? { checkpoint: checkpointer.report() } : {}),
      ...(multistart ? { multistart } : {}),
      ...(job.loss ? { loss: { name: job.loss.name, fScale: job.loss.fScale } } : {}),
      ...(job.fixed.length > 0 ? { fixed: Object.fromEntries(job.fixed.map(({ name, value }) => [name, value])) } : {}),
      ...(Object.keys(job.definitions).length > 0 ? { expressions: job.definitions } : {}),
    });
  } catch (error) {
    await session?.fail(error);
    throw error;
  } finally {
    cancel.dispose();
    if (ownsSource) await source?.close();
  }
}

/** Whether the options ask for a distributed fit (checked without waiting: admission order is kept for the others). */
function wantsSession(options: FitOptions): boolean {
  const raw = options as unknown as Record<string, unknown> | null;
  return raw !== null && typeof raw === 'object' && ((raw.distributed !== undefined && raw.distributed !== false && raw.distributed !== null) || raw.workflow === 'hpc_distributed');
}

/** The distributed option's transport, opened (MPI is initialised here), or null for one process. */
async function openSession(options: FitOptions): Promise<RankSession | null> {
  const raw = options as unknown as Record<string, unknown> | null;
  if (raw === null || typeof raw !== 'object') return null;
  const spec = distributedOption(raw.distributed, raw.workflow === 'hpc_distributed' ? resolveWorkflow(raw.workflow, raw.goal, raw.strategy) : null);
  if (spec === null) return null;
  const comm = spec === 'mpi' ? (await import('./distributed/mpi.js')).mpiCommunicator() : spec;
  return new RankSession(comm);
}

/**
 * The first exchange of a distributed fit: every rank must run the same fit
 * on the same number of points (the same command on the same files); a rank
 * that differs is named, with the first option that differs.
 */
async function agreeOnFit(session: RankSession, job: NormalizedFit): Promise<void> {
  const { optionsIdentity } = await import('./solver/checkpoint.js');
  const mine = { version: kLayoutVersion, nPoints: job.nPoints, threads: job.threads, options: optionsIdentity(job) };
  const all = await exchangeJson(session, mine);
  const first = all[0]!;
  for (let rank = 1; rank < all.length; rank++) {
    const other = all[rank]!;
    let why: string | null = null;
    if (other.nPoints !== first.nPoints) why = `it reads ${other.nPoints} points where rank 0 reads ${first.nPoints}`;
    else {
      const keys = new Set([...Object.keys(first.options), ...Object.keys(other.options)]);
      for (const key of keys) {
        if (first.options[key] !== other.options[key]) {
          why = `its option ${key} is ${other.options[key] ?? '(absent)'} where rank 0 has ${first.options[key] ?? '(absent)'}`;
          break;
        }
      }
    }
    if (why) throw withCode(new Error(`nlfit: rank ${rank} of ${all.length} is not running the same fit as rank 0: ${why}`), 'ERR_NLFIT_DISTRIBUTED');
  }
}

/** Every rank's block digests (per column), concatenated in rank order: the whole data's. */
async function gatherDigests(session: RankSession, mine: Int32Array[]): Promise<Int32Array[]> {
  const flat = new Int32Array(mine.reduce((n, d) => n + d.length, 0));
  let at = 0;
  for (const d of mine) {
    flat.set(d, at);
    at += d.length;
  }
  const all = await session.exchange(new Uint8Array(flat.buffer));
  const parts = all.map((bytes) => new Int32Array(bytes.slice().buffer));
  return mine.map((_, column) => {
    const pieces = parts.map((words) => {
      const per = words.length / mine.length;
      return words.subarray(column * per, (column + 1) * per);
    });
    const out = new Int32Array(pieces.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of pieces) {
      out.set(p, offset);
      offset += p.length;
    }
    return out;
  });
}

/** The coordinator's decision for this job, honouring the workflow, goal and strategy options. */
function decideFor(job: NormalizedFit, engineThreads: number, nPoints = job.nPoints, distributed = false): Decision {
  const fromFile = job.source !== null && job.source.kind !== 'memory';
  let workflow: string = job.plan.strategy;
  if (job.plan.preferStreaming && fromFile && workflow === 'auto') workflow = 'streaming';
  // A rank always computes on its pool: its slice's roots go to the other ranks, not to an inline tree.
  if (distributed && (workflow === 'auto' || workflow === 'standard')) workflow = 'hpc';
  return decide({
    nPoints,
    nParams: job.paramNames.length,
    nVariables: job.varNames.length,
    workflow: workflow as Parameters<typeof decide>[0]['workflow'],
    memoryLimitMb: job.memoryLimitMb ?? undefined,
    threads: Math.min(job.threads, engineThreads),
    weighted: job.weighted,
    dataLocation: job.source === null || job.source.kind === 'memory' ? 'memory' : job.source.kind === 'stream' ? 'stream' : 'file',
    safetyFactor: job.safetyFactor,
  });
}

function chooseEvaluator(
  pool: EnginePool,
  job: NormalizedFit,
  program: PassModel,
  decision: Decision,
  memory: MemoryColumns | null,
  source: ColumnSource | null,
  relieve: (shape: StreamShape) => StreamShape,
  cancel: FitCancel,
  range: BlockRange | null,
): Evaluator {
  const nBlocks = range ? range.blockEnd - range.blockStart : blockCount(job.nPoints);
  const loss = job.loss ? { code: job.loss.code, fScale: job.loss.fScale } : null;
  if (decision.strategy === 'streaming') {
    // Data the caller holds in memory can still be streamed (forced), through a copying source.
    const streamed = source ?? memorySource(memoryRecord(job, memory!));
    const chunkPoints = job.chunkSize ?? decision.chunkSize;
    return new StreamingEvaluator(
      pool.workers(),
      program,
      streamed,
      { vars: job.varNames, y: 'y', sigma: job.weighted ? 'sigma' : null },
      job.nPoints,
      { chunkBlocks: Math.max(1, Math.ceil(chunkPoints / kBlockSize)), chunksInFlight: decision.chunksInFlight, reshape: relieve, loss, cancel, range },
    );
  }
  const columns: PassColumns = { ...memory!, nPoints: job.nPoints, rowOffset: range ? range.blockStart * kBlockSize : 0 };
  if (decision.strategy === 'standard') return new InlineEvaluator(program, columns, loss, cancel);
  const chunkBlocks =
    job.chunkSize !== null
      ? Math.ceil(job.chunkSize / kBlockSize)
      : Math.max(kMinChunkBlocks, Math.ceil(nBlocks / (job.threads * kTasksPerThread)));
  return new PooledEvaluator(pool.workers(), program, columns, {
    loss,
    cancel,
    threads: job.threads,
    chunkBlocks,
    range,
    // Under pressure: smaller tasks, then fewer at once.
    reshape: ({ chunkBlocks: blocks, inFlight }) => {
      const next = relieve({ chunkBlocks: blocks, chunksInFlight: inFlight });
      return { chunkBlocks: next.chunkBlocks, inFlight: next.chunksInFlight };
    },
  });
}

function executionShape(evaluator: Evaluator, decision: Decision): { chunkSize: number; chunksInFlight: number } {
  if (evaluator instanceof StreamingEvaluator) {
    const shape = evaluator.currentShape;
    return { chunkSize: shape.chunkBlocks * kBlockSize, chunksInFlight: shape.chunksInFlight };
  }
  if (evaluator instanceof PooledEvaluator) return { chunkSize: evaluator.currentChunkBlocks * kBlockSize, chunksInFlight: 0 };
  return { chunkSize: decision.chunkSize, chunksInFlight: 0 };
}

/** In-memory columns by source name (y, sigma, the model's variables). */
function memoryRecord(job: NormalizedFit, memory: MemoryColumns): Record<string, Float64Array> {
  const record: Record<string, Float64Array> = { y: memory.y };
  if (memory.sigma) record.sigma = memory.sigma;
  job.varNames.forEach((name, v) => (record[name] = memory.vars[v]!));
  return record;
}

/** Reads the columns the fit uses (rows [rowOffset, rowOffset + rows): a rank's slice) from a source into shared memory. */
async function loadColumns(job: NormalizedFit, source: ColumnSource, rowOffset = 0, rows = job.nPoints): Promise<MemoryColumns> {
  const names = ['y', ...(job.weighted ? ['sigma'] : []), ...job.varNames];
  const whole: Record<string, Float64Array> = {};
  for (const name of names) whole[name] = sharedFloat64(rows);
  for (let start = 0; start < rows; start += kLoadRows) {
    const count = Math.min(kLoadRows, rows - start);
    const views: Record<string, Float64Array> = {};
    for (const name of names) views[name] = whole[name]!.subarray(start, start + count);
    await source.read(rowOffset + start, count, views);
  }
  return { vars: job.varNames.map((name) => whole[name]!), y: whole.y!, sigma: job.weighted ? whole.sigma! : null };
}

/** Rows [start, start + count) of the columns the fit reads, from memory or the source. */
async function readRows(
  job: NormalizedFit,
  memory: MemoryColumns | null,
  source: ColumnSource | null,
  start: number,
  count: number,
): Promise<Record<string, Float64Array>> {
  if (memory) {
    const all = memoryRecord(job, memory);
    return Object.fromEntries(Object.entries(all).map(([name, values]) => [name, values.subarray(start, start + count)]));
  }
  const names = ['y', ...(job.weighted ? ['sigma'] : []), ...job.varNames];
  const rows: Record<string, Float64Array> = {};
  for (const name of names) rows[name] = new Float64Array(count);
  await source!.read(start, count, rows);
  return rows;
}

/** Memory a one-shot stream or CSV may buffer before spilling: half the fit's budget. */
/**
 * Memory a CSV or one-shot stream may buffer before it spills to a temporary
 * file, for fit options `raw` (memoryLimitMb, safetyFactor): half of the fit's
 * budget. Exported for callers that open a source themselves (the CLI).
 */
export function streamBufferBytes(raw: Record<string, unknown>): number {
  // Invalid values are left to normalizeFitOptions, which names them.
  const limit = typeof raw.memoryLimitMb === 'number' && raw.memoryLimitMb > 0 && Number.isFinite(raw.memoryLimitMb) ? raw.memoryLimitMb : undefined;
  const safety = typeof raw.safetyFactor === 'number' && raw.safetyFactor > 0 && raw.safetyFactor <= 1 ? raw.safetyFactor : 0.75;
  return Math.floor(availableMemory({ memoryLimitMb: limit }).availableBytes * safety * 0.5);
}

/**
 * The derived columns a fit will read: y, sigma and the model's variables (a
 * catalog model reads x). The derive stage keeps only these (every expression
 * is still checked); a model that does not parse reads nothing here and fails
 * with its own error in normalizeFitOptions.
 */
function readColumnNames(model: unknown, sourceColumns: readonly string[], derive: { transform?: Record<string, string> }): string[] {
  const outputs = new Set([...sourceColumns, ...Object.keys(derive.transform ?? {})]);
  let identifiers: string[] = [];
  if (typeof model === 'string' && !isCatalogName(model)) {
    try {
      identifiers = freeIdentifiers(model);
    } catch {
      identifiers = [];
    }
  } else if (isModuleModelSpec(model)) {
    identifiers = Array.isArray(model.variables) ? model.variables.filter((name): name is string => typeof name === 'string') : [];
  } else {
    identifiers = ['x'];
  }
  return [...outputs].filter((name) => name === 'y' || name === 'sigma' || identifiers.includes(name));
}

/** A catalog model without a complete p0 guesses from x and y. */
function wantsGuess(raw: Record<string, unknown>): boolean {
  const model = raw.model;
  return (typeof model === 'string' && isCatalogName(model)) || (model !== null && typeof model === 'object' && !isModuleModelSpec(model));
}

/** x and y for a first guess: all rows when few, else evenly spaced runs. */
async function readSample(source: ColumnSource, everyRow = false): Promise<{ x: Float64Array; y: Float64Array } | null> {
  if (!source.columns.includes('x') || !source.columns.includes('y')) return null;
  const n = source.nRows;
  if (n <= kSampleRuns * kSampleRun || everyRow) {
    const x = new Float64Array(n);
    const y = new Float64Array(n);
    await source.read(0, n, { x, y });
    return { x, y };
  }
  const x = new Float64Array(kSampleRuns * kSampleRun);
  const y = new Float64Array(kSampleRuns * kSampleRun);
  for (let k = 0; k < kSampleRuns; k++) {
    const start = Math.floor((k * (n - kSampleRun)) / (kSampleRuns - 1));
    const at = k * kSampleRun;
    await source.read(start, kSampleRun, { x: x.subarray(at, at + kSampleRun), y: y.subarray(at, at + kSampleRun) });
  }
  return { x, y };
}

/** The model's values on the kernel. */
function kernelValues(program: { code: Int32Array; consts: Float64Array }): ModelValues {
  const kernel = new (loadAddon().Kernel)(program.code, program.consts);
  return (params, vars, count, out) => kernel.predict(params, vars, 0, count, out);
}

/** The starting point is unusable: say where the model first fails. */
async function nonFiniteStart(job: NormalizedFit, memory: MemoryColumns | null, source: ColumnSource | null, model: ModelValues): Promise<Error> {
  const step = 1 << 16;
  for (let start = 0; start < job.nPoints; start += step) {
    const count = Math.min(step, job.nPoints - start);
    const rows = await readRows(job, memory, source, start, count);
    const vars = job.varNames.map((name) => rows[name]!);
    const values = new Float64Array(count);
    model(job.p0, vars, count, values);
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      const at = job.varNames.map((name) => `${name} = ${rows[name]![bad]}`).join(', ');
      return invalidInput('p0', `the model is ${values[bad]} at point ${start + bad}${at ? ` (${at})` : ''} for the starting parameters`);
    }
  }
  if (job.module?.jacobianName) return invalidInput('p0', `model.jacobian '${job.module.jacobianName}' gives non-finite derivatives at the starting parameters`);
  if (job.module) return invalidInput('p0', 'the finite-difference derivatives of the model are not finite at the starting parameters (a step leaves the domain where the function is finite)');
  return invalidInput('p0', 'the derivatives of the model are not finite at the starting parameters (e.g. sqrt or log at 0, or a power of 0)');
}
