// Streaming fits: the same data from every kind of source and every execution
// strategy gives the same bits; one-shot streams spill to a temporary file
// that never outlives the fit; bad values in files are named by column and
// row; memory pressure reshapes the chunks mid-fit without changing a bit.
// Fixtures (about 20 MB) are written at run time to a private temp directory.
import { statSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Engine, type FitOptions, type FitResult } from '../dist/index.js';
import { memorySource, openSource } from '../dist/data/sources/index.js';
import { synthetic } from '../dist/data/synthetic.js';
import { EnginePool } from '../dist/exec/engine.js';
import { StreamingEvaluator, type StreamShape } from '../dist/exec/streaming.js';
import { PressureMonitor, pressureRelief, type Chunking, type PressureReading } from '../dist/memory/index.js';
import { compileModel } from '../dist/model/compile.js';
import { runSolver } from '../dist/solver/driver.js';

const kN = 200_000;
const kBadRow = 123_456;
const kSpillPrefix = 'nlfit-spill-'; // src/data/sources/spill.ts kDirectoryPrefix
const kModel = 'a*exp(-b*x)+c';
const kP0 = { a: 1, b: 0.5, c: 0 };
const kSolver = { ftol: 1e-12, xtol: 1e-12, gtol: 0, maxFev: 400, factor: 100 };
const kSlow = 30_000;

// Three-parameter exponential with seeded noise: the same numbers on every machine.
const data = synthetic(kN, (x) => 5 * Math.exp(-1.3 * x) + 0.5, { x0: 0, x1: 4, noise: 0.05, seed: 42 });
const sigma = Float64Array.from({ length: kN }, (_, i) => 0.04 + 0.02 * ((i * 7919) % 13) / 13);

// Two threads whatever the machine, so the coordinator's decisions below do not depend on it.
const engine = new Engine({ threads: 2 });
const pool = new EnginePool({ threads: 2 });
let dir = '';
const at = (name: string): string => join(dir, name);

function hex(values: Float64Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex');
}

/** Little-endian float64 bytes (what a raw .bin column and a '<f8' .npy hold). */
function f64le(values: ArrayLike<number>): Buffer {
  const bytes = Buffer.alloc(values.length * 8);
  for (let i = 0; i < values.length; i++) bytes.writeDoubleLE(values[i]!, i * 8);
  return bytes;
}

