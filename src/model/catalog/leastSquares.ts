/**
 * Small dense linear least squares for first guesses: min ||A c - y|| by
 * Householder QR of A (k rows, a handful of columns), which does not square
 * the condition number as the normal equations would. Columns are scaled to
 * unit norm first, so the rank test below is independent of units.
 */

/** A column whose distance from the span of the previous ones is below this (relative) is dependent. */
const kRankTolerance = 1e-11;

export interface LinearFit {
  /** Coefficients, one per column. */
  readonly coef: Float64Array;
  /** Residual sum of squares. */
  readonly rss: number;
}

/** Euclidean norm of v[from..], scaled against overflow. */
function tailNorm(v: Float64Array, from: number): number {
  let largest = 0;
  for (let i = from; i < v.length; i++) largest = Math.max(largest, Math.abs(v[i]!));
  if (largest === 0 || !Number.isFinite(largest)) return largest;
  let sum = 0;
  for (let i = from; i < v.length; i++) {
    const t = v[i]! / largest;
    sum += t * t;
  }
  return largest * Math.sqrt(sum);
}

/**
 * Solves min ||sum_j coef_j columns[j] - y||. Returns null when the columns
 * are (numerically) dependent, there are fewer rows than columns, or anything
 * is not finite.
 */
export function leastSquares(columns: readonly Float64Array[], y: Float64Array): LinearFit | null {
  const m = columns.length;
  const k = y.length;
  if (m === 0 || k < m) return null;
  const a = columns.map((column) => Float64Array.from(column));
  const b = Float64Array.from(y);
  const scale = new Float64Array(m);
  for (let j = 0; j < m; j++) {
    const norm = tailNorm(a[j]!, 0);
    if (!(norm > 0) || !Number.isFinite(norm)) return null;
    scale[j] = norm;
    const column = a[j]!;
    for (let i = 0; i < k; i++) column[i]! /= norm;
  }
  if (!Number.isFinite(tailNorm(b, 0))) return null;
  const diagonal = new Float64Array(m);
  for (let j = 0; j < m; j++) {
    const v = a[j]!;
    const alpha = tailNorm(v, j);
    if (!(alpha > kRankTolerance)) return null;
    // Reflector H = I - v v^T / (v_j * beta) maps v[j..] to (beta, 0, ..., 0).
    const beta = v[j]! > 0 ? -alpha : alpha;
    v[j]! -= beta;
    const vj = v[j]!;
    const apply = (target: Float64Array): void => {
      let dot = 0;
      for (let i = j; i < k; i++) dot += v[i]! * target[i]!;
      const factor = dot / (vj * -beta);
      for (let i = j; i < k; i++) target[i]! -= factor * v[i]!;
    };
    for (let l = j + 1; l < m; l++) apply(a[l]!);
    apply(b);
    diagonal[j] = beta;
  }
  const coef = new Float64Array(m);
  for (let j = m - 1; j >= 0; j--) {
    let sum = b[j]!;
    for (let l = j + 1; l < m; l++) sum -= a[l]![j]! * coef[l]!;
    coef[j] = sum / diagonal[j]!;
  }
  let rss = 0;
  for (let i = m; i < k; i++) rss += b[i]! * b[i]!;
  for (let j = 0; j < m; j++) coef[j]! /= scale[j]!;
  for (const c of coef) if (!Number.isFinite(c)) return null;
  return { coef, rss };
}
