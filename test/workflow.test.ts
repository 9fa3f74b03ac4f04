// Workflows and goals: the tolerance table by data size, the steps 'quality'
// and 'fast' take, the strategies the workflow names force, the names that are
// rejected (with what is missing), and the memory options' validation.
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, type FitOptions, type FitResult } from '../dist/index.js';
import { synthetic } from '../dist/data/synthetic.js';
import { normalizeFitOptions } from '../dist/options.js';
import { sizeTolerance } from '../dist/workflow.js';
import { localGroup } from '../dist/distributed/local.js';
import { mpiAvailable } from '../dist/distributed/mpi.js';

const kN = 200_000;
const kModel = 'a*exp(-b*x)+c';
const kP0 = { a: 1, b: 0.5, c: 0 };
const kSlow = 30_000;

// Two data sets on which the tolerances make a difference: on A the table's
// looser 1e-7 stops a pass earlier than the exact 1e-12; on B 1e-9 does.
const setA = synthetic(kN, (x) => 5 * Math.exp(-1.3 * x) + 0.5, { x0: 0, x1: 4, noise: 0.05, seed: 42 });
const setB = synthetic(kN, (x) => 5 * Math.exp(-1.3 * x) + 0.5, { x0: 0, x1: 0.5, noise: 1, seed: 42 });
const small = synthetic(1000, (x) => 5 * Math.exp(-1.3 * x) + 0.5, { x0: 0, x1: 4, noise: 0.05, seed: 7 });

const engine = new Engine({ threads: 2 });
let dir = '';
const at = (name: string): string => join(dir, name);

function hex(values: Float64Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex');
}

function f64le(values: ArrayLike<number>): Buffer {
  const bytes = Buffer.alloc(values.length * 8);
  for (let i = 0; i < values.length; i++) bytes.writeDoubleLE(values[i]!, i * 8);
  return bytes;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nlfit-workflow-test-'));
  await Promise.all([writeFile(at('x.bin'), f64le(setA.x)), writeFile(at('y.bin'), f64le(setA.y))]);
});

