// Multi-start building blocks: Sobol and Latin hypercube samplers, starting
// points within bounds, the scheduler that runs the starts and picks the best,
// and validation of the `multistart` option.
import { describe, expect, it } from 'vitest';
import {
  kMaxSobolDimensions,
  normalizeMultistart,
  runStarts,
  sobolPoints,
  startingPoints,
  unitSamples,
  type MultistartSpec,
} from '../dist/solver/multistart.js';

const bits = (values: Float64Array): string => Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex');
const column = (values: Float64Array, d: number, j: number): number[] => Array.from({ length: values.length / d }, (_, k) => values[k * d + j]!);
const spec = (overrides: Partial<MultistartSpec> = {}): MultistartSpec => ({ n: 64, sampler: 'sobol', seed: 0, spread: 2, ...overrides });

// Reference values computed once with scipy 1.17.1:
//   scipy.stats.qmc.Sobol(d, scramble=False).random(n + 1)[1:]
const kScipySobol2 = [
  [0.5, 0.5], [0.75, 0.25], [0.25, 0.75], [0.375, 0.375],
  [0.875, 0.875], [0.625, 0.125], [0.125, 0.625], [0.1875, 0.3125],
];
const kScipySobol3 = [
  [0.5, 0.5, 0.5], [0.75, 0.25, 0.25], [0.25, 0.75, 0.75], [0.375, 0.375, 0.625],
  [0.875, 0.875, 0.125], [0.625, 0.125, 0.875], [0.125, 0.625, 0.375], [0.1875, 0.3125, 0.9375],
];
// For d = 128 and points k = 1..1000 (which use every published m_j, up to m_10):
// (k[:, None] * points).sum(axis=0), exact in binary.
const kScipyWeightedSums128 = [
  250078.14453125, 250160.68359375, 250316.12109375, 250562.78515625, 249924.35546875, 251262.39453125, 250329.16796875, 250429.73828125,
  250598.26953125, 249779.63671875, 249418.94921875, 250263.34765625, 250553.47265625, 250298.42578125, 249946.12109375, 249862.15234375,
  250576.14453125, 250199.14453125, 250580.07421875, 250697.76171875, 250350.19921875, 250610.24609375, 250394.25390625, 250704.55078125,
  249960.41015625, 251265.39453125, 250209.55078125, 250727.83984375, 250001.94140625, 249533.56640625, 249854.19921875, 249770.66015625,
  250444.16796875, 249733.10546875, 250810.78515625, 250522.66015625, 250605.22265625, 250253.87109375, 250172.40234375, 250222.83984375,
  251257.01171875, 250254.34765625, 250167.94921875, 250095.79296875, 249900.56640625, 249111.10546875, 250443.69140625, 251252.62890625,
  250399.23046875, 250226.83984375, 250019.30078125, 250366.58203125, 250937.80859375, 250039.01953125, 250226.26953125, 250611.58203125,
  249676.33203125, 249297.33203125, 250791.42578125, 250107.17578125, 249858.17578125, 250263.30078125, 250170.42578125, 249861.17578125,
  250136.34765625, 249814.69140625, 250377.94140625, 249882.94140625, 249826.09765625, 250811.37890625, 249843.81640625, 250260.34765625,
  251178.47265625, 249749.53515625, 249876.94140625, 250517.66015625, 250302.35546875, 250972.93359375, 250782.68359375, 249490.15234375,
  249889.91796875, 250294.99609375, 251026.32421875, 250147.23046875, 249484.10546875, 250760.91796875, 250619.55859375, 250226.83984375,
  249916.94921875, 250008.87109375, 250569.12109375, 250973.93359375, 250086.88671875, 250441.76171875, 249826.07421875, 250337.07421875,
  249705.07421875, 250661.04296875, 250490.55859375, 249963.48046875, 250568.12109375, 250913.08984375, 251093.88671875, 250516.32421875,
  250607.19921875, 249657.01953125, 251018.34765625, 250692.78515625, 249607.17578125, 249895.30078125, 250112.10546875, 251076.16796875,
  250625.55859375, 250243.53515625, 249951.14453125, 250373.53515625, 250221.88671875, 250593.93359375, 250293.47265625, 250306.37890625,
  250257.34765625, 250391.27734375, 249946.69140625, 250606.24609375, 249674.33203125, 250731.24609375, 250370.62890625, 250612.62890625,
];
// points[999, 120:] of the same call: point 1000 in dimensions 121..128.
const kScipyPoint1000Tail = [0.2548828125, 0.7763671875, 0.4970703125, 0.5498046875, 0.4541015625, 0.6748046875, 0.1689453125, 0.5439453125];

