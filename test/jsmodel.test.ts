// Models given as JavaScript functions (model: { module, export, kind, params,
// variables, jacobian?, diff? }): the same answers as the expression of the
// same model, the same bits on every evaluator, the user's errors surfaced,
// and every feature that does not depend on the bytecode still working.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine, fit, type FitResult } from '../dist/index.js';
import { loadAddon } from '../dist/native.js';

const dir = mkdtempSync(join(tmpdir(), 'nlfit-jsmodel-'));
const engine = new Engine({ threads: 2 });
afterAll(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

// Shared state goes through globalThis: the test and the library may hold different instances of a module.
const modelsPath = join(dir, 'models.mjs');
writeFileSync(
  modelsPath,
  `
export function decay(vars, p) { return p[0] * Math.exp(-p[1] * vars[0]) + p[2]; }
export function decayGradient(vars, p, grad) {
  const e = Math.exp(-p[1] * vars[0]);
  grad[0] = e; grad[1] = -p[0] * vars[0] * e; grad[2] = 1;
}
export function decayBlock(vars, p, out) {
  const x = vars[0];
  for (let i = 0; i < out.length; i++) out[i] = p[0] * Math.exp(-p[1] * x[i]) + p[2];
}
export function decayBlockJacobian(vars, p, jac) {
  const x = vars[0];
  for (let i = 0; i < x.length; i++) {
    const e = Math.exp(-p[1] * x[i]);
    jac[0][i] = e; jac[1][i] = -p[0] * x[i] * e; jac[2][i] = 1;
  }
}
export function hahn(vars, b) {
  const x = vars[0], xx = x * x, xxx = xx * x;
  return (b[0] + b[1] * x + b[2] * xx + b[3] * xxx) / (1 + b[4] * x + b[5] * xx + b[6] * xxx);
}
export function hahnGradient(vars, b, grad) {
  const x = vars[0], xx = x * x, xxx = xx * x;
  const den = 1 + b[4] * x + b[5] * xx + b[6] * xxx;
  const num = b[0] + b[1] * x + b[2] * xx + b[3] * xxx;
  grad[0] = 1 / den; grad[1] = x / den; grad[2] = xx / den; grad[3] = xxx / den;
  const g = -num / (den * den);
  grad[4] = x * g; grad[5] = xx * g; grad[6] = xxx * g;
}
export function logShift(vars, p) { return p[1] * Math.log(vars[0] - p[0]); }
export function explode(vars, p) {
  if (vars[0] > 2) {
    const error = new TypeError('no model beyond x = 2');
    (globalThis.nlfitThrown ??= []).push(error);
    throw error;
  }
  return p[0] * vars[0] + p[1];
}
export function probe(vars, p) {
  if (vars[0] === 0) (globalThis.nlfitProbe ??= []).push(Array.from(p));
  return p[0] + p[1] * vars[0] + p[2] * vars[0] * vars[0];
}
export const notAFunction = 42;
`,
);

/** Deterministic noisy decay data, n points, with sigma. */
function decayData(n: number): { x: Float64Array; y: Float64Array; sigma: Float64Array } {
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  const sigma = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = (5 * i) / n;
    sigma[i] = 0.05 + 0.02 * Math.cos(0.37 * i);
    y[i] = 2.5 * Math.exp(-1.3 * x[i]!) + 0.5 + sigma[i]! * Math.sin(12.9898 * i);
  }
  return { x, y, sigma };
}

const decay = { module: modelsPath, export: 'decay', params: ['a', 'b', 'c'], variables: ['x'] };
const decayBlock = { ...decay, export: 'decayBlock', kind: 'block' as const };
const data = decayData(20_000);
const base = { data, p0: { a: 1, b: 1, c: 0 } };

function bits(values: Float64Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex');
}

function maxRelative(a: Float64Array, b: Float64Array): number {
  return Math.max(...Array.from(a, (v, i) => Math.abs(v / b[i]! - 1)));
}

