/**
 * Variable projection for first guesses. Most catalog models are linear in
 * some parameters (amplitudes, offsets) once the others (rates, centres,
 * widths) are fixed; for each candidate of the nonlinear ones the linear ones
 * follow from a small least-squares solve, and the candidate with the smallest
 * residual wins. Scoring a short list of candidates this way is robust to
 * noise and to the sign of the amplitude, which feature-reading alone is not.
 */
import type { GuessSample } from './sample.js';
import { leastSquares } from './leastSquares.js';

/** The model's linear basis at nonlinear parameters theta: one column per linear parameter. */
export type LinearBasis = (theta: readonly number[], x: Float64Array) => Float64Array[];

export interface Projection {
  readonly theta: readonly number[];
  readonly linear: Float64Array;
  readonly rss: number;
}

/** The best candidate (first one on ties), or null when no candidate gives a usable solve. */
export function bestProjection(
  sample: GuessSample,
  candidates: readonly (readonly number[])[],
  basis: LinearBasis,
): Projection | null {
  let best: Projection | null = null;
  for (const theta of candidates) {
    if (!theta.every(Number.isFinite)) continue;
    const fit = leastSquares(basis(theta, sample.x), sample.y);
    if (fit === null || !Number.isFinite(fit.rss)) continue;
    if (best === null || fit.rss < best.rss) best = { theta, linear: fit.coef, rss: fit.rss };
  }
  return best;
}

/** centre * factor^t for t = from, from + step, ..., to (inclusive, to rounding). */
export function geometricGrid(centre: number, factor: number, from: number, to: number, step: number): number[] {
  const values: number[] = [];
  const count = Math.round((to - from) / step);
  for (let i = 0; i <= count; i++) values.push(centre * factor ** (from + i * step));
  return values;
}

/** Every pair of the two lists, in row-major order. */
export function pairs(first: readonly number[], second: readonly number[]): number[][] {
  const out: number[][] = [];
  for (const u of first) for (const v of second) out.push([u, v]);
  return out;
}