describe('sobolPoints (unscrambled)', () => {
  it('matches scipy in 2 and 3 dimensions, origin skipped', () => {
    expect(Array.from(sobolPoints(8, 2))).toEqual(kScipySobol2.flat());
    expect(Array.from(sobolPoints(8, 3))).toEqual(kScipySobol3.flat());
  });
  it('matches scipy in all 128 dimensions of the bundled Joe-Kuo table', () => {
    expect(kMaxSobolDimensions).toBe(128);
    const points = sobolPoints(1000, 128);
    const sums = Array.from({ length: 128 }, (_, j) => column(points, 128, j).reduce((sum, x, k) => sum + (k + 1) * x, 0));
    expect(sums).toEqual(kScipyWeightedSums128);
    expect(Array.from(points.subarray(999 * 128 + 120, 1000 * 128))).toEqual(kScipyPoint1000Tail);
  });
  it('rejects more dimensions than the table has, naming the way out', () => {
    expect(() => sobolPoints(4, 129)).toThrow(/Invalid multistart.sampler: 'sobol' supports up to 128 dimensions \(parameters\) but 129 were requested; use 'lhs'/);
    expect(() => unitSamples(4, 129, 'sobol', 0)).toThrow(RangeError);
  });
});

describe('unitSamples', () => {
  it("'sobol' is the raw sequence under one seeded digital shift per dimension, strictly inside (0, 1)", () => {
    const n = 512;
    const d = 10;
    const raw = sobolPoints(n, d);
    const shifted = unitSamples(n, d, 'sobol', 12345);
    for (const u of shifted) expect(u > 0 && u < 1).toBe(true);
    const word = (u: number): number => u * 2 ** 32 - 0.5;
    for (let j = 0; j < d; j++) {
      for (let k = 1; k < n; k++) {
        // XOR with the same word in every point cancels between two points.
        expect((word(shifted[k * d + j]!) ^ word(shifted[j]!)) >>> 0).toBe(((raw[k * d + j]! * 2 ** 32) ^ (raw[j]! * 2 ** 32)) >>> 0);
      }
    }
  });
  it("'sobol' is deterministic per seed and differs across seeds", () => {
    expect(bits(unitSamples(100, 5, 'sobol', 7))).toBe(bits(unitSamples(100, 5, 'sobol', 7)));
    expect(bits(unitSamples(100, 5, 'sobol', 7))).not.toBe(bits(unitSamples(100, 5, 'sobol', 8)));
  });
  it("'lhs' puts exactly one point in each stratum of every dimension, strictly inside (0, 1)", () => {
    for (const [n, d, seed] of [[1, 3, 0], [2, 2, 1], [50, 7, 2], [4096, 3, 3]] as const) {
      const samples = unitSamples(n, d, 'lhs', seed);
      expect(samples.length).toBe(n * d);
      for (const u of samples) expect(u > 0 && u < 1).toBe(true);
      for (let j = 0; j < d; j++) {
        const strata = column(samples, d, j).map((u) => Math.floor(u * n)).sort((a, b) => a - b);
        expect(strata).toEqual(Array.from({ length: n }, (_, k) => k));
      }
    }
  });
  it("'lhs' is deterministic per seed, differs across seeds, and shuffles each dimension on its own", () => {
    const samples = unitSamples(64, 4, 'lhs', 99);
    expect(bits(samples)).toBe(bits(unitSamples(64, 4, 'lhs', 99)));
    expect(bits(samples)).not.toBe(bits(unitSamples(64, 4, 'lhs', 100)));
    const strata = (j: number): string => column(samples, 4, j).map((u) => Math.floor(u * 64)).join(',');
    expect(new Set([strata(0), strata(1), strata(2), strata(3)]).size).toBe(4);
  });
  it('returns nothing for zero points and rejects a bad count or seed', () => {
    expect(unitSamples(0, 3, 'lhs', 0).length).toBe(0);
    expect(unitSamples(0, 3, 'sobol', 0).length).toBe(0);
    expect(() => unitSamples(-1, 3, 'lhs', 0)).toThrow(/Expected integer >= 0 for n but received -1/);
    expect(() => unitSamples(4, 3, 'lhs', 2 ** 32)).toThrow(/for seed/);
  });
});

