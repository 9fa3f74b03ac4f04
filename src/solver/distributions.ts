/**
 * Quantiles of Student's t and of the standard normal distribution, for
 * confidence intervals and bands.
 *
 * Student's t with ν degrees of freedom has, for t >= 0, the upper tail
 *
 *   P(T > t) = I_x(ν/2, 1/2) / 2,   x = ν / (ν + t²)            (DLMF 8.17.iv, A&S 26.7.1)
 *
 * where I_x(a, b) is the regularized incomplete beta function. I_x is
 * evaluated by its continued fraction (DLMF 8.17.22) with the modified Lentz
 * algorithm (Lentz 1976; Thompson & Barnett 1986), on whichever side of the
 * symmetry I_x(a, b) = 1 - I_{1-x}(b, a) converges fast, and with x and 1 - x
 * both passed in so that neither is formed by cancellation. The normal upper
 * tail is Q(1/2, z²/2) / 2, Q the regularized upper incomplete gamma
 * function: its power series below the transition point, its Legendre
 * continued fraction (DLMF 8.9.2) above it.
 *
 * A quantile is the root of P(X > t) = q, q <= 1/2, found by Newton's method
 * (on log P against log t in the tails, on P(0 < X <= t) = 1/2 - q near the
 * centre), kept inside a bracket with bisection as the fallback. Its accuracy
 * is that of the tail: better than 1e-12 relative (the beta fraction loses
 * digits to cancellation near t² = 3 when ν is large, most near ν = 1e5);
 * the tests hold it
 * to scipy within 1e-10. Above kCornishFisherDof degrees of freedom the
 * Cornish-Fisher expansion of t in the normal quantile (A&S 26.7.5), to order
 * 1/ν⁴, is exact to rounding and replaces the root search.
 *
 * log Γ and log B use Stirling's series (DLMF 5.11.1), with the argument
 * shifted above 10 by the recurrence Γ(x + 1) = x Γ(x), and for log B with
 * a large argument in a form where nothing large cancels.
 */
import { invalidRange, invalidType } from '../errors.js';

const kHalfLog2Pi = 0.5 * Math.log(2 * Math.PI);
/** Stirling's series with six terms is exact to rounding from here up (next term < 7e-16 / x^13). */
const kStirlingMin = 10;
/** Continued-fraction terms before giving up; the beta fraction needs O(sqrt(max(a, b))) near its switch point. */
const kMaxTerms = 100_000;
/** Lentz's guard against a zero denominator. */
const kTiny = 1e-300;
const kMaxRootIterations = 400;
/** Relative Newton step below which the root is taken (a few ulp: the last step was quadratic). */
const kRootTolerance = 1e-14;
/** Degrees of freedom above which the Cornish-Fisher expansion is used (its first omitted term is < 1e-20 there). */
const kCornishFisherDof = 1e5;

/** Σ B_2k / (2k (2k - 1) x^(2k-1)), k = 1..6: log Γ(x) minus its Stirling approximation, for x >= 10. */
function stirlingCorrection(x: number): number {
  const r = 1 / x;
  const r2 = r * r;
  return r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 * (1 / 1188 - r2 * (691 / 360360))))));
}

/** log Γ(x) for x > 0 (absolute error a few ulp of log Γ(x + 10)). */
function logGamma(x: number): number {
  if (x >= kStirlingMin) return (x - 0.5) * Math.log(x) - x + kHalfLog2Pi + stirlingCorrection(x);
  let product = 1;
  let shifted = x;
  while (shifted < kStirlingMin) {
    product *= shifted;
    shifted += 1;
  }
  return logGamma(shifted) - Math.log(product);
}

