// The public fit() API: input validation, result fields, honest failures.
import { describe, expect, it } from 'vitest';
import { Engine, fit, ModelError } from '../dist/index.js';
import { toFloat64Column } from '../dist/data/columns.js';

const x = Array.from({ length: 40 }, (_, i) => i / 4);
const y = x.map((v) => 3 * Math.exp(-0.8 * v) + 0.5 + 0.01 * Math.sin(7 * v));
const good = { model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 1, b: 1, c: 0 } };

async function rejection(options: unknown): Promise<Error> {
  let promise: Promise<unknown> | undefined;
  expect(() => {
    promise = fit(options as Parameters<typeof fit>[0]);
  }).not.toThrow();
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the fit to reject');
}

describe('bad input is rejected with a message naming the problem', () => {
  it('an unfinished expression', async () => {
    const error = await rejection({ ...good, model: 'a*exp(' });
    expect(error).toBeInstanceOf(ModelError);
    expect(error.message).toMatch(/unexpected end/);
  });
  it('an unknown function', async () => {
    const error = await rejection({ ...good, model: 'foo(x)', p0: { a: 1 } });
    expect(error).toBeInstanceOf(ModelError);
    expect(error.message).toMatch(/unknown function 'foo'/);
    expect((error as ModelError).position).toBe(0);
  });
  it('an unknown identifier, with its position', async () => {
    const error = await rejection({ ...good, model: 'a*exp(-b*x)+q' });
    expect(error.message).toMatch(/unknown identifier 'q'/);
    expect((error as ModelError).position).toBe(12);
  });
  it('p0 of the wrong length', async () => {
    const error = await rejection({ ...good, p0: [1, 1] });
    expect(error).toBeInstanceOf(RangeError);
    expect(error.message).toMatch(/p0/);
    expect(error.message).toMatch(/3 values/);
  });
  it('a p0 entry the model does not use', async () => {
    const error = await rejection({ ...good, p0: { a: 1, b: 1, c: 0, d: 2 } });
    expect(error.message).toMatch(/'d' does not appear in the model/);
  });
  it('columns of different lengths', async () => {
    const error = await rejection({ ...good, data: { x, y: y.slice(1) } });
    expect(error.message).toMatch(/columns differ in length/);
  });
  it('NaN in y, with its index', async () => {
    const bad = y.slice();
    bad[17] = NaN;
    const error = await rejection({ ...good, data: { x, y: bad } });
    expect(error.message).toMatch(/data\.y/);
    expect(error.message).toMatch(/index 17/);
  });
  it("bad values in large data on the pool, found by the first pass's audit", async () => {
    const n = 200_000;
    const bigX = new Float64Array(n).map((_, i) => i / n);
    const bigY = bigX.map((v) => 2 * v + 1);
    bigX[n - 3] = NaN;
    await expect(fit({ model: 'a*x+b', data: { x: bigX, y: bigY }, p0: [1, 0], strategy: 'chunked' })).rejects.toThrow(
      /Invalid data\.x: value NaN at index 199997 is not finite/,
    );
    bigX[n - 3] = 0.5;
    const sigma = new Float64Array(n).fill(1);
    sigma[12345] = -1;
    await expect(fit({ model: 'a*x+b', data: { x: bigX, y: bigY, sigma }, p0: [1, 0], strategy: 'chunked' })).rejects.toThrow(
      /Invalid data\.sigma: value -1 at index 12345/,
    );
  });

  it('Infinity in a variable', async () => {
    const bad = x.slice();
    bad[3] = Infinity;
    const error = await rejection({ ...good, data: { x: bad, y } });
    expect(error.message).toMatch(/data\.x.*index 3/);
  });
  it('a sigma that is not positive', async () => {
    const error = await rejection({ ...good, data: { x, y, sigma: x.map((_, i) => (i === 5 ? 0 : 1)) } });
    expect(error.message).toMatch(/data\.sigma.*index 5/);
  });
  it('the response used inside the model', async () => {
    const error = await rejection({ ...good, model: 'a*y' , p0: { a: 1 } });
    expect(error.message).toMatch(/'y' is the response column/);
  });
  it('a missing response column', async () => {
    const error = await rejection({ ...good, data: { x } });
    expect(error.message).toMatch(/'y' is missing/);
  });
  it('an unknown option, with a suggestion', async () => {
    const error = await rejection({ ...good, ftoll: 1e-8 });
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toMatch(/Unknown fit option 'ftoll' \(did you mean 'ftol'\?\)/);
  });
  it('options of the wrong type or range', async () => {
    expect((await rejection({ ...good, maxFev: 1.5 })).message).toBe(
      'Expected positive integer for maxFev but received 1.5 of type number',
    );
    expect((await rejection({ ...good, ftol: -1 })).message).toMatch(/ftol/);
    expect((await rejection({ ...good, absoluteSigma: 'yes' })).message).toMatch(/absoluteSigma/);
    expect((await rejection({ ...good, strategy: 'fastest' })).message).toMatch(/strategy/);
    expect((await rejection({ ...good, threads: 0 })).message).toMatch(/threads/);
    expect((await rejection({ ...good, p0: { a: 1, b: NaN, c: 0 } })).message).toMatch(/p0\.b/);
  });
  it('more threads than the engine has', async () => {
    const engine = new Engine({ threads: 1 });
    await expect(engine.fit({ ...good, threads: 2 })).rejects.toThrow(/at most the engine's 1 threads/);
    await engine.close();
  });
  it('fewer points than parameters', async () => {
    const error = await rejection({ ...good, data: { x: [1, 2], y: [1, 2] } });
    expect(error.message).toMatch(/2 points cannot determine 3 parameters/);
  });
  it('a model that is not finite at p0, naming the point', async () => {
    const error = await rejection({ model: 'a*log(x - b)', data: { x, y }, p0: { a: 1, b: 1 } });
    expect(error.message).toMatch(/p0/);
    expect(error.message).toMatch(/at point 0 \(x = 0\)/);
  });
  it('a data column that is not numeric', async () => {
    const error = await rejection({ ...good, data: { x: x.map(String), y } });
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toMatch(/data\.x\[0\]/);
  });
  it('a data column the model does not use is still checked', async () => {
    const error = await rejection({ ...good, data: { x, y, note: x.map((v, i) => (i === 4 ? 'n/a' : v)) } });
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toMatch(/data\.note\[4\]/);
    const lengths = await rejection({ ...good, data: { x, y, note: new Float64Array(3) } });
    expect(lengths.message).toMatch(/columns differ in length/);
  });

  it('an expression model without p0', async () => {
    const error = await rejection({ model: good.model, data: good.data });
    expect(error.message).toMatch(/p0.*required/);
  });
});

describe('results', () => {
  it('reports a converged fit with consistent statistics', async () => {
    const r = await fit(good);
    expect(r.success).toBe(true);
    expect(r.paramNames).toEqual(['a', 'b', 'c']);
    expect(r.values).toBeInstanceOf(Float64Array);
    expect(r.params.a).toBeCloseTo(3, 1);
    expect(r.cost).toBe(r.rss / 2);
    expect(r.dof).toBe(37);
    expect(r.nPoints).toBe(40);
    expect(r.reducedChi2).toBeCloseTo(r.rss / 37, 15);
    expect(r.rmse).toBeCloseTo(Math.sqrt(r.rss / 40), 15);
    expect(r.aic).toBeCloseTo(40 * Math.log(r.rss / 40) + 6, 10);
    expect(r.bic).toBeCloseTo(40 * Math.log(r.rss / 40) + 3 * Math.log(40), 10);
    expect(r.rSquared).toBeGreaterThan(0.99);
    expect(r.covariance[0]![1]).toBe(r.covariance[1]![0]);
    expect(r.stderr.a).toBeCloseTo(Math.sqrt(r.covariance[0]![0]!), 15);
    expect(r.correlation[0]![0]).toBe(1);
    expect(r.iterations).toBeGreaterThan(0);
    expect(r.nfev).toBeGreaterThanOrEqual(r.njev);
    expect(r.strategy).toBe('standard');
    expect(r.summary()).toMatch(/\[\[Variables\]\][\s\S]*a\s+=/);
    expect(JSON.parse(JSON.stringify(r)).params.a).toBe(r.params.a);
  });

  it('p0 as an array follows the order of appearance', async () => {
    const r = await fit({ ...good, p0: [1, 1, 0] });
    const named = await fit(good);
    expect(Array.from(r.values)).toEqual(Array.from(named.values));
  });

  it('accepts plain arrays, Float64Array and Float32Array alike', async () => {
    const x32 = Float32Array.from(x);
    const y32 = Float32Array.from(y);
    const a = await fit({ ...good, data: { x: x32, y: y32 } });
    const b = await fit({ ...good, data: { x: Array.from(x32), y: Array.from(y32) } });
    const c = await fit({ ...good, data: { x: Float64Array.from(x32), y: Float64Array.from(y32) } });
    expect(Array.from(a.values)).toEqual(Array.from(b.values));
    expect(Array.from(a.values)).toEqual(Array.from(c.values));
  });

  it('fits several independent variables', async () => {
    const x1 = Array.from({ length: 60 }, (_, i) => (i % 10) / 2);
    const x2 = Array.from({ length: 60 }, (_, i) => Math.floor(i / 10));
    const yy = x1.map((v, i) => 2 - 0.5 * v * Math.exp(-0.3 * x2[i]!));
    const r = await fit({ model: 'b1-b2*x1*exp(-b3*x2)', data: { x1, x2, y: yy }, p0: { b1: 1, b2: 1, b3: 1 } });
    expect(r.success).toBe(true);
    expect(r.params.b1).toBeCloseTo(2, 8);
    expect(r.params.b2).toBeCloseTo(0.5, 8);
    expect(r.params.b3).toBeCloseTo(0.3, 8);
  });

  it('fits a catalog model without p0', async () => {
    const r = await fit({ model: 'exponential', data: { x, y } });
    expect(r.success).toBe(true);
    expect(r.params.b).toBeCloseTo(0.8, 1);
  });

  it('an evaluation limit ends the fit honestly', async () => {
    const r = await fit({ ...good, p0: { a: 100, b: 10, c: 50 }, maxFev: 2 });
    expect(r.success).toBe(false);
    expect(r.status).toBe('max_fev');
    expect(r.nfev).toBe(2);
    expect(r.message).toMatch(/maxFev = 2/);
    // The parameters are the best point actually evaluated, not invented ones.
    for (const v of r.values) expect(Number.isFinite(v)).toBe(true);
  });

  it('says so when the model is not finite around the parameters it reached', async () => {
    // The data want c = 1, but sqrt(x - c) is NaN for c > 0 at x = 0.
    const xs = Array.from({ length: 50 }, (_, i) => 0.2 * i);
    const ys = xs.map((v) => (v < 1 ? 0 : 2 * Math.sqrt(v - 1)));
    const r = await fit({ model: 'a*sqrt(x - c)', data: { x: xs, y: ys }, p0: { a: 1, c: -0.5 } });
    // Whichever way it ends (at the edge of the domain, like an active bound,
    // or out of evaluations), it stays where the model is finite and says
    // that trial points were rejected.
    expect(r.params.c).toBeLessThanOrEqual(0);
    expect(Number.isFinite(r.rss)).toBe(true);
    expect(r.message).toMatch(/\d+ trial points gave non-finite model values or derivatives/);
    if (!r.success) expect(['max_fev', 'nonfinite_edge']).toContain(r.status);
  });

  it('gives an infinite covariance where it does not exist', async () => {
    const r = await fit({ model: 'a*b*x+c', data: { x, y }, p0: { a: 1, b: 2, c: 0 } });
    expect(r.rank).toBe(2);
    expect(r.covariance.flat().every((v) => v === Infinity)).toBe(true);
    expect(r.stderr.a).toBe(Infinity);
  });

  it('uses a SharedArrayBuffer-backed Float64Array without copying it, and copies anything else once', () => {
    const shared = new Float64Array(new SharedArrayBuffer(8 * 4)).fill(2);
    expect(toFloat64Column(shared, 'data.x')).toBe(shared);
    const plain = Float64Array.from([1, 2, 3]);
    const copied = toFloat64Column(plain, 'data.x');
    expect(copied).not.toBe(plain);
    expect(copied.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Array.from(copied)).toEqual([1, 2, 3]);
  });

  it('has no scaled covariance without degrees of freedom', async () => {
    const r = await fit({ model: 'a*exp(-b*x)+c', data: { x: [0, 1, 2], y: [4, 2, 1.5] }, p0: [3, 1, 1] });
    expect(r.dof).toBe(0);
    expect(r.reducedChi2).toBe(Infinity);
    expect(r.covariance.flat().every((v) => v === Infinity)).toBe(true);
    const absolute = await fit({ model: 'a*exp(-b*x)+c', data: { x: [0, 1, 2], y: [4, 2, 1.5] }, p0: [3, 1, 1], absoluteSigma: true });
    expect(Number.isFinite(absolute.covariance[0]![0])).toBe(true);
  });

  it('absoluteSigma keeps the covariance as given by sigma', async () => {
    const sigma = x.map(() => 0.02);
    const relative = await fit({ ...good, data: { x, y, sigma } });
    const absolute = await fit({ ...good, data: { x, y, sigma }, absoluteSigma: true });
    expect(Array.from(relative.values)).toEqual(Array.from(absolute.values));
    const ratio = relative.covariance[0]![0]! / absolute.covariance[0]![0]!;
    expect(ratio).toBeCloseTo(relative.reducedChi2, 10);
  });
});
