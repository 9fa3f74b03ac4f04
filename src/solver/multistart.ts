/**
 * Multi-start for hard problems: where the starts come from, and how the runs
 * from them are scheduled and judged. fit() wires these together; nothing
 * here runs a solver.
 *
 * The math
 *
 * Sobol points (Sobol 1967) in base 2: with 32-bit direction numbers
 * v_1..v_32 per dimension, point k is the XOR of the v_j whose bit is set in
 * the Gray code of k (Antonov & Saleev 1979), so each point is one XOR away
 * from the previous one: x_k = x_(k-1) XOR v_(c+1), c = trailing zeros of k.
 * The v_j of a dimension with primitive polynomial
 *   x^s + a_1 x^(s-1) + ... + a_(s-1) x + 1
 * are v_j = m_j / 2^j for the published m_1..m_s and, beyond s (Bratley & Fox
 * 1988, Joe & Kuo 2003),
 *   v_j = a_1 v_(j-1) XOR ... XOR a_(s-1) v_(j-s+1) XOR v_(j-s) XOR (v_(j-s) / 2^s).
 * Dimension 1 is van der Corput's (v_j = 2^-j).
 *
 * A random digital shift (L'Ecuyer & Lemieux 2002) XORs every point of a
 * dimension with one seeded 32-bit word: the points stay a digital net with
 * the same stratification, but no longer sit on the corner 0. Adding half of
 * the finest cell (2^-33) puts every coordinate strictly inside (0, 1).
 *
 * Latin hypercube (McKay, Beckman & Conover 1979): for n points, each
 * dimension is cut into n equal strata, a random permutation assigns one
 * stratum to each point, and a uniform jitter places it inside the stratum.
 *
 * References
 *   I. M. Sobol, USSR Comput. Math. Math. Phys. 7(4), 86-112 (1967).
 *   I. A. Antonov and V. M. Saleev, USSR Comput. Math. Math. Phys. 19(1), 252-256 (1979).
 *   P. Bratley and B. L. Fox, Algorithm 659, ACM Trans. Math. Softw. 14, 88-100 (1988).
 *   S. Joe and F. Y. Kuo, ACM Trans. Math. Softw. 29, 49-57 (2003).
 *   S. Joe and F. Y. Kuo, Constructing Sobol sequences with better two-dimensional
 *     projections, SIAM J. Sci. Comput. 30, 2635-2654 (2008).
 *   P. L'Ecuyer and C. Lemieux, Recent advances in randomized quasi-Monte Carlo
 *     methods, in Modeling Uncertainty, Kluwer, 419-474 (2002).
 *   M. D. McKay, R. J. Beckman and W. J. Conover, Technometrics 21, 239-245 (1979).
 */
import { closestName, invalidInput, invalidRange, invalidType } from '../errors.js';

export type Sampler = 'lhs' | 'sobol';

/** A validated `multistart` option. */
export interface MultistartSpec {
  /** Starts in all, p0 included (2..4096). */
  n: number;
  /** How the unit cube is sampled. Default 'sobol'. */
  sampler: Sampler;
  /** Seed of the shift ('sobol') or the permutations ('lhs'), 0..2^32-1. Default 0. */
  seed: number;
  /** Decades either side of p0 (or of the distance to a single bound) sampled log-uniformly. Default 2. */
  spread: number;
}

const kMinStarts = 2;
const kMaxStarts = 4096;
const kMaxSeed = 0xffffffff;
const kMaxSpread = 300;
const kDefaultSampler: Sampler = 'sobol';
const kDefaultSeed = 0;
const kDefaultSpread = 2;
const kSpecKeys = ['n', 'sampler', 'seed', 'spread'] as const;

/** Bits of every Sobol coordinate; points past index 2^32 - 1 would repeat. */
const kSobolBits = 32;
const kTwoTo32 = 2 ** kSobolBits;

