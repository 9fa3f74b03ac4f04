// fixed parameters, expr-defined parameters, iteration and time limits, nanPolicy.
import { describe, expect, it } from 'vitest';
import { fit } from '../dist/index.js';

const x = Array.from({ length: 400 }, (_, i) => i / 40);
const y = x.map((v, i) => 3 * Math.exp(-0.8 * v) + 0.5 + 0.01 * Math.sin(7 * v + i));
const base = { model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 1, b: 1, c: 0 } };
const bits = (values: Float64Array): string => Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex');

describe('fixed parameters', () => {
  it('are held at p0 and compiled in: the same bits as writing the number into the model', async () => {
    const fixed = await fit({ ...base, p0: { a: 1, b: 1, c: 0.4 }, fixed: ['c'] });
    const literal = await fit({ ...base, model: 'a*exp(-b*x)+0.4', p0: { a: 1, b: 1 } });
    expect(fixed.paramNames).toEqual(['a', 'b']);
    expect(bits(fixed.values)).toBe(bits(literal.values));
    expect(fixed.covariance).toEqual(literal.covariance);
  });
  it('are rejected when unknown, repeated, or when nothing is left to fit', async () => {
    await expect(fit({ ...base, fixed: ['z'] })).rejects.toThrow(/fixed\[0\].*'z' is not a parameter/);
    await expect(fit({ ...base, fixed: ['a', 'a'] })).rejects.toThrow(/fixed\[1\].*listed twice/);
    await expect(fit({ ...base, fixed: ['a', 'b', 'c'] })).rejects.toThrow(/nothing is left to fit/);
    await expect(fit({ ...base, fixed: 'a' } as never)).rejects.toThrow(/array of parameter names for fixed/);
  });
});

describe('expr-defined parameters', () => {
  it('are compiled in place: the same bits as the substituted model', async () => {
    const defined = await fit({ ...base, p0: { a: 1, b: 1 }, expr: { c: 'a/6' } });
    const substituted = await fit({ ...base, model: 'a*exp(-b*x)+(a/6)', p0: { a: 1, b: 1 } });
    expect(bits(defined.values)).toBe(bits(substituted.values));
  });
  it('may refer to other definitions; cycles, unknown names and p0 entries for them are errors', async () => {
    const chained = await fit({ ...base, p0: { a: 1, b: 1 }, expr: { c: 'k*2', k: 'a/12' } });
    const direct = await fit({ ...base, model: 'a*exp(-b*x)+(a/12)*2', p0: { a: 1, b: 1 } });
    expect(bits(chained.values)).toBe(bits(direct.values));
    await expect(fit({ ...base, p0: { a: 1, b: 1 }, expr: { c: 'd', d: 'c' } })).rejects.toThrow(/cycle: c -> d -> c/);
    await expect(fit({ ...base, p0: { a: 1, b: 1 }, expr: { c: 'a*q' } })).rejects.toThrow(/expr\.c: unknown identifier 'q'/);
    await expect(fit({ ...base, expr: { c: 'a/6' } })).rejects.toThrow(/p0\.c.*defined by expr\.c/);
    await expect(fit({ ...base, p0: { a: 1, b: 1 }, expr: { x: 'a' } })).rejects.toThrow(/expr\.x.*data column/);
  });
});

describe('limits', () => {
  it('maxIterations stops with status max_iterations, success false, at the best point reached', async () => {
    const r = await fit({ ...base, maxIterations: 2 });
    expect(r.status).toBe('max_iterations');
    expect(r.success).toBe(false);
    expect(r.iterations).toBe(2);
    expect(r.message).toMatch(/maxIterations/);
    const full = await fit(base);
    expect(full.success).toBe(true);
    expect(full.iterations).toBeGreaterThan(2);
    expect(r.rss).toBeGreaterThanOrEqual(full.rss);
  });
  it('maxTimeMs stops between passes with status max_time', async () => {
    // A tiny budget: the first pass always runs, then the clock has passed.
    const r = await fit({ ...base, maxTimeMs: 1e-6 });
    expect(r.status).toBe('max_time');
    expect(r.success).toBe(false);
    expect(r.nfev).toBe(1);
  });
  it('are validated', async () => {
    await expect(fit({ ...base, maxIterations: 0 })).rejects.toThrow(/maxIterations/);
    await expect(fit({ ...base, maxTimeMs: -1 })).rejects.toThrow(/maxTimeMs/);
  });
});

describe('nanPolicy', () => {
  const withNaN = y.slice();
  withNaN[5] = NaN;
  withNaN[333] = NaN;
  it("'raise' (the default) names the first NaN", async () => {
    await expect(fit({ ...base, data: { x, y: withNaN } })).rejects.toThrow(/data\.y: value NaN at index 5/);
  });
  it("'omit' drops the rows with a NaN (and only those) and fits the rest: the same bits as removing them by hand", async () => {
    const omitted = await fit({ ...base, data: { x, y: withNaN }, nanPolicy: 'omit' });
    const keep = (_: number, i: number): boolean => i !== 5 && i !== 333;
    const byHand = await fit({ ...base, data: { x: x.filter(keep), y: y.filter(keep) } });
    expect(omitted.nPoints).toBe(398);
    expect(omitted.execution.droppedRows).toBe(2);
    expect(bits(omitted.values)).toBe(bits(byHand.values));
    // Infinity is not NaN: it still raises, as in scipy.
    const withInf = y.slice();
    withInf[7] = Infinity;
    await expect(fit({ ...base, data: { x, y: withInf }, nanPolicy: 'omit' })).rejects.toThrow(/data\.y: value Infinity at index 7/);
  });
  it("rejects 'propagate' and unknown values with the reason", async () => {
    await expect(fit({ ...base, nanPolicy: 'propagate' } as never)).rejects.toThrow(/nlfit does not offer it/);
    await expect(fit({ ...base, nanPolicy: 'drop' } as never)).rejects.toThrow(/nanPolicy/);
  });
});
