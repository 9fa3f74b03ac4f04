/**
 * Goodness-of-fit figures and the covariance, from the final factor and the
 * data. Conventions follow scipy (cost = rss/2; covariance scaled by the
 * reduced chi-square unless sigma is absolute; Infinity where it does not
 * exist) and lmfit (aic, bic from chi-square).
 */
import { loadAddon } from '../native.js';
import { conditionNumber } from './diagnostics.js';

export interface FitStatistics {
  rss: number;
  cost: number;
  chi2: number;
  reducedChi2: number;
  rSquared: number;
  rmse: number;
  aic: number;
  bic: number;
  dof: number;
  nPoints: number;
  rank: number;
  /** 2-norm condition number of the Jacobian at the solution (Infinity when rank-deficient). */
  conditionNumber: number;
  covariance: number[][];
  stderr: number[];
  correlation: number[][];
}

export interface StatisticsOptions {
  /**
   * A robust loss: fnorm is sqrt(2 * cost) and the factor is of the rescaled
   * rows. The covariance is then scipy curve_fit's (inverse of the rescaled
   * J^T J, times 2 cost / dof); rss, chi-square, R-squared, RMSE, AIC and BIC
   * describe Gaussian least squares and are NaN.
   */
  robust?: boolean;
  /** Parameters on a bound (nonzero entries): left out of the covariance (their rows and columns are NaN). */
  activeMask?: ArrayLike<number> | null;
}

export function fitStatistics(
  factor: Float64Array,
  fnorm: number,
  p: number,
  nPoints: number,
  tss: number,
  absoluteSigma: boolean,
  options: StatisticsOptions = {},
): FitStatistics {
  const robust = options.robust ?? false;
  const objective = fnorm * fnorm;
  const rss = robust ? NaN : objective;
  const dof = nPoints - p;
  const reducedChi2 = dof > 0 ? objective / dof : Infinity;
  const free = Array.from({ length: p }, (_, j) => !options.activeMask || !options.activeMask[j]);
  const kept = free.filter(Boolean).length;
  const scale = absoluteSigma ? 1 : reducedChi2;
  const covariance: number[][] = Array.from({ length: p }, () => new Array<number>(p).fill(NaN));
  let rank = 0;
  if (kept > 0) {
    // The covariance of the free parameters: their columns of the factor, re-triangularised.
    const reduced = kept === p ? factor : reduceFactor(factor, p, free);
    const result = loadAddon().covariance(reduced, kept);
    rank = result.rank + (p - kept);
    const index = free.flatMap((isFree, j) => (isFree ? [j] : []));
    for (let a = 0; a < kept; a++) {
      for (let b = 0; b < kept; b++) {
        const c = result.cov[a * kept + b]!;
        covariance[index[a]!]![index[b]!] = result.rank < kept || !Number.isFinite(scale) ? Infinity : c * scale;
      }
    }
  }
  const stderr = covariance.map((row, i) => Math.sqrt(row[i]!));
  const correlation = covariance.map((row, i) =>
    row.map((c, j) => (i === j ? (Number.isFinite(c) ? 1 : NaN) : c / Math.sqrt(covariance[i]![i]! * covariance[j]![j]!))),
  );
  const n = nPoints;
  const logLikelihoodTerm = n * Math.log(rss / n);
  return {
    rss,
    cost: objective / 2,
    chi2: rss,
    reducedChi2,
    rSquared: tss > 0 ? 1 - rss / tss : NaN,
    rmse: Math.sqrt(rss / n),
    aic: logLikelihoodTerm + 2 * p,
    bic: logLikelihoodTerm + Math.log(n) * p,
    dof,
    nPoints,
    rank,
    conditionNumber: conditionNumber(factor, p, rank),
    covariance,
    stderr,
    correlation,
  };
}

/**
 * The factor of [J_S | r] for a subset S of J's columns (keep[j]), from the
 * factor R of [J | r]: the kept columns of R are upper Hessenberg after the
 * others are removed, and Givens rotations restore the triangle. Returns a
 * (k+1) x (k+1) row-major factor, k = the number kept.
 */
export function reduceFactor(factor: ArrayLike<number>, p: number, keep: readonly boolean[]): Float64Array {
  const q = p + 1;
  const columns = [...keep.flatMap((k, j) => (k ? [j] : [])), p];
  const k = columns.length;
  // Dense q x k copy of the selected columns (rows of R beyond p are zero).
  const a = new Float64Array(q * k);
  for (let i = 0; i < q; i++) for (let c = 0; c < k; c++) a[i * k + c] = factor[i * q + columns[c]!]!;
  for (let c = 0; c < k; c++) {
    for (let i = q - 1; i > c; i--) {
      const x = a[(i - 1) * k + c]!;
      const y = a[i * k + c]!;
      if (y === 0) continue;
      const r = Math.hypot(x, y);
      const cos = x / r;
      const sin = y / r;
      for (let m = c; m < k; m++) {
        const u = a[(i - 1) * k + m]!;
        const v = a[i * k + m]!;
        a[(i - 1) * k + m] = cos * u + sin * v;
        a[i * k + m] = -sin * u + cos * v;
      }
      a[i * k + c] = 0;
    }
  }
  const out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) for (let c = i; c < k; c++) out[i * k + c] = a[i * k + c]!;
  return out;
}