/**
 * Primitive polynomials and initial direction numbers, one line per dimension
 * d = 2..128 in the published format `d s a m_1 .. m_s` (s: degree, a: the
 * inner coefficients a_1..a_(s-1) as bits, a_1 the highest). These are the
 * first lines of new-joe-kuo-6.21201, S. Joe and F. Y. Kuo (2008), from
 * https://web.maths.unsw.edu.au/~fkuo/sobol/ (the set they recommend, and the
 * one scipy.stats.qmc.Sobol uses). More lines of that file extend the sampler.
 */
const kJoeKuoTable = `
2 1 0 1
3 2 1 1 3
4 3 1 1 3 1
5 3 2 1 1 1
6 4 1 1 1 3 3
7 4 4 1 3 5 13
8 5 2 1 1 5 5 17
9 5 4 1 1 5 5 5
10 5 7 1 1 7 11 19
11 5 11 1 1 5 1 1
12 5 13 1 1 1 3 11
13 5 14 1 3 5 5 31
14 6 1 1 3 3 9 7 49
15 6 13 1 1 1 15 21 21
16 6 16 1 3 1 13 27 49
17 6 19 1 1 1 15 7 5
18 6 22 1 3 1 15 13 25
19 6 25 1 1 5 5 19 61
20 7 1 1 3 7 11 23 15 103
21 7 4 1 3 7 13 13 15 69
22 7 7 1 1 3 13 7 35 63
23 7 8 1 3 5 9 1 25 53
24 7 14 1 3 1 13 9 35 107
25 7 19 1 3 1 5 27 61 31
26 7 21 1 1 5 11 19 41 61
27 7 28 1 3 5 3 3 13 69
28 7 31 1 1 7 13 1 19 1
29 7 32 1 3 7 5 13 19 59
30 7 37 1 1 3 9 25 29 41
31 7 41 1 3 5 13 23 1 55
32 7 42 1 3 7 3 13 59 17
33 7 50 1 3 1 3 5 53 69
34 7 55 1 1 5 5 23 33 13
35 7 56 1 1 7 7 1 61 123
36 7 59 1 1 7 9 13 61 49
37 7 62 1 3 3 5 3 55 33
38 8 14 1 3 1 15 31 13 49 245
39 8 21 1 3 5 15 31 59 63 97
40 8 22 1 3 1 11 11 11 77 249
41 8 38 1 3 1 11 27 43 71 9
42 8 47 1 1 7 15 21 11 81 45
43 8 49 1 3 7 3 25 31 65 79
44 8 50 1 3 1 1 19 11 3 205
45 8 52 1 1 5 9 19 21 29 157
46 8 56 1 3 7 11 1 33 89 185
47 8 67 1 3 3 3 15 9 79 71
48 8 70 1 3 7 11 15 39 119 27
49 8 84 1 1 3 1 11 31 97 225
50 8 97 1 1 1 3 23 43 57 177
51 8 103 1 3 7 7 17 17 37 71
52 8 115 1 3 1 5 27 63 123 213
53 8 122 1 1 3 5 11 43 53 133
54 9 8 1 3 5 5 29 17 47 173 479
55 9 13 1 3 3 11 3 1 109 9 69
56 9 16 1 1 1 5 17 39 23 5 343
57 9 22 1 3 1 5 25 15 31 103 499
58 9 25 1 1 1 11 11 17 63 105 183
59 9 44 1 1 5 11 9 29 97 231 363
60 9 47 1 1 5 15 19 45 41 7 383
61 9 52 1 3 7 7 31 19 83 137 221
62 9 55 1 1 1 3 23 15 111 223 83
63 9 59 1 1 5 13 31 15 55 25 161
64 9 62 1 1 3 13 25 47 39 87 257
65 9 67 1 1 1 11 21 53 125 249 293
66 9 74 1 1 7 11 11 7 57 79 323
67 9 81 1 1 5 5 17 13 81 3 131
68 9 82 1 1 7 13 23 7 65 251 475
69 9 87 1 3 5 1 9 43 3 149 11
70 9 91 1 1 3 13 31 13 13 255 487
71 9 94 1 3 3 1 5 63 89 91 127
72 9 103 1 1 3 3 1 19 123 127 237
73 9 104 1 1 5 7 23 31 37 243 289
74 9 109 1 1 5 11 17 53 117 183 491
75 9 122 1 1 1 5 1 13 13 209 345
76 9 124 1 1 3 15 1 57 115 7 33
77 9 137 1 3 1 11 7 43 81 207 175
78 9 138 1 3 1 1 15 27 63 255 49
79 9 143 1 3 5 3 27 61 105 171 305
80 9 145 1 1 5 3 1 3 57 249 149
81 9 152 1 1 3 5 5 57 15 13 159
82 9 157 1 1 1 11 7 11 105 141 225
83 9 167 1 3 3 5 27 59 121 101 271
84 9 173 1 3 5 9 11 49 51 59 115
85 9 176 1 1 7 1 23 45 125 71 419
86 9 181 1 1 3 5 23 5 105 109 75
87 9 182 1 1 7 15 7 11 67 121 453
88 9 185 1 3 7 3 9 13 31 27 449
89 9 191 1 3 1 15 19 39 39 89 15
90 9 194 1 1 1 1 1 33 73 145 379
91 9 199 1 3 1 15 15 43 29 13 483
92 9 218 1 1 7 3 19 27 85 131 431
93 9 220 1 3 3 3 5 35 23 195 349
94 9 227 1 3 3 7 9 27 39 59 297
95 9 229 1 1 3 9 11 17 13 241 157
96 9 230 1 3 7 15 25 57 33 189 213
97 9 234 1 1 7 1 9 55 73 83 217
98 9 236 1 3 3 13 19 27 23 113 249
99 9 241 1 3 5 3 23 43 3 253 479
100 9 244 1 1 5 5 11 5 45 117 217
101 9 253 1 3 3 7 29 37 33 123 147
102 10 4 1 3 1 15 5 5 37 227 223 459
103 10 13 1 1 7 5 5 39 63 255 135 487
104 10 19 1 3 1 7 9 7 87 249 217 599
105 10 22 1 1 3 13 9 47 7 225 363 247
106 10 50 1 3 7 13 19 13 9 67 9 737
107 10 55 1 3 5 5 19 59 7 41 319 677
108 10 64 1 1 5 3 31 63 15 43 207 789
109 10 69 1 1 7 9 13 39 3 47 497 169
110 10 98 1 3 1 7 21 17 97 19 415 905
111 10 107 1 3 7 1 3 31 71 111 165 127
112 10 115 1 1 5 11 1 61 83 119 203 847
113 10 121 1 3 3 13 9 61 19 97 47 35
114 10 127 1 1 7 7 15 29 63 95 417 469
115 10 134 1 3 1 9 25 9 71 57 213 385
116 10 140 1 3 5 13 31 47 101 57 39 341
117 10 145 1 1 3 3 31 57 125 173 365 551
118 10 152 1 3 7 1 13 57 67 157 451 707
119 10 158 1 1 1 7 21 13 105 89 429 965
120 10 161 1 1 5 9 17 51 45 119 157 141
121 10 171 1 3 7 7 13 45 91 9 129 741
122 10 181 1 3 7 1 23 57 67 141 151 571
123 10 194 1 1 3 11 17 47 93 107 375 157
124 10 199 1 3 3 5 11 21 43 51 169 915
125 10 203 1 1 5 3 15 55 101 67 455 625
126 10 208 1 3 5 9 1 23 29 47 345 595
127 10 227 1 3 7 7 5 49 29 155 323 589
128 10 242 1 3 3 7 5 41 127 61 261 717
`;

