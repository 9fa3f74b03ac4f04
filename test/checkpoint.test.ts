// Checkpoints, resume and cancellation (src/solver/checkpoint.ts, the
// driver, the evaluators): a fit that is aborted or killed and then resumed
// ends with exactly the bits of a fit that never stopped; a checkpoint for
// other data or options, or a damaged one, is refused with a clear message.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine, type FitOptions, type FitResult } from '../dist/index.js';
import { synthetic } from '../dist/data/synthetic.js';
import { compileModel } from '../dist/model/compile.js';
import { PooledEvaluator } from '../dist/exec/pooled.js';
import { EnginePool } from '../dist/exec/engine.js';
import { loadAddon } from '../dist/native.js';
import type { ColumnSource } from '../dist/data/source.js';
import { decodeCheckpoint, encodeCheckpoint, ValueHash } from '../dist/solver/checkpoint.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const n = 100_000;
const { x, y } = synthetic(n, (v) => 3 * Math.exp(-1.3 * v) + 0.5, { x0: 0, x1: 4, noise: 0.01, seed: 7 });
const model = 'a*exp(-b*x)+c';
const p0 = { a: 10, b: 0.01, c: -3 };
const base: FitOptions = { model, data: { x, y }, p0 };

const engine = new Engine({ threads: 2 });
const pool = new EnginePool({ threads: 2 });
let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nlfit-checkpoint-'));
  writeFileSync(join(dir, 'x.bin'), Buffer.from(x.buffer, x.byteOffset, x.byteLength));
  writeFileSync(join(dir, 'y.bin'), Buffer.from(y.buffer, y.byteOffset, y.byteLength));
});
afterAll(async () => {
  await engine.close();
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
});

function bits(values: Float64Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex');
}

/** The parts of a result a resumed fit must reproduce exactly. */
function outcome(r: FitResult) {
  return {
    values: bits(r.values),
    covariance: r.covariance,
    rss: r.rss,
    nfev: r.nfev,
    njev: r.njev,
    iterations: r.iterations,
    status: r.status,
    success: r.success,
    activeMask: r.activeMask,
  };
}

/** Runs a fit that aborts itself once `iteration` accepted steps are reached; returns the rejection. */
async function abortAt(options: FitOptions, iteration: number, reason: unknown = new Error('enough')): Promise<Error> {
  const controller = new AbortController();
  const error = await engine
    .fit({
      ...options,
      signal: controller.signal,
      onProgress: (event) => {
        if (event.type === 'pass' && event.iteration >= iteration) controller.abort(reason);
      },
    })
    .then(
      () => null,
      (e: Error) => e,
    );
  expect(error).not.toBeNull();
  return error!;
}

function header(path: string) {
  return decodeCheckpoint(path, readFileSync(path)).header;
}

/** A ColumnSource over x and y that calls onRead before every read. */
function countingSource(onRead: () => void): ColumnSource {
  const columns: Record<string, Float64Array> = { x, y };
  return {
    kind: 'memory',
    columns: ['x', 'y'],
    nRows: n,
    description: 'a counting test source',
    async read(start, count, into) {
      onRead();
      for (const [name, target] of Object.entries(into)) target.set(columns[name]!.subarray(start, start + count));
    },
    async close() {},
  };
}