afterAll(async () => {
  await engine.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function run(options: Partial<FitOptions>, set = setA): Promise<FitResult> {
  return engine.fit({ model: kModel, p0: kP0, data: { x: set.x, y: set.y }, ...options } as FitOptions);
}

/** The solver tolerances fit() would use for these options (on 2e5 points unless data is given). */
function tolerances(options: Record<string, unknown>): { ftol: number; xtol: number; gtol: number } {
  const job = normalizeFitOptions({ model: kModel, p0: kP0, data: { x: setA.x, y: setA.y }, ...options }, 2);
  return { ftol: job.solver.ftol, xtol: job.solver.xtol, gtol: job.solver.gtol };
}

const same = (t: number): { ftol: number; xtol: number; gtol: number } => ({ ftol: t, xtol: t, gtol: t });

function expectSameFit(actual: FitResult, expected: FitResult): void {
  expect(hex(actual.values)).toBe(hex(expected.values));
  expect(actual.nfev).toBe(expected.nfev);
  expect(actual.status).toBe(expected.status);
}

describe('sizeTolerance', () => {
  it('the table, at both sides of every boundary', () => {
    const table: Array<[number, number]> = [
      [1, 1e-12], [999, 1e-12],
      [1000, 1e-10], [9999, 1e-10],
      [10_000, 1e-9], [99_999, 1e-9],
      [100_000, 1e-8], [999_999, 1e-8],
      [1e6, 1e-7], [1e7 - 1, 1e-7],
      [1e7, 1e-6], [1e8 - 1, 1e-6],
      [1e8, 1e-5], [1e12, 1e-5],
    ];
    for (const [n, tol] of table) expect(sizeTolerance(n), `n = ${n}`).toBe(tol);
    for (const [n, tol] of table) expect(sizeTolerance(n, 0), `n = ${n}`).toBe(tol);
  });

  it("'quality' is one row tighter, 'fast' one row looser, clamped at the ends", () => {
    const rows = [1e-12, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5];
    const firstOfRow = [1, 1000, 1e4, 1e5, 1e6, 1e7, 1e8];
    firstOfRow.forEach((n, row) => {
      expect(sizeTolerance(n, -1), `n = ${n}, quality`).toBe(rows[Math.max(0, row - 1)]);
      expect(sizeTolerance(n, 1), `n = ${n}, fast`).toBe(rows[Math.min(rows.length - 1, row + 1)]);
    });
    expect(sizeTolerance(999, -1)).toBe(1e-12);
    expect(sizeTolerance(999, 1)).toBe(1e-10);
    expect(sizeTolerance(1e8, 1)).toBe(1e-5);
    expect(sizeTolerance(1e8, -1)).toBe(1e-6);
    expect(sizeTolerance(5000, -10)).toBe(1e-12);
    expect(sizeTolerance(5000, 10)).toBe(1e-5);
  });

  // Regression test (fixed bug in src/workflow.ts sizeTolerance): a size beyond every row's bound
  // (Infinity) finds no row (findIndex gives -1) and is clamped to the first
  // row, 1e-12, though the table says "at 1e8 and above 1e-5". fit() always
  // passes a finite count, so only direct callers see it.
  it('an infinite size is at the last row', () => {
    expect(sizeTolerance(Infinity)).toBe(1e-5);
  });
});

describe('tolerances through fit()', () => {
  let exact: FitResult;
  let fast: FitResult;
  beforeAll(async () => {
    exact = await run({});
    fast = await run({ workflow: 'fast' });
  }, kSlow);

  it('without a workflow or goal the defaults are exact: 1e-12, gtol 0', async () => {
    expect(tolerances({})).toEqual({ ftol: 1e-12, xtol: 1e-12, gtol: 0 });
    expectSameFit(exact, await run({ ftol: 1e-12, xtol: 1e-12 }));
    expectSameFit(exact, await run({ ftol: 1e-12, xtol: 1e-12, gtol: 0 }));
    // The data set tells the tolerances apart: the table's would stop earlier.
    expect(fast.nfev).toBeLessThan(exact.nfev);
    expect(hex(fast.values)).not.toBe(hex(exact.values));
  }, kSlow);

  it("naming any workflow, even 'auto', selects the size table", () => {
    expect(sizeTolerance(kN)).toBe(1e-8);
    expect(tolerances({ workflow: 'auto' })).toEqual(same(1e-8));
    expect(tolerances({ workflow: 'chunked' })).toEqual(same(1e-8));
    expect(tolerances({ goal: 'memory_efficient' })).toEqual(same(1e-8));
  });

  it("workflow 'fast' on 2e5 points uses the table one row looser", async () => {
    expect(tolerances({ workflow: 'fast' })).toEqual(same(sizeTolerance(kN, 1)));
    expect(sizeTolerance(kN, 1)).toBe(1e-7);
    expectSameFit(fast, await run(same(sizeTolerance(kN, 1))));
    expect(fast.strategy).toBe('chunked');
    // Small data: its own row.
    const job = normalizeFitOptions({ model: kModel, p0: kP0, data: { x: small.x, y: small.y }, workflow: 'fast' }, 2);
    expect(job.solver).toMatchObject(same(1e-9));
  }, kSlow);

  it('an explicit ftol, xtol or gtol wins over the workflow', async () => {
    expect(tolerances({ workflow: 'fast', ftol: 1e-12 })).toEqual({ ftol: 1e-12, xtol: 1e-7, gtol: 1e-7 });
    expect(tolerances({ workflow: 'fast', xtol: 1e-3 })).toEqual({ ftol: 1e-7, xtol: 1e-3, gtol: 1e-7 });
    expect(tolerances({ workflow: 'fast', gtol: 0 })).toEqual({ ftol: 1e-7, xtol: 1e-7, gtol: 0 });
    expect(tolerances({ goal: 'quality', ftol: 0 })).toEqual({ ftol: 0, xtol: 1e-9, gtol: 1e-9 });
    const overridden = await run({ workflow: 'fast', ftol: 1e-12, xtol: 1e-12, gtol: 0 });
    expectSameFit(overridden, exact);
    expect(hex(overridden.values)).not.toBe(hex(fast.values));
  }, kSlow);

  it("goal 'quality' is one row tighter (and the same as workflow 'quality')", async () => {
    expect(tolerances({ goal: 'quality' })).toEqual(same(1e-9));
    expect(tolerances({ workflow: 'quality' })).toEqual(same(1e-9));
    // Steps add up but stay within one row either way.
    expect(tolerances({ workflow: 'quality', goal: 'quality' })).toEqual(same(1e-9));
    expect(tolerances({ workflow: 'fast', goal: 'fast' })).toEqual(same(1e-7));
    expect(tolerances({ workflow: 'fast', goal: 'quality' })).toEqual(same(1e-8));
    // The goal also turns multi-start on (8 starts); the workflow is tolerances only.
    const quality = await run({ goal: 'quality' }, setB);
    expectSameFit(quality, await run({ ...same(1e-9), multistart: 8 }, setB));
    const workflow = await run({ workflow: 'quality' }, setB);
    expectSameFit(workflow, await run(same(1e-9), setB));
    // On B, 1e-9 stops a pass before the exact defaults.
    expect(workflow.nfev).toBeLessThan((await run({}, setB)).nfev);
  }, kSlow);
});

describe('workflows that name a strategy force it', () => {
  it("'standard' on 2e5 points runs on the calling thread (auto would use the pool)", async () => {
    const r = await run({ workflow: 'standard' });
    expect(r.strategy).toBe('standard');
    expect(r.execution.reason).toContain("forced 'standard'");
    expectSameFit(r, await run({ strategy: 'standard', ...same(1e-8) }));
  }, kSlow);

  it("'chunked' on 1000 points runs on the pool (auto would not)", async () => {
    expect((await run({}, small)).strategy).toBe('standard');
    const r = await run({ workflow: 'chunked' }, small);
    expect(r.strategy).toBe('chunked');
    expect(r.execution.reason).toContain("forced 'chunked'");
  }, kSlow);

  it("'streaming' streams in-memory data (auto never does), to the same bits", async () => {
    const r = await run({ workflow: 'streaming' });
    expect(r.strategy).toBe('streaming');
    expect(r.execution.dataSource).toBe('memory');
    expectSameFit(r, await run({ workflow: 'chunked' }));
  }, kSlow);

  it("'hpc' uses the pool at any size", async () => {
    const r = await run({ workflow: 'hpc' }, small);
    expect(r.strategy).toBe('chunked');
    expect(r.execution.reason).toContain("workflow 'hpc' uses the pool at any size");
  }, kSlow);

  it('strategy may repeat the workflow, or refine a workflow that decides by memory', async () => {
    expect((await run({ workflow: 'chunked', strategy: 'chunked' }, small)).strategy).toBe('chunked');
    expect((await run({ workflow: 'streaming', strategy: 'auto' }, small)).strategy).toBe('streaming');
    expect((await run({ workflow: 'fast', strategy: 'standard' })).strategy).toBe('standard');
    expect((await run({ goal: 'quality', strategy: 'streaming' }, small)).strategy).toBe('streaming');
  }, kSlow);

  it('a strategy contradicting the workflow is rejected, naming both', async () => {
    for (const [workflow, strategy] of [['chunked', 'standard'], ['streaming', 'chunked'], ['standard', 'streaming']] as const) {
      const promise = run({ workflow, strategy }, small);
      await expect(promise).rejects.toThrow(RangeError);
      await expect(promise).rejects.toThrow(`Invalid strategy: '${strategy}' contradicts workflow '${workflow}'`);
    }
  });
});

describe('names', () => {
  it("an unknown workflow or goal: the known names and a 'did you mean'", async () => {
    await expect(run({ workflow: 'fsat' as never })).rejects.toThrow("(did you mean 'fast'?)");
    await expect(run({ workflow: 'streeming' as never })).rejects.toThrow("(did you mean 'streaming'?)");
    await expect(run({ workflow: 'fsat' as never })).rejects.toThrow(/^Expected one of 'auto', .*'hpc_distributed' \(did you mean 'fast'\?\) for workflow but received "fsat" of type string$/);
    await expect(run({ goal: 'qualty' as never })).rejects.toThrow(/for goal but received "qualty".*$/);
    await expect(run({ goal: 'qualty' as never })).rejects.toThrow("(did you mean 'quality'?)");
    await expect(run({ workflow: 'zzzzzzzz' as never })).rejects.toThrow(/for workflow/);
    await expect(run({ workflow: 'zzzzzzzz' as never })).rejects.not.toThrow(/did you mean/);
    await expect(run({ workflow: 3 as never })).rejects.toThrow(TypeError);
    await expect(run({ strategy: 'chunky' as never })).rejects.toThrow("(did you mean 'chunked'?)");
  });

  it("'hpc_distributed' is one fit across MPI ranks (distributed: 'mpi'); the distributed option overrides the transport", async () => {
    const plain = await run({}, small);
    // distributed: false keeps it in this process; a Communicator of one rank runs the distributed path.
    const alone = await run({ workflow: 'hpc_distributed', distributed: false }, small);
    expect(alone.execution.distributed).toBeUndefined();
    const [only] = localGroup(1);
    const ranked = await run({ workflow: 'hpc_distributed', distributed: only }, small);
    expect(ranked.execution.distributed).toMatchObject({ transport: 'local', rank: 0, ranks: 1 });
    expect(Buffer.from(ranked.values.buffer).equals(Buffer.from(plain.values.buffer))).toBe(true);
    expect(Buffer.from(alone.values.buffer).equals(Buffer.from(plain.values.buffer))).toBe(true);
    // Without the MPI addon, 'mpi' says how to get it (with it, this process would become an MPI singleton: not here).
    const mpi = mpiAvailable();
    if (!mpi.available) {
      const promise = run({ workflow: 'hpc_distributed' }, small);
      await expect(promise).rejects.toMatchObject({ code: 'ERR_NLFIT_OPTION' });
      await expect(promise).rejects.toThrow(/MPI/);
    }
  });

  it("'auto_global', 'large_robust' and the goals 'robust', 'global', 'quality' turn multi-start on (8 starts); an explicit multistart wins", async () => {
    for (const options of [{ workflow: 'auto_global' }, { workflow: 'large_robust' }, { goal: 'robust' }, { goal: 'global' }, { goal: 'quality' }] as Array<Partial<FitOptions>>) {
      const r = await run(options, small);
      expect(r.multistart?.starts, JSON.stringify(options)).toBe(8);
    }
    expect((await run({ goal: 'robust', multistart: 3 }, small)).multistart?.starts).toBe(3);
    expect((await run({ workflow: 'fast' }, small)).multistart).toBeNull();
    expect((await run({}, small)).multistart).toBeNull();
  });
});

describe("goal 'memory_efficient'", () => {
  it('streams file data even when memory is plentiful; same bits', async () => {
    const files = { x: at('x.bin'), y: at('y.bin') };
    const plain = await run({ data: files, workflow: 'auto' });
    expect(plain.strategy).toBe('chunked');
    expect(plain.execution.memoryPressure).toBeLessThan(0.01);
    const lean = await run({ data: files, goal: 'memory_efficient' });
    expect(lean.strategy).toBe('streaming');
    expect(lean.execution.dataSource).toBe('binary');
    expectSameFit(lean, plain);
  }, kSlow);

  it('streams a one-shot stream too, but leaves in-memory data in place', async () => {
    async function* chunks(): AsyncGenerator<Record<string, Float64Array>> {
      for (let i = 0; i < kN; i += 50_000) yield { x: setA.x.subarray(i, i + 50_000), y: setA.y.subarray(i, i + 50_000) };
    }
    const streamed = await run({ data: chunks(), goal: 'memory_efficient' });
    expect(streamed.strategy).toBe('streaming');
    expect(streamed.execution.dataSource).toBe('stream');
    const inMemory = await run({ goal: 'memory_efficient' });
    expect(inMemory.strategy).toBe('chunked');
    expectSameFit(streamed, inMemory);
  }, kSlow);

  it('an explicit strategy still wins', async () => {
    const r = await run({ data: { x: at('x.bin'), y: at('y.bin') }, goal: 'memory_efficient', strategy: 'chunked' });
    expect(r.strategy).toBe('chunked');
  }, kSlow);
});

describe('memoryLimitMb and safetyFactor are validated, naming the field', () => {
  const inMemory = { data: { x: small.x, y: small.y } };
  const fromFiles = (): Partial<FitOptions> => ({ data: { x: at('x.bin'), y: at('y.bin') } });
  const bad: Array<[string, unknown, ErrorConstructor]> = [
    ['memoryLimitMb', 0, RangeError],
    ['memoryLimitMb', -1, RangeError],
    ['memoryLimitMb', NaN, RangeError],
    ['memoryLimitMb', 0.5, RangeError],
    ['memoryLimitMb', Infinity, RangeError],
    ['memoryLimitMb', 'x', TypeError],
    ['safetyFactor', 0, RangeError],
    ['safetyFactor', -1, RangeError],
    ['safetyFactor', NaN, RangeError],
    ['safetyFactor', 2, RangeError],
    ['safetyFactor', 1.0000001, RangeError],
    ['safetyFactor', 'x', TypeError],
  ];
  for (const [field, value, type] of bad) {
    it(`${field}: ${String(value)}`, async () => {
      const received = typeof value === 'string' ? `"${value}" of type string` : `${String(value)} of type number`;
      // The wording of what was expected differs by path (options.ts or memory/limits.ts); the field and value do not.
      const message = new RegExp(`^Expected [^]* for ${field} but received ${received.replace(/[()]/g, '\\$&')}$`);
      for (const data of [inMemory, fromFiles()]) {
        const promise = run({ ...data, [field]: value });
        await expect(promise).rejects.toThrow(type);
        await expect(promise).rejects.toThrow(message);
      }
    }, kSlow);
  }

  it('the ends of the ranges are accepted', async () => {
    for (const options of [{ safetyFactor: 1 }, { safetyFactor: 0.01 }, { memoryLimitMb: 1 }, { memoryLimitMb: 1e6 }]) {
      expect((await run(options, small)).success).toBe(true);
    }
  }, kSlow);

  it('a stream rejected for a bad safetyFactor leaves no spill file behind', async () => {
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = await mkdtemp(join(dir, 'tmp-'));
    try {
      let spilled: string[] = [];
      async function* chunks(): AsyncGenerator<Record<string, Float64Array>> {
        for (let i = 0; i < kN; i += 10_000) yield { x: setA.x.subarray(i, i + 10_000), y: setA.y.subarray(i, i + 10_000) };
        spilled = await readdir(tmpdir());
      }
      // memoryLimitMb 2 would spill the 3.2 MB stream, but options are checked before the stream is read.
      await expect(run({ data: chunks(), memoryLimitMb: 2, safetyFactor: 2 })).rejects.toThrow('for safetyFactor');
      expect(spilled).toEqual([]);
      expect(await readdir(tmpdir())).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  }, kSlow);
});
