/**
 * Guess for c + L/(1+exp(-k*(x-x0))).
 *
 * The smoothed data give the direction (k > 0 rising, k < 0 falling), the
 * midpoint x0 where the curve crosses halfway between its low and high
 * quantiles, and |k| from the distance between the 25% and 75% crossings,
 * which is 2*ln(3)/|k|. Variable projection over a small grid around that
 * reading then fixes c and L.
 */
import { bestProjection, pairs, type LinearBasis } from './projection.js';
import { crossing, finiteOr, mean, quantile, smooth, type GuessSample } from './sample.js';

/** Mean of the first (or last) fifth of the curve. */
function endMean(values: Float64Array, atStart: boolean): number {
  const count = Math.max(1, Math.floor(values.length / 5));
  return mean(atStart ? values.subarray(0, count) : values.subarray(values.length - count));
}

function logistic(x: number, k: number, x0: number): number {
  return 1 / (1 + Math.exp(-k * (x - x0)));
}

/** [c, L, k, x0] in that order. */
export function guessLogistic(sample: GuessSample): number[] {
  const midpointDefault = (sample.xMin + sample.xMax) / 2;
  const rateDefault = 8 / sample.xScale;
  const low = finiteOr(quantile(sample.y, 0.05), 0);
  const high = finiteOr(quantile(sample.y, 0.95), 1);
  const fallback = [low, high - low || 1, rateDefault, midpointDefault];
  if (sample.distinctX < 4) return fallback;
  const curve = smooth(sample);
  const lo = quantile(curve.y, 0.05);
  const hi = quantile(curve.y, 0.95);
  const rising = endMean(curve.y, false) >= endMean(curve.y, true);
  // Walk from the low end of the sigmoid towards the high end.
  const start = rising ? 0 : curve.y.length - 1;
  const step = rising ? 1 : -1;
  const x0 = crossing(curve, start, step, lo + 0.5 * (hi - lo)) ?? midpointDefault;
  const quarter = crossing(curve, start, step, lo + 0.25 * (hi - lo));
  const threeQuarters = crossing(curve, start, step, lo + 0.75 * (hi - lo));
  const spread = quarter !== undefined && threeQuarters !== undefined ? Math.abs(threeQuarters - quarter) : 0;
  const magnitude = spread > 0 ? (2 * Math.log(3)) / spread : rateDefault;
  const k = rising ? magnitude : -magnitude;
  const basis: LinearBasis = (theta, x) => [
    new Float64Array(x.length).fill(1),
    Float64Array.from(x, (xi) => logistic(xi, theta[0]!, theta[1]!)),
  ];
  const rates = [0.5, Math.SQRT1_2, 1, Math.SQRT2, 2].map((f) => f * k);
  const midpoints = [-1, -0.5, 0, 0.5, 1].map((f) => x0 + f / magnitude);
  const best = bestProjection(sample, pairs(rates, midpoints), basis);
  if (best === null) return fallback;
  return [best.linear[0]!, best.linear[1]!, best.theta[0]!, best.theta[1]!];
}