/** Dimensions the Sobol sampler supports: van der Corput plus one per table line. */
export const kMaxSobolDimensions = 1 + kJoeKuoTable.trim().split('\n').length;

/**
 * Validates the fit option `multistart`: a number of starts, or
 * `{ n, sampler?, seed?, spread? }`. Returns null when the option is absent.
 *
 * @example
 *   normalizeMultistart(16);                       // { n: 16, sampler: 'sobol', seed: 0, spread: 2 }
 *   normalizeMultistart({ n: 64, sampler: 'lhs' }); // { n: 64, sampler: 'lhs', seed: 0, spread: 2 }
 */
export function normalizeMultistart(value: unknown): MultistartSpec | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number') return { n: startCount(value, 'multistart'), sampler: kDefaultSampler, seed: kDefaultSeed, spread: kDefaultSpread };
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw invalidType('multistart', `number of starts (${kMinStarts} to ${kMaxStarts}) or { n, sampler?, seed?, spread? }`, value);
  }
  for (const key of Object.keys(value)) {
    if (!(kSpecKeys as readonly string[]).includes(key)) {
      const close = closestName(key, kSpecKeys);
      throw invalidInput('multistart', `unknown option '${key}'${close === undefined ? '' : ` (did you mean '${close}'?)`}; known: ${kSpecKeys.join(', ')}`);
    }
  }
  const spec = value as Record<string, unknown>;
  return {
    n: startCount(spec.n, 'multistart.n'),
    sampler: sampler(spec.sampler),
    seed: seed(spec.seed),
    spread: spread(spec.spread),
  };
}