describe('startingPoints', () => {
  const p0 = Float64Array.of(2, -3, 0.5, 0, 7);
  const lower = Float64Array.of(1, -Infinity, -Infinity, -Infinity, 0);
  const upper = Float64Array.of(4, Infinity, 0.5000000000000001, Infinity, 8);

  it('starts with p0 itself and is deterministic for a spec', () => {
    for (const sampler of ['sobol', 'lhs'] as const) {
      const starts = startingPoints(p0, lower, upper, spec({ sampler, n: 100 }));
      expect(starts.length).toBe(100 * 5);
      expect(bits(starts.subarray(0, 5))).toBe(bits(p0));
      expect(bits(starts)).toBe(bits(startingPoints(p0, lower, upper, spec({ sampler, n: 100 }))));
      expect(bits(starts.subarray(5))).not.toBe(bits(startingPoints(p0, lower, upper, spec({ sampler, n: 100, seed: 1 })).subarray(5)));
    }
  });
  it('samples a box uniformly and strictly inside, however narrow or wide', () => {
    const lo = Float64Array.of(1, 1, -Number.MAX_VALUE, -1e-300);
    const hi = Float64Array.of(4, 1 + 2 * Number.EPSILON, Number.MAX_VALUE, 1e-300);
    const starts = startingPoints(Float64Array.of(2, 1, 0, 0), lo, hi, spec({ n: 4096 }));
    for (let i = 0; i < 4; i++) {
      const values = column(starts, 4, i).slice(1);
      for (const x of values) expect(x > lo[i]! && x < hi[i]!).toBe(true);
    }
    const first = column(starts, 4, 0).slice(1);
    expect(Math.min(...first)).toBeLessThan(1.01);
    expect(Math.max(...first)).toBeGreaterThan(3.99);
    const counts = [0, 0, 0];
    for (const x of first) counts[Math.floor(x - 1)]!++;
    for (const count of counts) expect(Math.abs(count - 4095 / 3)).toBeLessThan(5);
  });
  it('samples the distance from a single bound log-uniformly over the spread, on the feasible side', () => {
    const starts = startingPoints(Float64Array.of(5, -2), Float64Array.of(3, -Infinity), Float64Array.of(Infinity, 0), spec({ n: 2048, spread: 3 }));
    const aboveLower = column(starts, 2, 0).slice(1).map((x) => Math.log10((x - 3) / 2));
    const belowUpper = column(starts, 2, 1).slice(1).map((x) => Math.log10((0 - x) / 2));
    for (const decades of [aboveLower, belowUpper]) {
      for (const e of decades) expect(e > -3 - 1e-12 && e < 3 + 1e-12).toBe(true);
      expect(Math.min(...decades)).toBeLessThan(-2.99);
      expect(Math.max(...decades)).toBeGreaterThan(2.99);
    }
  });
  it('never lands on a single bound, even when the distance is below its rounding', () => {
    // The spacing of doubles at 1e20 is 16384; distances near 164 round back onto the bound.
    const starts = startingPoints(Float64Array.of(1e20 + 16384), Float64Array.of(1e20), null, spec({ n: 512 }));
    for (const x of starts.subarray(1)) expect(x).toBeGreaterThan(1e20);
    const atZero = startingPoints(Float64Array.of(0), null, Float64Array.of(0), spec({ n: 512 }));
    for (const x of atZero.subarray(1)) expect(x).toBeLessThan(0);
  });
  it('samples an unbounded parameter over spread decades either side of p0, keeping its sign', () => {
    const starts = startingPoints(Float64Array.of(3, -0.02), null, null, spec({ n: 4096, spread: 2 }));
    const positive = column(starts, 2, 0).slice(1);
    const negative = column(starts, 2, 1).slice(1);
    for (const x of positive) expect(x).toBeGreaterThan(0);
    for (const x of negative) expect(x).toBeLessThan(0);
    const decades = positive.map((x) => Math.log10(x / 3));
    expect(Math.min(...decades)).toBeGreaterThanOrEqual(-2);
    expect(Math.max(...decades)).toBeLessThanOrEqual(2);
    expect(Math.min(...decades)).toBeLessThan(-1.99);
    expect(Math.max(...decades)).toBeGreaterThan(1.99);
    const narrow = column(startingPoints(Float64Array.of(3), null, null, spec({ n: 1024, spread: 0.5 })), 1, 0).slice(1);
    for (const x of narrow) expect(Math.abs(Math.log10(x / 3))).toBeLessThanOrEqual(0.5);
  });
  it('samples an unbounded zero p0 on (-spread, spread)', () => {
    const values = column(startingPoints(Float64Array.of(0), null, null, spec({ n: 2048, spread: 2 })), 1, 0).slice(1);
    for (const x of values) expect(x > -2 && x < 2).toBe(true);
    expect(Math.min(...values)).toBeLessThan(-1.99);
    expect(Math.max(...values)).toBeGreaterThan(1.99);
    expect(values.filter((x) => x < 0).length).toBeGreaterThan(900);
  });
  it('rejects mismatched or empty bounds and too many parameters for Sobol', () => {
    expect(() => startingPoints(p0, Float64Array.of(0), null, spec())).toThrow(/Invalid lower: 1 bounds for 5 parameters/);
    expect(() => startingPoints(Float64Array.of(1), Float64Array.of(1), Float64Array.of(1), spec())).toThrow(/Invalid bounds of parameter 0: no value lies strictly between lower 1 and upper 1/);
    expect(() => startingPoints(Float64Array.of(NaN), null, null, spec())).toThrow(/Invalid p0\[0\]/);
    const many = new Float64Array(200).fill(1);
    expect(() => startingPoints(many, null, null, spec())).toThrow(/use 'lhs'/);
    expect(startingPoints(many, null, null, spec({ sampler: 'lhs' })).length).toBe(64 * 200);
  });
});

