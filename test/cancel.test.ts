// Cancellation inside a pass (src/exec/cancel.ts, native/kernel/cancel.hpp):
// an AbortSignal or a timeoutMs stops a running pass between blocks, not at
// its end, on the pool, in a streamed pass, inline (timeoutMs) and in
// fitMany; the engine works normally afterwards, and a checkpoint written on
// the abort resumes to the bits of an uninterrupted fit.
//
// The latencies are measured from abort() (or the deadline) to the
// rejection and printed; the design target is 50 ms, the assertions keep a
// margin for a loaded CI machine.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, type FitOptions, type FitResult } from '../dist/index.js';
import { synthetic } from '../dist/data/synthetic.js';
import { loadAddon } from '../dist/native.js';
import { FitCancel } from '../dist/exec/cancel.js';
import { compileModel } from '../dist/model/compile.js';

const kTargetMs = 50;
const kAssertMs = 200;
/** Each test runs several fits over 1e7 points. */
const kTestTimeoutMs = 60_000;

const n = 10_000_000;
// A model heavy enough that a pass over 1e7 points takes a good fraction of a second on two threads.
const model = 'a*exp(-(x-m)^2/(2*s^2))*cos(w*x+ph)+c';
const truth = { a: 3, m: 4, s: 1.2, w: 2, ph: 0.3, c: 0.5 };
const p0 = { a: 2.5, m: 3.8, s: 1.0, w: 2.05, ph: 0.2, c: 0.4 };
let data: { x: Float64Array; y: Float64Array };
let big: FitOptions;

const engine = new Engine({ threads: 2 });
let dir = '';

