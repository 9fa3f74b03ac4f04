/**
 * Loads the compiled addon (build/Release/nlfit.node, built by node-gyp or
 * cmake-js) and describes its surface. The addon is loaded on every thread
 * that uses it, the main thread included, so it is never unloaded while a
 * worker runs.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addonMissing } from './errors.js';

/** What a reduction of a block range may also do (evalRange and reduceBlocks). */
export interface RangeExtras {
  /** 3 * nBlocks, global block index: each block is also audited into it (columns.hpp). */
  moments?: Float64Array | null;
  /** Global row of the columns' element 0 (a multiple of the block size): for a chunk that holds only its own rows. */
  rowOffset?: number;
  /** Robust loss code (loss.hpp) and its scale; the block costs go to `costs` (nBlocks, global index). */
  loss?: number;
  fScale?: number;
  costs?: Float64Array | null;
  /** The fit's cancel buffer (src/exec/cancel.ts), asked before every block. */
  cancel?: Int32Array | null;
}

/** A verified model program with per-thread scratch (native/binding/addon.cpp). */
export interface NativeKernel {
  readonly nParams: number;
  readonly nVars: number;
  /** Reduces blocks [blockStart, blockEnd) to packed subtree roots; null when extras.cancel stopped it. */
  evalRange(
    params: Float64Array,
    vars: Float64Array[],
    y: Float64Array,
    sigma: Float64Array | null,
    nPoints: number,
    blockStart: number,
    blockEnd: number,
    extras?: RangeExtras,
  ): Float64Array | null;
  /** Model values for points [start, start + count) into out. */
  predict(params: Float64Array, vars: Float64Array[], start: number, count: number, out: Float64Array): void;
}

export interface NativeSolverState {
  running: boolean;
  status: string;
  success: boolean;
  message: string;
  x: Float64Array;
  fnorm: number;
  /** The Levenberg-Marquardt parameter of the last step (0: Gauss-Newton). */
  damping: number;
  iterations: number;
  nfev: number;
  njev: number;
  /** Trial points where the model or its derivatives were not finite. */
  nonFiniteTrials: number;
  maxFev: number;
  /** (p+1)^2 factor of [J | r] at x. */
  factor: Float64Array;
  /** Per parameter: 0 free, 1 on its lower bound, 2 on its upper bound. */
  activeMask: Uint8Array;
}

/** The Levenberg-Marquardt state machine (native/kernel/lm.hpp). */
export interface NativeSolver {
  ask(): Float64Array | null;
  /** The factor at ask()'s point; fnorm overrides the residual norm taken from R (a robust loss: sqrt(2 * cost)). */
  tell(R: Float64Array, fnorm?: number): void;
  abort(): void;
  state(): NativeSolverState;
  /**
   * The whole machine, options included, as a versioned little-endian blob
   * with a checksum (format in native/kernel/lm.cpp): Solver.restore() of it
   * continues bit for bit where this one is.
   */
  serialize(): Uint8Array;
}

/** The solver class: a new machine at x0, or one restored from serialize() (RangeError naming the problem for a bad blob). */
export interface NativeSolverClass {
  new (x0: Float64Array, options: SolverOptions): NativeSolver;
  restore(state: Uint8Array): NativeSolver;
}

export interface SolverOptions {
  ftol: number;
  xtol: number;
  gtol: number;
  maxFev: number;
  factor: number;
  /** Bounds per parameter (±Infinity for none); the solver keeps every iterate inside (lm.hpp). */
  lower?: Float64Array;
  upper?: Float64Array;
  /** Fixed variable scaling D (MINPACK mode 2); absent: the Jacobian column norms. */
  diag?: Float64Array;
}

export interface NativeAddon {
  /**
   * Fits curves [curveStart, curveEnd) of a batch natively, writing spec.out
   * in place (native/kernel/batch.hpp). False when spec.cancel stopped it
   * between curves (the curves after the stop are not written).
   */
  fitBatch(spec: Record<string, unknown>): boolean;
  /** Milliseconds on the clock of cancel deadlines (steady, one clock for every thread). */
  monotonicMs(): number;
  /** Status code -> name for fitBatch's per-curve status. */
  batchStatusNames: string[];
  Kernel: new (code: Int32Array, consts: Float64Array) => NativeKernel;
  Solver: NativeSolverClass;
  finishTree(parts: Float64Array[], nBlocks: number, q: number): Float64Array;
  covariance(R: Float64Array, p: number): { cov: Float64Array; rank: number };
  /** Index of the first NaN or infinite value, or -1. */
  firstNonFinite(values: Float64Array): number;
  /**
   * One pass over the response: first invalid y and sigma (-1 if none) and the
   * weighted total sum of squares of y about its weighted mean (w = 1/sigma^2).
   */
  scanResponse(
    y: Float64Array,
    sigma: Float64Array | null,
  ): { firstInvalidY: number; firstInvalidSigma: number; totalSumOfSquares: number };
  /**
   * Merges per-block moments in block order: the first block holding an invalid
   * value (-1 if none) and the total sum of squares (NaN if any block is invalid).
   */
  mergeMoments(moments: Float64Array, nBlocks: number): { firstInvalidBlock: number; totalSumOfSquares: number };
  /** Asks the C library to return freed heap memory to the system (glibc's malloc_trim); false where there is nothing to ask. */
  releaseFreeMemory(): boolean;
  /**
   * Reduces rows computed outside the kernel (a JavaScript model) exactly as
   * evalRange reduces its own: `blocks` holds global blocks firstBlock..
   * back to back, each blockSize x q column major ([w J | w (f - y)]; rows past
   * the data are taken as 0). Returns the packed subtree roots. The extras are
   * evalRange's; the audit (moments) reads the columns given with it.
   * Null when extras.cancel stopped it.
   */
  reduceBlocks(
    blocks: Float64Array,
    q: number,
    nPoints: number,
    firstBlock: number,
    nBlocks: number,
    extras?: RangeExtras & { vars?: Float64Array[]; y?: Float64Array; sigma?: Float64Array | null },
  ): Float64Array | null;
  blockSize: number;
  layoutVersion: number;
  bytecodeVersion: number;
  /** The cancel buffer's layout (native/kernel/cancel.hpp). */
  cancelFlagIndex: number;
  cancelDeadlineByte: number;
  cancelBytes: number;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Where the addon is looked for, in order (NLFIT_ADDON overrides). */
export function addonCandidates(): string[] {
  const fromEnv = process.env.NLFIT_ADDON;
  const built = [join(packageRoot, 'build', 'Release', 'nlfit.node'), join(packageRoot, 'build', 'Debug', 'nlfit.node')];
  return fromEnv ? [fromEnv] : built;
}

let cached: NativeAddon | undefined;

/** The addon for this thread, loaded on first use. */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const candidates = addonCandidates();
  const path = candidates.find((candidate) => existsSync(candidate));
  if (!path) throw addonMissing(new Error(`not found at ${candidates.join(' or ')}`));
  try {
    cached = require(path) as NativeAddon;
  } catch (error) {
    throw addonMissing(error);
  }
  return cached;
}