interface Trial { success: boolean; cost: number; tag: string }

/** A small seeded generator for the tests' delays, so each trial's completion order is reproducible. */
function delays(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % 7;
  };
}
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('runStarts', () => {
  const rows = (n: number, p = 2): Float64Array => Float64Array.from({ length: n * p }, (_, i) => i);

  it('picks the lowest cost among the starts that succeeded', async () => {
    const outcomes: Trial[] = [
      { success: true, cost: 5, tag: 'p0' },
      { success: false, cost: 1, tag: 'lower but failed' },
      { success: true, cost: 2, tag: 'best' },
      { success: true, cost: NaN, tag: 'nan' },
      { success: true, cost: 3, tag: 'worse' },
    ];
    const result = await runStarts(rows(5), 2, 2, async (_, index) => outcomes[index]!);
    expect(result.best.tag).toBe('best');
    expect(result.bestIndex).toBe(2);
    expect(result.converged).toBe(4);
    expect(result.failed).toEqual([]);
    expect(result.costs).toEqual([5, 1, 2, NaN, 3]);
  });
  it('breaks ties by the lower index, and a NaN first cost never wins', async () => {
    const costs = [NaN, 4, 1, 1, 1];
    const result = await runStarts(rows(5), 2, 5, async (_, index) => ({ success: true, cost: costs[index]!, tag: String(index) }));
    expect(result.bestIndex).toBe(2);
  });
  it('falls back to the lowest cost overall when no start succeeded (converged is 0)', async () => {
    const costs = [9, 3, 3, 7];
    const result = await runStarts(rows(4), 2, 3, async (_, index) => ({ success: false, cost: costs[index]!, tag: String(index) }));
    expect(result.bestIndex).toBe(1);
    expect(result.converged).toBe(0);
  });
  it('records starts that throw or reject and keeps going', async () => {
    const result = await runStarts(rows(5), 2, 2, (_, index): Promise<Trial> => {
      if (index === 0) throw new Error('singular Jacobian');
      if (index === 3) return Promise.reject('not an Error');
      return Promise.resolve({ success: index !== 4, cost: 10 - index, tag: String(index) });
    });
    expect(result.bestIndex).toBe(2);
    expect(result.failed).toEqual([{ index: 0, error: 'singular Jacobian' }, { index: 3, error: 'not an Error' }]);
    expect(result.costs).toEqual([NaN, 9, 8, NaN, 6]);
    expect(result.converged).toBe(2);
  });
  it('rejects with the error of start 0 only when every start failed', async () => {
    const first = new RangeError('start 0 diverged');
    const run = async (_: Float64Array, index: number): Promise<Trial> => {
      await sleep(index === 0 ? 5 : 0);
      throw index === 0 ? first : new Error(`start ${index} diverged`);
    };
    await expect(runStarts(rows(4), 2, 2, run)).rejects.toBe(first);
  });
  it('hands each run a copy of its own row', async () => {
    const starts = rows(3, 3);
    const seen: number[][] = [];
    await runStarts(starts, 3, 1, async (start, index) => {
      seen[index] = Array.from(start);
      start.fill(-1);
      return { success: true, cost: index, tag: '' };
    });
    expect(seen).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8]]);
    expect(Array.from(starts)).toEqual(Array.from(rows(3, 3)));
  });
  it('never has more than `concurrency` runs in flight, and uses that many', async () => {
    for (const concurrency of [1, 3, 8, 50]) {
      const next = delays(concurrency);
      let inFlight = 0;
      let peak = 0;
      await runStarts(rows(20), 2, concurrency, async (_, index) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await sleep(next());
        inFlight--;
        return { success: true, cost: index, tag: '' };
      });
      expect(peak).toBe(Math.min(concurrency, 20));
    }
  });
  it('picks the same start whatever order the runs finish in', async () => {
    const costs = [4, 2, 6, 1, 1, 3, 1, 5, 2, 1, 7, 1];
    const success = [true, true, true, false, true, true, true, true, true, true, true, true];
    const picks = new Set<string>();
    const orders = new Set<string>();
    for (let trial = 0; trial < 8; trial++) {
      const next = delays(trial + 1);
      const finished: number[] = [];
      const result = await runStarts(rows(12), 2, 1 + (trial % 4) * 3, async (_, index) => {
        await sleep(next());
        finished.push(index);
        return { success: success[index]!, cost: costs[index]!, tag: `start ${index}` };
      });
      orders.add(finished.join(','));
      picks.add(`${result.bestIndex} ${result.best.tag} ${result.costs.join(',')} ${result.converged}`);
    }
    expect(orders.size).toBeGreaterThan(1);
    expect([...picks]).toEqual(['4 start 4 4,2,6,1,1,3,1,5,2,1,7,1 11']);
  });
  it('rejects a bad layout or concurrency', async () => {
    const run = async (): Promise<Trial> => ({ success: true, cost: 0, tag: '' });
    await expect(runStarts(rows(3), 2, 0, run)).rejects.toThrow(/Expected positive integer for concurrency but received 0/);
    await expect(runStarts(new Float64Array(5), 2, 1, run)).rejects.toThrow(/Invalid starts: 5 values are not a whole, non-empty number of rows of 2 parameters/);
    await expect(runStarts(new Float64Array(0), 2, 1, run)).rejects.toThrow(/Invalid starts/);
  });
});

