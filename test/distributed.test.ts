// One fit across ranks, bit-identical to one process (issue 9), without MPI:
// localGroup(n) gives n Communicators in this process, and every rank runs
// its own fit() on its own Engine exactly as an MPI rank would, reading only
// its slice. The MPI transport itself is tested under mpirun in
// test/mpi*.test.ts (skipped where MPI is not installed).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine, localGroup, type Communicator, type FitOptions, type FitResult } from '../dist/index.js';
import { synthetic } from '../dist/data/synthetic.js';
import { rankRange } from '../dist/distributed/evaluator.js';
import { writeNpyFile } from '../dist/cli/npy.js';

const dir = mkdtempSync(join(tmpdir(), 'nlfit-distributed-'));
const engines: Engine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
  rmSync(dir, { recursive: true, force: true });
});

function engine(index: number): Engine {
  while (engines.length <= index) engines.push(new Engine({ threads: 1 }));
  return engines[index]!;
}

/** A 1-D float64 .npy file in the test folder (the CLI's writer). */
async function npy(name: string, values: Float64Array): Promise<string> {
  const path = join(dir, name);
  await writeNpyFile(path, values, [values.length]);
  return path;
}

const bits = (r: FitResult): string => Buffer.from(r.values.buffer, r.values.byteOffset, r.values.byteLength).toString('hex');

/** Every rank's fit of the same options (plus `extra(rank)`), each on its own engine. */
async function ranks(size: number, options: FitOptions, extra: (rank: number) => Partial<FitOptions> = () => ({})): Promise<PromiseSettledResult<FitResult>[]> {
  const group = localGroup(size);
  return Promise.allSettled(group.map((comm: Communicator) => engine(comm.rank).fit({ ...options, ...extra(comm.rank), distributed: comm })));
}

async function expectSameBits(options: FitOptions, sizes = [2, 3, 5]): Promise<FitResult> {
  const single = await engine(0).fit(options);
  expect(single.success).toBe(true);
  for (const size of sizes) {
    const results = await ranks(size, options);
    results.forEach((settled, rank) => {
      expect(settled.status, `rank ${rank} of ${size}`).toBe('fulfilled');
      const r = (settled as PromiseFulfilledResult<FitResult>).value;
      expect(bits(r), `rank ${rank} of ${size}`).toBe(bits(single));
      expect(r.nfev).toBe(single.nfev);
      expect(r.cost).toBe(single.cost);
      expect(r.rSquared).toBe(single.rSquared);
      expect(Array.from(r.stderr ? Object.values(r.stderr) : [])).toEqual(Array.from(single.stderr ? Object.values(single.stderr) : []));
      expect(r.execution.distributed).toMatchObject({ transport: 'local', rank, ranks: size, ...rankRange(rank, size, Math.ceil(r.nPoints / 512)) });
    });
  }
  return single;
}

const data = synthetic(200_000, (x) => 3 * Math.exp(-0.7 * x) + 0.5, { x0: 0, x1: 10, noise: 0.02, seed: 9 });
const exp3: FitOptions = { model: 'a*exp(-b*x)+c', data: { x: data.x, y: data.y }, p0: { a: 1, b: 0.1, c: 0 } };