async function rejection(promise: Promise<unknown>): Promise<Error & { cause?: unknown }> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the fit to reject');
}

describe('a JavaScript model fits what its expression fits', () => {
  let expression: FitResult;
  it('expression reference', async () => {
    expression = await fit({ ...base, model: 'a*exp(-b*x)+c' });
    expect(expression.success).toBe(true);
  });

  for (const [name, spec] of [
    ['point, 2-point', decay],
    ['point, 3-point', { ...decay, diff: '3-point' as const }],
    ['block, 2-point', decayBlock],
    ['block, 3-point', { ...decayBlock, diff: '3-point' as const }],
  ] as const) {
    it(`finite differences (${name}) within 1e-8`, async () => {
      const r = await fit({ ...base, model: spec });
      expect(r.success, r.message).toBe(true);
      expect(maxRelative(r.values, expression.values)).toBeLessThan(1e-8);
      expect(maxRelative(Float64Array.from(r.paramNames, (p) => r.stderr[p]!), Float64Array.from(expression.paramNames, (p) => expression.stderr[p]!))).toBeLessThan(1e-6);
    });
  }

  for (const [name, spec] of [
    ['point', { ...decay, jacobian: 'decayGradient' }],
    ['block', { ...decayBlock, jacobian: 'decayBlockJacobian' }],
  ] as const) {
    it(`analytic Jacobian (${name}) within 1e-12`, async () => {
      const r = await fit({ ...base, model: spec });
      expect(maxRelative(r.values, expression.values)).toBeLessThan(1e-12);
      expect(r.model).toBe(`${spec.export} (${pathToFileURL(modelsPath).href})`);
    });
  }

  it("'point' and 'block' give the same bits for the same arithmetic", async () => {
    for (const extra of [{}, { diff: '3-point' as const }]) {
      const point = await fit({ ...base, model: { ...decay, ...extra } });
      const block = await fit({ ...base, model: { ...decayBlock, ...extra } });
      expect(bits(block.values)).toBe(bits(point.values));
    }
    const point = await fit({ ...base, model: { ...decay, jacobian: 'decayGradient' } });
    const block = await fit({ ...base, model: { ...decayBlock, jacobian: 'decayBlockJacobian' } });
    expect(bits(block.values)).toBe(bits(point.values));
  });
});

interface NistProblem {
  model: string;
  params: string[];
  start1: number[];
  start2: number[];
  certified_values: number[];
  certified_std_errors: number[];
  data: Record<string, number[]>;
}