function startCount(value: unknown, field: string): number {
  const expected = `integer from ${kMinStarts} to ${kMaxStarts} (starts, p0 included)`;
  if (typeof value !== 'number') throw invalidType(field, expected, value);
  if (!Number.isInteger(value) || value < kMinStarts || value > kMaxStarts) throw invalidRange(field, expected, value);
  return value;
}

function sampler(value: unknown): Sampler {
  if (value === undefined) return kDefaultSampler;
  if (value === 'sobol' || value === 'lhs') return value;
  const expected = "'sobol' or 'lhs'";
  throw typeof value === 'string' ? invalidRange('multistart.sampler', expected, value) : invalidType('multistart.sampler', expected, value);
}

function seed(value: unknown): number {
  if (value === undefined) return kDefaultSeed;
  const expected = `integer from 0 to ${kMaxSeed}`;
  if (typeof value !== 'number') throw invalidType('multistart.seed', expected, value);
  if (!Number.isInteger(value) || value < 0 || value > kMaxSeed) throw invalidRange('multistart.seed', expected, value);
  return value;
}

function spread(value: unknown): number {
  if (value === undefined) return kDefaultSpread;
  const expected = `number of decades > 0 and <= ${kMaxSpread}`;
  if (typeof value !== 'number') throw invalidType('multistart.spread', expected, value);
  if (!(value > 0 && value <= kMaxSpread)) throw invalidRange('multistart.spread', expected, value);
  return value;
}

/**
 * The starts of a multi-start fit, n x p row-major: row 0 is p0, rows 1..n-1
 * come from unitSamples(n - 1, p, spec.sampler, spec.seed), one coordinate u
 * in (0, 1) per parameter, mapped by the parameter's bounds (±Infinity, or a
 * null array, means no bound):
 *   - lower and upper finite: lower + u (upper - lower), strictly inside;
 *   - one finite bound b: b ± s 10^(spread (2u - 1)) on the feasible side, where
 *     the scale s is |p0 - b|, or |b| when p0 sits on b, or 1 when both are 0;
 *   - no bound: p0 10^(spread (2u - 1)) (sign of p0 kept), or spread (2u - 1) when p0 is 0.
 * Where rounding would put a point on a bound (a bound of 1e20 and a distance
 * of 1e-3), the nearest double inside is used. The same arguments give the same bits.
 *
 * @example
 *   const spec = normalizeMultistart({ n: 8 })!;
 *   const starts = startingPoints(Float64Array.of(1, 0.5), Float64Array.of(0, -Infinity), null, spec);
 *   // starts.subarray(0, 2) is p0; starts.subarray(2, 4) the first sampled start
 */
