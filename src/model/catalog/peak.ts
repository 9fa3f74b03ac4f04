/**
 * Guesses for a single peak (or dip) on a constant baseline:
 *   gaussian    a*exp(-(x-mu)^2/(2*s^2))+c
 *   lorentzian  a*g^2/((x-x0)^2+g^2)+c
 *
 * The smoothed data give a centre (the extreme) and a half width at half
 * maximum (HWHM) above or below a baseline quantile, for a peak and for a dip.
 * Both readings seed a small grid of centres and widths, and variable
 * projection picks the best one together with the amplitude and baseline
 * (so a's sign and c come from the fit, not from the quantile).
 */
import { bestProjection, pairs, type LinearBasis } from './projection.js';
import { crossing, finiteOr, mean, quantile, smooth, type GuessSample, type SmoothedCurve } from './sample.js';

/** A peak shape with unit height at its centre; `width` is s for a gaussian, g for a lorentzian. */
export type PeakShape = (x: number, centre: number, width: number) => number;

export const gaussianShape: PeakShape = (x, centre, width) => {
  const t = (x - centre) / width;
  return Math.exp(-0.5 * t * t);
};

export const lorentzianShape: PeakShape = (x, centre, width) => {
  const t = (x - centre) / width;
  return 1 / (1 + t * t);
};

/** HWHM / width for each shape: sqrt(2 ln 2) for a gaussian, 1 for a lorentzian. */
export const kGaussianHalfWidth = Math.sqrt(2 * Math.LN2);
export const kLorentzianHalfWidth = 1;

interface PeakReading {
  readonly centre: number;
  readonly halfWidth: number;
}

/** Centre and HWHM of the largest excursion of the curve in direction `sign` (+1 peak, -1 dip). */
function readPeak(curve: SmoothedCurve, sign: 1 | -1, fallbackHalfWidth: number): PeakReading {
  let top = 0;
  for (let i = 1; i < curve.y.length; i++) if (sign * curve.y[i]! > sign * curve.y[top]!) top = i;
  const baseline = quantile(curve.y, sign > 0 ? 0.1 : 0.9);
  const half = (baseline + curve.y[top]!) / 2;
  const centre = curve.x[top]!;
  const left = crossing(curve, top, -1, half);
  const right = crossing(curve, top, 1, half);
  let halfWidth: number;
  if (left !== undefined && right !== undefined) halfWidth = (right - left) / 2;
  else if (left !== undefined) halfWidth = centre - left;
  else if (right !== undefined) halfWidth = right - centre;
  else halfWidth = fallbackHalfWidth;
  return { centre, halfWidth: halfWidth > 0 ? halfWidth : fallbackHalfWidth };
}

/** [a, centre, width, c] in that order. */
export function guessPeak(sample: GuessSample, shape: PeakShape, halfWidthPerWidth: number, effort: 'thorough' | 'quick' = 'thorough'): number[] {
  const fallbackWidth = sample.xScale / 4 / halfWidthPerWidth;
  const centreDefault = (sample.xMin + sample.xMax) / 2;
  const baselineDefault = finiteOr(mean(sample.y), 0);
  if (sample.distinctX < 4) return [1, centreDefault, fallbackWidth, baselineDefault];
  const curve = smooth(sample);
  const basis: LinearBasis = (theta, x) => [
    Float64Array.from(x, (xi) => shape(xi, theta[0]!, theta[1]!)),
    new Float64Array(x.length).fill(1),
  ];
  const candidates: number[][] = [];
  for (const sign of [1, -1] as const) {
    const reading = readPeak(curve, sign, sample.xScale / 4);
    const width = reading.halfWidth / halfWidthPerWidth;
    // 'quick' (fitMany): the reading itself and two widths around it, 6 candidates instead of 50.
    const centreSteps = effort === 'quick' ? [0] : [-0.5, -0.25, 0, 0.25, 0.5];
    const widthSteps = effort === 'quick' ? [Math.SQRT1_2, 1, Math.SQRT2] : [0.5, Math.SQRT1_2, 1, Math.SQRT2, 2];
    const centres = centreSteps.map((k) => reading.centre + k * reading.halfWidth);
    const widths = widthSteps.map((k) => k * width);
    candidates.push(...pairs(centres, widths));
  }
  const best = bestProjection(sample, candidates, basis);
  if (best === null) return [1, centreDefault, fallbackWidth, baselineDefault];
  const [centre, width] = best.theta as [number, number];
  return [best.linear[0]!, centre, width, best.linear[1]!];
}