describe('NIST Hahn1 (parameters from 1.1 down to -1.2e-7)', () => {
  const hahn1 = JSON.parse(readFileSync(new URL('./fixtures/nist/Hahn1.json', import.meta.url), 'utf8')) as NistProblem;
  const lre = (estimate: number, certified: number): number => Math.min(11, -Math.log10(Math.abs(estimate - certified) / Math.abs(certified)));
  const model = { module: modelsPath, export: 'hahn', params: hahn1.params, variables: ['x'] };

  for (const start of ['start1', 'start2'] as const) {
    it(`from ${start}: analytic within 1e-12 of the expression; finite differences solve it (LRE >= 6 / 6.5)`, async () => {
      const options = { data: hahn1.data, p0: hahn1[start] };
      const expression = await fit({ ...options, model: hahn1.model });
      const analytic = await fit({ ...options, model: { ...model, jacobian: 'hahnGradient' } });
      expect(maxRelative(analytic.values, expression.values)).toBeLessThan(1e-12);
      // Forward differences are accurate to about sqrt(eps) relative, and
      // Hahn1's condition number (1.5e9) turns that into a fixed point about
      // 1.2e-6 from the optimum (first order: (J'J)^-1 dJ' r); central ones
      // to eps^(2/3), 1e-9. Near the optimum the sum of squares is flat to
      // rounding over ~1e-7 (two expression fits from the two starts end
      // 4e-8 apart), so agreement is judged against the certified values,
      // with NIST's bar (LRE 6) and a margin below it for forward differences.
      for (const [diff, bar, agreement] of [
        ['2-point', 5.5, 2e-6],
        ['3-point', 6.5, 5e-7],
      ] as const) {
        const r = await fit({ ...options, model: { ...model, diff } });
        const context = `${diff}: ${r.status} after ${r.nfev} evaluations`;
        expect(r.success, context).toBe(true);
        expect(Math.min(...hahn1.params.map((name, i) => lre(r.params[name]!, hahn1.certified_values[i]!))), context).toBeGreaterThanOrEqual(bar);
        expect(Math.min(...hahn1.params.map((name, i) => lre(r.stderr[name]!, hahn1.certified_std_errors[i]!))), context).toBeGreaterThanOrEqual(4);
        expect(maxRelative(r.values, expression.values), context).toBeLessThan(agreement);
      }
    }, 20_000);
  }

  it('steps each parameter relative to its own size (a parameter of 1e-7 moves by ~1e-15, not 1.5e-8)', async () => {
    const x = Float64Array.from({ length: 50 }, (_, i) => i / 10);
    const y = Float64Array.from(x, (v) => 3 - 1.2e-7 * v + 0.01 * v * v + 0.001 * Math.sin(9 * v));
    const theta = [3, -1.2e-7, 0];
    const g = globalThis as { nlfitProbe?: number[][] };
    for (const [diff, relative] of [
      ['2-point', Math.sqrt(Number.EPSILON)],
      ['3-point', Math.cbrt(Number.EPSILON)],
    ] as const) {
      g.nlfitProbe = [];
      await fit({
        model: { module: modelsPath, export: 'probe', params: ['p0', 'p1', 'p2'], variables: ['x'], diff },
        data: { x, y },
        p0: theta,
        maxFev: 1,
        strategy: 'standard',
      });
      // The first pass: theta, then per parameter the forward point (2-point) or both sides (3-point).
      const first = g.nlfitProbe.slice(0, diff === '2-point' ? 4 : 7);
      expect(first[0]).toEqual(theta);
      for (let j = 0; j < 3; j++) {
        const steps = first.slice(1).map((params) => params[j]! - theta[j]!).filter((d) => d !== 0);
        const h = relative * (theta[j] === 0 ? 1 : Math.abs(theta[j]!));
        expect(steps.length, `${diff} parameter ${j}`).toBe(diff === '2-point' ? 1 : 2);
        for (const step of steps) expect(Math.abs(Math.abs(step) / h - 1), `${diff} parameter ${j}: step ${step}`).toBeLessThan(1e-6);
        // 2-point steps away from 0: a negative parameter steps down.
        if (diff === '2-point') expect(Math.sign(steps[0]!)).toBe(theta[j]! < 0 ? -1 : 1);
      }
    }
  });
});

describe('the same bits on every evaluator', () => {
  const n = 40 * 512 + 123;
  const shared = decayData(n);
  for (const [name, model, extra] of [
    ['point, 2-point', decay, {}],
    ['block, 3-point, soft_l1 loss', { ...decayBlock, diff: '3-point' as const }, { loss: 'soft_l1' as const, fScale: 1 }],
    ['point, analytic', { ...decay, jacobian: 'decayGradient' }, {}],
  ] as const) {
    it(`${name}: inline, pooled (2 threads, several chunk sizes) and streaming agree to the last bit`, async () => {
      const options = { data: shared, p0: { a: 1, b: 1, c: 0 }, model, ...extra };
      const runs = [
        { strategy: 'standard' as const },
        { strategy: 'chunked' as const, threads: 2 },
        { strategy: 'chunked' as const, threads: 2, chunkSize: 512 },
        { strategy: 'chunked' as const, threads: 2, chunkSize: 512 * 7 + 1 },
        { strategy: 'chunked' as const, threads: 1, chunkSize: 5000 },
        { strategy: 'streaming' as const, chunkSize: 512 * 5 },
        { strategy: 'streaming' as const, chunkSize: 512 * 11 + 3 },
      ];
      const results: FitResult[] = [];
      for (const run of runs) results.push(await engine.fit({ ...options, ...run }));
      const reference = results[0]!;
      expect(reference.success, reference.message).toBe(true);
      results.forEach((r, i) => {
        const label = JSON.stringify(runs[i]);
        expect(r.strategy, label).toBe(runs[i]!.strategy);
        expect(bits(r.values), label).toBe(bits(reference.values));
        expect(r.covariance, label).toEqual(reference.covariance);
        expect(r.cost, label).toBe(reference.cost);
        expect(r.rSquared, label).toBe(reference.rSquared);
        expect(r.nfev, label).toBe(reference.nfev);
      });
    }, 60_000);
  }
});

