// The inline evaluator caches its native kernels by program content (as the
// workers do, src/exec/worker.ts): fits of the same model on the calling
// thread share one kernel instead of verifying the program and allocating
// its scratch per fit, the cache stays small, and sharing a kernel between
// fits that interleave on the thread changes no bit of any result.
import { describe, expect, it } from 'vitest';
import { fit, type FitResult } from '../dist/index.js';
import { cachedKernelCount as cachedInlineKernels, cachedKernel as inlineKernel } from '../dist/exec/kernels.js';
import { compileModel } from '../dist/model/index.js';

const x = Array.from({ length: 200 }, (_, i) => i / 40);
const dataFor = (b: number): { x: number[]; y: number[] } => ({ x, y: x.map((v) => 3 * Math.exp(-b * v) + 0.5 + 0.01 * Math.sin(9 * v)) });

function same(a: FitResult, b: FitResult): void {
  expect(Object.entries(a.params)).toEqual(Object.entries(b.params));
  expect(a.cost).toBe(b.cost);
  expect(a.nfev).toBe(b.nfev);
}

describe('inline kernels are cached by program', () => {
  it('one kernel per program: the same program gets the same kernel, a different one another', () => {
    const one = compileModel('a*exp(-b*x)+c', { params: ['a', 'b', 'c'], columns: ['x'] });
    const again = compileModel('a*exp(-b*x)+c', { params: ['a', 'b', 'c'], columns: ['x'] });
    const other = compileModel('a*exp(-b*x)+c+1', { params: ['a', 'b', 'c'], columns: ['x'] });
    const kernel = inlineKernel(one.code, one.consts);
    expect(inlineKernel(again.code, again.consts)).toBe(kernel);
    expect(inlineKernel(other.code, other.consts)).not.toBe(kernel);
  });

  it('a different constant is a different program, even -0 and 0', () => {
    const plus = compileModel('a*x + 0.5', { params: ['a'], columns: ['x'] });
    const minus = compileModel('a*x - 0.5', { params: ['a'], columns: ['x'] });
    expect(inlineKernel(plus.code, plus.consts)).not.toBe(inlineKernel(minus.code, minus.consts));
    const zero = { code: plus.code, consts: Float64Array.from(plus.consts, () => 0) };
    const negativeZero = { code: plus.code, consts: Float64Array.from(plus.consts, () => -0) };
    expect(inlineKernel(zero.code, zero.consts)).not.toBe(inlineKernel(negativeZero.code, negativeZero.consts));
  });

  it('the cache holds at most 8 programs however many models are fitted', async () => {
    for (let k = 0; k < 20; k++) {
      const result = await fit({ model: `a*exp(-b*x)+c+${k}`, data: dataFor(0.8), p0: { a: 1, b: 1, c: 0 } });
      expect(result.strategy).toBe('standard');
    }
    expect(cachedInlineKernels()).toBe(8);
  });

  it('fits sharing a kernel while they interleave on the thread give the bits they give alone', async () => {
    const model = 'a*exp(-b*x)+c';
    const rates = [0.3, 0.8, 1.3, 2.1, 0.5, 1.7];
    const alone: FitResult[] = [];
    for (const b of rates) alone.push(await fit({ model, data: dataFor(b), p0: { a: 1, b: 1, c: 0 } }));
    const together = await Promise.all(rates.map((b) => fit({ model, data: dataFor(b), p0: { a: 1, b: 1, c: 0 } })));
    together.forEach((result, i) => same(result, alone[i]!));
    // With a robust loss and a cancel buffer too (other arguments of the same kernel's passes).
    const robust = await Promise.all(rates.map((b) => fit({ model, data: dataFor(b), p0: { a: 1, b: 1, c: 0 }, loss: 'soft_l1', fScale: 0.1, timeoutMs: 60_000 })));
    for (let i = 0; i < rates.length; i++) {
      same(robust[i]!, await fit({ model, data: dataFor(rates[i]!), p0: { a: 1, b: 1, c: 0 }, loss: 'soft_l1', fScale: 0.1, timeoutMs: 60_000 }));
    }
  });
});