/** log B(a, b) = log Γ(a) + log Γ(b) - log Γ(a + b), for a, b > 0. */
function logBeta(a: number, b: number): number {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  if (hi < kStirlingMin) return logGamma(lo) + logGamma(hi) - logGamma(lo + hi);
  if (lo < kStirlingMin) {
    // log Γ(hi) - log Γ(lo + hi) by Stirling, the large logarithms combined through log1p.
    return (
      logGamma(lo) +
      stirlingCorrection(hi) -
      stirlingCorrection(lo + hi) -
      (hi - 0.5) * Math.log1p(lo / hi) -
      lo * Math.log(lo + hi) +
      lo
    );
  }
  return (
    kHalfLog2Pi -
    0.5 * Math.log(hi) +
    (lo - 0.5) * Math.log(lo / (lo + hi)) -
    hi * Math.log1p(lo / hi) +
    stirlingCorrection(lo) +
    stirlingCorrection(hi) -
    stirlingCorrection(lo + hi)
  );
}

/**
 * b0 + a1/(b1 + a2/(b2 + ...)) by the modified Lentz algorithm, stopping when
 * a term changes the value by less than a rounding error.
 */
function continuedFraction(b0: number, numerator: (j: number) => number, denominator: (j: number) => number): number {
  let value = b0 === 0 ? kTiny : b0;
  let c = value;
  let d = 0;
  for (let j = 1; j <= kMaxTerms; j++) {
    const aj = numerator(j);
    const bj = denominator(j);
    d = bj + aj * d;
    if (Math.abs(d) < kTiny) d = kTiny;
    c = bj + aj / c;
    if (Math.abs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const delta = c * d;
    value *= delta;
    if (Math.abs(delta - 1) <= Number.EPSILON) break;
  }
  return value;
}

/** I_x(a, b) by the continued fraction, for x below the switch point (a + 1) / (a + b + 2); y = 1 - x. */
function betaFraction(a: number, b: number, x: number, y: number): number {
  // log x and log y each from whichever of x, y is not near 1.
  const logX = x < 0.5 ? Math.log(x) : Math.log1p(-y);
  const logY = y < 0.5 ? Math.log(y) : Math.log1p(-x);
  const front = Math.exp(a * logX + b * logY - logBeta(a, b)) / a;
  // DLMF 8.17.22: d_(2m+1) = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)), d_(2m) = m(b-m)x / ((a+2m-1)(a+2m)).
  const fraction = continuedFraction(
    1,
    (j) => {
      const m = j >> 1;
      return j & 1 ? (-(a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1)) : (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m));
    },
    () => 1,
  );
  return front / fraction;
}

/**
 * The regularized incomplete beta function I_x(a, b) for a, b > 0 and x in
 * [0, 1]. Pass y = 1 - x when it is known more precisely than 1 - x rounds.
 * @example
 * regularizedBeta(2, 3, 0.4) // 0.5248 (scipy.special.betainc(2, 3, 0.4))
 */
export function regularizedBeta(a: number, b: number, x: number, y = 1 - x): number {
  if (!(a > 0)) throw invalidRange('a', 'positive number', a);
  if (!(b > 0)) throw invalidRange('b', 'positive number', b);
  if (!(x >= 0 && x <= 1)) throw invalidRange('x', 'number in [0, 1]', x);
  if (x === 0) return 0;
  if (y <= 0) return 1;
  if (x < (a + 1) / (a + b + 2)) return betaFraction(a, b, x, y);
  return 1 - betaFraction(b, a, y, x);
}

/**
 * The regularized incomplete gamma functions, a > 0, x >= 0: P(a, x) when
 * lower, else Q(a, x) = 1 - P(a, x). Below the transition point x = a + 1 the
 * power series gives P and Q = 1 - P; above it the continued fraction gives
 * Q and P = 1 - Q; the value computed directly is accurate to rounding.
 */
function gammaRatio(a: number, x: number, lower: boolean): number {
  if (x === 0) return lower ? 0 : 1;
  const logFront = -x + a * Math.log(x) - logGamma(a);
  if (x < a + 1) {
    // P(a, x) = x^a e^-x / Γ(a + 1) Σ x^n / ((a+1)...(a+n)).
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n <= kMaxTerms; n++) {
      term *= x / (a + n);
      sum += term;
      if (term <= sum * Number.EPSILON) break;
    }
    const p = sum * Math.exp(logFront);
    return lower ? p : 1 - p;
  }
  const fraction = continuedFraction(
    x + 1 - a,
    (j) => -j * (j - a),
    (j) => x + 2 * j + 1 - a,
  );
  const q = Math.exp(logFront) / fraction;
  return lower ? 1 - q : q;
}