describe('errors', () => {
  const exploding = { data: { x: [0, 0.5, 1, 1.5, 2, 2.5, 3], y: [1, 2, 3, 4, 5, 6, 7] }, p0: { a: 1, b: 0 } };
  const explode = { module: modelsPath, export: 'explode', params: ['a', 'b'], variables: ['x'] };

  it("a function that throws rejects the fit with its error (inline: the very error as the cause)", async () => {
    const g = globalThis as { nlfitThrown?: Error[] };
    g.nlfitThrown = [];
    const error = await rejection(fit({ ...exploding, model: explode, strategy: 'standard' }));
    expect(error.message).toBe("nlfit: model.export 'explode' threw at point 5 (x = 2.5): no model beyond x = 2");
    expect(error.cause).toBe(g.nlfitThrown.at(-1));
  });

  for (const strategy of ['chunked', 'streaming'] as const) {
    it(`a function that throws in a worker (${strategy}) rejects the fit with its error, cloned, as the cause`, async () => {
      const error = await rejection(engine.fit({ ...exploding, model: explode, strategy }));
      expect(error.message).toBe("nlfit: model.export 'explode' threw at point 5 (x = 2.5): no model beyond x = 2");
      expect(error.cause).toBeInstanceOf(TypeError);
      expect((error.cause as Error).message).toBe('no model beyond x = 2');
    });
  }

  it('a module that cannot be imported names model.module', async () => {
    const missing = join(dir, 'missing.mjs');
    const error = await rejection(fit({ ...base, model: { ...decay, module: missing } }));
    expect(error).toBeInstanceOf(RangeError);
    expect(error.message).toMatch(/^Invalid model\.module: cannot import file:.*missing\.mjs: /);
    expect(error.cause).toBeInstanceOf(Error);
    const broken = join(dir, 'broken.mjs');
    writeFileSync(broken, 'export function f( {');
    const syntax = await rejection(fit({ ...base, model: { ...decay, module: broken } }));
    expect(syntax.message).toMatch(/^Invalid model\.module: cannot import file:.*broken\.mjs: ./);
    expect(syntax.cause).toBeInstanceOf(Error);
  });

  it('a relative or non-file module names model.module', async () => {
    expect((await rejection(fit({ ...base, model: { ...decay, module: 'models.mjs' } }))).message).toMatch(/^Invalid model\.module: "models\.mjs" is relative/);
    expect((await rejection(fit({ ...base, model: { ...decay, module: new URL('https://example.com/m.mjs') } }))).message).toMatch(/^Invalid model\.module: .* is not a file: URL/);
  });

  it('an export that is missing or not a function names model.export / model.jacobian', async () => {
    const missing = await rejection(fit({ ...base, model: { ...decay, export: 'decy' } }));
    expect(missing.message).toMatch(/^Invalid model\.export: 'decy' is not a function: .* exports nothing by that name \(its exports: .*decay.*\); did you mean 'decay'\?$/);
    expect((await rejection(fit({ ...base, model: { ...decay, export: 'notAFunction' } }))).message).toMatch(
      /^Invalid model\.export: 'notAFunction' is not a function: .* exports 42 of type number by that name/,
    );
    expect((await rejection(fit({ ...base, model: { ...decay, jacobian: 'nope' } }))).message).toMatch(/^Invalid model\.jacobian: 'nope' is not a function/);
  });

  it('a bad spec names its field', async () => {
    const cases: Array<[object, RegExp]> = [
      [{ ...decay, kinds: 'point' }, /^Unknown model option 'kinds' \(did you mean 'kind'\?\)/],
      [{ ...decay, kind: 'row' }, /model\.kind/],
      [{ ...decay, params: ['a', 'a', 'c'] }, /^Invalid model\.params\[1\]: 'a' is listed twice/],
      [{ ...decay, variables: ['t'] }, /^Invalid model\.variables\[0\]: 't' is not a data column \(columns: x\)/],
      [{ ...decay, variables: ['y'] }, /^Invalid model\.variables\[0\]: 'y' is the response column/],
      [{ ...decay, diff: '5-point' }, /model\.diff/],
      [{ ...decay, diff: '3-point', jacobian: 'decayGradient' }, /^Invalid model\.diff: chooses finite differences, and model\.jacobian/],
    ];
    for (const [model, message] of cases) {
      expect((await rejection(fit({ ...base, data: { x: data.x, y: data.y }, model } as never))).message).toMatch(message);
    }
    expect((await rejection(fit({ data: base.data, model: decay }))).message).toMatch(/^Invalid p0: starting values are required for a JavaScript model/);
    expect((await rejection(fit({ ...base, p0: { a: 1, b: 1 }, model: decay }))).message).toMatch(/^Invalid p0: no starting value for 'c'/);
    expect((await rejection(fit({ ...base, p0: { a: 1, b: 1, c: 0, k: 1 }, model: decay }))).message).toMatch(/^Invalid p0: 'k' is not in model\.params/);
    expect((await rejection(fit({ ...base, model: decay, expr: { c: '2*a' } }))).message).toMatch(/^Invalid expr: applies to expression models/);
  });

  it('the addon checks reduceBlocks arguments and throws, never crashes', () => {
    const addon = loadAddon();
    const q = 3;
    const blocks = new Float64Array(2 * 512 * q);
    expect(addon.reduceBlocks(blocks, q, 1000, 0, 2).length).toBeGreaterThan(q * q);
    expect(() => addon.reduceBlocks(blocks.subarray(1), q, 1000, 0, 2)).toThrow(RangeError);
    expect(() => addon.reduceBlocks(blocks, q, 1000, 1, 2)).toThrow(RangeError);
    expect(() => addon.reduceBlocks(blocks, 1, 1000, 0, 1)).toThrow(RangeError);
    expect(() => addon.reduceBlocks([] as unknown as Float64Array, q, 1000, 0, 1)).toThrow(TypeError);
    expect(() => addon.reduceBlocks(blocks, q, 1000, 0, 1, { moments: new Float64Array(6) })).toThrow(TypeError);
    expect(() => addon.reduceBlocks(blocks, q, 1000, 0, 1, { moments: new Float64Array(6), vars: [new Float64Array(10)], y: new Float64Array(1000) })).toThrow(
      /variable column shorter/,
    );
    expect(() => addon.reduceBlocks(blocks, q, 1000, 0, 1, { loss: 3 })).toThrow(/costs/);
    expect(() => addon.reduceBlocks(blocks, q, 1000, 1, 1, { rowOffset: 100 })).toThrow(/multiple of the block size/);
  });

  it('non-finite values at p0 give the same error as the expression', async () => {
    const options = { data: { x: [3, 2, 1, 0.5, 4], y: [1, 2, 3, 4, 5] }, p0: { a: 1, k: 2 } };
    const fromExpression = await rejection(fit({ ...options, model: 'k*log(x - a)' }));
    const fromFunction = await rejection(fit({ ...options, model: { module: modelsPath, export: 'logShift', params: ['a', 'k'], variables: ['x'] } }));
    expect(fromExpression.message).toMatch(/^Invalid p0: the model is -Infinity at point 2 \(x = 1\)/);
    expect(fromFunction.message).toBe(fromExpression.message);
  });
});