describe('a fit across ranks gives the bits of one process', () => {
  it('rankRange tiles the blocks in rank order, sizes differing by at most one', () => {
    for (const [size, nBlocks] of [[1, 7], [2, 391], [3, 391], [5, 2], [4, 0], [7, 100]] as const) {
      let next = 0;
      const sizes: number[] = [];
      for (let rank = 0; rank < size; rank++) {
        const r = rankRange(rank, size, nBlocks);
        expect(r.blockStart).toBe(next);
        sizes.push(r.blockEnd - r.blockStart);
        next = r.blockEnd;
      }
      expect(next).toBe(nBlocks);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  });

  it('arrays in memory, 2, 3 and 5 ranks', async () => {
    await expectSameBits(exp3);
  });

  it('npy files: each rank reads only its slice; in memory and streamed (memoryLimitMb)', async () => {
    const files = { x: await npy('x.npy', data.x), y: await npy('y.npy', data.y) };
    const fromFiles = { ...exp3, data: files } as FitOptions;
    const single = await expectSameBits(fromFiles, [2, 3]);
    const streamed = await ranks(3, { ...fromFiles, strategy: 'streaming', chunkSize: 4096 });
    for (const settled of streamed) {
      const r = (settled as PromiseFulfilledResult<FitResult>).value;
      expect(r.execution.strategy).toBe('streaming');
      expect(bits(r)).toBe(bits(single));
    }
  });

  it('robust loss, bounds, sigma weights, a catalog model with its guess, and data smaller than the ranks', async () => {
    const sigma = new Float64Array(data.x.length).map((_, i) => 0.01 + (i % 7) * 0.002);
    await expectSameBits({ ...exp3, loss: 'soft_l1', fScale: 0.05 }, [2, 3]);
    await expectSameBits({ ...exp3, bounds: { b: [0, 0.5] } }, [3]);
    await expectSameBits({ ...exp3, data: { x: data.x, y: data.y, sigma } }, [2]);
    await expectSameBits({ model: 'exponential', data: { x: data.x, y: data.y } }, [3]);
    // 1000 points are 2 blocks: of 5 ranks, 3 hold none.
    await expectSameBits({ ...exp3, data: { x: data.x.subarray(0, 1000), y: data.y.subarray(0, 1000) } }, [5]);
  });

  it('a JavaScript model, its blocks reduced on every rank\'s workers', async () => {
    const path = join(dir, 'decay.mjs');
    writeFileSync(path, 'export function decay(v, p) { return p[0] * Math.exp(-p[1] * v[0]) + p[2]; }\n');
    const n = 20_000;
    await expectSameBits(
      { ...exp3, model: { module: path, export: 'decay', params: ['a', 'b', 'c'], variables: ['x'] }, data: { x: data.x.subarray(0, n), y: data.y.subarray(0, n) } },
      [3],
    );
  });

  it("maxTimeMs: rank 0's clock decides, so every rank stops after the same pass with the same point", async () => {
    const results = await ranks(3, { ...exp3, p0: { a: 0.1, b: 2, c: 5 }, maxTimeMs: 1 });
    const values = results.map((settled) => (settled as PromiseFulfilledResult<FitResult>).value);
    for (const r of values) {
      expect(r.status).toBe('max_time');
      expect(bits(r)).toBe(bits(values[0]!));
      expect(r.nfev).toBe(values[0]!.nfev);
    }
  });

  it('multi-start runs its starts in the same order on every rank', async () => {
    await expectSameBits({ ...exp3, multistart: { n: 4, seed: 3 } }, [2]);
  });
});

describe('failures end the fit on every rank, naming the rank', () => {
  it("a rank whose file cannot be read: its own error there, the others reject with rank and message (no rank waits)", async () => {
    const good = await npy('good-y.npy', data.y);
    const results = await ranks(3, { ...exp3, data: { x: await npy('gx.npy', data.x), y: good } } as FitOptions, (rank) =>
      rank === 1 ? ({ data: { x: join(dir, 'missing-x.npy'), y: good } } as Partial<FitOptions>) : {},
    );
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    const reasons = results.map((r) => (r as PromiseRejectedResult).reason as Error & { code?: string; rank?: number });
    expect(reasons[1]!.message).toMatch(/missing-x\.npy/);
    for (const rank of [0, 2]) {
      expect(reasons[rank]!.name).toBe('DistributedError');
      expect(reasons[rank]!.message).toMatch(/^nlfit: rank 1 of 3 failed: .*missing-x\.npy/);
      expect(reasons[rank]!.rank).toBe(1);
      expect(reasons[rank]!.code).toBe(reasons[1]!.code);
    }
  });

  it('ranks not running the same fit: the first option that differs is named', async () => {
    const results = await ranks(2, exp3, (rank) => (rank === 1 ? { ftol: 1e-6 } : {}));
    for (const settled of results) {
      expect(settled.status).toBe('rejected');
      const reason = (settled as PromiseRejectedResult).reason as Error & { code?: string };
      expect(reason.message).toMatch(/rank 1 of 2 is not running the same fit as rank 0: its option ftol is/);
      expect(reason.code).toBe('ERR_NLFIT_DISTRIBUTED');
    }
    const shorter = await ranks(2, exp3, (rank) => (rank === 1 ? { data: { x: data.x.subarray(0, 5000), y: data.y.subarray(0, 5000) } } : {}));
    for (const settled of shorter) expect(String((settled as PromiseRejectedResult).reason)).toMatch(/reads 5000 points where rank 0 reads 200000/);
  });

  it("a bad value in one rank's slice is a data error on every rank, naming the point", async () => {
    const y = Float64Array.from(data.y);
    y[150_123] = NaN;
    const results = await ranks(3, { ...exp3, data: { x: data.x, y } });
    for (const settled of results) {
      expect(settled.status).toBe('rejected');
      const reason = (settled as PromiseRejectedResult).reason as Error & { code?: string };
      expect(reason.code).toBe('ERR_NLFIT_DATA');
      expect(reason.message).toMatch(/150123/);
    }
  });

  it('an abort on one rank stops every rank', async () => {
    const controller = new AbortController();
    controller.abort();
    const results = await ranks(2, exp3, (rank) => (rank === 1 ? { signal: controller.signal } : {}));
    expect((results[1] as PromiseRejectedResult).reason.name).toBe('AbortError');
    expect((results[0] as PromiseRejectedResult).reason.message).toMatch(/rank 1 of 2 failed/);
  });

  it('the distributed option is validated with the others', async () => {
    await expect(engine(0).fit({ ...exp3, distributed: 5 as never })).rejects.toThrow(/for distributed but received 5 of type number/);
    await expect(engine(0).fit({ ...exp3, distributed: { rank: 2, size: 2, allgather: () => Promise.resolve([]) } as never })).rejects.toThrow(/for distributed/);
  });
});

describe('checkpoints across ranks', () => {
  it('rank 0 writes; a resume with another number of ranks (or one process) reaches the same bits', async () => {
    const path = join(dir, 'ranks.ckpt');
    const full = await engine(0).fit(exp3);
    const first = await ranks(2, { ...exp3, maxIterations: 2, checkpoint: { path, everyIterations: 1 } });
    for (const settled of first) expect((settled as PromiseFulfilledResult<FitResult>).value.status).toBe('max_iterations');
    expect((first[0] as PromiseFulfilledResult<FitResult>).value.checkpoint?.written).toBeGreaterThan(0);
    expect((first[1] as PromiseFulfilledResult<FitResult>).value.checkpoint?.written).toBe(0);
    const resumed = await ranks(3, { ...exp3, checkpoint: { path, resume: true } });
    for (const settled of resumed) {
      const r = (settled as PromiseFulfilledResult<FitResult>).value;
      expect(r.checkpoint?.resumedFrom).toBe(2);
      expect(bits(r)).toBe(bits(full));
      expect(r.nfev).toBe(full.nfev);
    }
    // The data identity is the same whoever computed it: one process resumes the ranks' file too.
    const alone = await engine(0).fit({ ...exp3, checkpoint: { path, resume: true } });
    expect(alone.checkpoint?.resumedFrom).toBeGreaterThanOrEqual(2);
    expect(bits(alone)).toBe(bits(full));
  });
});

describe('fitMany across ranks', () => {
  it('each rank fits its curves; every rank returns the whole result, in curve order, with the bits of one process', async () => {
    const n = 40;
    const m = 1237;
    const x = Float64Array.from({ length: n }, (_, i) => i / 4);
    const y = new Float64Array(m * n);
    for (let c = 0; c < m; c++) for (let i = 0; i < n; i++) y[c * n + i] = (1 + (c % 13)) * Math.exp(-(0.2 + (c % 7) * 0.05) * x[i]!) + 0.1 * Math.sin(c + i);
    const options = { model: 'a*exp(-b*x)', x, y, p0: { a: 1, b: 0.1 } };
    const single = await engine(0).fitMany(options);
    for (const size of [2, 3]) {
      const group = localGroup(size);
      const results = await Promise.all(group.map((comm) => engine(comm.rank).fitMany({ ...options, distributed: comm })));
      for (const r of results) {
        expect(r.m).toBe(m);
        expect(Buffer.from(r.params.buffer, r.params.byteOffset, r.params.byteLength).equals(Buffer.from(single.params.buffer, single.params.byteOffset, single.params.byteLength))).toBe(true);
        expect(Array.from(r.stderr)).toEqual(Array.from(single.stderr));
        expect(Array.from(r.status)).toEqual(Array.from(single.status));
        expect(Array.from(r.nfev)).toEqual(Array.from(single.nfev));
        expect(r.counts).toEqual(single.counts);
        expect(r.converged).toBe(single.converged);
      }
    }
  });

  it('a rank that fails ends the batch on every rank', async () => {
    const x = Float64Array.from({ length: 10 }, (_, i) => i);
    const y = new Float64Array(50).fill(1);
    const group = localGroup(2);
    const results = await Promise.allSettled(
      group.map((comm) => engine(comm.rank).fitMany({ model: 'a*x+b', x, y, p0: { a: 1, b: 0 }, distributed: comm, ...(comm.rank === 1 ? { ftol: -1 } : {}) })),
    );
    expect((results[1] as PromiseRejectedResult).reason.message).toMatch(/ftol/);
    expect((results[0] as PromiseRejectedResult).reason.message).toMatch(/^nlfit: rank 1 of 2 failed: .*ftol/);
  });
});