describe('normalizeMultistart', () => {
  it('is null when absent and fills in the defaults', () => {
    expect(normalizeMultistart(undefined)).toBeNull();
    expect(normalizeMultistart(null)).toBeNull();
    expect(normalizeMultistart(16)).toEqual({ n: 16, sampler: 'sobol', seed: 0, spread: 2 });
    expect(normalizeMultistart({ n: 8 })).toEqual({ n: 8, sampler: 'sobol', seed: 0, spread: 2 });
    expect(normalizeMultistart({ n: 4096, sampler: 'lhs', seed: 2 ** 32 - 1, spread: 0.5 })).toEqual({ n: 4096, sampler: 'lhs', seed: 4294967295, spread: 0.5 });
  });
  it('names the field and the constraint it violates', () => {
    const cases: Array<[unknown, ErrorConstructor, string]> = [
      [1, RangeError, 'Expected integer from 2 to 4096 (starts, p0 included) for multistart but received 1 of type number'],
      [2.5, RangeError, 'Expected integer from 2 to 4096 (starts, p0 included) for multistart but received 2.5 of type number'],
      ['8', TypeError, 'Expected number of starts (2 to 4096) or { n, sampler?, seed?, spread? } for multistart but received "8" of type string'],
      [[8], TypeError, 'for multistart but received an array of length 1'],
      [{}, TypeError, 'Expected integer from 2 to 4096 (starts, p0 included) for multistart.n but received undefined'],
      [{ n: 4097 }, RangeError, 'for multistart.n but received 4097 of type number'],
      [{ n: 8, sampler: 'halton' }, RangeError, `Expected 'sobol' or 'lhs' for multistart.sampler but received "halton" of type string`],
      [{ n: 8, sampler: 1 }, TypeError, `Expected 'sobol' or 'lhs' for multistart.sampler but received 1 of type number`],
      [{ n: 8, seed: -1 }, RangeError, 'Expected integer from 0 to 4294967295 for multistart.seed but received -1 of type number'],
      [{ n: 8, seed: 2 ** 32 }, RangeError, 'for multistart.seed but received 4294967296 of type number'],
      [{ n: 8, seed: '1' }, TypeError, 'for multistart.seed but received "1" of type string'],
      [{ n: 8, spread: 0 }, RangeError, 'Expected number of decades > 0 and <= 300 for multistart.spread but received 0 of type number'],
      [{ n: 8, spread: NaN }, RangeError, 'for multistart.spread but received NaN of type number'],
      [{ n: 8, spread: Infinity }, RangeError, 'for multistart.spread but received Infinity of type number'],
      [{ n: 8, samplr: 'lhs' }, RangeError, "Invalid multistart: unknown option 'samplr' (did you mean 'sampler'?); known: n, sampler, seed, spread"],
    ];
    for (const [value, type, message] of cases) {
      expect(() => normalizeMultistart(value)).toThrow(type);
      expect(() => normalizeMultistart(value)).toThrow(message);
    }
  });
});
