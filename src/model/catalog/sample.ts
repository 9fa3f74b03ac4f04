/**
 * The data a catalog guess looks at: at most kMaxGuessPoints finite points
 * taken with a fixed stride (so a guess is O(sample), deterministic, and never
 * touches most of a 10M-point column), then ordered by x.
 */
import { invalidInput } from '../../errors.js';

/** Upper bound on the points any guess reads. */
export const kMaxGuessPoints = 10_000;

/** Number of equal-count bins used to smooth the sample before locating features. */
const kSmoothingBins = 200;

export interface GuessSample {
  /** Ascending x of the finite sampled points. */
  readonly x: Float64Array;
  /** y paired with x. */
  readonly y: Float64Array;
  readonly xMin: number;
  readonly xMax: number;
  /** xMax - xMin when positive, otherwise a unit-like scale, so it can always divide. */
  readonly xScale: number;
  /** Number of distinct x values (the most parameters the sample can determine). */
  readonly distinctX: number;
}

/** Samples (x, y) with a fixed stride, drops non-finite pairs and orders by x. */
export function sampleForGuess(x: Float64Array, y: Float64Array): GuessSample {
  if (x.length !== y.length) {
    throw invalidInput('data', `x has ${x.length} points but y has ${y.length}`);
  }
  const stride = Math.max(1, Math.ceil(x.length / kMaxGuessPoints));
  const picked: number[] = [];
  for (let i = 0; i < x.length; i += stride) {
    if (Number.isFinite(x[i]!) && Number.isFinite(y[i]!)) picked.push(i);
  }
  // Array.prototype.sort is stable, so equal x keep their data order.
  picked.sort((p, q) => x[p]! - x[q]!);
  const xs = Float64Array.from(picked, (i) => x[i]!);
  const ys = Float64Array.from(picked, (i) => y[i]!);
  let distinctX = 0;
  for (let i = 0; i < xs.length; i++) if (i === 0 || xs[i] !== xs[i - 1]) distinctX++;
  const xMin = xs.length > 0 ? xs[0]! : 0;
  const xMax = xs.length > 0 ? xs[xs.length - 1]! : 0;
  const span = xMax - xMin;
  const xScale = span > 0 && Number.isFinite(span) ? span : Math.max(1, Math.abs(xMin));
  return { x: xs, y: ys, xMin, xMax, xScale, distinctX };
}

/** The q-quantile (linear interpolation) of values; values is not modified. */
export function quantile(values: Float64Array, q: number): number {
  if (values.length === 0) return 0;
  const sorted = Float64Array.from(values).sort();
  const position = q * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below]! + (position - below) * (sorted[above]! - sorted[below]!);
}

export function mean(values: Float64Array): number {
  if (values.length === 0) return 0;
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** The sample smoothed by averaging equal-count runs of consecutive points (x ascending). */
export interface SmoothedCurve {
  readonly x: Float64Array;
  readonly y: Float64Array;
}

export function smooth(sample: GuessSample): SmoothedCurve {
  const n = sample.x.length;
  const binSize = Math.max(1, Math.floor(n / kSmoothingBins));
  const bins = Math.ceil(n / binSize);
  const bx = new Float64Array(bins);
  const by = new Float64Array(bins);
  for (let b = 0; b < bins; b++) {
    const start = b * binSize;
    const stop = Math.min(n, start + binSize);
    let sx = 0;
    let sy = 0;
    for (let i = start; i < stop; i++) {
      sx += sample.x[i]!;
      sy += sample.y[i]!;
    }
    bx[b] = sx / (stop - start);
    by[b] = sy / (stop - start);
  }
  return { x: bx, y: by };
}

/**
 * Where the curve first crosses `level` walking from index `from` in direction
 * `step` (+1 or -1), linearly interpolated; undefined if it never does.
 */
export function crossing(curve: SmoothedCurve, from: number, step: 1 | -1, level: number): number | undefined {
  const above = curve.y[from]! >= level;
  for (let i = from + step; i >= 0 && i < curve.y.length; i += step) {
    const yi = curve.y[i]!;
    if (yi >= level !== above) {
      const yPrev = curve.y[i - step]!;
      const xPrev = curve.x[i - step]!;
      const t = yi === yPrev ? 0.5 : (level - yPrev) / (yi - yPrev);
      return xPrev + t * (curve.x[i]! - xPrev);
    }
  }
  return undefined;
}

/** value when finite, otherwise fallback. */
export function finiteOr(value: number, fallback: number): number {
  return Number.isFinite(value) ? value : fallback;
}