beforeAll(() => {
  const { a, m, s, w, ph, c } = truth;
  data = synthetic(n, (x) => a * Math.exp(-((x - m) ** 2) / (2 * s * s)) * Math.cos(w * x + ph) + c, { x0: 0, x1: 10, noise: 0.05, seed: 11 });
  big = { model, data, p0 };
  dir = mkdtempSync(join(tmpdir(), 'nlfit-cancel-'));
});
afterAll(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

function bits(values: Float64Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex');
}

function outcome(r: FitResult) {
  return { values: bits(r.values), covariance: r.covariance, nfev: r.nfev, iterations: r.iterations, status: r.status };
}

interface Interrupted {
  error: Error;
  /** abort() to rejection. */
  latencyMs: number;
  /** Start of the interrupted pass to abort(). */
  intoPassMs: number;
}

/**
 * Starts a fit, aborts it `delayMs` after the pass event `afterPass` (the
 * next pass starts right then), and measures abort() to rejection.
 */
async function abortMidPass(options: FitOptions, afterPass: number, delayMs: number): Promise<Interrupted> {
  const controller = new AbortController();
  let passStartedAt = 0;
  let abortedAt = 0;
  const promise = engine.fit({
    ...options,
    signal: controller.signal,
    onProgress: (event) => {
      if (event.type !== 'pass' || event.pass !== afterPass) return;
      passStartedAt = performance.now();
      setTimeout(() => {
        abortedAt = performance.now();
        controller.abort(new Error('stop'));
      }, delayMs);
    },
  });
  const error = await promise.then(
    () => new Error('the fit finished before it was aborted'),
    (e: Error) => e,
  );
  return { error, latencyMs: performance.now() - abortedAt, intoPassMs: abortedAt - passStartedAt };
}

/** Milliseconds per pass of a fit (after the first, which also audits the data). */
async function passMs(options: FitOptions): Promise<number> {
  const r = await engine.fit({ ...options, maxIterations: 2 });
  return r.timing.evaluateMs / r.nfev;
}

describe('cancellation within a pass', () => {
  it('the check costs nothing measurable: a 1e7-point pass with and without a cancel buffer', () => {
    const addon = loadAddon();
    const compiled = compileModel(model, { params: Object.keys(truth), columns: ['x'], reserved: ['y', 'sigma'] });
    const kernel = new addon.Kernel(compiled.code, compiled.consts);
    const nBlocks = Math.ceil(n / 512);
    const params = Float64Array.from(Object.values(truth));
    // A deadline far away: the kernel reads the flag every block and the clock every 8.
    const cancel = new FitCancel(null, { timeoutMs: 1e6, startedAt: performance.now(), what: 'fit' });
    const plain: number[] = [];
    const checked: number[] = [];
    try {
      for (let r = 0; r < 5; r++) {
        let t = performance.now();
        const a = kernel.evalRange(params, [data.x], data.y, null, n, 0, nBlocks);
        plain.push(performance.now() - t);
        t = performance.now();
        const b = kernel.evalRange(params, [data.x], data.y, null, n, 0, nBlocks, { cancel: cancel.words });
        checked.push(performance.now() - t);
        expect(bits(b!)).toBe(bits(a!));
      }
    } finally {
      cancel.dispose();
    }
    const best = (times: number[]) => Math.min(...times);
    console.log(`1e7-point pass on one thread: ${best(plain).toFixed(1)} ms without a cancel buffer, ${best(checked).toFixed(1)} ms with one (best of 5)`);
    // Noise on a shared machine is larger than the check; only a gross regression fails.
    expect(best(checked)).toBeLessThan(best(plain) * 1.25);
  });

  it('a cancel buffer already set stops evalRange before its first block', () => {
    const addon = loadAddon();
    const compiled = compileModel('a*x+b', { params: ['a', 'b'], columns: ['x'], reserved: ['y', 'sigma'] });
    const kernel = new addon.Kernel(compiled.code, compiled.consts);
    const controller = new AbortController();
    const cancel = new FitCancel(controller.signal);
    const params = Float64Array.of(1, 0);
    expect(kernel.evalRange(params, [data.x], data.y, null, 4096, 0, 8, { cancel: cancel.words })).toBeInstanceOf(Float64Array);
    controller.abort();
    expect(kernel.evalRange(params, [data.x], data.y, null, 4096, 0, 8, { cancel: cancel.words })).toBeNull();
    expect(cancel.error().name).toBe('AbortError');
    cancel.dispose();
    expect(() => kernel.evalRange(params, [data.x], data.y, null, 4096, 0, 8, { cancel: new Int32Array(2) })).toThrow('cancel shorter than 16 bytes');
    expect(() => kernel.evalRange(params, [data.x], data.y, null, 4096, 0, 8, { cancel: new Float64Array(2) as never })).toThrow(TypeError);
  });

  for (const strategy of ['chunked', 'streaming'] as const) {
    it(`an abort stops a running ${strategy} pass over 1e7 points within ${kTargetMs} ms`, async () => {
      const options: FitOptions = { ...big, strategy };
      const perPass = await passMs(options);
      // Abort a third of the way into the third pass.
      const { error, latencyMs, intoPassMs } = await abortMidPass(options, 2, perPass / 3);
      console.log(
        `${strategy}: abort() ${intoPassMs.toFixed(0)} ms into a pass of about ${perPass.toFixed(0)} ms; rejected ${latencyMs.toFixed(1)} ms later`,
      );
      expect(error.name).toBe('AbortError');
      expect(error.message).toBe('nlfit: the fit was aborted');
      expect((error.cause as Error).message).toBe('stop');
      expect(latencyMs).toBeLessThan(kAssertMs);
      // It did not wait for the pass to end.
      expect(intoPassMs + latencyMs).toBeLessThan(perPass);
    }, kTestTimeoutMs);
  }

  it('an abort stops a JavaScript model between blocks in the workers', async () => {
    const module = join(dir, 'slow.mjs');
    // About 0.2 ms per call (a block and each of its difference steps): a pass over 200,000 points takes a while.
    writeFileSync(
      module,
      `export function decay(vars, p, out) {
  const until = performance.now() + 0.2;
  while (performance.now() < until);
  const x = vars[0];
  for (let i = 0; i < out.length; i++) out[i] = p[0] * Math.exp(-p[1] * x[i]) + p[2];
}
`,
    );
    const points = 200_000;
    const decay = synthetic(points, (x) => 2.5 * Math.exp(-1.3 * x) + 0.5, { x0: 0, x1: 5, noise: 0.01, seed: 5 });
    const options: FitOptions = {
      model: { module, export: 'decay', kind: 'block', params: ['a', 'b', 'c'], variables: ['x'] },
      data: decay,
      p0: { a: 1, b: 0.5, c: 0 },
      strategy: 'chunked',
    };
    const perPass = await passMs(options);
    const { error, latencyMs, intoPassMs } = await abortMidPass(options, 1, perPass / 3);
    console.log(`JavaScript model (chunked): abort() ${intoPassMs.toFixed(0)} ms into a pass of about ${perPass.toFixed(0)} ms; rejected ${latencyMs.toFixed(1)} ms later`);
    expect(error.name).toBe('AbortError');
    expect(latencyMs).toBeLessThan(kAssertMs);
    expect(intoPassMs + latencyMs).toBeLessThan(perPass);
  }, kTestTimeoutMs);

  it('timeoutMs stops a long pooled pass and rejects with a TimeoutError', async () => {
    const options: FitOptions = { ...big, strategy: 'chunked' };
    const perPass = await passMs(options);
    // The deadline falls in the middle of the second or third pass; the whole fit needs many more.
    const timeoutMs = Math.round(2.5 * perPass);
    const started = performance.now();
    const error = await engine.fit({ ...options, timeoutMs }).then(
      () => new Error('finished within the timeout'),
      (e: Error) => e,
    );
    const lateMs = performance.now() - started - timeoutMs;
    console.log(`chunked: timeoutMs ${timeoutMs} (passes of about ${perPass.toFixed(0)} ms); rejected ${lateMs.toFixed(1)} ms after the deadline`);
    expect(error.name).toBe('TimeoutError');
    expect(error.message).toBe(`nlfit: the fit did not finish within timeoutMs (${timeoutMs} ms)`);
    expect(lateMs).toBeLessThan(kAssertMs);
  }, kTestTimeoutMs);

  it('timeoutMs interrupts an inline pass, which holds the calling thread (the kernel reads the deadline)', async () => {
    // 'standard' runs every pass on this thread: 1e7 points make one pass take a long time.
    const options: FitOptions = { ...big, strategy: 'standard' };
    const perPass = await passMs(options);
    const timeoutMs = Math.round(1.5 * perPass);
    const started = performance.now();
    const error = await engine.fit({ ...options, timeoutMs }).then(
      () => new Error('finished within the timeout'),
      (e: Error) => e,
    );
    const lateMs = performance.now() - started - timeoutMs;
    console.log(`inline: timeoutMs ${timeoutMs} (passes of about ${perPass.toFixed(0)} ms on this thread); rejected ${lateMs.toFixed(1)} ms after the deadline`);
    expect(error.name).toBe('TimeoutError');
    expect(lateMs).toBeLessThan(kAssertMs);
    expect(lateMs).toBeLessThan(perPass / 2);
  }, kTestTimeoutMs);

  it('the engine fits normally after an abort in the middle of a pass', async () => {
    const { a, m, s, w, ph, c } = truth;
    const smallData = synthetic(200_000, (x) => a * Math.exp(-((x - m) ** 2) / (2 * s * s)) * Math.cos(w * x + ph) + c, { x0: 0, x1: 10, noise: 0.05, seed: 12 });
    const small: FitOptions = { model, data: smallData, p0, strategy: 'chunked', threads: 2 };
    const reference = await engine.fit(small);
    const perPass = await passMs({ ...big, strategy: 'chunked' });
    const { error } = await abortMidPass({ ...big, strategy: 'chunked' }, 1, perPass / 2);
    expect(error.name).toBe('AbortError');
    const after = await engine.fit(small);
    expect(after.success).toBe(true);
    expect(outcome(after)).toEqual(outcome(reference));
  }, kTestTimeoutMs);

  it('an abort in the middle of a pass writes the checkpoint, and the resumed fit has the bits of an uninterrupted one', async () => {
    const options: FitOptions = { ...big, strategy: 'chunked' };
    const reference = await engine.fit(options);
    const path = join(dir, 'mid-pass.ckpt');
    const perPass = reference.timing.evaluateMs / reference.nfev;
    const { error } = await abortMidPass({ ...options, checkpoint: { path, everyIterations: 2 } }, 3, perPass / 2);
    expect(error.name).toBe('AbortError');
    const resumed = await engine.fit({ ...options, checkpoint: { path, everyIterations: 2, resume: true } });
    expect(resumed.checkpoint!.resumedFrom).not.toBeNull();
    expect(outcome(resumed)).toEqual(outcome(reference));
  }, kTestTimeoutMs);

  it('timeoutMs is validated, and maxTimeMs still ends gracefully with a result', async () => {
    const small: FitOptions = { model: 'a*x+b', data: { x: [1, 2, 3, 4], y: [2, 4.1, 5.9, 8.2] }, p0: { a: 1, b: 0 } };
    await expect(engine.fit({ ...small, timeoutMs: 0 })).rejects.toThrow('Expected number > 0 and <= 2147483647 for timeoutMs but received 0 of type number');
    await expect(engine.fit({ ...small, timeoutMs: '5' as never })).rejects.toThrow('Expected number > 0 for timeoutMs but received "5" of type string');
    await expect(engine.fitMany({ model: 'a*x+b', x: [1, 2, 3], y: [1, 2, 3], n: 3, p0: [1, 0], timeoutMs: -1 })).rejects.toThrow(/timeoutMs/);
    const ok = await engine.fit({ ...small, timeoutMs: 60_000 });
    expect(ok.success).toBe(true);
    const graceful = await engine.fit({ ...big, strategy: 'chunked', maxTimeMs: 1 });
    expect(graceful.status).toBe('max_time');
  }, kTestTimeoutMs);
});

describe('cancellation of fitMany', () => {
  // 120,000 curves of 20 points in 3 shards: each shard is a long native call.
  const m = 120_000;
  const points = 20;
  const xs = Float64Array.from({ length: points }, (_, i) => i / 4);
  let y: Float64Array;
  beforeAll(() => {
    y = new Float64Array(m * points);
    for (let c = 0; c < m; c++) {
      const a = 2 + (c % 7) * 0.1;
      const b = 0.5 + (c % 5) * 0.05;
      for (let i = 0; i < points; i++) y[c * points + i] = a * Math.exp(-b * xs[i]!) + 0.3 + 1e-3 * Math.sin(c * 31 + i);
    }
  });
  const options = () => ({ model: 'a*exp(-b*x)+c', x: xs, y, p0: [1, 1, 0], params: ['a', 'b', 'c'], shardSize: 40_000 });

  it(`an abort stops the shards between curves within ${kTargetMs} ms`, async () => {
    const full = await engine.fitMany(options());
    const shardMs = full.timing.fitMs / 2;
    const controller = new AbortController();
    const promise = engine.fitMany({ ...options(), signal: controller.signal });
    const delay = shardMs / 3;
    await new Promise((resolve) => setTimeout(resolve, delay));
    const abortedAt = performance.now();
    controller.abort();
    const error = await promise.then(
      () => new Error('finished before the abort'),
      (e: Error) => e,
    );
    const latencyMs = performance.now() - abortedAt;
    console.log(`fitMany: abort() ${delay.toFixed(0)} ms in (shards of about ${shardMs.toFixed(0)} ms); rejected ${latencyMs.toFixed(1)} ms later`);
    expect(error.name).toBe('AbortError');
    expect(latencyMs).toBeLessThan(kAssertMs);
    expect(latencyMs).toBeLessThan(shardMs / 2);
    // The engine is still good.
    const again = await engine.fitMany(options());
    expect(bits(again.params)).toBe(bits(full.params));
  }, kTestTimeoutMs);

  it('timeoutMs stops fitMany, on the pool and inline', async () => {
    const started = performance.now();
    const error = await engine.fitMany({ ...options(), timeoutMs: 30 }).then(
      () => new Error('finished within the timeout'),
      (e: Error) => e,
    );
    const lateMs = performance.now() - started - 30;
    console.log(`fitMany: timeoutMs 30; rejected ${lateMs.toFixed(1)} ms after the deadline`);
    expect(error.name).toBe('TimeoutError');
    expect(error.message).toBe('nlfit: the fitMany did not finish within timeoutMs (30 ms)');
    expect(lateMs).toBeLessThan(kAssertMs);
    // 500 curves run on the calling thread; a deadline that has passed stops them before the first.
    const inline = await engine
      .fitMany({ ...options(), y: y.subarray(0, 500 * points), shardSize: undefined, timeoutMs: 1e-3 })
      .then(
        () => new Error('finished within the timeout'),
        (e: Error) => e,
      );
    expect(inline.name).toBe('TimeoutError');
  }, kTestTimeoutMs);
});
