/**
 * The Evaluator contract: the optimizer asks for the reduced factor of
 * [J | r] at some parameters and never learns where the data lives or who
 * computes it (Ceres' Evaluator split).
 *
 * evaluate(params) resolves to the (p+1)^2 row-major upper-triangular factor
 * of the whole data set's rows, identical to the last bit whichever evaluator
 * computed it (the blocks and the reduction tree are fixed: tsqr.hpp).
 */
import { loadAddon } from '../native.js';
import { blockCount } from './layout.js';
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

/**
 * A pass over a range of the blocks, not yet finished: the packed subtree
 * roots of the range (the maximal aligned subtrees that lie inside it), and
 * the range's per-block costs and moments, in arrays indexed by global block
 * (entries outside the range are unused). The pooled and streaming
 * evaluators produce it; a distributed fit combines the ranks' parts in the
 * canonical tree (src/distributed/evaluator.ts).
 */
export interface PartialPass {
  parts: Float64Array[];
  /** Per-block robust costs (global index), or null for least squares. */
  costs: Float64Array | null;
  /** On the first pass: per-block moments, 3 per block (global index); else null. */
  moments: Float64Array | null;
}

/** Blocks [blockStart, blockEnd) of the data; the columns in memory start at global row rowOffset. */
export interface BlockRange {
  blockStart: number;
  blockEnd: number;
}

/** An evaluator that can stop short of finishing the tree: it holds a range of the blocks. */
export interface RangeEvaluator {
  readonly kind: 'pooled' | 'streaming';
  readonly stats: PassStats;
  readonly range: BlockRange;
  evaluatePart(params: Float64Array): Promise<PartialPass>;
  onBlocks?: ((done: number, total: number) => void) | undefined;
}

/**
 * A whole pass of a range evaluator that holds every block: its part, with
 * the tree, the costs and (on the first pass) the audit finished here.
 */
export async function evaluateWhole(
  evaluator: RangeEvaluator & { audit: DataAudit | null },
  nPoints: number,
  params: Float64Array,
): Promise<PassResult> {
  const nBlocks = blockCount(nPoints);
  if (evaluator.range.blockStart !== 0 || evaluator.range.blockEnd !== nBlocks) {
    throw new Error('nlfit: an evaluator of a block range has no whole pass (use evaluatePart)');
  }
  const part = await evaluator.evaluatePart(params);
  const addon = loadAddon();
  if (part.moments) evaluator.audit = addon.mergeMoments(part.moments, nBlocks);
  return { factor: addon.finishTree(part.parts, nBlocks, params.length + 1), cost: part.costs ? sumCosts(part.costs, nBlocks) : null };
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
  /** Points in the whole data set (the last block may be partial). */
  nPoints: number;
  /** Global row of the columns' element 0 (a multiple of the block size): a rank's slice; default 0. */
  rowOffset?: number;
}

/** The compiled model as the kernel takes it. */
export interface ProgramCode {
  code: Int32Array;
  consts: Float64Array;
}

/** The model a pass evaluates: bytecode for the kernel, or a JavaScript function (src/exec/jsModel.ts). */
export type PassModel = ProgramCode | JsModelPlan;
