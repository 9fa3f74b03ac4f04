/**
 * fit(): validate, choose the evaluator, pump the solver, build the result.
 *
 *   import { fit } from 'nlfit';
 *   const r = await fit({ model: 'b1*(1-exp(-b2*x))', data: { x, y }, p0: { b1: 500, b2: 1e-4 } });
 *   console.log(r.params, r.stderr, r.summary());
 */
import { invalidInput } from './errors.js';
import type { Evaluator, PassColumns } from './exec/evaluator.js';
import { EnginePool } from './exec/engine.js';
import { InlineEvaluator } from './exec/inline.js';
import { blockCount, checkLayout } from './exec/layout.js';
import { PooledEvaluator } from './exec/pooled.js';
import type { WarmupTask } from './exec/worker.js';
import { loadAddon } from './native.js';
import {
  checkDataValues,
  kInlineMaxPoints,
  normalizeFitOptions,
  type EngineOptions,
  type FitOptions,
  type NormalizedFit,
} from './options.js';
import { runSolver } from './solver/driver.js';
import { FitResult } from './solver/result.js';
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

  /** Fits a model; see FitOptions. Never throws synchronously: bad input rejects. */
  async fit(options: FitOptions): Promise<FitResult> {
    return runFit(this.pool, options);
  }

  /** Starts the workers now (and loads the addon in each) instead of on the first large fit. */
  async warmup(): Promise<void> {
    const pool = this.pool.workers();
    const task: WarmupTask = { warmup: true };
    await Promise.all(Array.from({ length: this.pool.threads }, () => pool.run(task)));
  }

  /** Stops the workers. The engine cannot fit afterwards. */
  close(): Promise<void> {
    return this.pool.close();
  }
}

let defaultEngine: Engine | undefined;

/** The engine shared by every fit() call, sized to the machine. */
export function getDefaultEngine(): Engine {
  if (!defaultEngine) defaultEngine = new Engine();
  return defaultEngine;
}

/** Fits with the default engine. */
export function fit(options: FitOptions): Promise<FitResult> {
  return getDefaultEngine().fit(options);
}

function chooseEvaluator(pool: EnginePool, job: NormalizedFit, columns: PassColumns): Evaluator {
  const program = { code: job.model.code, consts: job.model.consts };
  const useInline = job.strategy === 'standard' || (job.strategy === 'auto' && job.nPoints <= kInlineMaxPoints);
  if (useInline) return new InlineEvaluator(program, columns);
  const nBlocks = blockCount(job.nPoints);
  const chunkBlocks =
    job.chunkSize !== null
      ? Math.ceil(job.chunkSize / loadAddon().blockSize)
      : Math.max(kMinChunkBlocks, Math.ceil(nBlocks / (job.threads * kTasksPerThread)));
  return new PooledEvaluator(pool.workers(), program, columns, { threads: job.threads, chunkBlocks });
}

async function runFit(pool: EnginePool, options: FitOptions): Promise<FitResult> {
  const started = performance.now();
  const addon = loadAddon();
  checkLayout(addon);
  const job = normalizeFitOptions(options, pool.threads);
  const columns: PassColumns = { vars: job.vars, y: job.y, sigma: job.sigma, nPoints: job.nPoints };
  const evaluator = chooseEvaluator(pool, job, columns);
  const setupMs = performance.now() - started;

  let totalSumOfSquares = NaN;
  const { state, solverMs } = await runSolver(evaluator, job.p0, job.solver, () => {
    totalSumOfSquares = checkDataValues(job, evaluator.audit!);
  });
  if (state.status === 'nonfinite_start') throw nonFiniteStart(job);

  const statisticsStarted = performance.now();
  const statistics = fitStatistics(
    state.factor,
    state.fnorm,
    job.paramNames.length,
    job.nPoints,
    totalSumOfSquares,
    job.absoluteSigma,
  );
  const statisticsMs = performance.now() - statisticsStarted;
  return new FitResult({
    model: job.model.source,
    paramNames: job.paramNames,
    values: state.x,
    p0: job.p0,
    statistics,
    success: state.success,
    status: state.status,
    message:
      state.nonFiniteTrials > 0
        ? `${state.message} ${state.nonFiniteTrials} trial point${state.nonFiniteTrials === 1 ? '' : 's'} gave non-finite model values or derivatives and ${state.nonFiniteTrials === 1 ? 'was' : 'were'} rejected.`
        : state.message,
    iterations: state.iterations,
    nfev: state.nfev,
    njev: state.njev,
    strategy: evaluator.kind === 'inline' ? 'standard' : 'chunked',
    threads: evaluator.kind === 'inline' ? 1 : job.threads,
    absoluteSigma: job.absoluteSigma,
    weighted: job.sigma !== null,
    timing: {
      totalMs: performance.now() - started,
      setupMs,
      evaluateMs: evaluator.stats.evaluateMs,
      kernelMs: evaluator.stats.kernelMs,
      solverMs,
      statisticsMs,
    },
  });
}

/** The starting point is unusable: say where the model first fails. */
function nonFiniteStart(job: NormalizedFit): Error {
  const kernel = new (loadAddon().Kernel)(job.model.code, job.model.consts);
  const step = 1 << 16;
  for (let start = 0; start < job.nPoints; start += step) {
    const count = Math.min(step, job.nPoints - start);
    const values = new Float64Array(count);
    kernel.predict(job.p0, job.vars, start, count, values);
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      const i = start + bad;
      const at = job.model.variableNames.map((name, v) => `${name} = ${job.vars[v]![i]}`).join(', ');
      return invalidInput('p0', `the model is ${values[bad]} at point ${i}${at ? ` (${at})` : ''} for the starting parameters`);
    }
  }
  return invalidInput('p0', 'the derivatives of the model are not finite at the starting parameters (e.g. sqrt or log at 0, or a power of 0)');
}
