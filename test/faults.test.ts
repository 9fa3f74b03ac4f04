// Worker threads that die under a pass (src/exec/poolTask.ts): a JavaScript
// model that calls process.exit(), an uncaught exception in the thread, the
// thread terminated from outside. The task runs again on the replacement
// Piscina starts, and the fit ends with the bits of a fit where nothing
// died; a task whose worker dies three times rejects the fit naming the task
// and the cause; a model that throws is never run again; the engine keeps
// working afterwards.
//
// Deaths are made deterministic with marker files: a model claims a marker
// by deleting it (only one thread can), and the thread that claimed it dies.
// So each marker costs exactly one death, wherever it falls.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Engine, type FitOptions, type FitResult } from '../dist/index.js';
import { EnginePool } from '../dist/exec/engine.js';
import { planJsModel } from '../dist/exec/jsModel.js';
import { PooledEvaluator } from '../dist/exec/pooled.js';
import { kMaxTaskFailures } from '../dist/exec/poolTask.js';
import { synthetic } from '../dist/data/synthetic.js';

const kTestTimeoutMs = 60_000;
const dir = mkdtempSync(join(tmpdir(), 'nlfit-faults-'));
const engine = new Engine({ threads: 2 });
afterAll(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Writes a model module `name`.mjs: `decay` (block kind) computes
 * a*exp(-b*x)+c after running `fault` (the body of a function of `claim`)
 * in worker threads. Each worker that imports the module appends a
 * line to `name`.imports, so replacements can be counted.
 */
function faultyModel(name: string, fault: string): { module: string; imports: () => number } {
  const module = join(dir, `${name}.mjs`);
  const importsLog = join(dir, `${name}.imports`);
  writeFileSync(
    module,
    `
import { appendFileSync, readdirSync, unlinkSync } from 'node:fs';
import { isMainThread, threadId } from 'node:worker_threads';
const markers = ${JSON.stringify(dir)};
if (!isMainThread) appendFileSync(${JSON.stringify(importsLog)}, threadId + '\\n');
/** True for the one thread that deletes a marker file starting with prefix. */
function claim(prefix) {
  for (const file of readdirSync(markers)) {
    if (!file.startsWith(prefix)) continue;
    try { unlinkSync(markers + '/' + file); return true; } catch { /* another thread took it */ }
  }
  return false;
}
function fault(claim) { ${fault} }
export function decay(vars, p, out) {
  if (!isMainThread) fault(claim);
  const x = vars[0];
  for (let i = 0; i < out.length; i++) out[i] = p[0] * Math.exp(-p[1] * x[i]) + p[2];
}
`,
  );
  return { module, imports: () => (existsSync(importsLog) ? readFileSync(importsLog, 'utf8').trim().split('\n').length : 0) };
}

function marker(name: string): void {
  writeFileSync(join(dir, name), '');
}

function markersLeft(prefix: string): number {
  return readdirSync(dir).filter((file) => file.startsWith(prefix)).length;
}

function bits(values: Float64Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex');
}

function outcome(r: FitResult) {
  return { values: bits(r.values), covariance: r.covariance, rss: r.rss, nfev: r.nfev, iterations: r.iterations, status: r.status };
}

const n = 200_000;
let data: { x: Float64Array; y: Float64Array };
const p0 = { a: 1, b: 0.5, c: 0 };
const params = ['a', 'b', 'c'];
beforeAll(() => {
  data = synthetic(n, (x) => 2.5 * Math.exp(-1.3 * x) + 0.5, { x0: 0, x1: 5, noise: 0.01, seed: 3 });
});

/** The fit of `module` that must match the clean one: on the pool, two threads, several tasks per pass. */
function options(module: string, strategy: 'chunked' | 'streaming' = 'chunked'): FitOptions {
  return {
    model: { module, export: 'decay', kind: 'block', params, variables: ['x'] },
    data,
    p0,
    strategy,
    threads: 2,
    chunkSize: 512 * 64,
  };
}

let clean: FitResult;
beforeAll(async () => {
  clean = await engine.fit(options(faultyModel('clean', '').module));
}, kTestTimeoutMs);

describe('a worker that dies under a pass', () => {
  for (const strategy of ['chunked', 'streaming'] as const) {
    it(`a model that calls process.exit() runs again on a replacement worker and the fit has the same bits (${strategy})`, async () => {
      const model = faultyModel(`exit-${strategy}`, `if (claim('exit-${strategy}-')) process.exit(7);`);
      // Two deaths: at worst both under one task, which is still fewer than kMaxTaskFailures.
      marker(`exit-${strategy}-1`);
      marker(`exit-${strategy}-2`);
      const r = await engine.fit(options(model.module, strategy));
      // Both deaths happened (a thread that claims a marker exits before its task can finish), and were survived.
      expect(markersLeft(`exit-${strategy}-`)).toBe(0);
      expect(outcome(r)).toEqual(outcome(clean));
    }, kTestTimeoutMs);
  }

  it('an uncaught exception in the thread counts as the thread dying: the task runs again', async () => {
    // Thrown from a microtask: after the model returned, so no task catches it.
    const model = faultyModel('uncaught', `if (claim('uncaught-')) queueMicrotask(() => { throw new Error('thrown outside any task'); });`);
    marker('uncaught-1');
    const r = await engine.fit(options(model.module));
    expect(markersLeft('uncaught-')).toBe(0);
    expect(outcome(r)).toEqual(outcome(clean));
  }, kTestTimeoutMs);

  it('a thread that dies in a later pass (process.exit at the fourth pass) is replaced, with the same bits', async () => {
    const model = faultyModel('later', `if (claim('later-')) process.exit(3);`);
    const r = await engine.fit({
      ...options(model.module),
      onProgress: (event) => {
        if (event.type === 'pass' && event.pass === 3) marker('later-1');
      },
    });
    expect(markersLeft('later-')).toBe(0);
    expect(outcome(r)).toEqual(outcome(clean));
  }, kTestTimeoutMs);

  it(`a model that always kills its thread rejects after ${kMaxTaskFailures} deaths of one task, naming it and the cause; the engine works afterwards`, async () => {
    const model = faultyModel('always', 'process.exit(9);');
    const error = await engine.fit(options(model.module)).then(
      () => new Error('the fit succeeded'),
      (e: Error) => e,
    );
    expect(error.message).toMatch(
      /^nlfit: the worker thread running blocks \d+ to \d+ of a pass died 3 times \(last: worker exited with code: 9\); a model that exits or crashes its thread cannot be fitted$/,
    );
    expect((error.cause as Error).message).toBe('worker exited with code: 9');
    const after = await engine.fit(options(faultyModel('after-always', '').module));
    expect(outcome(after)).toEqual(outcome(clean));
  }, kTestTimeoutMs);

  it('a model that throws is not run again: the fit rejects at once with its error and position', async () => {
    const model = faultyModel('throws', `throw new RangeError('bad parameters');`);
    const error = await engine.fit(options(model.module)).then(
      () => new Error('the fit succeeded'),
      (e: Error) => e,
    );
    expect(error.message).toMatch(/^nlfit: model\.export 'decay' threw on the block of points \d+ to \d+: bad parameters$/);
    // No thread died, so none was replaced: at most the pool's two threads imported the module.
    expect(model.imports()).toBeLessThanOrEqual(2);
  }, kTestTimeoutMs);
});

describe('a worker terminated from outside', () => {
  it('terminating every thread in the middle of a pass: the tasks run again and the factor has the same bits', async () => {
    // A slow model (a busy loop per block), so that the pass is still running when the threads are terminated.
    const model = faultyModel('slow', 'const until = performance.now() + 0.1; while (performance.now() < until);');
    const pool = new EnginePool({ threads: 2 });
    try {
      const workers = pool.workers();
      const columns = { vars: [data.x], y: data.y, sigma: null, nPoints: n };
      const spec = { url: pathToFileURL(model.module).href, exportName: 'decay', jacobianName: null, kind: 'block', diff: '2-point', variables: ['x'], params, source: 'decay' } as const;
      const plan = planJsModel(
        { ...spec, params: [...params], variables: [...spec.variables] },
        params,
        Float64Array.of(1, 0.5, 0),
        [],
        {},
      );
      const evaluator = () => new PooledEvaluator(workers, plan, columns, { threads: 2, chunkBlocks: 64 });
      const theta = Float64Array.of(2.4, 1.2, 0.45);
      const reference = await evaluator().evaluate(theta);
      const importsBefore = model.imports();
      const pending = evaluator().evaluate(theta);
      // 391 blocks, 4 calls each (forward differences) of 0.1 ms, on two threads: about 80 ms of work; terminate 20 ms in.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const threads = (workers as unknown as { threads: Array<{ terminate(): Promise<number> }> }).threads;
      expect(threads.length).toBe(2);
      await Promise.all(threads.map((thread) => thread.terminate()));
      const again = await pending;
      expect(bits(again.factor)).toBe(bits(reference.factor));
      // A replacement imported the module and ran the terminated tasks.
      expect(model.imports()).toBeGreaterThan(importsBefore);
    } finally {
      await pool.close();
    }
  }, kTestTimeoutMs);
});
