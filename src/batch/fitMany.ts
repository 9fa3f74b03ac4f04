/**
 * fitMany: many small independent fits (a spectrum per pixel, a peak per
 * channel). Each curve is fitted entirely in C++ by the same Levenberg-
 * Marquardt state machine as fit(); curves are sharded over the engine's pool
 * and every shard writes its results in place into shared typed arrays.
 *
 *   const r = await fitMany({ model: 'a*exp(-((x1-u)^2+(x2-v)^2)/(2*s^2))+c',
 *                             x: { x1, x2 }, y, p0: { a: 10, u: 2, v: 2, s: 1, c: 1 } });
 *   r.params   // Float64Array, M x p, row-major
 *   r.counts   // { ftol: 999998, max_fev: 2 }
 */
import { gatherFitMany } from '../distributed/fitMany.js';
import { evenPart } from '../distributed/partition.js';
import type { RankSession } from '../distributed/session.js';
import { fitAborted } from '../errors.js';
import { FitCancel } from '../exec/cancel.js';
import type { EnginePool } from '../exec/engine.js';
import { runPoolTask } from '../exec/poolTask.js';
import { loadAddon } from '../native.js';
import { normalizeFitMany, type FitManyOptions, type NormalizedBatch } from './options.js';
import { countStatuses, runBatchTask, type BatchOutput, type BatchSpec, type BatchTask, type BatchPart } from './task.js';

export interface FitManyResult extends BatchOutput {
  paramNames: string[];
  /** Curves. */
  m: number;
  /** Parameters per curve. */
  p: number;
  statusNames: readonly string[];
  /** Curves per status name (only statuses that occurred). */
  counts: Record<string, number>;
  /** Curves whose status is a convergence test (ftol, xtol, ftol_xtol, gtol). */
  converged: number;
  threads: number;
  timing: { totalMs: number; fitMs: number; fitsPerSecond: number };
}

/** Below this many curves the batch runs on the calling thread: a pool round trip would cost more. */
const kInlineMaxCurves = 512;
/** Shards per thread when shardSize is not given: enough to balance, few enough to be cheap. */
const kShardsPerThread = 16;
const kMinShard = 256;
/** Largest default shard: keeps progress events coming and the shards balanced (an abort stops a shard between curves). */
const kMaxShard = 8192;

let batchCounter = 0;

function sharedF64(length: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(Math.max(1, length) * 8)).subarray(0, length);
}

/**
 * Fits the batch. `session`: a distributed batch's conversation with the
 * other ranks (src/distributed/session.ts): this rank fits its range of the
 * curves (src/distributed/fitMany.ts), and a failure here reaches the others.
 */
export async function runFitMany(pool: EnginePool, options: FitManyOptions, session: RankSession | null = null): Promise<FitManyResult> {
  if (!session) return fitBatch(pool, options, null);
  try {
    return await fitBatch(pool, options, session);
  } catch (error) {
    await session.fail(error);
    throw error;
  }
}

async function fitBatch(pool: EnginePool, options: FitManyOptions, session: RankSession | null): Promise<FitManyResult> {
  const started = performance.now();
  const job = normalizeFitMany(options, pool.threads);
  if (job.signal?.aborted) throw fitAborted(job.signal);
  const { m } = job;
  const p = job.paramNames.length;
  const out: BatchOutput = {
    params: sharedF64(m * p),
    stderr: sharedF64(m * p),
    chi2: sharedF64(m),
    iterations: sharedF64(m),
    nfev: sharedF64(m),
    status: new Uint8Array(new SharedArrayBuffer(Math.max(1, m))).subarray(0, m),
  };
  const estimate = job.p0 === null;
  const spec: BatchSpec = {
    code: job.model.code,
    consts: job.model.consts,
    nParams: p,
    x: job.x,
    xPerCurve: job.xPerCurve,
    y: job.y,
    offsets: job.offsets,
    sigma: job.sigma,
    p0: job.p0 ?? sharedF64(m * p),
    estimate: estimate ? job.catalog!.name : null,
    lower: job.lower,
    upper: job.upper,
    loss: job.loss,
    estimator: job.estimator,
    absoluteSigma: job.absoluteSigma,
    solver: job.solver,
    out,
  };

  // The signal and timeoutMs reach the shards through a cancel buffer (src/exec/cancel.ts): they stop between curves.
  const cancel = new FitCancel(job.signal, job.timeoutMs === null ? null : { timeoutMs: job.timeoutMs, startedAt: started, what: 'fitMany' });
  const range: [number, number] = session ? evenPart(session.rank, session.size, m) : [0, m];
  let result: FitManyResult;
  try {
    result = await fitShards(pool, job, spec, out, cancel, started, range);
  } finally {
    cancel.dispose();
  }
  if (!session) return result;
  const gathered = await gatherFitMany(session, result);
  session.close();
  return { ...gathered, timing: { ...gathered.timing, totalMs: performance.now() - started } };
}