export function startingPoints(p0: Float64Array, lower: Float64Array | null, upper: Float64Array | null, spec: MultistartSpec): Float64Array {
  const p = p0.length;
  if (lower !== null && lower.length !== p) throw invalidInput('lower', `${lower.length} bounds for ${p} parameters`);
  if (upper !== null && upper.length !== p) throw invalidInput('upper', `${upper.length} bounds for ${p} parameters`);
  for (let i = 0; i < p; i++) {
    if (!Number.isFinite(p0[i]!)) throw invalidInput(`p0[${i}]`, `a start needs finite values, not ${p0[i]}`);
  }
  const samples = unitSamples(spec.n - 1, p, spec.sampler, spec.seed);
  const starts = new Float64Array(spec.n * p);
  starts.set(p0);
  for (let i = 0; i < p; i++) {
    const lo = lower === null ? -Infinity : lower[i]!;
    const hi = upper === null ? Infinity : upper[i]!;
    const hasLower = Number.isFinite(lo);
    const hasUpper = Number.isFinite(hi);
    if (hasLower && hasUpper && !(nextDouble(lo, 1) < hi)) {
      throw invalidInput(`bounds of parameter ${i}`, `no value lies strictly between lower ${lo} and upper ${hi}`);
    }
    for (let row = 1; row < spec.n; row++) {
      const u = samples[(row - 1) * p + i]!;
      const exponent = spec.spread * (2 * u - 1);
      let value: number;
      if (hasLower && hasUpper) value = insideInterval(lo, hi, u);
      else if (hasLower) value = awayFromBound(lo, 1, distanceScale(p0[i]!, lo), exponent);
      else if (hasUpper) value = awayFromBound(hi, -1, distanceScale(p0[i]!, hi), exponent);
      else value = p0[i] === 0 ? exponent : finiteKeepingSign(p0[i]! * 10 ** exponent, p0[i]!);
      starts[row * p + i] = value;
    }
  }
  return starts;
}

/** lower + u (upper - lower), kept strictly inside when the width is below rounding. */
function insideInterval(lo: number, hi: number, u: number): number {
  const width = hi - lo;
  // An overflowing width (bounds near ±1.8e308) is blended instead.
  const value = Number.isFinite(width) ? lo + u * width : lo * (1 - u) + hi * u;
  if (value > lo && value < hi) return value;
  const middle = lo / 2 + hi / 2;
  return middle > lo && middle < hi ? middle : nextDouble(lo, 1);
}

function distanceScale(start: number, bound: number): number {
  const distance = Math.abs(start - bound);
  if (distance > 0 && Number.isFinite(distance)) return distance;
  return bound === 0 ? 1 : Math.abs(bound);
}

/** bound + direction * scale * 10^exponent, never on the bound and never infinite. */
function awayFromBound(bound: number, direction: 1 | -1, scale: number, exponent: number): number {
  const value = bound + direction * scale * 10 ** exponent;
  if (!Number.isFinite(value)) return direction * Number.MAX_VALUE;
  return (value - bound) * direction > 0 ? value : nextDouble(bound, direction);
}

/** Clamps overflow to the largest double and underflow to the smallest, both with the sign of `sign`. */
function finiteKeepingSign(value: number, sign: number): number {
  if (!Number.isFinite(value)) return Math.sign(sign) * Number.MAX_VALUE;
  return value === 0 ? Math.sign(sign) * Number.MIN_VALUE : value;
}

/** The next double after x towards +Infinity (direction 1) or -Infinity (-1). */
function nextDouble(x: number, direction: 1 | -1): number {
  if (x === 0) return direction * Number.MIN_VALUE;
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  view.setBigUint64(0, x > 0 === direction > 0 ? bits + 1n : bits - 1n);
  return view.getFloat64(0);
}

/**
 * n points of the unit cube in d dimensions, row-major, every coordinate
 * strictly inside (0, 1). 'sobol': points 1..n of the Sobol sequence (the
 * origin skipped) with a digital shift drawn from `seed`; d is at most
 * kMaxSobolDimensions. 'lhs': a Latin hypercube, one point per stratum
 * [k/n, (k+1)/n) in every dimension. The same arguments give the same bits.
 *
 * @example
 *   unitSamples(4, 2, 'lhs', 7); // 8 numbers; in each column, one in each quarter of (0, 1)
 */
