/**
 * Guess for c0 + c1*x + ... + cn*x^n: the linear least-squares polynomial of
 * the sample. It is solved in t = (x - m)/h, with m and h the centre and
 * half-width of the x-range, where the monomials are far better conditioned
 * than in raw x, and then expanded back to coefficients of x.
 */
import { leastSquares } from './leastSquares.js';
import type { GuessSample } from './sample.js';

/** Coefficients of p(x) = q((x - centre)/halfWidth) from those of q (lowest degree first). */
function expandShifted(q: Float64Array, centre: number, halfWidth: number): Float64Array {
  // Horner's rule on polynomials: p = (...(q_n * u + q_{n-1}) * u + ...) + q_0, u = (x - centre)/halfWidth.
  let p = Float64Array.of(q[q.length - 1]!);
  for (let k = q.length - 2; k >= 0; k--) {
    const next = new Float64Array(p.length + 1);
    for (let j = 0; j < next.length; j++) {
      const shifted = j > 0 ? p[j - 1]! : 0;
      const scaled = j < p.length ? centre * p[j]! : 0;
      next[j] = (shifted - scaled) / halfWidth;
    }
    next[0]! += q[k]!;
    p = next;
  }
  return p;
}

/**
 * [c0, ..., cn]. With fewer than n+1 distinct x the highest determinable
 * degree is fitted and the rest are zero; all zeros when nothing can be fitted.
 */
export function guessPolynomial(sample: GuessSample, degree: number): number[] {
  const guess = new Array<number>(degree + 1).fill(0);
  const centre = (sample.xMin + sample.xMax) / 2;
  const span = sample.xMax - sample.xMin;
  const halfWidth = span > 0 && Number.isFinite(span) ? span / 2 : 1;
  const t = Float64Array.from(sample.x, (xi) => (xi - centre) / halfWidth);
  for (let d = Math.min(degree, sample.distinctX - 1); d >= 0; d--) {
    const columns: Float64Array[] = [new Float64Array(t.length).fill(1)];
    for (let j = 1; j <= d; j++) columns.push(Float64Array.from(t, (tj, i) => tj * columns[j - 1]![i]!));
    const fit = leastSquares(columns, sample.y);
    if (fit === null) continue;
    const coefficients = expandShifted(fit.coef, centre, halfWidth);
    if (!coefficients.every(Number.isFinite)) continue;
    coefficients.forEach((c, j) => (guess[j] = c));
    return guess;
  }
  return guess;
}