describe('the native solver state', () => {
  it('round-trips through serialize() and Solver.restore(), and rejects damaged blobs', () => {
    const { Solver } = loadAddon();
    const solver = new Solver(Float64Array.of(1, 2, 3), { ftol: 1e-10, xtol: 1e-10, gtol: 0, maxFev: 50, factor: 100, lower: Float64Array.of(0, -Infinity, -Infinity), upper: Float64Array.of(5, Infinity, Infinity) });
    const blob = solver.serialize();
    expect(blob).toBeInstanceOf(Uint8Array);
    const restored = Solver.restore(blob);
    expect(restored.state()).toEqual(solver.state());
    expect(Buffer.from(restored.serialize()).equals(Buffer.from(blob))).toBe(true);
    const flipped = blob.slice();
    flipped[60]! ^= 4;
    expect(() => Solver.restore(flipped)).toThrow(/invalid solver state: checksum mismatch/);
    expect(() => Solver.restore(blob.subarray(0, blob.length - 1))).toThrow(/invalid solver state: truncated/);
    expect(() => Solver.restore(new TextEncoder().encode('definitely not a solver state at all'))).toThrow(/wrong magic/);
    expect(() => Solver.restore(new Float64Array(4) as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('cancellation', () => {
  it('rejects an already-aborted signal before any work (no file is opened, no checkpoint written)', async () => {
    const controller = new AbortController();
    const reason = new Error('not today');
    controller.abort(reason);
    const path = join(dir, 'never.ckpt');
    const error = await engine
      .fit({ model, data: { x: join(dir, 'missing.bin'), y: join(dir, 'missing.bin') }, p0, signal: controller.signal, checkpoint: { path } })
      .catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe('AbortError');
    expect((error as Error).message).toBe('nlfit: the fit was aborted');
    expect((error as Error).cause).toBe(reason);
    expect(existsSync(path)).toBe(false);
  });

  it('rejects with an AbortError whose cause is the reason, and without a checkpoint option writes nothing', async () => {
    const reason = { why: 'user pressed stop' };
    const error = await abortAt(base, 2, reason);
    expect(error.name).toBe('AbortError');
    expect(error.message).toBe('nlfit: the fit was aborted');
    expect(error.cause).toBe(reason);
  });

  it('a pooled pass stops dispatching tasks once the signal fires', async () => {
    const compiled = compileModel(model, { params: ['a', 'b', 'c'], columns: ['x'], reserved: ['y', 'sigma'] });
    const workers = pool.workers();
    const controller = new AbortController();
    let tasks = 0;
    // The pool, counting tasks: the signal fires as the fifth one starts.
    const counting = {
      run: (task: unknown) => {
        tasks += 1;
        if (tasks === 5) controller.abort('stop');
        return workers.run(task);
      },
    };
    const evaluator = new PooledEvaluator(counting as unknown as typeof workers, { code: compiled.code, consts: compiled.consts }, { vars: [x], y, sigma: null, nPoints: n }, {
      threads: 2,
      chunkBlocks: 2, // 98 tasks per pass
      signal: controller.signal,
    });
    const error = await evaluator.evaluate(Float64Array.of(3, 1.3, 0.5)).catch((e: Error) => e);
    expect((error as Error).name).toBe('AbortError');
    expect(tasks).toBeLessThanOrEqual(6);
  });

  it('a streamed pass stops reading chunks once the signal fires, and the fit resumes to the same bits', async () => {
    const reference = await engine.fit(base);
    const path = join(dir, 'streamed.ckpt');
    const controller = new AbortController();
    let armed = false;
    let readsSinceArmed = 0;
    const source = countingSource(() => {
      if (!armed) return;
      readsSinceArmed += 1;
      if (readsSinceArmed === 3) controller.abort('mid-pass');
    });
    const streamed: FitOptions = { ...base, data: source, strategy: 'streaming', chunkSize: 512 * 4 };
    const error = await engine
      .fit({
        ...streamed,
        checkpoint: { path, everyIterations: 2 },
        signal: controller.signal,
        onProgress: (event) => {
          if (event.type === 'pass' && event.iteration >= 3) armed = true;
        },
      })
      .catch((e: Error) => e);
    expect((error as Error).name).toBe('AbortError');
    // A pass reads 49 chunks; it stopped after the third (the ones in flight finish).
    expect(readsSinceArmed).toBeLessThanOrEqual(4);
    expect(header(path).iteration).toBe(3);
    const resumed = await engine.fit({ ...streamed, data: countingSource(() => {}), checkpoint: { path, everyIterations: 2, resume: true } });
    expect(resumed.checkpoint!.resumedFrom).toBe(3);
    expect(outcome(resumed)).toEqual(outcome(reference));
  });
});

describe('checkpoints and resume', () => {
  const cases: Array<[string, Partial<FitOptions>]> = [
    ['in memory on the pool', { strategy: 'chunked' }],
    ['inline', { strategy: 'standard' }],
    ['with a bound that binds and a robust loss', { bounds: { b: [0, 1.2] }, loss: 'soft_l1', fScale: 0.02 }],
  ];
  for (const [name, extra] of cases) {
    it(`aborted after iteration 3 and resumed gives the bits of an uninterrupted fit (${name})`, async () => {
      const options: FitOptions = { ...base, ...extra };
      const reference = await engine.fit(options);
      expect(reference.iterations).toBeGreaterThan(4);
      const path = join(dir, `abort-${name.replace(/\W+/g, '-')}.ckpt`);
      const events: number[] = [];
      const error = await abortAt({ ...options, checkpoint: { path, everyIterations: 2 } }, 3);
      expect(error.name).toBe('AbortError');
      // Written at iteration 2 and when aborted at 3.
      const saved = header(path);
      expect(saved.iteration).toBe(3);
      const resumed = await engine.fit({
        ...options,
        checkpoint: { path, everyIterations: 2, resume: true },
        onProgress: (event) => {
          if (event.type === 'checkpoint') events.push(event.iteration);
        },
      });
      expect(outcome(resumed)).toEqual(outcome(reference));
      expect(resumed.checkpoint).toEqual({ path, written: events.length, resumedFrom: 3 });
      expect(events.every((i) => i > 3 && i % 2 === 0)).toBe(true);
    }, 60_000);
  }

  it('from files, streamed, resumed from a fit that was killed with SIGKILL', async () => {
    const files = { x: join(dir, 'x.bin'), y: join(dir, 'y.bin') };
    const options: FitOptions = { model, data: files, p0, strategy: 'streaming', chunkSize: 512 * 16 };
    const reference = await engine.fit(options);
    const path = join(dir, 'killed.ckpt');
    const child = join(dir, 'child.mjs');
    // The child writes a checkpoint every iteration and, after the second,
    // stalls (as a long pass would) until it is killed.
    writeFileSync(
      child,
      `import { fit } from ${JSON.stringify(join(root, 'dist', 'index.js'))};
await fit({ ...${JSON.stringify(options)}, checkpoint: { path: ${JSON.stringify(path)}, everyIterations: 1 }, onProgress: (event) => {
  if (event.type !== 'checkpoint') return;
  process.stdout.write('checkpoint ' + event.iteration + '\\n');
  if (event.iteration === 2) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000);
} });
process.stdout.write('finished\\n');
`,
    );
    const proc = spawn(process.execPath, [child], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('checkpoint 2\n')) proc.kill('SIGKILL');
    });
    proc.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((done) => proc.on('exit', (_, s) => done(s)));
    expect(signal, output).toBe('SIGKILL');
    expect(output).not.toContain('finished');
    expect(header(path).iteration).toBe(2);
    // A write the kill interrupted leaves only a temporary file, which resume ignores.
    writeFileSync(`${path}.tmp-999999`, 'half a checkpoint');
    const resumed = await engine.fit({ ...options, checkpoint: { path, everyIterations: 1, resume: true } });
    expect(resumed.checkpoint!.resumedFrom).toBe(2);
    expect(outcome(resumed)).toEqual(outcome(reference));
  }, 60_000);

  it('stopped by maxIterations writes a checkpoint that a fit without the limit continues', async () => {
    const reference = await engine.fit(base);
    const path = join(dir, 'limit.ckpt');
    const limited = await engine.fit({ ...base, maxIterations: 3, checkpoint: { path, everyIterations: 50 } });
    expect(limited.status).toBe('max_iterations');
    expect(limited.checkpoint).toEqual({ path, written: 1, resumedFrom: null });
    const resumed = await engine.fit({ ...base, checkpoint: { path, everyIterations: 50, resume: true } });
    expect(resumed.checkpoint!.resumedFrom).toBe(3);
    expect(outcome(resumed)).toEqual(outcome(reference));
  });

  it('with resume and no file starts fresh, and the file holds a described header', async () => {
    const path = join(dir, 'fresh.ckpt');
    const writes: number[] = [];
    const r = await engine.fit({
      ...base,
      checkpoint: { path, everyIterations: 4, resume: true },
      onProgress: (event) => {
        if (event.type === 'checkpoint') writes.push(event.iteration);
      },
    });
    expect(writes.length).toBeGreaterThanOrEqual(2);
    expect(writes).toEqual(writes.map((_, k) => 4 * (k + 1)));
    expect(r.checkpoint).toEqual({ path, written: writes.length, resumedFrom: null });
    const saved = header(path);
    expect(saved.format).toBe('nlfit-checkpoint');
    expect(saved.formatVersion).toBe(2);
    expect(saved.nlfitVersion).toBe(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version);
    expect(Number.isNaN(Date.parse(saved.created))).toBe(false);
    expect(saved.data).toMatchObject({ nPoints: n, columns: ['y', 'x'] });
    expect(saved.data.hash).toMatch(/^[0-9a-f]{32}$/);
    expect(saved.options).toMatchObject({ model, params: 'a, b, c', p0: '[10, 0.01, -3]', ftol: '1e-12', loss: 'linear' });
    expect(saved.options).not.toHaveProperty('threads');
    expect(saved.iteration).toBe(writes.at(-1));
    expect(existsSync(`${path}.tmp-${process.pid}`)).toBe(false);
  });

  it('the data identity is the same in memory and from a file, and threads or strategy do not enter the options identity', async () => {
    const path = join(dir, 'portable.ckpt');
    await abortAt({ ...base, strategy: 'chunked', threads: 2, checkpoint: { path, everyIterations: 2 } }, 3);
    const resumed = await engine.fit({
      model,
      data: { x: join(dir, 'x.bin'), y: join(dir, 'y.bin') },
      p0,
      strategy: 'streaming',
      threads: 1,
      chunkSize: 512 * 7,
      checkpoint: { path, resume: true },
    });
    expect(resumed.checkpoint!.resumedFrom).toBe(3);
    expect(outcome(resumed)).toEqual(outcome(await engine.fit(base)));
  });
});

describe('refusals', () => {
  let path = '';
  beforeAll(async () => {
    path = join(dir, 'refusals.ckpt');
    await abortAt({ ...base, checkpoint: { path, everyIterations: 2 } }, 3);
  });

  it('refuses a checkpoint written for other data (one value changed in the middle)', async () => {
    const changed = y.slice();
    changed[n >> 1] += 1e-12;
    await expect(engine.fit({ ...base, data: { x, y: changed }, checkpoint: { path, resume: true } })).rejects.toThrow(
      new RegExp(`^nlfit: checkpoint ${path} was written for other data \\(hash [0-9a-f]{32}, ${n} points of y, x; this fit's data: hash [0-9a-f]{32}, ${n} points of y, x\\), refusing to resume$`),
    );
    // Fewer points, and a changed value in a file.
    await expect(engine.fit({ ...base, data: { x: x.subarray(1), y: y.subarray(1) }, checkpoint: { path, resume: true } })).rejects.toThrow(
      /was written for other data .*; this fit's data: hash [0-9a-f]{32}, 99999 points/,
    );
    const file = join(dir, 'y-changed.bin');
    writeFileSync(file, Buffer.from(changed.buffer, changed.byteOffset, changed.byteLength));
    await expect(
      engine.fit({ model, p0, data: { x: join(dir, 'x.bin'), y: file }, strategy: 'streaming', checkpoint: { path, resume: true } }),
    ).rejects.toThrow(/was written for other data/);
  });

  it('refuses a checkpoint written for other options, naming the first difference', async () => {
    await expect(engine.fit({ ...base, ftol: 1e-10, checkpoint: { path, resume: true } })).rejects.toThrow(
      `nlfit: checkpoint ${path} was written for other options: ftol 1e-12 vs 1e-10 in this fit, refusing to resume`,
    );
    await expect(engine.fit({ ...base, p0: { ...p0, c: -2 }, checkpoint: { path, resume: true } })).rejects.toThrow(
      'was written for other options: p0 [10, 0.01, -3] vs [10, 0.01, -2] in this fit',
    );
    await expect(engine.fit({ ...base, model: 'a*exp(-b*x)+c+0', checkpoint: { path, resume: true } })).rejects.toThrow(
      'was written for other options: model a*exp(-b*x)+c vs a*exp(-b*x)+c+0 in this fit',
    );
    await expect(engine.fit({ ...base, bounds: { a: [0, 100] }, checkpoint: { path, resume: true } })).rejects.toThrow(
      'was written for other options: lower none vs [0, -Infinity, -Infinity] in this fit',
    );
  });

  it('refuses corrupted and foreign files with a clear message', async () => {
    const good = readFileSync(path);
    const attempt = (bytes: Uint8Array) => {
      const file = join(dir, 'damaged.ckpt');
      writeFileSync(file, bytes);
      return engine.fit({ ...base, checkpoint: { path: file, resume: true } });
    };
    const prefix = `nlfit: checkpoint ${join(dir, 'damaged.ckpt')}`;
    const flipped = Uint8Array.from(good);
    flipped[good.length >> 1]! ^= 0x20;
    await expect(attempt(flipped)).rejects.toThrow(`${prefix} is corrupt (checksum mismatch), refusing to resume`);
    await expect(attempt(good.subarray(0, good.length - 10))).rejects.toThrow(`${prefix} is truncated (${good.length - 10} bytes, expected ${good.length}), refusing to resume`);
    await expect(attempt(new TextEncoder().encode('{"format": "nlfit-checkpoint"}'))).rejects.toThrow(`${prefix} is not an nlfit checkpoint (no NLFITCKP magic)`);
    const newer = Uint8Array.from(good);
    newer[8] = 3;
    await expect(attempt(newer)).rejects.toThrow(`${prefix} has format version 3; this nlfit reads version 2`);
    // A damaged solver state inside an intact container: the native checks catch it.
    const { header: saved, state } = decodeCheckpoint(path, good);
    const badState = state.slice();
    badState[100]! ^= 1;
    await expect(attempt(encodeCheckpoint(saved, badState))).rejects.toThrow(`${prefix} is corrupt (invalid solver state: checksum mismatch: the data is corrupt)`);
  });

  it('rejects checkpoints with multistart, and bad checkpoint or signal options', async () => {
    await expect(engine.fit({ ...base, multistart: 4, checkpoint: { path } })).rejects.toThrow(
      'Invalid checkpoint: cannot be combined with multistart: a checkpoint holds one solver, and a multi-start fit runs several',
    );
    await expect(engine.fit({ ...base, checkpoint: { every: 3 } as never })).rejects.toThrow("Unknown checkpoint option 'every'");
    await expect(engine.fit({ ...base, checkpoint: { path: '' } })).rejects.toThrow(TypeError);
    await expect(engine.fit({ ...base, checkpoint: { path, everyIterations: 0 } })).rejects.toThrow(
      'Expected positive integer for checkpoint.everyIterations but received 0 of type number',
    );
    await expect(engine.fit({ ...base, checkpoint: { path, resume: 'yes' as never } })).rejects.toThrow('Expected boolean for checkpoint.resume');
    await expect(engine.fit({ ...base, signal: { aborted: false } as never })).rejects.toThrow('Expected AbortSignal (new AbortController().signal) for signal');
  });
});

describe('the data hash', () => {
  it('changes with any single value, also a sign flip or the same change in two places', () => {
    const values = Float64Array.from({ length: 4099 }, (_, i) => Math.sin(i) * 1e3);
    const hex = (v: Float64Array) => {
      const h = new ValueHash();
      h.update(v);
      return h.hex();
    };
    const original = hex(values);
    const seen = new Set([original]);
    for (const i of [0, 1, 2, 3, 2048, 4097, 4098]) {
      const changed = values.slice();
      changed[i] = -changed[i]!;
      seen.add(hex(changed));
      const twice = changed.slice();
      twice[(i + 4) % values.length] = -twice[(i + 4) % values.length]!;
      seen.add(hex(twice));
    }
    expect(seen.size).toBe(15);
    // Split updates give the hash of the whole.
    const split = new ValueHash();
    split.update(values.subarray(0, 1001));
    split.update(values.subarray(1001, 1002));
    split.update(values.subarray(1002));
    expect(split.hex()).toBe(original);
  });
});
