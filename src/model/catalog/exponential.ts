/**
 * Guesses for a*exp(-b*x)+c and a1*exp(-b1*x)+a2*exp(-b2*x)+c.
 *
 * Given the rates the model is linear in the amplitudes and the offset, so the
 * rates are chosen by variable projection over a logarithmic grid of both
 * signs (decay and growth; from 0.1 to 1000 e-foldings over the x-range), then
 * refined on a finer grid around the best. This finds the asymptote c together
 * with the rate, even when the data never reach their tail.
 */
import { bestProjection, geometricGrid, pairs, type LinearBasis, type Projection } from './projection.js';
import { finiteOr, mean, type GuessSample } from './sample.js';

/**
 * exp(-b*(x - xRef)) with xRef the end of the range where the term is largest,
 * so the column lies in (0, 1] and cannot overflow.
 */
function referenceX(sample: GuessSample, rate: number): number {
  return rate > 0 ? sample.xMin : sample.xMax;
}

function decayColumn(sample: GuessSample, rate: number, x: Float64Array): Float64Array {
  const xRef = referenceX(sample, rate);
  return Float64Array.from(x, (xi) => Math.exp(-rate * (xi - xRef)));
}

/** The amplitude a of a*exp(-b*x) from the amplitude of the shifted column. */
function unshiftAmplitude(sample: GuessSample, rate: number, shifted: number): number {
  return finiteOr(shifted * Math.exp(rate * referenceX(sample, rate)), shifted);
}

function ones(length: number): Float64Array {
  return new Float64Array(length).fill(1);
}

function singleBasis(sample: GuessSample): LinearBasis {
  return (theta: readonly number[], x: Float64Array): Float64Array[] => [
    decayColumn(sample, theta[0]!, x),
    ones(x.length),
  ];
}

/** Best single rate with its projection [amplitude, offset], or null when the data cannot tell. */
function singleRate(sample: GuessSample): Projection | null {
  const unit = 1 / sample.xScale;
  const basis = singleBasis(sample);
  if (sample.distinctX < 3) return bestProjection(sample, [[unit]], basis);
  const coarse = [...geometricGrid(unit, 10, -1, 3, 0.1), ...geometricGrid(-unit, 10, -1, 3, 0.1)];
  const first = bestProjection(sample, coarse.map((b) => [b]), basis);
  if (first === null) return null;
  const fine = geometricGrid(first.theta[0]!, 10, -0.1, 0.1, 0.01).map((b) => [b]);
  return bestProjection(sample, fine, basis) ?? first;
}

export function guessExponential(sample: GuessSample): number[] {
  const fit = singleRate(sample);
  if (fit === null) return [finiteOr(mean(sample.y), 1) || 1, 1 / sample.xScale, 0];
  const b = fit.theta[0]!;
  return [unshiftAmplitude(sample, b, fit.linear[0]!), b, fit.linear[1]!];
}

export function guessDoubleExponential(sample: GuessSample): number[] {
  const single = guessExponential(sample);
  const [a, rate, c] = single as [number, number, number];
  // Too few points for five parameters: the single curve split into two
  // terms with distinct rates.
  const split = [a / 2, 3 * rate, a / 2, rate / 3, c];
  if (sample.distinctX < 5) return split;
  const basis = (theta: readonly number[], x: Float64Array): Float64Array[] => [
    decayColumn(sample, theta[0]!, x),
    decayColumn(sample, theta[1]!, x),
    ones(x.length),
  ];
  // The fast rate above the single-exponential compromise, the slow one below.
  const coarse = pairs(geometricGrid(rate, 10, 0, 1.5, 0.25), geometricGrid(rate, 10, -1.5, 0, 0.25))
    .filter(([fast, slow]) => fast !== slow);
  const first = bestProjection(sample, coarse, basis);
  if (first === null) return split;
  const [fast, slow] = first.theta as [number, number];
  const refined = pairs(geometricGrid(fast, 10, -0.125, 0.125, 0.0625), geometricGrid(slow, 10, -0.125, 0.125, 0.0625))
    .filter(([f, s]) => Math.abs(f) > Math.abs(s));
  const best = bestProjection(sample, refined, basis) ?? first;
  const [b1, b2] = best.theta as [number, number];
  return [
    unshiftAmplitude(sample, b1, best.linear[0]!),
    b1,
    unshiftAmplitude(sample, b2, best.linear[1]!),
    b2,
    best.linear[2]!,
  ];
}
