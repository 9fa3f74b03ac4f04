// fitMany: many small independent fits, natively, sharded over the pool.
import { describe, expect, it } from 'vitest';
import { Engine, fitMany } from '../dist/index.js';
import { SeededRandom } from '../dist/data/synthetic.js';

const x1 = Float64Array.from({ length: 25 }, (_, i) => i % 5);
const x2 = Float64Array.from({ length: 25 }, (_, i) => Math.floor(i / 5));
const gauss2d = 'a*exp(-((x1-u)^2+(x2-v)^2)/(2*s^2))+c';

/** M noise-free 2-D gaussians on 5x5 points with per-curve truths; p0 within +-20% of the truth. */
function gaussians(m: number, seed: number): { y: Float64Array; p0: Float64Array; truth: Float64Array } {
  const random = new SeededRandom(seed);
  const y = new Float64Array(m * 25);
  const p0 = new Float64Array(m * 5);
  const truth = new Float64Array(m * 5);
  for (let c = 0; c < m; c++) {
    const t = [50 + 100 * random.next(), 1.5 + random.next(), 1.5 + random.next(), 0.8 + 0.6 * random.next(), 5 + 5 * random.next()];
    for (let j = 0; j < 5; j++) {
      truth[c * 5 + j] = t[j]!;
      p0[c * 5 + j] = t[j]! * (1 + 0.4 * (random.next() - 0.5));
    }
    for (let i = 0; i < 25; i++) {
      y[c * 25 + i] = t[0]! * Math.exp(-((x1[i]! - t[1]!) ** 2 + (x2[i]! - t[2]!) ** 2) / (2 * t[3]! ** 2)) + t[4]!;
    }
  }
  return { y, p0, truth };
}

function accurate(params: Float64Array, truth: Float64Array, p: number, c: number): boolean {
  for (let j = 0; j < p; j++) {
    const t = truth[c * p + j]!;
    if (!(Math.abs(params[c * p + j]! - t) <= 1e-6 * Math.abs(t))) return false;
  }
  return true;
}