describe('the features that do not need the bytecode', () => {
  it('a robust loss and bounds match the expression', async () => {
    const outliers = decayData(5000);
    for (let i = 0; i < outliers.y.length; i += 50) outliers.y[i]! += 2;
    const robust = { data: outliers, p0: { a: 1, b: 1, c: 0 }, loss: 'cauchy' as const, fScale: 0.05 };
    const expression = await fit({ ...robust, model: 'a*exp(-b*x)+c' });
    const js = await fit({ ...robust, model: { ...decay, diff: '3-point' } });
    expect(js.loss).toEqual({ name: 'cauchy', fScale: 0.05 });
    expect(maxRelative(js.values, expression.values)).toBeLessThan(1e-8);

    const bounded = { ...base, bounds: { b: [1.4, 3] as [number, number] } };
    const boundedExpression = await fit({ ...bounded, model: 'a*exp(-b*x)+c' });
    const boundedJs = await fit({ ...bounded, model: decay });
    expect(boundedJs.params.b).toBe(1.4);
    expect(Array.from(boundedJs.activeMask!)).toEqual(Array.from(boundedExpression.activeMask!));
    expect(maxRelative(boundedJs.values, boundedExpression.values)).toBeLessThan(1e-8);
  });

  it('fixed parameters are held at their values and passed to the function', async () => {
    const expression = await fit({ ...base, model: 'a*exp(-b*x)+c', p0: { a: 1, b: 1, c: 0.45 }, fixed: ['c'] });
    const js = await fit({ ...base, model: { ...decay, jacobian: 'decayGradient' }, p0: { a: 1, b: 1, c: 0.45 }, fixed: ['c'] });
    expect(js.paramNames).toEqual(['a', 'b']);
    expect(maxRelative(js.values, expression.values)).toBeLessThan(1e-12);
  });

  it('predict, band and export evaluate the function', async () => {
    const r = await fit({ ...base, model: decayBlock });
    const expression = await fit({ ...base, model: 'a*exp(-b*x)+c' });
    const grid = Float64Array.from({ length: 700 }, (_, i) => i / 100);
    const predicted = r.predict({ x: grid });
    const [a, b, c] = r.values;
    expect(Array.from(predicted)).toEqual(Array.from(grid, (x) => a! * Math.exp(-b! * x) + c!));
    const band = r.band(grid, { level: 0.95 });
    const reference = expression.band(grid, { level: 0.95 });
    for (let i = 0; i < grid.length; i += 50) {
      expect(Math.abs(band.upper[i]! - band.fitted[i]!) / Math.abs(reference.upper[i]! - reference.fitted[i]!) - 1).toBeLessThan(1e-5);
    }
    const path = join(dir, 'fit.csv');
    const exported = await fit({ ...base, model: decayBlock, export: { path, columns: ['x', 'fitted'] } });
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('x,fitted');
    expect(lines.length).toBe(data.x.length + 1);
    const fitted = exported.predict({ x: data.x });
    for (const i of [0, 1, 511, 512, 19_999]) expect(lines[i + 1]).toBe(`${data.x[i]},${fitted[i]}`);
  });

  it('transform and where feed the function the derived rows', async () => {
    const counts = Float64Array.from(data.y, (v) => v + 1);
    const kept = Array.from(data.x.keys()).filter((i) => data.x[i]! < 4);
    const derived = await fit({
      data: { x: data.x, y: counts },
      transform: { y: 'y - 1' },
      where: 'x < 4',
      p0: base.p0,
      model: decay,
    });
    const direct = await fit({ data: { x: kept.map((i) => data.x[i]!), y: kept.map((i) => counts[i]! - 1) }, p0: base.p0, model: decay });
    expect(derived.execution.droppedRows).toBe(data.x.length - kept.length);
    expect(bits(derived.values)).toBe(bits(direct.values));
  });
});
