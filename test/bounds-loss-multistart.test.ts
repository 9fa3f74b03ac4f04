// Acceptance checks for bounds, robust losses, x scaling and multi-start.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Engine, fit } from '../dist/index.js';
import { SeededRandom } from '../dist/data/synthetic.js';

function decayData(n: number, seed: number, outliers = 0, oneSided = true): { x: Float64Array; y: Float64Array; clean: Float64Array } {
  const random = new SeededRandom(seed);
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  const clean = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = (5 * i) / n;
    clean[i] = 5 * Math.exp(-1.3 * x[i]!) + 0.7 + 0.05 * random.normal();
    y[i] = clean[i]!;
  }
  // Gross outliers (3 to 8, i.e. 60 to 160 noise sd): every 1/outliers-th point,
  // all pushed up (one-sided) or alternately up and down.
  const every = outliers > 0 ? Math.round(1 / outliers) : 0;
  for (let i = 0; every > 0 && i < n; i += every) {
    const sign = oneSided || (i / every) % 2 === 0 ? 1 : -1;
    y[i] = clean[i]! + sign * (3 + random.next() * 5);
  }
  return { x, y, clean };
}

describe('bounds', () => {
  it('a solution on a bound is reached exactly, flagged in activeMask, and left out of the covariance', async () => {
    const { x, y } = decayData(2000, 3);
    const r = await fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 2.5, c: 0.5 }, bounds: { b: [2, 10] } });
    expect(r.success).toBe(true);
    expect(r.params.b).toBe(2);
    expect(Array.from(r.activeMask!)).toEqual([0, 1, 0]);
    expect(r.stderr.b).toBeNaN();
    expect(Number.isFinite(r.stderr.a!)).toBe(true);
    expect(Number.isFinite(r.stderr.c!)).toBe(true);
    expect(r.warnings.join(' ')).toMatch(/b/);
    // The other parameters are the least-squares values with b held at 2: the same as fixing it.
    const held = await fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 2, c: 0.5 }, fixed: ['b'] });
    expect(Math.abs(r.params.a! - held.params.a!) / held.params.a!).toBeLessThan(1e-8);
    expect(Math.abs(r.params.c! - held.params.c!) / held.params.c!).toBeLessThan(1e-8);
    // The bounded fit still counts b among its parameters (dof n - 3, as scipy), the fixed one does not (n - 2).
    expect(Math.abs(r.stderr.a! / held.stderr.a! - Math.sqrt(1998 / 1997))).toBeLessThan(1e-6);
  });
  it('inactive bounds change nothing but the mask; scipy-style [lower, upper] arrays work', async () => {
    const { x, y } = decayData(2000, 4);
    const free = await fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 1, c: 0.5 } });
    const boxed = await fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 1, c: 0.5 }, bounds: [[0, 0, -1], [10, 10, 10]] });
    expect(Array.from(boxed.activeMask!)).toEqual([0, 0, 0]);
    for (const name of ['a', 'b', 'c']) expect(Math.abs(boxed.params[name]! - free.params[name]!)).toBeLessThan(1e-9);
    expect(free.activeMask).toBeNull();
  });
  it('an infeasible p0 is moved inside; inverted or equal bounds are errors naming the parameter', async () => {
    const { x, y } = decayData(500, 5);
    const r = await fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 0.1, c: 0.5 }, bounds: { b: [1, 3] } });
    expect(r.success).toBe(true);
    expect(r.params.b).toBeGreaterThanOrEqual(1);
    await expect(fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 1, c: 0 }, bounds: { b: [3, 1] } })).rejects.toThrow(/bounds\.b.*lower bound 3 is above the upper bound 1/);
    await expect(fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 1, c: 0 }, bounds: { b: [1, 1] } })).rejects.toThrow(/fixed: \['b'\]/);
    await expect(fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 1, c: 0 }, bounds: { q: [1, 2] } })).rejects.toThrow(/bounds\.q/);
  });
});

