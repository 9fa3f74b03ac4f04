/**
 * Guess for a*x^b over the points with x > 0. The slope of log|y| against
 * log(x) (points with y != 0) gives a first exponent; the log fit weights
 * small |y| as much as large ones, so noise on small values drags it, and a
 * variable-projection search around it (a is linear given b) finds the
 * exponent that fits y itself.
 */
import { leastSquares } from './leastSquares.js';
import { bestProjection, type LinearBasis } from './projection.js';
import { finiteOr, type GuessSample } from './sample.js';

/** Exponent offsets searched around the log-log slope: coarse, then fine around the best. */
const kCoarseOffsets = Array.from({ length: 41 }, (_, i) => (i - 20) * 0.1);
const kFineOffsets = Array.from({ length: 21 }, (_, i) => (i - 10) * 0.01);

/** [a, b] in that order. */
export function guessPowerLaw(sample: GuessSample): number[] {
  const positive: number[] = [];
  const logX: number[] = [];
  const logY: number[] = [];
  let signSum = 0;
  for (let i = 0; i < sample.x.length; i++) {
    const xi = sample.x[i]!;
    const yi = sample.y[i]!;
    if (!(xi > 0)) continue;
    positive.push(i);
    if (yi === 0) continue;
    logX.push(Math.log(xi));
    logY.push(Math.log(Math.abs(yi)));
    signSum += Math.sign(yi);
  }
  const sign = signSum < 0 ? -1 : 1;
  const slopeFit = leastSquares([new Float64Array(logX.length).fill(1), Float64Array.from(logX)], Float64Array.from(logY));
  const slope = finiteOr(slopeFit === null ? 1 : slopeFit.coef[1]!, 1);
  const fromLogs = slopeFit === null ? sign : finiteOr(sign * Math.exp(slopeFit.coef[0]!), sign);
  const onPositiveX: GuessSample = {
    ...sample,
    x: Float64Array.from(positive, (i) => sample.x[i]!),
    y: Float64Array.from(positive, (i) => sample.y[i]!),
  };
  const basis: LinearBasis = (theta, x) => [Float64Array.from(x, (xi) => xi ** theta[0]!)];
  const coarse = bestProjection(onPositiveX, kCoarseOffsets.map((d) => [slope + d]), basis);
  if (coarse === null) return [fromLogs, slope];
  const best = bestProjection(onPositiveX, kFineOffsets.map((d) => [coarse.theta[0]! + d]), basis) ?? coarse;
  return [best.linear[0]! || fromLogs, best.theta[0]!];
}
