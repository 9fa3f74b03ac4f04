// Comparisons and logical operators end to end: the kernel's values against
// the TypeScript reference (and constant folding) bit for bit, exactly zero
// tangents, and a piecewise model fitted through the public API.
import { describe, expect, it } from 'vitest';
import { fit } from '../../dist/index.js';
import { loadAddon } from '../../dist/native.js';
import { applyBinary, applyUnary, compileModel, evaluateCompiled, Op, type BinaryOp, type CompiledModel, type UnaryOp } from '../../dist/model/index.js';

const addon = loadAddon();

/** Model values from the native kernel for columns given in `model.variableNames` order. */
function kernelValues(model: CompiledModel, params: number[], columns: Record<string, Float64Array>, count: number): Float64Array {
  const kernel = new addon.Kernel(model.code, model.consts);
  const out = new Float64Array(count);
  kernel.predict(Float64Array.from(params), model.variableNames.map((name) => columns[name]!), 0, count, out);
  return out;
}

/** The value as a literal the language reads back exactly. */
function literal(v: number): string {
  if (Number.isNaN(v)) return '(0/0)';
  if (v === Infinity) return '(1/0)';
  if (v === -Infinity) return '(-1/0)';
  if (Object.is(v, -0)) return '(-0)';
  return `(${String(v)})`;
}

const special = [NaN, -Infinity, -1, -0, 0, 5e-324, 0.5, 1, 2, Infinity];

// Opcodes whose results are exactly rounded (or exact), so V8 and the C++
// kernel must agree to the bit; transcendental functions may differ by an ulp.
const binary: [string, BinaryOp, (a: string, b: string) => string][] = [
  ['<', Op.Lt, (a, b) => `${a} < ${b}`],
  ['<=', Op.Le, (a, b) => `${a} <= ${b}`],
  ['>', Op.Gt, (a, b) => `${a} > ${b}`],
  ['>=', Op.Ge, (a, b) => `${a} >= ${b}`],
  ['==', Op.Eq, (a, b) => `${a} == ${b}`],
  ['!=', Op.Ne, (a, b) => `${a} != ${b}`],
  ['&&', Op.And, (a, b) => `${a} && ${b}`],
  ['||', Op.Or, (a, b) => `${a} || ${b}`],
  ['min', Op.Min, (a, b) => `min(${a}, ${b})`],
  ['max', Op.Max, (a, b) => `max(${a}, ${b})`],
  ['+', Op.Add, (a, b) => `${a} + ${b}`],
  ['*', Op.Mul, (a, b) => `${a} * ${b}`],
  ['/', Op.Div, (a, b) => `${a} / ${b}`],
];
const unary: [string, UnaryOp, (a: string) => string][] = [
  ['!', Op.Not, (a) => `!${a}`],
  ['-', Op.Neg, (a) => `-${a}`],
  ['abs', Op.Abs, (a) => `abs(${a})`],
  ['sqrt', Op.Sqrt, (a) => `sqrt(${a})`],
];

describe('the kernel computes what the compiler folds', () => {
  const xs = new Float64Array(special.length ** 2);
  const zs = new Float64Array(special.length ** 2);
  special.forEach((a, i) => special.forEach((b, j) => ((xs[i * special.length + j] = a), (zs[i * special.length + j] = b))));
  const columns = { x: xs, z: zs };

  it.each(binary)('%s on every pair of special values', (_, op, source) => {
    const model = compileModel(source('x', 'z'), { params: [], columns: ['x', 'z'] });
    const values = kernelValues(model, [], columns, xs.length);
    for (let i = 0; i < xs.length; i++) {
      const [a, b] = [xs[i]!, zs[i]!];
      const folded = compileModel(source(literal(a), literal(b)), { params: [], columns: [] });
      expect(folded.code[2], 'folds to one constant').toBe(1);
      const where = `${source(literal(a), literal(b))}: kernel ${values[i]}, folded ${folded.consts[0]}`;
      expect(Object.is(values[i], folded.consts[0]), where).toBe(true);
      expect(Object.is(values[i], applyBinary(op, a, b)), where).toBe(true);
      expect(Object.is(values[i], evaluateCompiled(model, [], [xs, zs], i)), where).toBe(true);
    }
  });

  it.each(unary)('%s on every special value', (_, op, source) => {
    const model = compileModel(source('x'), { params: [], columns: ['x'] });
    const values = kernelValues(model, [], { x: Float64Array.from(special) }, special.length);
    special.forEach((a, i) => {
      const folded = compileModel(source(literal(a)), { params: [], columns: [] });
      expect(Object.is(values[i], folded.consts[0]), `${source(literal(a))}`).toBe(true);
      expect(Object.is(values[i], applyUnary(op, a)), `${source(literal(a))}`).toBe(true);
    });
  });

  it('conditions on parameters alone (the scalar prelude) agree with the block loops', () => {
    const params = ['a', 'b'];
    for (const [name, , source] of binary.slice(0, 8)) {
      const scalar = compileModel(source('a', 'b'), { params, columns: ['x'] });
      const block = compileModel(`${source('x', 'z')}`, { params: [], columns: ['x', 'z'] });
      const blockValues = kernelValues(block, [], columns, xs.length);
      for (let i = 0; i < xs.length; i++) {
        const value = kernelValues(scalar, [xs[i]!, zs[i]!], {}, 1)[0];
        expect(Object.is(value, blockValues[i]), `${name}(${xs[i]}, ${zs[i]})`).toBe(true);
      }
    }
  });
});

