/**
 * One shard of a fitMany batch, run on a worker (or the calling thread):
 * estimates starting values for catalog models when asked, then fits curves
 * [curveStart, curveEnd) natively (native/kernel/batch.hpp), writing results
 * in place into the shared output arrays. With the batch's cancel buffer
 * (src/exec/cancel.ts) the shard stops between curves once it says so.
 */
import { cancelProbe } from '../exec/cancel.js';
import { catalogModel } from '../model/catalog.js';
import { loadAddon } from '../native.js';

export interface BatchSpec {
  code: Int32Array;
  consts: Float64Array;
  nParams: number;
  x: Float64Array[];
  xPerCurve: boolean;
  y: Float64Array;
  offsets: Float64Array;
  sigma: Float64Array | null;
  /** p (shared) or M x p; with `estimate`, an M x p array the shard fills first. */
  p0: Float64Array;
  /** A catalog model name: estimate each curve's p0 into p0 (M x p) before fitting. */
  estimate: string | null;
  lower: Float64Array | null;
  upper: Float64Array | null;
  loss: { code: number; fScale: number } | null;
  estimator: 0 | 1;
  absoluteSigma: boolean;
  solver: { ftol: number; xtol: number; gtol: number; maxFev: number; factor: number };
  out: BatchOutput;
}

/** Statuses that are a convergence test (the others: limits, bad data, non-finite steps). */
const kConvergedStatuses = new Set(['ftol', 'xtol', 'ftol_xtol', 'gtol']);

/** Curves per status name over curves [first, end) (only statuses that occur), and how many converged. */
export function countStatuses(status: Uint8Array, statusNames: readonly string[], first: number, end: number): { counts: Record<string, number>; converged: number } {
  const counts: Record<string, number> = {};
  let converged = 0;
  for (let c = first; c < end; c++) {
    const name = statusNames[status[c]!] ?? `status_${status[c]}`;
    counts[name] = (counts[name] ?? 0) + 1;
    if (kConvergedStatuses.has(name)) converged += 1;
  }
  return { counts, converged };
}

/** The per-curve results the native batch writes (and fitMany returns). */
export interface BatchOutput {
  /** M x p, row-major. */
  params: Float64Array;
  /** M x p standard errors (curve_fit's scaling unless absoluteSigma). */
  stderr: Float64Array;
  /** Per curve: weighted sum of squared residuals, or the deviance for estimator 'poisson'. */
  chi2: Float64Array;
  iterations: Float64Array;
  nfev: Float64Array;
  /** Per curve: an index into statusNames. */
  status: Uint8Array;
}

export interface BatchTask {
  /**
   * Names the batch for the engine's scheduler, which keeps a lane per fit
   * for a while after its last task (src/exec/scheduler.ts): keyed by this
   * string rather than by the spec, a lane does not keep the batch's shared
   * arrays (its curves, hundreds of MB for a large batch) alive once it ends.
   */
  key?: string;
  batch: BatchSpec;
  curveStart: number;
  curveEnd: number;
  /** The batch's cancel buffer, asked between curves. */
  cancel?: Int32Array | null;
}

export interface BatchPart {
  curves: number;
  kernelMs: number;
  /** False when the cancel buffer stopped the shard before its last curve. */
  complete: boolean;
}

export function isBatchTask(task: unknown): task is BatchTask {
  return task !== null && typeof task === 'object' && 'batch' in task;
}

/** Fits one shard; synchronous (a worker thread is already off the event loop). */
export function runBatchTask(task: BatchTask): BatchPart {
  const started = performance.now();
  const b = task.batch;
  const cancel = task.cancel ?? null;
  if (b.estimate && !estimateStarts(b, task.curveStart, task.curveEnd, cancelProbe(cancel))) {
    return { curves: task.curveEnd - task.curveStart, kernelMs: performance.now() - started, complete: false };
  }
  const complete = loadAddon().fitBatch({
    code: b.code,
    consts: b.consts,
    nParams: b.nParams,
    x: b.x,
    xPerCurve: b.xPerCurve,
    y: b.y,
    offsets: b.offsets,
    ...(b.sigma ? { sigma: b.sigma } : {}),
    p0: b.p0,
    ...(b.lower ? { lower: b.lower, upper: b.upper! } : {}),
    ...(b.loss ? { loss: b.loss.code, fScale: b.loss.fScale } : {}),
    estimator: b.estimator,
    absoluteSigma: b.absoluteSigma,
    ...b.solver,
    curveStart: task.curveStart,
    curveEnd: task.curveEnd,
    cancel,
    out: b.out,
  });
  return { curves: task.curveEnd - task.curveStart, kernelMs: performance.now() - started, complete };
}

/** Catalog models: each curve's first guess from its own points (x is the model's one variable); false when cancelled. */
function estimateStarts(b: BatchSpec, start: number, end: number, stopped: () => boolean): boolean {
  const model = catalogModel(b.estimate!);
  const p = b.nParams;
  for (let c = start; c < end; c++) {
    if (stopped()) return false;
    const first = b.offsets[c]!;
    const last = b.offsets[c + 1]!;
    const x = b.xPerCurve ? b.x[0]!.subarray(first, last) : b.x[0]!.subarray(0, last - first);
    const y = b.y.subarray(first, last);
    let guess: number[];
    try {
      guess = model.guess(x, y, 'quick');
    } catch {
      guess = new Array<number>(p).fill(NaN);
    }
    // A curve the guess cannot handle (NaN, too few points) keeps NaN starts: the native fit reports it invalid.
    for (let j = 0; j < p; j++) b.p0[c * p + j] = Number.isFinite(guess[j]!) ? guess[j]! : NaN;
  }
  return true;
}
