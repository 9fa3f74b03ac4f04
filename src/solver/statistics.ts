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

export function fitStatistics(
  factor: Float64Array,
  fnorm: number,
  p: number,
  nPoints: number,
  tss: number,
  absoluteSigma: boolean,
): FitStatistics {
  const rss = fnorm * fnorm;
  const dof = nPoints - p;
  const reducedChi2 = dof > 0 ? rss / dof : Infinity;
  const { cov, rank } = loadAddon().covariance(factor, p);
  const scale = absoluteSigma ? 1 : reducedChi2;
  const covariance: number[][] = [];
  for (let i = 0; i < p; i++) {
    const row: number[] = [];
    for (let j = 0; j < p; j++) {
      const c = cov[i * p + j]!;
      row.push(rank < p || !Number.isFinite(scale) ? Infinity : c * scale);
    }
    covariance.push(row);
  }
  const stderr = covariance.map((row, i) => Math.sqrt(row[i]!));
  const correlation = covariance.map((row, i) =>
    row.map((c, j) => (i === j ? (Number.isFinite(c) ? 1 : NaN) : c / Math.sqrt(covariance[i]![i]! * covariance[j]![j]!))),
  );
  const n = nPoints;
  const logLikelihoodTerm = n * Math.log(rss / n);
  return {
    rss,
    cost: rss / 2,
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