async function fitShards(
  pool: EnginePool,
  job: NormalizedBatch,
  spec: BatchSpec,
  out: BatchOutput,
  cancel: FitCancel,
  started: number,
  /** The curves to fit (a rank's range; else all): the result's arrays hold all m curves, filled over the range. */
  [first, end]: [number, number],
): Promise<FitManyResult> {
  const addon = loadAddon();
  const { m } = job;
  const p = job.paramNames.length;
  const fitStarted = performance.now();
  const curves = end - first;
  const inline = curves <= kInlineMaxCurves && job.shardSize === null;
  const shard = job.shardSize ?? Math.min(kMaxShard, Math.max(kMinShard, Math.ceil(curves / (job.threads * kShardsPerThread))));
  const shards: Array<[number, number]> = [];
  for (let start = first; start < end; start += shard) shards.push([start, Math.min(end, start + shard)]);
  let done = 0;
  let curvesDone = 0;
  const report = (part: BatchPart): void => {
    done += 1;
    curvesDone += part.curves;
    job.onProgress?.({ type: 'shard', done, total: shards.length, curvesDone, elapsedMs: performance.now() - started });
  };
  if (inline) {
    for (const [curveStart, curveEnd] of shards) {
      cancel.throwIfRequested();
      const part = runBatchTask({ batch: spec, curveStart, curveEnd, cancel: cancel.words });
      if (!part.complete) throw cancel.error();
      report(part);
    }
  } else {
    const workers = pool.workers();
    // The scheduler's lane of this batch is keyed by this string, not by the spec and its arrays (see BatchTask.key).
    const key = `batch:${process.pid}:${++batchCounter}`;
    let next = 0;
    let failed = false;
    let stopped = false;
    const runner = async (): Promise<void> => {
      while (next < shards.length && !failed && !stopped && !cancel.requested) {
        const [curveStart, curveEnd] = shards[next++]!;
        const task: BatchTask = { key, batch: spec, curveStart, curveEnd, cancel: cancel.words };
        let part: BatchPart;
        try {
          part = await runPoolTask<BatchPart>(workers, task, {
            what: () => `curves ${curveStart} to ${curveEnd - 1} of fitMany`,
            cancel,
            abandoned: () => failed,
          });
        } catch (error) {
          failed = true;
          throw error;
        }
        if (!part.complete) {
          stopped = true;
          return;
        }
        report(part);
      }
    };
    await Promise.all(Array.from({ length: Math.min(job.threads, shards.length) }, runner));
    if (stopped || next < shards.length) throw cancel.error();
  }
  const fitMs = performance.now() - fitStarted;

  const statusNames: readonly string[] = addon.batchStatusNames;
  const { counts, converged } = countStatuses(out.status, statusNames, first, end);
  return {
    paramNames: job.paramNames,
    m,
    p,
    params: out.params,
    stderr: out.stderr,
    chi2: out.chi2,
    iterations: out.iterations,
    nfev: out.nfev,
    status: out.status,
    statusNames,
    counts,
    converged,
    threads: inline ? 1 : job.threads,
    timing: { totalMs: performance.now() - started, fitMs, fitsPerSecond: fitMs > 0 ? (curves / fitMs) * 1000 : Infinity },
  };
}