/** A continuous distribution symmetric about 0, by its probabilities on either side of t >= 0. */
interface SymmetricDistribution {
  /** P(X > t). */
  upperTail(t: number): number;
  /** P(0 < X <= t) = 1/2 - P(X > t), computed without that cancellation. */
  central(t: number): number;
  density(t: number): number;
}

const kNormal: SymmetricDistribution = {
  upperTail: (z) => 0.5 * gammaRatio(0.5, 0.5 * z * z, false),
  central: (z) => 0.5 * gammaRatio(0.5, 0.5 * z * z, true),
  density: (z) => Math.exp(-0.5 * z * z - kHalfLog2Pi),
};

function studentT(dof: number): SymmetricDistribution {
  const logNorm = -0.5 * Math.log(dof) - logBeta(dof / 2, 0.5);
  // x = ν / (ν + t²) and y = t² / (ν + t²), each formed directly.
  const split = (t: number): [number, number] => {
    const t2 = t * t;
    return Number.isFinite(t2) ? [dof / (dof + t2), t2 / (dof + t2)] : [dof / t / t, 1];
  };
  return {
    upperTail: (t) => {
      const [x, y] = split(t);
      return 0.5 * regularizedBeta(dof / 2, 0.5, x, y);
    },
    central: (t) => {
      const [x, y] = split(t);
      return 0.5 * regularizedBeta(0.5, dof / 2, y, x);
    },
    density: (t) => Math.exp(-0.5 * (dof + 1) * Math.log1p((t * t) / dof) + logNorm),
  };
}

/** Where t lies from the root (excess > 0: below it) and the Newton step from t. */
type NewtonStep = (t: number) => { excess: number; next: number };

/**
 * The root t >= 0 of a decreasing excess with excess(0) >= 0. Newton steps
 * stay inside the bracket [lo, hi]; a step that would leave it is replaced
 * by doubling (no upper end yet) or bisection (geometric while the bracket
 * spans more than a factor of 4).
 */
function decreasingRoot(newton: NewtonStep, guess: number): number {
  let lo = 0;
  let hi = Infinity;
  let t = guess > 0 && Number.isFinite(guess) ? guess : 1;
  for (let iteration = 0; iteration < kMaxRootIterations && t < Infinity; iteration++) {
    const { excess, next: proposed } = newton(t);
    if (excess === 0) return t;
    if (excess > 0) lo = t;
    else hi = t;
    let next = proposed;
    if (!(next > lo && next < hi)) {
      if (hi === Infinity) next = 2 * t;
      else next = lo > 0 && hi > 4 * lo ? Math.sqrt(lo * hi) : 0.5 * (lo + hi);
    }
    if (Math.abs(next - t) <= kRootTolerance * next) return next;
    t = next;
  }
  return t;
}

/**
 * t >= 0 with P(X > t) = q, 0 < q <= 1/2. In the tails Newton's method runs
 * on log P(X > t) against log t, where a power-law tail (t with few degrees
 * of freedom) is a straight line: one step from anywhere. Near the centre
 * (q > 1/4) the equation is P(0 < X <= t) = 1/2 - q, exact there (Sterbenz),
 * so a level close to 0 keeps its relative accuracy; there the steps are
 * plain Newton from d / density(0), left of the root, where the convexity
 * keeps them.
 */
function upperQuantile(distribution: SymmetricDistribution, q: number, tailGuess: () => number): number {
  if (q === 0.5) return 0;
  if (q > 0.25) {
    const d = 0.5 - q;
    return decreasingRoot((t) => {
      const excess = d - distribution.central(t);
      return { excess, next: t + excess / distribution.density(t) };
    }, d / distribution.density(0));
  }
  return decreasingRoot((t) => {
    const tail = distribution.upperTail(t);
    const excess = Math.log(tail / q);
    return { excess, next: t * Math.exp((excess * tail) / (t * distribution.density(t))) };
  }, tailGuess());
}