/** A .npy file, format 1.0: magic, version, uint16 header length, dict padded with spaces to 64 bytes, '\n', data. */
function npy(shape: number[], body: Buffer): Buffer {
  const shapeText = `(${shape.join(', ')}${shape.length === 1 ? ',' : ''})`;
  const dict = `{'descr': '<f8', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  const header = `${dict.padEnd(total - 10 - 1, ' ')}\n`;
  const preamble = Buffer.alloc(10);
  preamble.write('\x93NUMPY', 'latin1');
  preamble[6] = 1;
  preamble[7] = 0;
  preamble.writeUInt16LE(header.length, 8);
  return Buffer.concat([preamble, Buffer.from(header, 'latin1'), body]);
}

function csv(columns: Record<string, ArrayLike<number>>): string {
  const names = Object.keys(columns);
  const n = columns[names[0]!]!.length;
  const lines = [names.join(',')];
  for (let i = 0; i < n; i++) lines.push(names.map((name) => String(columns[name]![i])).join(','));
  return `${lines.join('\n')}\n`;
}

function withValue(values: Float64Array, row: number, value: number): Float64Array {
  const copy = Float64Array.from(values);
  copy[row] = value;
  return copy;
}

/** Spill directories in os.tmpdir(). */
async function spillDirectories(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((name) => name.startsWith(kSpillPrefix)).sort();
}

/**
 * The columns as a one-shot async iterable of `rows`-row chunks. After the last
 * chunk has been taken (the source has ingested everything by then) it records
 * the spill directories that appeared during the ingest.
 */
function chunks(columns: Record<string, Float64Array>, rows: number, seen: string[] = []): AsyncIterable<Record<string, Float64Array>> {
  return (async function* () {
    const before = new Set(await spillDirectories());
    const n = Object.values(columns)[0]!.length;
    for (let i = 0; i < n; i += rows) {
      yield Object.fromEntries(Object.entries(columns).map(([name, values]) => [name, values.subarray(i, i + rows)]));
    }
    for (const name of await spillDirectories()) if (!before.has(name)) seen.push(name);
  })();
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nlfit-streaming-test-'));
  const xy = Buffer.alloc(kN * 16);
  for (let i = 0; i < kN; i++) {
    xy.writeDoubleLE(data.x[i]!, 16 * i);
    xy.writeDoubleLE(data.y[i]!, 16 * i + 8);
  }
  await Promise.all([
    writeFile(at('d.csv'), csv({ x: data.x, y: data.y })),
    writeFile(at('x.npy'), npy([kN], f64le(data.x))),
    writeFile(at('y.npy'), npy([kN], f64le(data.y))),
    writeFile(at('x.bin'), f64le(data.x)),
    writeFile(at('y.bin'), f64le(data.y)),
    writeFile(at('xy.npy'), npy([kN, 2], xy)),
    writeFile(at('sigma.bin'), f64le(sigma)),
    writeFile(at('y-nan.bin'), f64le(withValue(data.y, kBadRow, NaN))),
    writeFile(at('sigma-zero.bin'), f64le(withValue(sigma, kBadRow, 0))),
    writeFile(at('sigma-negative.bin'), f64le(withValue(sigma, kBadRow, -0.05))),
    writeFile(at('y-nan.csv'), csv({ x: data.x, y: withValue(data.y, kBadRow, NaN) })),
  ]);
});

afterAll(async () => {
  await engine.close();
  await pool.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function run(options: Partial<FitOptions>): Promise<FitResult> {
  return engine.fit({ model: kModel, p0: kP0, data: { x: data.x, y: data.y }, ...options } as FitOptions);
}

describe('every source and strategy gives the same bits', () => {
  let reference: FitResult;
  beforeAll(async () => {
    reference = await run({});
  });

  it('the reference fit converged, in memory on the pool', () => {
    expect(reference.success).toBe(true);
    expect(reference.strategy).toBe('chunked');
    expect(reference.execution.dataSource).toBe('memory');
    expect(reference.values[0]).toBeCloseTo(5, 2);
    expect(reference.values[1]).toBeCloseTo(1.3, 2);
    expect(reference.values[2]).toBeCloseTo(0.5, 2);
  });

  const sources: Array<{ label: string; data: () => unknown; kind: string }> = [
    { label: 'in memory', data: () => ({ x: data.x, y: data.y }), kind: 'memory' },
    { label: 'CSV', data: () => at('d.csv'), kind: 'csv' },
    { label: 'per-column .npy', data: () => ({ x: at('x.npy'), y: at('y.npy') }), kind: 'npy' },
    { label: 'raw .bin columns', data: () => ({ x: at('x.bin'), y: { path: at('y.bin'), dtype: 'float64' } }), kind: 'binary' },
    { label: 'a 2-D .npy', data: () => ({ path: at('xy.npy'), columns: ['x', 'y'] }), kind: 'npy' },
    { label: '.npy and .bin mixed', data: () => ({ x: at('x.npy'), y: at('y.bin') }), kind: 'binary' },
    { label: 'a one-shot stream', data: () => chunks({ x: data.x, y: data.y }, 7000), kind: 'stream' },
  ];
  const runs: Array<{ label: string; options: Partial<FitOptions>; strategy: string }> = [
    { label: 'auto', options: {}, strategy: 'chunked' },
    { label: "'standard'", options: { strategy: 'standard' }, strategy: 'standard' },
    { label: "'chunked', chunkSize 5000", options: { strategy: 'chunked', chunkSize: 5000 }, strategy: 'chunked' },
    { label: "'streaming', chunkSize 5000 (not a multiple of 512)", options: { strategy: 'streaming', chunkSize: 5000 }, strategy: 'streaming' },
    { label: "'streaming', chunkSize 32768", options: { strategy: 'streaming', chunkSize: 32768 }, strategy: 'streaming' },
    { label: "'streaming', chunkSize 100000", options: { strategy: 'streaming', chunkSize: 100_000 }, strategy: 'streaming' },
    { label: "'streaming', default chunks", options: { strategy: 'streaming' }, strategy: 'streaming' },
  ];

  for (const source of sources) {
    for (const { label, options, strategy } of runs) {
      it(`${source.label}, ${label}`, async () => {
        const r = await run({ data: source.data() as FitOptions['data'], ...options });
        expect(hex(r.values)).toBe(hex(reference.values));
        expect(Object.is(r.rSquared, reference.rSquared)).toBe(true);
        expect(r.nfev).toBe(reference.nfev);
        expect(r.strategy).toBe(strategy);
        expect(r.execution.strategy).toBe(strategy);
        expect(r.execution.dataSource).toBe(source.kind);
        if (options.chunkSize !== undefined) {
          expect(r.execution.chunkSize).toBe(Math.ceil(options.chunkSize / 512) * 512);
          expect(r.execution.reason).toContain(`chunkSize ${options.chunkSize} points as given`);
        }
        if (options.strategy) expect(r.execution.reason).toContain(`forced '${options.strategy}'`);
      }, kSlow);
    }
    if (source.kind !== 'memory') {
      it(`${source.label}, memoryLimitMb 8: the coordinator streams on its own`, async () => {
        const r = await run({ data: source.data() as FitOptions['data'], memoryLimitMb: 8 });
        expect(hex(r.values)).toBe(hex(reference.values));
        expect(Object.is(r.rSquared, reference.rSquared)).toBe(true);
        expect(r.strategy).toBe('streaming');
        expect(r.execution.dataSource).toBe(source.kind);
        expect(r.execution.reason).toMatch(/^data \(3\.1 MB\).* exceeds 75% of the 8\.0 MB limit \(memoryLimitMb\): streaming /);
        expect(r.execution.reason).not.toContain('forced');
      }, kSlow);
    }
  }

  it('in-memory data is never streamed by auto, even under a small memoryLimitMb', async () => {
    const r = await run({ memoryLimitMb: 8 });
    expect(r.strategy).toBe('chunked');
    expect(hex(r.values)).toBe(hex(reference.values));
  });

  it('a chunk larger than the data is one chunk, same bits', async () => {
    const r = await run({ data: { x: at('x.bin'), y: at('y.bin') }, strategy: 'streaming', chunkSize: 1_000_000 });
    expect(hex(r.values)).toBe(hex(reference.values));
    expect(r.strategy).toBe('streaming');
  });
});

describe('a ColumnSource the caller opened', () => {
  it('fits to the same bits, loaded or streamed', async () => {
    const reference = await run({});
    for (const strategy of ['auto', 'streaming'] as const) {
      const source = await openSource({ x: at('x.npy'), y: at('y.npy') }, { bufferBytes: 0 });
      try {
        const r = await run({ data: source, strategy });
        expect(hex(r.values)).toBe(hex(reference.values));
        expect(r.execution.dataSource).toBe('npy');
        expect(r.strategy).toBe(strategy === 'auto' ? 'chunked' : 'streaming');
      } finally {
        await source.close();
      }
    }
  }, kSlow);

  // Regression test (fixed bug in src/fit.ts runFit, `finally { await source?.close(); }`): fit() closes
  // the source it was given even when the caller opened it (openSource() or their
  // own ColumnSource, which open.ts passes through "as it is"), so the caller's
  // object is unusable afterwards: a second fit on it rejects with "cannot read
  // from x.npy, y.npy: the source is closed". fit() should close only what it opened.
  it('stays open after the fit, so the caller can fit it again', async () => {
    const source = await openSource({ x: at('x.npy'), y: at('y.npy') }, { bufferBytes: 0 });
    try {
      const first = await run({ data: source });
      const second = await run({ data: source });
      expect(hex(second.values)).toBe(hex(first.values));
    } finally {
      await source.close();
    }
  }, kSlow);
});

describe('one-shot streams spill to a temporary file that the fit removes', () => {
  // os.tmpdir() follows TMPDIR, so each test gets a private one and sees only its own spill files.
  const savedTmp = process.env.TMPDIR;
  beforeEach(async () => {
    process.env.TMPDIR = await mkdtemp(join(dir, 'tmp-'));
  });
  afterEach(() => {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
  });

  it('a stream larger than the budget spills, fits to the same bits, and the file is gone after the fit', async () => {
    expect(await spillDirectories()).toEqual([]);
    const seen: string[] = [];
    let sizeDuringFit = -1;
    const r = await run({
      data: chunks({ x: data.x, y: data.y }, 10_000, seen),
      memoryLimitMb: 2, // buffer: half of 75% of 2 MB = 768 KB, against 3.2 MB of rows
      onProgress: (event) => {
        if (event.type === 'pass' && event.pass === 1) sizeDuringFit = statSync(join(tmpdir(), seen[0]!, 'rows.f64')).size;
      },
    });
    // One spill directory existed while the fit ran, holding every row...
    expect(seen).toHaveLength(1);
    expect(sizeDuringFit).toBe(kN * 2 * 8);
    // ...and it is gone now.
    expect(await spillDirectories()).toEqual([]);
    const reference = await run({});
    expect(hex(r.values)).toBe(hex(reference.values));
    expect(r.strategy).toBe('streaming');
    expect(r.execution.dataSource).toBe('stream');
    expect(r.execution.reason).toContain('streaming the ingested input (from memory or its temporary file)');
  }, kSlow);

  it('a fit rejected after the stream was opened (p0 names a parameter the model lacks) removes the spill file', async () => {
    const seen: string[] = [];
    await expect(
      run({ data: chunks({ x: data.x, y: data.y }, 10_000, seen), memoryLimitMb: 2, p0: { ...kP0, d: 1 } }),
    ).rejects.toThrow("Invalid p0: 'd' does not appear in the model");
    expect(seen).toHaveLength(1);
    expect(await spillDirectories()).toEqual([]);
  }, kSlow);

  it('a fit that fails after the first pass (NaN in y) removes the spill file and names the row', async () => {
    const seen: string[] = [];
    await expect(
      run({ data: chunks({ x: data.x, y: withValue(data.y, kBadRow, NaN) }, 10_000, seen), memoryLimitMb: 2 }),
    ).rejects.toThrow(`Invalid data.y: value NaN at index ${kBadRow} is not finite`);
    expect(seen).toHaveLength(1);
    expect(await spillDirectories()).toEqual([]);
  }, kSlow);

  it('an iterable that throws after the spill: the same error, and the spill file is gone', async () => {
    const failure = new Error('the upstream connection dropped');
    let spilled: string[] = [];
    async function* broken(): AsyncGenerator<Record<string, Float64Array>> {
      for (let i = 0; i < kN; i += 10_000) yield { x: data.x.subarray(i, i + 10_000), y: data.y.subarray(i, i + 10_000) };
      spilled = await spillDirectories();
      throw failure;
    }
    await expect(run({ data: broken(), memoryLimitMb: 2 })).rejects.toBe(failure);
    expect(spilled).toHaveLength(1);
    expect(await spillDirectories()).toEqual([]);
  }, kSlow);

  it('a stream within the buffer is not written to disk', async () => {
    const seen: string[] = [];
    const r = await run({ data: chunks({ x: data.x, y: data.y }, 10_000, seen), strategy: 'streaming' });
    expect(seen).toEqual([]);
    expect(r.strategy).toBe('streaming');
    expect(await spillDirectories()).toEqual([]);
  }, kSlow);

  // Regression test (fixed bug in src/memory/decide.ts streamVerb, used by streamingPlan): for dataLocation
  // 'stream' the reason said "streaming the input (spilled to a temporary
  // file)", but fit() streams a one-shot stream whether or not its store spilled
  // (a stream within bufferBytes stays in memory). The reason states something
  // that did not happen.
  it('the reason does not claim a spill that did not happen', async () => {
    const seen: string[] = [];
    const r = await run({ data: chunks({ x: data.x, y: data.y }, 10_000, seen), strategy: 'streaming' });
    expect(seen).toEqual([]);
    expect(r.execution.reason).not.toContain('spilled');
  }, kSlow);
});

describe('bad values in file data are named by column and row', () => {
  const loaded: Array<[string, Partial<FitOptions>]> = [
    ['loaded into memory (auto)', {}],
    ["loaded, 'standard'", { strategy: 'standard' }],
    ['streamed (forced)', { strategy: 'streaming', chunkSize: 5000 }],
    ['streamed (memoryLimitMb 8)', { memoryLimitMb: 8 }],
  ];
  for (const [label, options] of loaded) {
    it(`NaN in y at row ${kBadRow} of a .bin file, ${label}`, async () => {
      const promise = run({ data: { x: at('x.bin'), y: at('y-nan.bin') }, ...options });
      await expect(promise).rejects.toThrow(RangeError);
      await expect(promise).rejects.toThrow(`Invalid data.y: value NaN at index ${kBadRow} is not finite`);
    }, kSlow);

    it(`a zero and a negative sigma at row ${kBadRow}, ${label}`, async () => {
      for (const [file, value] of [['sigma-zero.bin', '0'], ['sigma-negative.bin', '-0.05']] as const) {
        await expect(run({ data: { x: at('x.bin'), y: at('y.bin'), sigma: at(file) }, ...options })).rejects.toThrow(
          `Invalid data.sigma: value ${value} at index ${kBadRow} is not a finite number > 0 with a finite weight 1/sigma^2`,
        );
      }
    }, kSlow);
  }

  it(`'nan' in a CSV at row ${kBadRow}, streamed and loaded`, async () => {
    for (const options of [{ memoryLimitMb: 8 }, {}]) {
      await expect(run({ data: at('y-nan.csv'), ...options })).rejects.toThrow(`Invalid data.y: value NaN at index ${kBadRow} is not finite`);
    }
  }, kSlow);

  it('a valid sigma: streamed and loaded weighted fits agree to the bit', async () => {
    const files = { x: at('x.bin'), y: at('y.bin'), sigma: at('sigma.bin') };
    const inMemory = await run({ data: { x: data.x, y: data.y, sigma } });
    const streamed = await run({ data: files, strategy: 'streaming', chunkSize: 5000 });
    const loadedFit = await run({ data: files });
    expect(streamed.strategy).toBe('streaming');
    expect(loadedFit.strategy).toBe('chunked');
    expect(hex(streamed.values)).toBe(hex(inMemory.values));
    expect(hex(loadedFit.values)).toBe(hex(inMemory.values));
    expect(hex(Float64Array.from(Object.values(streamed.stderr)))).toBe(hex(Float64Array.from(Object.values(inMemory.stderr))));
  }, kSlow);
});

describe('memory pressure reshapes a streaming fit without changing a bit', () => {
  const model = compileModel(kModel, { params: ['a', 'b', 'c'], columns: ['x', 'y'], reserved: ['y', 'sigma'] });
  const program = { code: model.code, consts: model.consts };
  const columns = { vars: ['x'], y: 'y', sigma: null };
  const kBudget = 1_000_000;

  /** A monitor whose usage rises by 1% of the budget per sample from `start`, capped at `cap` (fractions). */
  function risingMonitor(start: number, cap: number): { monitor: PressureMonitor; samples: () => number } {
    let k = 0;
    const monitor = new PressureMonitor({
      budgetBytes: kBudget,
      baselineRss: 0,
      sample: () => {
        const fraction = Math.min(start + 0.01 * k++, cap);
        return { rss: Math.round(fraction * kBudget), heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
      },
    });
    return { monitor, samples: () => k };
  }

  /** fit.ts's adapter from the relief's points to the evaluator's blocks. */
  function reshapeWith(relief: (current: Chunking) => Chunking): (shape: StreamShape) => StreamShape {
    return (shape) => {
      const next = relief({ chunkSize: shape.chunkBlocks * 512, chunksInFlight: shape.chunksInFlight });
      return { chunkBlocks: Math.max(1, Math.floor(next.chunkSize / 512)), chunksInFlight: next.chunksInFlight };
    };
  }

  async function solve(reshape?: (shape: StreamShape) => StreamShape): Promise<{ x: Float64Array; nfev: number; evaluator: StreamingEvaluator }> {
    const source = await openSource({ x: at('x.npy'), y: at('y.npy') }, { bufferBytes: 0 });
    try {
      const evaluator = new StreamingEvaluator(pool.workers(), program, source, columns, kN, {
        chunkBlocks: 64,
        chunksInFlight: 4,
        ...(reshape ? { reshape } : {}),
      });
      const { state } = await runSolver(evaluator, Float64Array.from([kP0.a, kP0.b, kP0.c]), kSolver);
      return { x: Float64Array.from(state.x), nfev: state.nfev, evaluator };
    } finally {
      await source.close();
    }
  }

  let calm: Awaited<ReturnType<typeof solve>>;
  beforeAll(async () => {
    calm = await solve();
  }, kSlow);

  it('without pressure the evaluator keeps its shape and matches fit()', async () => {
    expect(calm.evaluator.currentShape).toEqual({ chunkBlocks: 64, chunksInFlight: 4 });
    const r = await run({});
    expect(hex(calm.x)).toBe(hex(r.values));
    expect(calm.nfev).toBe(r.nfev);
  });

  it('elevated pressure halves the chunks during the fit; same bits', async () => {
    const { monitor, samples } = risingMonitor(0.6, 0.89);
    const actions: Array<{ reading: PressureReading; next: Chunking }> = [];
    const relief = pressureRelief(monitor, { minChunkSize: 512, onAction: (reading, next) => actions.push({ reading, next }) });
    const levels: string[] = [];
    monitor.on('pressure', (reading) => levels.push(reading.level));
    const pressed = await solve(reshapeWith(relief));

    expect(samples()).toBeGreaterThan(30); // the relief was consulted before every chunk
    expect(actions.length).toBeGreaterThanOrEqual(1);
    for (const { reading, next } of actions) {
      expect(reading.action).toBe('halve_chunk');
      expect(reading.level).toBe('elevated');
      expect(next.chunksInFlight).toBe(4);
    }
    expect(actions.map(({ next }) => next.chunkSize)).toEqual(actions.map((_, i) => (64 * 512) / 2 ** (i + 1)));
    const shape = pressed.evaluator.currentShape;
    expect(shape.chunkBlocks).toBe(64 / 2 ** actions.length);
    expect(shape.chunkBlocks).toBeLessThan(64);
    expect(shape.chunksInFlight).toBe(4);
    expect(levels.every((level) => level === 'elevated')).toBe(true);

    expect(hex(pressed.x)).toBe(hex(calm.x));
    expect(pressed.nfev).toBe(calm.nfev);
  }, kSlow);

  it('pressure rising past critical shrinks the ring to one chunk; same bits', async () => {
    const { monitor } = risingMonitor(0.6, 5);
    const actions: string[] = [];
    const relief = pressureRelief(monitor, { onAction: (reading) => actions.push(reading.action) });
    const pressed = await solve(reshapeWith(relief));
    expect(actions).toContain('halve_chunk');
    expect(actions).toContain('reduce_in_flight');
    const shape = pressed.evaluator.currentShape;
    expect(shape.chunksInFlight).toBe(1);
    expect(shape.chunkBlocks).toBeLessThan(64);
    expect(hex(pressed.x)).toBe(hex(calm.x));
    expect(pressed.nfev).toBe(calm.nfev);
  }, kSlow);

  it('onProgress gets one pass event per pass, numbered 1..nfev', async () => {
    const events: Array<{ type: string; pass?: number; elapsedMs?: number }> = [];
    const r = await run({ data: { x: at('x.bin'), y: at('y.bin') }, strategy: 'streaming', chunkSize: 5000, onProgress: (event) => events.push(event) });
    const passes = events.filter((event) => event.type === 'pass');
    expect(passes.length).toBe(r.nfev);
    expect(passes.map((event) => event.pass)).toEqual(Array.from({ length: r.nfev }, (_, i) => i + 1));
    for (let i = 1; i < passes.length; i++) expect(passes[i]!.elapsedMs!).toBeGreaterThanOrEqual(passes[i - 1]!.elapsedMs!);
    expect(events.filter((event) => event.type === 'pressure').length).toBe(r.execution.pressureEvents);
  }, kSlow);

  it('pressure events seen by onProgress are the ones execution counts, and the bits hold', async () => {
    // A budget of 1 MB: the fit's own growth is real pressure (how much depends on the machine).
    const events: Array<{ type: string; applied?: unknown }> = [];
    const r = await run({ data: { x: at('x.bin'), y: at('y.bin') }, memoryLimitMb: 1, onProgress: (event) => events.push(event) });
    const pressure = events.filter((event) => event.type === 'pressure');
    expect(pressure.length).toBe(r.execution.pressureEvents);
    for (const event of pressure) expect(event.applied).toMatchObject({ chunkSize: expect.any(Number), chunksInFlight: expect.any(Number) });
    expect(hex(r.values)).toBe(hex(calm.x));
    expect(r.strategy).toBe('streaming');
  }, kSlow);

  // Regression test (fixed bug in src/exec/streaming.ts, StreamingEvaluator.acquire): a new slot holds
  // shape.chunkBlocks * 512 rows whatever the chunk needs, so a chunk larger
  // than the data allocates buffers for the whole chunk size: fit({ strategy:
  // 'streaming', chunkSize: 1e8 }) on 200k points allocates 2 x 800 MB of
  // SharedArrayBuffer. Here: 1000 points (2 blocks) with 2048-block chunks
  // allocate 16 MB of buffers instead of 16 KB.
  it('chunk buffers are no larger than the data needs', async () => {
    const n = 1000;
    const source = memorySource({ x: data.x.subarray(0, n), y: data.y.subarray(0, n) });
    const evaluator = new StreamingEvaluator(pool.workers(), program, source, columns, n, { chunkBlocks: 2048, chunksInFlight: 4 });
    await evaluator.evaluate(Float64Array.from([5, 1.3, 0.5]));
    expect(evaluator.stats.peakBufferBytes).toBeLessThanOrEqual(Math.ceil(n / 512) * 512 * 2 * 8);
  });
});

describe('execution fields', () => {
  it('are sane for every strategy', async () => {
    const files = { x: at('x.bin'), y: at('y.bin') };
    const results = {
      streamedSmall: await run({ data: files, memoryLimitMb: 8 }),
      streamedForced: await run({ data: files, strategy: 'streaming', chunkSize: 5000 }),
      streamedMemory: await run({ strategy: 'streaming' }),
      chunked: await run({ data: files }),
      standard: await run({ strategy: 'standard' }),
    };
    for (const [label, r] of Object.entries(results)) {
      const e = r.execution;
      expect(e.strategy, label).toBe(r.strategy);
      expect(Number.isInteger(e.chunkSize) && e.chunkSize > 0 && e.chunkSize % 512 === 0, `${label} chunkSize ${e.chunkSize}`).toBe(true);
      expect(Number.isFinite(e.memoryPressure) && e.memoryPressure > 0, `${label} memoryPressure ${e.memoryPressure}`).toBe(true);
      expect(Number.isInteger(e.pressureEvents) && e.pressureEvents >= 0, label).toBe(true);
      expect(e.droppedRows, label).toBe(0);
      expect(typeof e.reason === 'string' && e.reason.length > 0, label).toBe(true);
      if (r.strategy === 'streaming') {
        expect(Number.isInteger(e.chunksInFlight) && e.chunksInFlight >= 1, `${label} chunksInFlight ${e.chunksInFlight}`).toBe(true);
      }
    }
    expect(results.streamedSmall.strategy).toBe('streaming');
    expect(results.streamedSmall.execution.memoryPressure).toBeGreaterThan(1); // streamed because it did not fit
    expect(results.streamedForced.execution.chunkSize).toBe(5120);
    expect(results.streamedForced.execution.chunksInFlight).toBe(4); // 2 threads + 2
    expect(results.streamedMemory.execution.dataSource).toBe('memory');
    expect(results.chunked.execution.memoryPressure).toBeLessThan(1);
    expect(results.standard.execution.chunkSize).toBe(Math.ceil(kN / 512) * 512);
  }, kSlow);

  // Regression test (fixed bug in src/fit.ts runFit: new PressureMonitor({ budgetBytes: decision.budget.availableBytes })):
  // when the available memory rounds to 0 bytes (memoryLimitMb below 1 byte, which
  // validation accepts, or a container at its limit: limits.ts clamps the cgroup
  // headroom to 0) every fit rejects with "Expected finite number > 0 for
  // budgetBytes but received 0", naming an option the caller never passed.
  it('a tiny but valid memoryLimitMb either fits or names memoryLimitMb', async () => {
    const outcome = await run({ memoryLimitMb: 1e-7 }).catch((error: Error) => error);
    if (outcome instanceof Error) expect(outcome.message).toContain('memoryLimitMb');
    else expect(Number.isFinite(outcome.execution.memoryPressure)).toBe(true);
  });
});
