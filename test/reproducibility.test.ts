// The reproducibility contract: the same parameters, bit for bit, whatever the
// thread count, chunk size or strategy (blocks and reduction tree are fixed).
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { synthetic } from '../dist/data/synthetic.js';

const n = 1_000_000;
const { x, y } = synthetic(n, (v) => 4 * Math.exp(-0.9 * v) + 0.3 * Math.cos(2 * v) + 1.1, {
  x0: 0,
  x1: 6,
  noise: 0.1,
  seed: 42,
});
const options = {
  model: 'a*exp(-b*x) + d*cos(w*x) + c',
  data: { x, y },
  p0: { a: 3, b: 1, d: 0.2, w: 2.1, c: 1 },
};
const engine = new Engine({ threads: 4 });
afterAll(() => engine.close());

function bits(values: Float64Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex');
}

describe('bitwise reproducibility on a 1M-point problem', () => {
  it('gives identical parameters and covariance for threads 1, 2, 4, two chunk sizes and both strategies', async () => {
    const runs = [
      { strategy: 'standard' as const },
      { strategy: 'chunked' as const, threads: 1 },
      { strategy: 'chunked' as const, threads: 2 },
      { strategy: 'chunked' as const, threads: 4 },
      { strategy: 'chunked' as const, threads: 4, chunkSize: 512 * 37 },
      { strategy: 'chunked' as const, threads: 2, chunkSize: 512 * 300 + 1 },
    ];
    const results = [];
    for (const run of runs) results.push(await engine.fit({ ...options, ...run }));
    const reference = results[0]!;
    expect(reference.success).toBe(true);
    expect(reference.params.b).toBeCloseTo(0.9, 2);
    for (const [i, r] of results.entries()) {
      expect(r.strategy, JSON.stringify(runs[i])).toBe(runs[i]!.strategy);
      expect(bits(r.values), JSON.stringify(runs[i])).toBe(bits(reference.values));
      expect(r.rss).toBe(reference.rss);
      expect(r.rSquared).toBe(reference.rSquared);
      expect(r.covariance).toEqual(reference.covariance);
      expect(r.nfev).toBe(reference.nfev);
    }
  }, 120_000);

  it('gives identical results for concurrent fits on one engine', async () => {
    const [a, b] = await Promise.all([
      engine.fit({ ...options, threads: 2, strategy: 'chunked' }),
      engine.fit({ ...options, threads: 2, strategy: 'chunked', chunkSize: 512 * 11 }),
    ]);
    expect(bits(a.values)).toBe(bits(b.values));
  }, 120_000);
});