describe('fitMany', () => {
  it('fits 20,000 noise-free 2-D gaussians from p0 within 20%: at least 99.5% reach the truth within 1e-6', async () => {
    const m = 20_000;
    const { y, p0, truth } = gaussians(m, 1);
    const r = await fitMany({ model: gauss2d, x: { x1, x2 }, y, p0, params: ['a', 'u', 'v', 's', 'c'] });
    expect(r.m).toBe(m);
    expect(r.paramNames).toEqual(['a', 'u', 'v', 's', 'c']);
    let good = 0;
    for (let c = 0; c < m; c++) if (accurate(r.params, truth, 5, c)) good++;
    expect(good / m).toBeGreaterThanOrEqual(0.995);
    expect(r.converged / m).toBeGreaterThanOrEqual(0.995);
    expect(Object.values(r.counts).reduce((a, b) => a + b, 0)).toBe(m);
  });

  it('gives the same bits on 1 and 2 threads, inline, and for any shard size', async () => {
    const m = 3000;
    const { y, p0 } = gaussians(m, 2);
    const base = { model: gauss2d, x: { x1, x2 }, y, p0, params: ['a', 'u', 'v', 's', 'c'] };
    const one = new Engine({ threads: 1 });
    const two = new Engine({ threads: 2 });
    try {
      const a = await one.fitMany(base);
      const b = await two.fitMany({ ...base, shardSize: 97 });
      const c = await two.fitMany({ ...base, shardSize: 3000 });
      for (const other of [b, c]) {
        expect(Buffer.from(other.params.buffer, other.params.byteOffset, other.params.byteLength).equals(Buffer.from(a.params.buffer, a.params.byteOffset, a.params.byteLength))).toBe(true);
        expect(Array.from(other.status)).toEqual(Array.from(a.status));
        expect(Array.from(other.chi2)).toEqual(Array.from(a.chi2));
      }
      expect(b.threads).toBe(2);
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('a curve with NaN, or a constant y, gets its own status without touching its neighbours', async () => {
    const m = 600;
    const { y, p0, truth } = gaussians(m, 3);
    const clean = await fitMany({ model: gauss2d, x: { x1, x2 }, y: y.slice(), p0, params: ['a', 'u', 'v', 's', 'c'] });
    const broken = y.slice();
    broken[100 * 25 + 7] = NaN;
    broken.fill(3, 200 * 25, 201 * 25);
    const r = await fitMany({ model: gauss2d, x: { x1, x2 }, y: broken, p0, params: ['a', 'u', 'v', 's', 'c'] });
    expect(r.statusNames[r.status[100]!]).toBe('invalid_data');
    expect(r.params[100 * 5]).toBeNaN();
    // The constant curve must not crash or produce invented success: whatever the LM says, it is reported.
    expect(r.statusNames[r.status[200]!]).toBeDefined();
    for (const c of [99, 101, 199, 201]) {
      expect(r.params.subarray(c * 5, c * 5 + 5)).toEqual(clean.params.subarray(c * 5, c * 5 + 5));
      expect(accurate(r.params, truth, 5, c)).toBe(true);
    }
  });

  it('fits ragged curves (offsets) and per-curve x', async () => {
    const random = new SeededRandom(4);
    const lengths = [12, 30, 7, 50];
    const offsets = [0];
    for (const n of lengths) offsets.push(offsets[offsets.length - 1]! + n);
    const x = new Float64Array(offsets.at(-1)!);
    const y = new Float64Array(offsets.at(-1)!);
    const truths = lengths.map(() => [2 + random.next(), 0.5 + random.next(), 1 + random.next()]);
    lengths.forEach((n, c) => {
      for (let i = 0; i < n; i++) {
        const xi = (5 * i) / n;
        x[offsets[c]! + i] = xi;
        y[offsets[c]! + i] = truths[c]![0]! * Math.exp(-truths[c]![1]! * xi) + truths[c]![2]!;
      }
    });
    const r = await fitMany({ model: 'a*exp(-b*x)+c', x, y, offsets, p0: { a: 2.5, b: 1, c: 1.5 } });
    expect(r.m).toBe(4);
    lengths.forEach((_, c) => {
      for (let j = 0; j < 3; j++) expect(Math.abs(r.params[c * 3 + j]! - truths[c]![j]!) / truths[c]![j]!).toBeLessThan(1e-6);
    });
  });

  it('estimates p0 per curve for catalog models', async () => {
    const x = Float64Array.from({ length: 40 }, (_, i) => i / 8);
    const m = 50;
    const y = new Float64Array(m * 40);
    for (let c = 0; c < m; c++) for (let i = 0; i < 40; i++) y[c * 40 + i] = (3 + c / 10) * Math.exp(-(0.5 + c / 100) * x[i]!) + 1;
    const r = await fitMany({ model: 'exponential', x, y });
    expect(r.converged).toBe(m);
    for (let c = 0; c < m; c++) expect(Math.abs(r.params[c * 3]! - (3 + c / 10))).toBeLessThan(1e-6);
  });

  it("fits photon counts with estimator 'poisson' and reports the deviance as chi2", async () => {
    const x = Float64Array.from({ length: 32 }, (_, i) => i);
    const m = 200;
    const random = new SeededRandom(5);
    const y = new Float64Array(m * 32);
    const poisson = (lambda: number): number => {
      // Knuth's method is fine for these small means.
      const l = Math.exp(-lambda);
      let k = 0;
      let p = 1;
      do {
        k++;
        p *= random.next();
      } while (p > l);
      return k - 1;
    };
    for (let c = 0; c < m; c++) for (let i = 0; i < 32; i++) y[c * 32 + i] = poisson(20 * Math.exp(-((i - 15) ** 2) / (2 * 16)) + 2);
    const r = await fitMany({ model: 'a*exp(-(x-u)^2/(2*s^2))+c', x, y, p0: { a: 18, u: 14, s: 3.5, c: 2.5 }, estimator: 'poisson' });
    expect(r.converged / m).toBeGreaterThan(0.99);
    // The deviance at the optimum of each curve, recomputed here.
    for (const c of [0, 57, 199]) {
      const [a, u, s, k] = Array.from(r.params.subarray(c * 4, c * 4 + 4));
      let deviance = 0;
      for (let i = 0; i < 32; i++) {
        const f = a! * Math.exp(-((i - u!) ** 2) / (2 * s! * s!)) + k!;
        const yi = y[c * 32 + i]!;
        deviance += 2 * (f - yi + (yi > 0 ? yi * Math.log(yi / f) : 0));
      }
      expect(Math.abs(r.chi2[c]! - deviance) / deviance).toBeLessThan(1e-9);
    }
    await expect(fitMany({ model: 'a*x+b', x, y, p0: [1, 1], estimator: 'poisson', sigma: y })).rejects.toThrow(/sigma/);
  });

  it('reports progress per shard and stops on an AbortSignal', async () => {
    const m = 20_000;
    const { y, p0 } = gaussians(m, 6);
    const engine = new Engine({ threads: 2 });
    try {
      const events: number[] = [];
      await engine.fitMany({ model: gauss2d, x: { x1, x2 }, y, p0, params: ['a', 'u', 'v', 's', 'c'], shardSize: 1000, onProgress: (e) => events.push(e.curvesDone) });
      expect(events).toHaveLength(20);
      expect(events.at(-1)).toBe(m);
      const controller = new AbortController();
      const promise = engine.fitMany({
        model: gauss2d, x: { x1, x2 }, y, p0, params: ['a', 'u', 'v', 's', 'c'], shardSize: 200, signal: controller.signal,
        onProgress: (e) => { if (e.done === 3) controller.abort(); },
      });
      await expect(promise).rejects.toThrow(/aborted/);
    } finally {
      await engine.close();
    }
  });

  it('rejects bad input naming the field', async () => {
    const { y, p0 } = gaussians(10, 7);
    await expect(fitMany({ model: gauss2d, x: { x1, x2 }, y: y.subarray(0, 249), p0, params: ['a', 'u', 'v', 's', 'c'] })).rejects.toThrow(/y/);
    await expect(fitMany({ model: gauss2d, x: { x1, x2 }, y, p0: p0.subarray(0, 7), params: ['a', 'u', 'v', 's', 'c'] })).rejects.toThrow(/p0/);
    await expect(fitMany({ model: gauss2d, x: { x1 }, y, p0, params: ['a', 'u', 'v', 's', 'c'] } as never)).rejects.toThrow(/x2/);
    await expect(fitMany({ model: gauss2d, x: { x1, x2 }, y, p0, params: ['a', 'u', 'v', 's', 'c'], estimtor: 'poisson' } as never)).rejects.toThrow(/did you mean 'estimator'/);
  });
});

describe('an engine keeps no reference to a batch that has ended', () => {
  it("the batch's curves can be collected on the calling thread once fitMany resolves", async () => {
    const { setFlagsFromString } = await import('node:v8');
    const { runInNewContext } = await import('node:vm');
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let collected = false;
    const registry = new FinalizationRegistry(() => {
      collected = true;
    });
    const engine = new Engine({ threads: 2 });
    try {
      // The curves in shared memory are used as given (no copy): the batch's spec holds this very array.
      const run = async (): Promise<number> => {
        const m = 2000;
        const n = 20;
        const x = Float64Array.from({ length: n }, (_, i) => i);
        const y = new Float64Array(new SharedArrayBuffer(m * n * 8));
        for (let c = 0; c < m; c++) for (let i = 0; i < n; i++) y[c * n + i] = 2 * x[i]! + 1;
        registry.register(y, 'y');
        const result = await engine.fitMany({ model: 'a*x+b', x, y, p0: { a: 1, b: 0 } });
        expect(result.threads).toBe(2);
        return result.m;
      };
      expect(await run()).toBe(2000);
      // The scheduler keeps a fit's lane for a while after its last task; keyed by the batch's
      // name, not its spec, the lane does not keep the curves alive.
      for (let k = 0; k < 20 && !collected; k++) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(collected).toBe(true);
    } finally {
      await engine.close();
    }
  });
});
