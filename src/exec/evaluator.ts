/**
 * The Evaluator contract: the optimizer asks for the reduced factor of
 * [J | r] at some parameters and never learns where the data lives or who
 * computes it (Ceres' Evaluator split).
 *
 * evaluate(params) resolves to the (p+1)^2 row-major upper-triangular factor
 * of the whole data set's rows, identical to the last bit whichever evaluator
 * computed it (the blocks and the reduction tree are fixed: tsqr.hpp).
 */
import type { JsModelPlan } from './jsModel.js';

export interface PassStats {
  /** Passes over the data. */
  passes: number;
  /** Wall time spent in passes (ms). */
  evaluateMs: number;
  /** Of which, time the kernel ran, summed over threads (ms). */
  kernelMs: number;
}

/**
 * What the first pass learned about the data while it read it: every value a
 * pass reads is checked once, in the pass, instead of in a scan of its own
 * (a second trip through memory that competed with the workers).
 */
export interface DataAudit {
  /** First block holding a non-finite variable or y, or an invalid sigma; -1 if none. */
  firstInvalidBlock: number;
  /** sum w (y - ybar_w)^2, merged in block order (the same bits for any split); NaN if invalid. */
  totalSumOfSquares: number;
}

/** One pass: the reduced factor, and with a robust loss the cost 0.5 * sum fScale^2 rho(z). */
export interface PassResult {
  factor: Float64Array;
  /** null for the linear loss (the cost is half the squared residual norm the factor holds). */
  cost: number | null;
}

/** A robust loss for the kernel (native/kernel/loss.hpp): its code and fScale. */
export interface LossSpec {
  code: number;
  fScale: number;
}

export interface Evaluator {
  readonly kind: 'inline' | 'pooled' | 'streaming';
  readonly stats: PassStats;
  /** Set once the first pass has completed. */
  readonly audit: DataAudit | null;
  evaluate(params: Float64Array): Promise<PassResult>;
  /** Called as a pass's blocks complete (pooled and streaming passes): blocks done of the total. */
  onBlocks?: ((done: number, total: number) => void) | undefined;
}

/** Sums per-block costs in block order (the same bits however the blocks were split). */
export function sumCosts(costs: Float64Array, nBlocks: number): number {
  let total = 0;
  for (let b = 0; b < nBlocks; b++) total += costs[b]!;
  return total;
}

/** The columns a pass reads, all float64 over the same number of points. */
export interface PassColumns {
  vars: Float64Array[];
  y: Float64Array;
  sigma: Float64Array | null;
  nPoints: number;
}

/** The compiled model as the kernel takes it. */
export interface ProgramCode {
  code: Int32Array;
  consts: Float64Array;
}

/** The model a pass evaluates: bytecode for the kernel, or a JavaScript function (src/exec/jsModel.ts). */
export type PassModel = ProgramCode | JsModelPlan;
