import { describe, expect, it } from 'vitest';
import { catalogModel, catalogNames, isCatalogName, kMaxGuessPoints, type CatalogModel } from '../dist/model/catalog.js';
import { fit } from '../dist/index.js';
import { compileModel, evaluateCompiled, freeIdentifiers, kFunctions } from '../dist/model/index.js';

/** mulberry32: a small seeded generator, so every dataset is the same on every run. */
function uniformGenerator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normalGenerator(seed: number): () => number {
  const uniform = uniformGenerator(seed);
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

type Reference = (p: readonly number[], x: number) => number;

/** The catalog formulas written out in JavaScript, parameters in catalog order. */
const references: Record<string, Reference> = {
  exponential: ([a, b, c], x) => a! * Math.exp(-b! * x) + c!,
  double_exponential: ([a1, b1, a2, b2, c], x) => a1! * Math.exp(-b1! * x) + a2! * Math.exp(-b2! * x) + c!,
  gaussian: ([a, mu, s, c], x) => a! * Math.exp(-((x - mu!) ** 2) / (2 * s! ** 2)) + c!,
  lorentzian: ([a, x0, g, c], x) => (a! * g! ** 2) / ((x - x0!) ** 2 + g! ** 2) + c!,
  logistic: ([c, L, k, x0], x) => c! + L! / (1 + Math.exp(-k! * (x - x0!))),
  power_law: ([a, b], x) => a! * x ** b!,
  linear: ([a, b], x) => a! * x + b!,
};

function referenceFor(model: CatalogModel): Reference {
  if (model.name.startsWith('poly')) return (p, x) => p.reduce((sum, c, j) => sum + c * x ** j, 0);
  return references[model.name]!;
}

interface Dataset {
  x: Float64Array;
  y: Float64Array;
  /** Range of the noise-free curve. */
  yRange: number;
  xRange: number;
}

interface DataOptions {
  n?: number;
  /** Noise standard deviation as a fraction of the curve's range. */
  noise?: number;
  seed?: number;
  /** Random x (uniform on the range, in random order) instead of an ascending grid. */
  scattered?: boolean;
}

function makeData(reference: Reference, truth: readonly number[], lo: number, hi: number, options: DataOptions = {}): Dataset {
  const { n = 2000, noise = 0.02, seed = 1, scattered = false } = options;
  const uniform = uniformGenerator(seed + 1000);
  const x = Float64Array.from({ length: n }, (_, i) => (scattered ? lo + (hi - lo) * uniform() : lo + ((hi - lo) * i) / (n - 1)));
  const clean = Float64Array.from(x, (xi) => reference(truth, xi));
  let min = Infinity;
  let max = -Infinity;
  for (const v of clean) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const normal = normalGenerator(seed);
  const y = Float64Array.from(clean, (v) => v + noise * (max - min) * normal());
  return { x, y, yRange: max - min, xRange: hi - lo };
}

/**
 * How close a guessed parameter must be to the truth:
 *   scale   same sign and within a factor of 2.5 (amplitudes, rates, widths)
 *   where   within 10% of the x-range (centres, midpoints)
 *   level   within 25% of the curve's y-range (offsets, baselines)
 */
type Basin = 'scale' | 'where' | 'level';

interface GuessCase {
  label: string;
  spec: string | { name: string; degree?: number };
  truth: number[];
  range: [number, number];
  /** One per parameter; omitted for polynomials, which are judged by their curve. */
  basins?: Basin[];
  options?: DataOptions;
}

const cases: GuessCase[] = [
  { label: 'exponential decay', spec: 'exponential', truth: [5, 0.7, 1.2], range: [0, 10], basins: ['scale', 'scale', 'level'] },
  { label: 'exponential growth', spec: 'exponential', truth: [2, -0.3, 1], range: [0, 10], basins: ['scale', 'scale', 'level'] },
  { label: 'exponential rise to a plateau (a < 0)', spec: 'exponential', truth: [-3, 1.5, 4], range: [0, 5], basins: ['scale', 'scale', 'level'] },
  {
    label: 'exponential, scattered x away from 0',
    spec: 'exponential',
    truth: [8, 0.4, -1],
    range: [2, 12],
    basins: ['scale', 'scale', 'level'],
    options: { scattered: true, seed: 7 },
  },
  {
    label: 'double exponential',
    spec: 'double_exponential',
    truth: [3, 2, 2, 0.2, 0.5],
    range: [0, 10],
    basins: ['scale', 'scale', 'scale', 'scale', 'level'],
  },
  {
    label: 'double exponential, rates 10x apart',
    spec: 'double_exponential',
    truth: [1, 5, 4, 0.5, 0],
    range: [0, 6],
    basins: ['scale', 'scale', 'scale', 'scale', 'level'],
    options: { noise: 0.01, seed: 3 },
  },
  { label: 'gaussian peak', spec: 'gaussian', truth: [4, 3, 0.5, 1], range: [0, 10], basins: ['scale', 'where', 'scale', 'level'] },
  { label: 'gaussian dip', spec: 'gaussian', truth: [-2, 6, 1.2, 5], range: [0, 10], basins: ['scale', 'where', 'scale', 'level'] },
  {
    label: 'narrow gaussian, scattered x',
    spec: 'gaussian',
    truth: [10, 70, 2, 0],
    range: [0, 100],
    basins: ['scale', 'where', 'scale', 'level'],
    options: { n: 5000, scattered: true, seed: 11 },
  },
  {
    label: 'wide gaussian that barely reaches its baseline',
    spec: 'gaussian',
    truth: [1, 0.5, 2.5, 0.2],
    range: [-5, 5],
    basins: ['scale', 'where', 'scale', 'level'],
  },
  { label: 'lorentzian peak', spec: 'lorentzian', truth: [3, 4, 0.4, 0.5], range: [0, 10], basins: ['scale', 'where', 'scale', 'level'] },
  { label: 'lorentzian dip', spec: 'lorentzian', truth: [-1, 20, 3, 2], range: [0, 50], basins: ['scale', 'where', 'scale', 'level'] },
  { label: 'rising logistic', spec: 'logistic', truth: [1, 5, 2, 4], range: [0, 10], basins: ['level', 'scale', 'scale', 'where'] },
  { label: 'falling logistic', spec: 'logistic', truth: [2, 3, -1.5, 5], range: [0, 10], basins: ['level', 'scale', 'scale', 'where'] },
  {
    label: 'slow logistic, scattered x',
    spec: 'logistic',
    truth: [0, 100, 0.1, 40],
    range: [0, 100],
    basins: ['level', 'scale', 'scale', 'where'],
    options: { scattered: true, seed: 5 },
  },
  { label: 'power law', spec: 'power_law', truth: [2.5, 1.7], range: [0.1, 10], basins: ['scale', 'scale'] },
  { label: 'decaying negative power law', spec: 'power_law', truth: [-1.5, -0.8], range: [0.5, 20], basins: ['scale', 'scale'] },
  { label: 'square root over three decades', spec: 'power_law', truth: [3, 0.5], range: [1, 1000], basins: ['scale', 'scale'] },
  { label: 'line', spec: 'linear', truth: [2, -1], range: [0, 10], basins: ['scale', 'scale'] },
  { label: 'cubic', spec: 'poly3', truth: [1, -2, 0.5, 0.1], range: [-3, 5] },
  { label: 'quintic as { name, degree }', spec: { name: 'polynomial', degree: 5 }, truth: [0.5, 1, -3, 2, 0.5, -0.2], range: [0, 2.5] },
  { label: 'degree 8 far from the origin', spec: 'poly8', truth: [1, 0.1, 0, 0, 0, 0, 0, 0, 1e-16], range: [100, 110] },
];

function rms(model: CatalogModel, a: readonly number[], b: readonly number[], x: Float64Array): number {
  const reference = referenceFor(model);
  let sum = 0;
  for (const xi of x) sum += (reference(a, xi) - reference(b, xi)) ** 2;
  return Math.sqrt(sum / x.length);
}

describe('catalog models', () => {
  it('lists its names', () => {
    expect(catalogNames()).toEqual(
      expect.arrayContaining(['exponential', 'double_exponential', 'gaussian', 'lorentzian', 'logistic', 'power_law', 'polynomial', 'linear']),
    );
  });

  const specs = [...catalogNames().filter((name) => name !== 'polynomial'), 'poly1', 'poly2', 'poly7', 'poly20'];

  it.each(specs)('%s: expression names exactly its params and x, and compiles', (spec) => {
    const model = catalogModel(spec);
    expect(new Set(freeIdentifiers(model.expression))).toEqual(new Set([...model.params, 'x']));
    for (const name of model.params) {
      expect(['x', 'y', 'sigma', 'e', 'pi']).not.toContain(name);
      expect(kFunctions.has(name)).toBe(false);
      expect(model.paramDoc[name], `paramDoc of ${name}`).toBeTruthy();
    }
    expect(Object.keys(model.paramDoc).sort()).toEqual([...model.params].sort());
    expect(model.description.length).toBeGreaterThan(10);
    expect(model.description).not.toContain('\n');
    compileModel(model.expression, { params: model.params, columns: ['x', 'y', 'sigma'], reserved: ['y', 'sigma'] });
  });

  it.each(cases.map((c) => [c.label, c] as const))('%s: the expression computes the reference formula', (_, c) => {
    const model = catalogModel(c.spec);
    const compiled = compileModel(model.expression, { params: model.params, columns: ['x', 'y'], reserved: ['y'] });
    const xs = [c.range[0], (c.range[0] + c.range[1]) / 2, c.range[1]];
    for (const x of xs) {
      const expected = referenceFor(model)(c.truth, x);
      expect(evaluateCompiled(compiled, c.truth, [[x]], 0)).toBeCloseTo(expected, 8);
    }
  });
});

describe('catalog guesses land in the basin of the true parameters', () => {
  it.each(cases.map((c) => [c.label, c] as const))('%s', (_, c) => {
    const model = catalogModel(c.spec);
    const data = makeData(referenceFor(model), c.truth, c.range[0], c.range[1], c.options);
    const guess = model.guess(data.x, data.y);
    expect(guess).toHaveLength(model.params.length);
    const report = `${model.name}: guess [${guess.map((v) => v.toPrecision(4)).join(', ')}] for truth [${c.truth.join(', ')}]`;
    for (const [j, basin] of (c.basins ?? []).entries()) {
      const g = guess[j]!;
      const t = c.truth[j]!;
      const where = `${report}, ${model.params[j]}`;
      if (basin === 'scale') {
        expect(Math.sign(g), where).toBe(Math.sign(t));
        expect(g / t, where).toBeGreaterThanOrEqual(1 / 2.5);
        expect(g / t, where).toBeLessThanOrEqual(2.5);
      } else if (basin === 'where') {
        expect(Math.abs(g - t), where).toBeLessThanOrEqual(0.1 * data.xRange);
      } else {
        expect(Math.abs(g - t), where).toBeLessThanOrEqual(0.25 * data.yRange);
      }
    }
    // The guessed curve follows the true one: every model here is fitted well
    // enough that LM starts close to the answer.
    expect(rms(model, guess, c.truth, data.x), report).toBeLessThanOrEqual(0.1 * data.yRange);
  });

  it('does not depend on the order of the points', () => {
    const model = catalogModel('gaussian');
    const data = makeData(referenceFor(model), [4, 3, 0.5, 1], 0, 10, { n: 3000 });
    const order = Array.from({ length: data.x.length }, (_, i) => i);
    const uniform = uniformGenerator(99);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(uniform() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const x = Float64Array.from(order, (i) => data.x[i]!);
    const y = Float64Array.from(order, (i) => data.y[i]!);
    expect(model.guess(x, y)).toEqual(model.guess(data.x, data.y));
  });

  it(`reads a fixed stride of at most ${kMaxGuessPoints} points from long columns`, () => {
    const model = catalogModel('exponential');
    const n = 100 * kMaxGuessPoints;
    const data = makeData(referenceFor(model), [5, 0.7, 1.2], 0, 10, { n });
    const stride = (column: Float64Array) => Float64Array.from({ length: kMaxGuessPoints }, (_, i) => column[100 * i]!);
    const started = performance.now();
    const guess = model.guess(data.x, data.y);
    const elapsed = performance.now() - started;
    expect(guess).toEqual(model.guess(stride(data.x), stride(data.y)));
    expect(model.guess(data.x, data.y)).toEqual(guess);
    expect(elapsed).toBeLessThan(2000);
  });

  it('ignores non-finite points', () => {
    const model = catalogModel('logistic');
    const data = makeData(referenceFor(model), [1, 5, 2, 4], 0, 10);
    const y = Float64Array.from(data.y);
    const x = Float64Array.from(data.x);
    y[10] = NaN;
    y[20] = Infinity;
    x[30] = -Infinity;
    const keep = (_: number, i: number) => i !== 10 && i !== 20 && i !== 30;
    expect(model.guess(x, y)).toEqual(model.guess(data.x.filter(keep), data.y.filter(keep)));
  });
});

describe('fits started from the guess reach the optimum found from the truth', () => {
  // The basin test that matters: Levenberg-Marquardt from the guess ends
  // where it ends from the true parameters (a different local minimum would
  // be many standard errors away). Polynomials are linear problems.
  const nonlinear = cases.filter((c) => c.basins !== undefined && c.spec !== 'linear');
  it.each(nonlinear.map((c) => [c.label, c] as const))('%s', async (_, c) => {
    const model = catalogModel(c.spec);
    const data = makeData(referenceFor(model), c.truth, c.range[0], c.range[1], c.options);
    const fromGuess = await fit({ model: c.spec, data: { x: data.x, y: data.y } });
    const fromTruth = await fit({ model: c.spec, data: { x: data.x, y: data.y }, p0: c.truth });
    expect(fromGuess.success, fromGuess.message).toBe(true);
    expect(fromTruth.success, fromTruth.message).toBe(true);
    const offsets = model.params.map((name) => (fromGuess.params[name]! - fromTruth.params[name]!) / fromTruth.stderr[name]!);
    const report = `offsets in standard errors: ${offsets.map((d) => d.toExponential(1)).join(', ')}`;
    for (const offset of offsets) expect(Math.abs(offset), report).toBeLessThan(1e-4);
    expect(Math.abs(fromGuess.rss - fromTruth.rss)).toBeLessThanOrEqual(1e-10 * fromTruth.rss);
  }, 20_000);
});

describe('catalog guesses are finite on degenerate data', () => {
  const degenerate: [string, number[], number[]][] = [
    ['no points', [], []],
    ['one point', [2], [3]],
    ['two points', [1, 2], [5, 3]],
    ['two equal points', [1, 1], [4, 4]],
    ['three points', [0, 1, 2], [1, 4, 9]],
    ['constant y', Array.from({ length: 100 }, (_, i) => i), new Array(100).fill(7)],
    ['zero y', Array.from({ length: 100 }, (_, i) => i), new Array(100).fill(0)],
    ['all x equal', new Array(50).fill(3), Array.from({ length: 50 }, (_, i) => i % 7)],
    ['negative x and y', Array.from({ length: 60 }, (_, i) => -i - 1), Array.from({ length: 60 }, (_, i) => -Math.sqrt(i + 1))],
    ['alternating noise', Array.from({ length: 200 }, (_, i) => i / 10), Array.from({ length: 200 }, (_, i) => (i % 2 ? 1 : -1))],
    ['a single spike', Array.from({ length: 100 }, (_, i) => i), Array.from({ length: 100 }, (_, i) => (i === 40 ? 1 : 0))],
    ['huge values', Array.from({ length: 100 }, (_, i) => 1e150 * i), Array.from({ length: 100 }, (_, i) => 1e300 * (1 + (i % 3)))],
    ['tiny values', Array.from({ length: 100 }, (_, i) => 1e-300 * i), Array.from({ length: 100 }, (_, i) => 1e-300 * (i % 5))],
    ['only NaN', [NaN, NaN, 1], [1, 2, NaN]],
  ];
  const specs = [...catalogNames().filter((name) => name !== 'polynomial'), 'poly1', 'poly3', 'poly20'];
  for (const [label, x, y] of degenerate) {
    it.each(specs)(`${label}: %s`, (spec) => {
      const model = catalogModel(spec);
      const guess = model.guess(Float64Array.from(x), Float64Array.from(y));
      expect(guess).toHaveLength(model.params.length);
      for (const value of guess) expect(Number.isFinite(value), `${spec} on ${label}: [${guess.join(', ')}]`).toBe(true);
    });
  }

  it('refuses columns of different lengths', () => {
    expect(() => catalogModel('gaussian').guess(new Float64Array(3), new Float64Array(4))).toThrow(
      'Invalid data: x has 3 points but y has 4',
    );
  });
});

describe('catalog specs', () => {
  it('names the known models when a name is unknown', () => {
    const attempt = () => catalogModel('expo');
    expect(attempt).toThrow(RangeError);
    expect(attempt).toThrow(/^Invalid model: unknown catalog model "expo"; known models: exponential, double_exponential, gaussian/);
    expect(attempt).toThrow(/poly3/);
  });

  it('accepts polynomials as polyN or { name, degree }', () => {
    expect(catalogModel('poly3').expression).toBe('c0+c1*x+c2*x^2+c3*x^3');
    expect(catalogModel({ name: 'polynomial', degree: 3 }).params).toEqual(['c0', 'c1', 'c2', 'c3']);
    expect(catalogModel({ name: 'poly2' }).name).toBe('poly2');
    expect(catalogModel({ name: 'poly2', degree: 2 }).name).toBe('poly2');
    expect(catalogModel('poly20').params).toHaveLength(21);
    expect(catalogModel('linear').expression).toBe('a*x+b');
  });

  it('rejects bad degrees and misplaced ones', () => {
    expect(() => catalogModel('polynomial')).toThrow("Invalid model: polynomial needs a degree: 'poly3' or { name: 'polynomial', degree: 3 }");
    expect(() => catalogModel('poly0')).toThrow('Expected integer 1..20 for model.degree but received 0 of type number');
    expect(() => catalogModel('poly21')).toThrow(RangeError);
    expect(() => catalogModel({ name: 'polynomial', degree: 2.5 })).toThrow(
      'Expected integer 1..20 for model.degree but received 2.5 of type number',
    );
    expect(() => catalogModel({ name: 'polynomial', degree: '3' as unknown as number })).toThrow(TypeError);
    expect(() => catalogModel({ name: 'poly3', degree: 4 })).toThrow("Invalid model: 'poly3' has degree 3 but degree 4 was given");
    expect(() => catalogModel({ name: 'gaussian', degree: 2 })).toThrow("Invalid model: 'gaussian' takes no degree (only polynomial does)");
  });

  it('rejects specs of the wrong type', () => {
    expect(() => catalogModel(42 as unknown as string)).toThrow(
      'Expected a catalog model name or { name, degree } for model but received 42 of type number',
    );
    expect(() => catalogModel({ name: 7 } as unknown as { name: string })).toThrow(
      'Expected a catalog model name for model.name but received 7 of type number',
    );
  });

  it('tells catalog names from expressions', () => {
    for (const spec of ['exponential', 'poly7', 'poly99', 'polynomial', { name: 'gaussian' }, { name: 'polynomial', degree: 2 }]) {
      expect(isCatalogName(spec), JSON.stringify(spec)).toBe(true);
    }
    for (const spec of ['a*x+b', 'x', 'Gaussian', 'poly', 'poly3 ', '', 42, null, undefined, {}, ['gaussian'], { name: 3 }]) {
      expect(isCatalogName(spec), JSON.stringify(spec)).toBe(false);
    }
  });

  it('returns a fresh model each time', () => {
    const first = catalogModel('gaussian');
    first.params.push('zzz');
    first.paramDoc['a'] = 'changed';
    const second = catalogModel('gaussian');
    expect(second.params).toEqual(['a', 'mu', 's', 'c']);
    expect(second.paramDoc['a']).not.toBe('changed');
  });
});
