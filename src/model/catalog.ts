/**
 * Named models with an automatic first guess, so a user can fit a common shape
 * without writing the expression or a starting point.
 *
 * Every guess reads at most kMaxGuessPoints points taken with a fixed stride
 * (deterministic, O(sample) however long the columns are), skips non-finite
 * pairs, and returns finite numbers for any input: degenerate data (one point,
 * constant y, ...) get sane defaults instead of NaN.
 *
 * @example
 * import { catalogModel } from './model/catalog.js';
 * const model = catalogModel('exponential');
 * model.expression;            // 'a*exp(-b*x)+c'
 * model.guess(x, y);           // [a, b, c], e.g. [5.02, 0.69, 1.21]
 * catalogModel({ name: 'polynomial', degree: 3 }).params; // ['c0', 'c1', 'c2', 'c3']
 */
import { invalidInput, invalidRange, invalidType } from '../errors.js';
import { guessDoubleExponential, guessExponential } from './catalog/exponential.js';
import { guessLogistic } from './catalog/logistic.js';
import { gaussianShape, guessPeak, kGaussianHalfWidth, kLorentzianHalfWidth, lorentzianShape } from './catalog/peak.js';
import { guessPolynomial } from './catalog/polynomial.js';
import { guessPowerLaw } from './catalog/powerLaw.js';
import { sampleForGuess, type GuessSample } from './catalog/sample.js';

export { kMaxGuessPoints } from './catalog/sample.js';

/** A catalog model; every catalogModel() call returns a fresh object. */
export interface CatalogModel {
  /** Catalog name, e.g. 'exponential' or 'poly3'. */
  name: string;
  /** The model in nlfit's expression language; the variable is `x`. */
  expression: string;
  /** Parameter order of `guess()`. */
  params: string[];
  /** The formula in words, one line. */
  description: string;
  /** What each parameter means. */
  paramDoc: Record<string, string>;
  /**
   * A first guess from the data, in `params` order. x and y are the full
   * columns (equal lengths); at most kMaxGuessPoints of them are read.
   */
  guess(x: Float64Array, y: Float64Array, effort?: GuessEffort): number[];
}

/**
 * 'thorough' (default) scores a grid of candidates, for one fit whose start
 * matters; 'quick' scores a few, for fitMany, where a guess per curve must
 * cost microseconds (a gaussian: 230 us thorough, about 30 us quick).
 */
export type GuessEffort = 'thorough' | 'quick';

/** A catalog model named in a fit: `'gaussian'`, `'poly3'` or `{ name: 'polynomial', degree: 3 }`. */
export type CatalogSpec = string | { name: string; degree?: number };

export const kMaxPolynomialDegree = 20;

interface Definition {
  readonly expression: string;
  readonly params: readonly string[];
  readonly description: string;
  readonly paramDoc: Readonly<Record<string, string>>;
  readonly guess: (sample: GuessSample, effort: GuessEffort) => number[];
}

const kDefinitions: ReadonlyMap<string, Definition> = new Map<string, Definition>([
  ['exponential', {
    expression: 'a*exp(-b*x)+c',
    params: ['a', 'b', 'c'],
    description: 'exponential decay (b > 0) or growth (b < 0) towards an offset: a times e to the minus b x, plus c',
    paramDoc: { a: 'amplitude (value at x = 0 above the offset)', b: 'rate (1/x units)', c: 'offset (asymptote of a decay)' },
    guess: guessExponential,
  }],
  ['double_exponential', {
    expression: 'a1*exp(-b1*x)+a2*exp(-b2*x)+c',
    params: ['a1', 'b1', 'a2', 'b2', 'c'],
    description: 'sum of two exponentials plus an offset: a1 e^(-b1 x) + a2 e^(-b2 x) + c (the guess puts the faster rate in b1)',
    paramDoc: {
      a1: 'amplitude of the fast term', b1: 'fast rate (1/x units)',
      a2: 'amplitude of the slow term', b2: 'slow rate (1/x units)', c: 'offset',
    },
    guess: guessDoubleExponential,
  }],
  ['gaussian', {
    expression: 'a*exp(-(x-mu)^2/(2*s^2))+c',
    params: ['a', 'mu', 's', 'c'],
    description: 'gaussian peak (a > 0) or dip (a < 0) on a constant baseline: a e^(-(x-mu)^2/(2 s^2)) + c',
    paramDoc: { a: 'height above the baseline', mu: 'centre', s: 'standard deviation (FWHM = 2.3548 s)', c: 'baseline' },
    guess: (sample, effort) => guessPeak(sample, gaussianShape, kGaussianHalfWidth, effort),
  }],
  ['lorentzian', {
    expression: 'a*g^2/((x-x0)^2+g^2)+c',
    params: ['a', 'x0', 'g', 'c'],
    description: 'lorentzian (Cauchy) peak on a constant baseline: a g^2 / ((x-x0)^2 + g^2) + c',
    paramDoc: { a: 'height above the baseline', x0: 'centre', g: 'half width at half maximum', c: 'baseline' },
    guess: (sample, effort) => guessPeak(sample, lorentzianShape, kLorentzianHalfWidth, effort),
  }],
  ['logistic', {
    expression: 'c+L/(1+exp(-k*(x-x0)))',
    params: ['c', 'L', 'k', 'x0'],
    description: 'logistic sigmoid from c to c + L: c + L / (1 + e^(-k (x-x0)))',
    paramDoc: { c: 'lower asymptote (for k > 0)', L: 'height of the step', k: 'steepness (k < 0 falls)', x0: 'midpoint' },
    guess: guessLogistic,
  }],
  ['power_law', {
    expression: 'a*x^b',
    params: ['a', 'b'],
    description: 'power law: a times x to the power b (x > 0)',
    paramDoc: { a: 'value at x = 1', b: 'exponent' },
    guess: guessPowerLaw,
  }],
  ['linear', {
    expression: 'a*x+b',
    params: ['a', 'b'],
    description: 'straight line: a x + b',
    paramDoc: { a: 'slope', b: 'intercept (value at x = 0)' },
    guess: (sample) => {
      const [intercept, slope] = guessPolynomial(sample, 1) as [number, number];
      return [slope, intercept];
    },
  }],
]);