/** A&S 26.2.23: the normal upper quantile to 4.5e-4, a starting point for the root search. */
function normalUpperGuess(q: number): number {
  const s = Math.sqrt(-2 * Math.log(q));
  return s - (2.515517 + s * (0.802853 + s * 0.010328)) / (1 + s * (1.432788 + s * (0.189269 + s * 0.001308)));
}

/** z with P(Z > z) = q, 0 < q <= 1/2. */
function normalUpperQuantile(q: number): number {
  return upperQuantile(kNormal, q, () => normalUpperGuess(q));
}

/** A&S 26.7.5: t in terms of the normal quantile z, to order 1/ν⁴. */
function cornishFisher(z: number, dof: number): number {
  const z2 = z * z;
  const g1 = (z * (z2 + 1)) / 4;
  const g2 = (z * (3 + z2 * (16 + z2 * 5))) / 96;
  const g3 = (z * (-15 + z2 * (17 + z2 * (19 + z2 * 3)))) / 384;
  const g4 = (z * (-945 + z2 * (-1920 + z2 * (1482 + z2 * (776 + z2 * 79))))) / 92160;
  return z + (g1 + (g2 + (g3 + g4 / dof) / dof) / dof) / dof;
}

/** t with P(T > t) = q, 0 < q <= 1/2. */
function studentUpperQuantile(q: number, dof: number): number {
  if (dof === Infinity) return normalUpperQuantile(q);
  if (dof > kCornishFisherDof) return cornishFisher(normalUpperQuantile(q), dof);
  return upperQuantile(studentT(dof), q, () => cornishFisher(normalUpperQuantile(q), Math.max(dof, 1)));
}

function checkProbability(p: unknown): asserts p is number {
  if (typeof p !== 'number') throw invalidType('p', 'number in [0, 1]', p);
  if (!(p >= 0 && p <= 1)) throw invalidRange('p', 'number in [0, 1]', p);
}

function checkDof(dof: unknown): asserts dof is number {
  if (typeof dof !== 'number') throw invalidType('dof', 'positive number or Infinity', dof);
  if (!(dof > 0)) throw invalidRange('dof', 'positive number or Infinity', dof);
}

/** Quantile of a symmetric distribution from its upper quantile: 1 - p is exact for p >= 1/2. */
function symmetricQuantile(p: number, upper: (q: number) => number): number {
  if (p === 0) return -Infinity;
  if (p === 1) return Infinity;
  return p < 0.5 ? -upper(p) : upper(1 - p);
}

/**
 * The p-quantile of the standard normal distribution (scipy.stats.norm.ppf).
 * @example
 * normalQuantile(0.975) // 1.959963984540054
 */
export function normalQuantile(p: number): number {
  checkProbability(p);
  return symmetricQuantile(p, normalUpperQuantile);
}

/**
 * The p-quantile of Student's t with dof degrees of freedom (dof > 0, not
 * necessarily whole; Infinity gives the normal quantile), as
 * scipy.stats.t.ppf(p, dof).
 * @example
 * studentTQuantile(0.975, 10) // 2.2281388519649385
 */
export function studentTQuantile(p: number, dof: number): number {
  checkProbability(p);
  checkDof(dof);
  return symmetricQuantile(p, (q) => studentUpperQuantile(q, dof));
}

/**
 * The two-sided critical value of Student's t: c with P(|T| <= c) = level,
 * i.e. studentTQuantile((1 + level) / 2, dof) without rounding (1 + level) / 2.
 */
export function studentTCritical(level: number, dof: number): number {
  checkLevel(level);
  checkDof(dof);
  return studentUpperQuantile((1 - level) / 2, dof);
}

/** Validates a confidence level: a number strictly between 0 and 1. */
export function checkLevel(level: unknown): asserts level is number {
  if (typeof level !== 'number') throw invalidType('level', 'number in (0, 1)', level);
  if (!(level > 0 && level < 1)) throw invalidRange('level', 'number in (0, 1)', level);
}