describe('piecewise models in the kernel', () => {
  const n = 3000;
  const x = Float64Array.from({ length: n }, (_, i) => (i % 97 === 0 ? NaN : Math.sin(i * 0.37) * 3));
  const z = Float64Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 0 : Math.cos(i * 0.11)));
  const params = ['a', 'b', 'c'];
  const theta = [1.5, -0.25, 0.75];

  it.each([
    'a*(x > b) + c*(x <= b)',
    '(x > 0 && x < 1) * exp(-a*x) + (x >= 1 || x <= 0) * b',
    '!(x > a) * c + min(x > 0, a) - (z != 0)',
    '(x == z) + (x != x) + (z && x) + !z',
    'max(a*x, b) * (abs(x) < 2) + (x >= -1) * (x <= 1) * c^2',
    '(a > b) * x + (a <= b) * z + (b < c && c < a)',
  ])('%s matches the reference at every point', (source) => {
    const model = compileModel(source, { params, columns: ['x', 'z'] });
    const values = kernelValues(model, theta, { x, z }, n);
    const vars = model.variableNames.map((name) => (name === 'x' ? x : z));
    for (let i = 0; i < n; i++) {
      const want = evaluateCompiled(model, theta, vars, i);
      const got = values[i]!;
      if (Number.isNaN(want)) expect(got, `point ${i}`).toBeNaN();
      else expect(Math.abs(got - want), `point ${i}: ${got} vs ${want}`).toBeLessThanOrEqual(4 * Number.EPSILON * Math.abs(want));
    }
  });
});

describe('tangents of conditions', () => {
  /** The (p+1) x (p+1) row-major R of [J | r] for all points, from the kernel's block QR. */
  function factor(model: CompiledModel, theta: number[], x: Float64Array, y: Float64Array): Float64Array {
    const kernel = new addon.Kernel(model.code, model.consts);
    const nBlocks = Math.ceil(x.length / addon.blockSize);
    const roots = kernel.evalRange(Float64Array.from(theta), [x], y, null, x.length, 0, nBlocks);
    return addon.finishTree([roots], nBlocks, theta.length + 1);
  }
  const n = 2000;
  const x = Float64Array.from({ length: n }, (_, i) => -2 + (4 * i) / n);
  const y = x.map((v) => Math.cos(v));

  it('are exactly zero: the Jacobian column of a parameter used only in conditions is 0', () => {
    const model = compileModel('a*x + (x > b) + (b*x < 1 && !(a == x))', { params: ['a', 'b'], columns: ['x'] });
    expect(model.usesParam).toEqual([true, true]);
    expect(model.hasDerivative).toEqual([true, false]);
    const R = factor(model, [0.7, 0.3], x, y);
    // Column b of R (rows 0 and 1) holds J^T J's b column: zero exactly when J's is.
    expect([R[1]!, R[4]!].map(Math.abs)).toEqual([0, 0]);
    expect(Math.abs(R[0]!)).toBeGreaterThan(0);
  });

  it('are exactly zero for a model made only of conditions', () => {
    const model = compileModel('(a*x > 1) + (b < x || x < -b)', { params: ['a', 'b'], columns: ['x'] });
    const R = factor(model, [0.9, 0.5], x, y);
    expect([R[0]!, R[1]!, R[4]!].map(Math.abs)).toEqual([0, 0, 0]);
  });
});

describe('fitting a piecewise model with fit()', () => {
  it('a*(x > 0) + b*(x <= 0) converges to the two means with exact derivatives', async () => {
    const n = 4000;
    const x = Array.from({ length: n }, (_, i) => -1 + (2 * (i + 0.5)) / n);
    const y = x.map((v, i) => (v > 0 ? 2.5 : -1.25) + 0.01 * Math.sin(i * 1.7));
    const mean = (keep: (v: number) => boolean) => {
      const picked = y.filter((_, i) => keep(x[i]!));
      return picked.reduce((s, v) => s + v, 0) / picked.length;
    };
    const result = await fit({ model: 'a*(x > 0) + b*(x <= 0)', data: { x, y }, p0: { a: 0, b: 0 } });
    expect(result.success).toBe(true);
    expect(result.params['a']).toBeCloseTo(mean((v) => v > 0), 12);
    expect(result.params['b']).toBeCloseTo(mean((v) => v <= 0), 12);
    // The model is linear in a and b with exact derivatives: one step lands on the minimum.
    expect(result.njev).toBeLessThanOrEqual(3);
    expect(result.stderr['a']).toBeGreaterThan(0);
  });

  it('fits a hinge whose breakpoint is fixed by a condition on the data', async () => {
    const n = 3000;
    const x = Array.from({ length: n }, (_, i) => (4 * i) / n);
    const y = x.map((v) => (v > 1.5 ? 0.8 * (v - 1.5) : 0) + 0.3 * Math.exp(-v));
    const result = await fit({ model: 's*(x - 1.5)*(x > 1.5) + c*exp(-k*x)', data: { x, y }, p0: { s: 1, c: 1, k: 2 } });
    expect(result.success).toBe(true);
    expect(result.params['s']).toBeCloseTo(0.8, 8);
    expect(result.params['c']).toBeCloseTo(0.3, 8);
    expect(result.params['k']).toBeCloseTo(1, 8);
  });
});