describe('robust losses', () => {
  const model = 'a*exp(-b*x)+c';
  const p0 = { a: 4, b: 1, c: 0.5 };
  async function recovers(oneSided: boolean, losses: readonly ('soft_l1' | 'huber' | 'cauchy' | 'arctan')[]): Promise<void> {
    const { x, y, clean } = decayData(3000, 6, 0.1, oneSided);
    const truth = await fit({ model, data: { x, y: clean }, p0 });
    const within = (r: Awaited<ReturnType<typeof fit>>): boolean =>
      ['a', 'b', 'c'].every((name) => Math.abs(r.params[name]! - truth.params[name]!) <= 3 * truth.stderr[name]!);
    expect(within(await fit({ model, data: { x, y }, p0 }))).toBe(false);
    for (const loss of losses) {
      const r = await fit({ model, data: { x, y }, p0, loss, fScale: 0.1 });
      expect(r.success, loss).toBe(true);
      expect(within(r), loss).toBe(true);
      expect(r.loss).toEqual({ name: loss, fScale: 0.1 });
      expect(Number.isNaN(r.rSquared)).toBe(true);
      expect(r.cost).toBeGreaterThan(0);
    }
  }
  it('with 10% gross outliers on both sides, every robust loss recovers the clean fit within 3 standard errors; linear does not', async () => {
    await recovers(false, ['soft_l1', 'huber', 'cauchy', 'arctan']);
  });
  it('with 10% one-sided gross outliers, the redescending losses (cauchy, arctan) still do', async () => {
    // soft_l1 and huber bound each outlier's influence but do not remove it: with
    // every outlier on one side they shift c by 6-17 clean standard errors here.
    await recovers(true, ['cauchy', 'arctan']);
  });
  it('gives the same bits inline and on the pool (the block costs merge in block order)', async () => {
    const { x, y } = decayData(300_000, 7, 0.1);
    const engine = new Engine({ threads: 2 });
    try {
      const options = { model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 1, c: 0.5 }, loss: 'cauchy' as const, fScale: 0.2 };
      const inline = await engine.fit({ ...options, strategy: 'standard' });
      const pooled = await engine.fit({ ...options, strategy: 'chunked', chunkSize: 7000 });
      const streamed = await engine.fit({ ...options, strategy: 'streaming', chunkSize: 50_000 });
      expect(Array.from(pooled.values)).toEqual(Array.from(inline.values));
      expect(Array.from(streamed.values)).toEqual(Array.from(inline.values));
      expect(pooled.cost).toBe(inline.cost);
    } finally {
      await engine.close();
    }
  });
  it('rejects unknown losses and an fScale without a robust loss', async () => {
    const { x, y } = decayData(100, 8);
    await expect(fit({ model: 'a*x+b', data: { x, y }, p0: [1, 0], loss: 'hubber' } as never)).rejects.toThrow(/did you mean 'huber'/);
    await expect(fit({ model: 'a*x+b', data: { x, y }, p0: [1, 0], fScale: 2 })).rejects.toThrow(/fScale.*linear/);
    await expect(fit({ model: 'a*x+b', data: { x, y }, p0: [1, 0], loss: 'huber', fScale: 0 })).rejects.toThrow(/fScale/);
  });
});

describe('xScale', () => {
  it('a fixed scale reaches the same optimum; bad scales are errors', async () => {
    const { x, y } = decayData(2000, 9);
    const base = { model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 1, c: 0.5 } };
    const jac = await fit(base);
    const scaled = await fit({ ...base, xScale: [5, 1, 0.5] });
    const byName = await fit({ ...base, xScale: { a: 5, b: 1, c: 0.5 } });
    for (const name of ['a', 'b', 'c']) expect(Math.abs(scaled.params[name]! - jac.params[name]!) / Math.abs(jac.params[name]!)).toBeLessThan(1e-9);
    expect(Array.from(byName.values)).toEqual(Array.from(scaled.values));
    await expect(fit({ ...base, xScale: [1, 1] })).rejects.toThrow(/xScale/);
    await expect(fit({ ...base, xScale: [1, 0, 1] })).rejects.toThrow(/xScale\[1\]/);
    await expect(fit({ ...base, xScale: 'auto' } as never)).rejects.toThrow(/xScale/);
  });
});

describe('multi-start', () => {
  const dir = new URL('./fixtures/nist/', import.meta.url);
  const problems = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(new URL(f, dir), 'utf8')));

  it('solves at least 80% of the NIST problems from start 1 times 10, and reports how many starts converged', async () => {
    let solved = 0;
    const lines: string[] = [];
    for (const problem of problems) {
      const y = problem.response === 'log(y)' ? problem.data.y.map(Math.log) : problem.data.y;
      const data: Record<string, number[]> = { y };
      for (const v of problem.variables) data[v] = problem.data[v];
      const p0 = Object.fromEntries(problem.params.map((name: string, i: number) => [name, problem.start1[i] * 10]));
      const r = await fit({ model: problem.model, data, p0, multistart: { n: 16, seed: 1 } });
      const ok = Math.abs(r.rss - problem.certified_rss) / problem.certified_rss < 1e-6;
      if (ok) solved++;
      expect(r.multistart!.starts).toBe(16);
      expect(r.multistart!.converged).toBeGreaterThan(0);
      expect(r.multistart!.costs).toHaveLength(16);
      lines.push(`${problem.name}: ${ok ? 'solved' : 'not solved'}, ${r.multistart!.converged}/16 starts converged, best start ${r.multistart!.bestIndex}`);
    }
    console.log(`multi-start from start1 x 10: ${solved}/${problems.length} solved\n${lines.join('\n')}`);
    expect(solved / problems.length).toBeGreaterThanOrEqual(0.8);
  });
  it('is deterministic for a seed, on the pool as inline, whatever order the starts finish in', async () => {
    const { x, y } = decayData(200_000, 10);
    const engine = new Engine({ threads: 2 });
    try {
      const options = { model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 40, b: 13, c: 7 }, multistart: { n: 6, seed: 3 } };
      const pooled = await engine.fit({ ...options, strategy: 'chunked' });
      const inline = await engine.fit({ ...options, strategy: 'standard' });
      expect(Array.from(pooled.values)).toEqual(Array.from(inline.values));
      expect(pooled.multistart!.costs).toEqual(inline.multistart!.costs);
      const other = await engine.fit({ ...options, strategy: 'standard', multistart: { n: 6, seed: 4 } });
      expect(other.multistart!.costs).not.toEqual(inline.multistart!.costs);
    } finally {
      await engine.close();
    }
  });
});