const kPolynomialName = /^poly(\d+)$/;

/** Every catalog name, in documentation order; polynomials are `'polynomial'` (or `'polyN'`). */
export function catalogNames(): string[] {
  return [...kDefinitions.keys(), 'polynomial'];
}

function knownNames(): string {
  return `${catalogNames().join(', ')} (polynomial needs a degree 1..${kMaxPolynomialDegree}: 'poly3' or { name: 'polynomial', degree: 3 })`;
}

function isName(name: string): boolean {
  return kDefinitions.has(name) || name === 'polynomial' || kPolynomialName.test(name);
}

/**
 * True when spec names a catalog model rather than an expression: a known
 * name or `polyN`, as a string or as the `name` of an object. catalogModel()
 * may still reject it (a degree out of range).
 */
export function isCatalogName(spec: unknown): boolean {
  if (typeof spec === 'string') return isName(spec);
  if (typeof spec === 'object' && spec !== null && !Array.isArray(spec)) {
    const name = (spec as { name?: unknown }).name;
    return typeof name === 'string' && isName(name);
  }
  return false;
}

function checkDegree(degree: unknown): number {
  if (typeof degree !== 'number') throw invalidType('model.degree', `integer 1..${kMaxPolynomialDegree}`, degree);
  if (!Number.isInteger(degree) || degree < 1 || degree > kMaxPolynomialDegree) {
    throw invalidRange('model.degree', `integer 1..${kMaxPolynomialDegree}`, degree);
  }
  return degree;
}

function polynomialModel(degree: number): CatalogModel {
  const params = Array.from({ length: degree + 1 }, (_, j) => `c${j}`);
  const terms = params.map((c, j) => (j === 0 ? c : j === 1 ? `${c}*x` : `${c}*x^${j}`));
  const paramDoc: Record<string, string> = {};
  for (const [j, c] of params.entries()) paramDoc[c] = j === 0 ? 'constant term' : `coefficient of x^${j}`;
  return {
    name: `poly${degree}`,
    expression: terms.join('+'),
    params,
    description: `polynomial of degree ${degree}: ${terms.join(' + ')}`,
    paramDoc,
    guess: (x, y) => guessPolynomial(sampleForGuess(x, y), degree),
  };
}

/** The name and degree of a spec, type-checked. */
function parseSpec(spec: unknown): { name: string; degree: unknown } {
  if (typeof spec === 'string') return { name: spec, degree: undefined };
  if (typeof spec === 'object' && spec !== null && !Array.isArray(spec)) {
    const { name, degree } = spec as { name?: unknown; degree?: unknown };
    if (typeof name !== 'string') throw invalidType('model.name', 'a catalog model name', name);
    return { name, degree };
  }
  throw invalidType('model', 'a catalog model name or { name, degree }', spec);
}

/**
 * The catalog model named by spec. Throws TypeError for a spec that is not a
 * string or { name, degree? }, RangeError for an unknown name (listing the
 * known ones) or a bad polynomial degree.
 */
export function catalogModel(spec: CatalogSpec): CatalogModel {
  const { name, degree } = parseSpec(spec);
  const numbered = kPolynomialName.exec(name);
  if (numbered !== null) {
    const fromName = Number(numbered[1]);
    if (degree !== undefined && degree !== fromName) {
      throw invalidInput('model', `'${name}' has degree ${fromName} but degree ${String(degree)} was given`);
    }
    return polynomialModel(checkDegree(fromName));
  }
  if (name === 'polynomial') {
    if (degree === undefined) {
      throw invalidInput('model', "polynomial needs a degree: 'poly3' or { name: 'polynomial', degree: 3 }");
    }
    return polynomialModel(checkDegree(degree));
  }
  const definition = kDefinitions.get(name);
  if (definition === undefined) {
    throw invalidInput('model', `unknown catalog model ${JSON.stringify(name)}; known models: ${knownNames()}`);
  }
  if (degree !== undefined) throw invalidInput('model', `'${name}' takes no degree (only polynomial does)`);
  return {
    name,
    expression: definition.expression,
    params: [...definition.params],
    description: definition.description,
    paramDoc: { ...definition.paramDoc },
    guess: (x, y, effort = 'thorough') => definition.guess(sampleForGuess(x, y), effort),
  };
}