export function unitSamples(n: number, d: number, sampler: Sampler, seed: number): Float64Array {
  checkCount(n, 'n');
  checkCount(d, 'd');
  if (!Number.isInteger(seed) || seed < 0 || seed > kMaxSeed) throw invalidRange('seed', `integer from 0 to ${kMaxSeed}`, seed);
  const random = mulberry32(seed);
  if (sampler === 'lhs') return latinHypercube(n, d, random);
  if (sampler !== 'sobol') throw invalidRange('sampler', "'sobol' or 'lhs'", sampler);
  const points = sobolIntegers(n, d);
  const shift = Uint32Array.from({ length: d }, random);
  const samples = new Float64Array(n * d);
  for (let k = 0; k < n; k++) {
    for (let j = 0; j < d; j++) samples[k * d + j] = (((points[k * d + j]! ^ shift[j]!) >>> 0) + 0.5) / kTwoTo32;
  }
  return samples;
}

/**
 * The unscrambled Sobol sequence without its first point (the origin):
 * points 1..n in d dimensions, row-major, in the Gray-code order that
 * scipy.stats.qmc.Sobol(d, scramble=False).random(n + 1)[1:] prints.
 *
 * @example
 *   sobolPoints(3, 2); // Float64Array [0.5, 0.5, 0.75, 0.25, 0.25, 0.75]
 */
export function sobolPoints(n: number, d: number): Float64Array {
  checkCount(n, 'n');
  checkCount(d, 'd');
  return Float64Array.from(sobolIntegers(n, d), (x) => x / kTwoTo32);
}

function checkCount(value: number, field: string): void {
  if (!Number.isInteger(value) || value < 0) throw invalidRange(field, 'integer >= 0', value);
}

/** Points 1..n of the Sobol sequence as 32-bit fractions (x / 2^32), row-major. */
function sobolIntegers(n: number, d: number): Uint32Array {
  if (d > kMaxSobolDimensions) {
    throw invalidInput('multistart.sampler', `'sobol' supports up to ${kMaxSobolDimensions} dimensions (parameters) but ${d} were requested; use 'lhs'`);
  }
  if (n >= kTwoTo32) throw invalidRange('n', `integer below 2^${kSobolBits} (Sobol points at ${kSobolBits} bits)`, n);
  const directions = sobolDirections(d);
  const points = new Uint32Array(n * d);
  const current = new Uint32Array(d);
  for (let k = 1; k <= n; k++) {
    const c = 31 - Math.clz32(k & -k);
    for (let j = 0; j < d; j++) {
      current[j] ^= directions[j * kSobolBits + c]!;
      points[(k - 1) * d + j] = current[j]!;
    }
  }
  return points;
}

/** v_1..v_32 of dimensions 1..d as 32-bit fractions, d rows of 32. */
function sobolDirections(d: number): Uint32Array {
  const directions = new Uint32Array(d * kSobolBits);
  for (let j = 0; j < kSobolBits; j++) directions[j] = 2 ** (kSobolBits - 1 - j);
  const lines = kJoeKuoTable.trim().split('\n');
  for (let dim = 1; dim < d; dim++) {
    const [, degree, coefficients, ...initial] = lines[dim - 1]!.split(' ').map(Number) as [number, number, number, ...number[]];
    const v = directions.subarray(dim * kSobolBits, (dim + 1) * kSobolBits);
    for (let j = 0; j < degree; j++) v[j] = initial[j]! * 2 ** (kSobolBits - 1 - j);
    for (let j = degree; j < kSobolBits; j++) {
      let value = v[j - degree]! ^ (v[j - degree]! >>> degree);
      for (let k = 1; k < degree; k++) {
        if ((coefficients >>> (degree - 1 - k)) & 1) value ^= v[j - k]!;
      }
      v[j] = value;
    }
  }
  return directions;
}

function latinHypercube(n: number, d: number, random: () => number): Float64Array {
  const samples = new Float64Array(n * d);
  const strata = new Uint32Array(n);
  for (let j = 0; j < d; j++) {
    for (let k = 0; k < n; k++) strata[k] = k;
    // Fisher-Yates; at most 4096 strata, so the bias of scaling a 32-bit draw is below 1e-6.
    for (let k = n - 1; k > 0; k--) {
      const other = Math.floor((random() / kTwoTo32) * (k + 1));
      const held = strata[k]!;
      strata[k] = strata[other]!;
      strata[other] = held;
    }
    for (let k = 0; k < n; k++) samples[k * d + j] = (strata[k]! + (random() + 0.5) / kTwoTo32) / n;
  }
  return samples;
}

/**
 * A seeded 32-bit generator after Tommy Ettinger's mulberry32 (public domain,
 * 2017): a Weyl sequence through a multiply-xorshift finalizer. Small state and
 * identical output on every platform, which is all a sampler needs.
 */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = Math.imul(state ^ (state >>> 15), state | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (z ^ (z >>> 14)) >>> 0;
  };
}

/** What runStarts reports. */
export interface MultistartOutcome<R> {
  /** The lowest cost among the starts that succeeded; when none did (converged is 0), the lowest cost of all. */
  best: R;
  /** Row of `best` in the starts (0 is p0). */
  bestIndex: number;
  /** Starts whose result says success. */
  converged: number;
  /** Starts whose run threw or rejected, with the error message, by index. */
  failed: Array<{ index: number; error: string }>;
  /** Cost of every start by index; NaN where the run failed. */
  costs: number[];
}

/**
 * Runs `run(start, index)` for each row of `starts` (n x p, row-major), with at
 * most `concurrency` runs in flight, and picks the best result: the lowest
 * cost among those with success, else the lowest cost of all; ties go to the
 * lower index and NaN costs lose, so the choice does not depend on which run
 * finishes first. A run that throws or rejects is recorded in `failed`; only
 * when every run fails does runStarts reject, with the error of start 0.
 * Each run gets its own copy of its row.
 *
 * @example
 *   const { best, bestIndex } = await runStarts(starts, p, 4, (start) => solveFrom(start));
 */
export async function runStarts<R extends { success: boolean; cost: number }>(
  starts: Float64Array,
  p: number,
  concurrency: number,
  run: (start: Float64Array, index: number) => Promise<R>,
): Promise<MultistartOutcome<R>> {
  if (!Number.isInteger(p) || p < 1) throw invalidRange('p', 'positive integer', p);
  if (starts.length === 0 || starts.length % p !== 0) {
    throw invalidInput('starts', `${starts.length} values are not a whole, non-empty number of rows of ${p} parameters`);
  }
  if (!Number.isInteger(concurrency) || concurrency < 1) throw invalidRange('concurrency', 'positive integer', concurrency);
  const count = starts.length / p;
  const outcomes: Array<{ result: R } | { error: unknown }> = new Array(count);
  let nextIndex = 0;
  const drain = async (): Promise<void> => {
    while (nextIndex < count) {
      const index = nextIndex++;
      try {
        outcomes[index] = { result: await run(starts.slice(index * p, (index + 1) * p), index) };
      } catch (error) {
        outcomes[index] = { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, drain));

  const failed: Array<{ index: number; error: string }> = [];
  const costs: number[] = [];
  let best: R | undefined;
  let bestIndex = -1;
  let converged = 0;
  outcomes.forEach((outcome, index) => {
    if ('error' in outcome) {
      failed.push({ index, error: outcome.error instanceof Error ? outcome.error.message : String(outcome.error) });
      costs.push(NaN);
      return;
    }
    const result = outcome.result;
    costs.push(result.cost);
    if (result.success) converged++;
    if (best === undefined || (result.success && !best.success) || (result.success === best.success && lowerCost(result.cost, best.cost))) {
      best = result;
      bestIndex = index;
    }
  });
  if (best === undefined) throw (outcomes[0] as { error: unknown }).error;
  return { best, bestIndex, converged, failed, costs };
}

/** a < b, with NaN above every number so a failed evaluation never wins. */
function lowerCost(a: number, b: number): boolean {
  return a < b || (Number.isNaN(b) && !Number.isNaN(a));
}
