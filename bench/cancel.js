#!/usr/bin/env node
/**
 * Cancellation latency (issue 8): how long after an abort, or after a
 * timeoutMs deadline, a pooled 10,000,000-point fit rejects.
 *
 *   node bench/cancel.js [--runs 8] [--points 1e7]
 *
 * abort    the fit's AbortController is aborted from onProgress once a pass is
 *          30% done (so mid-pass, while the workers run blocks); the time is
 *          from abort() to the rejection.
 * timeout  timeoutMs of 30 ms, 37 ms, ... (a deadline in some pass); the time
 *          is from the deadline (measured from just before fit()) to the
 *          rejection: slightly negative when the fit's own clock started
 *          later than this script's.
 */
import { Engine } from '../dist/index.js';
import { synthetic } from '../dist/data/synthetic.js';

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(name);
  return at >= 0 ? Number(argv[at + 1]) : fallback;
};
const runs = option('--runs', 8);
const points = option('--points', 1e7);
const engine = new Engine();
const { x, y } = synthetic(points, (t) => 3 * Math.exp(-0.7 * t) + 0.5, { x0: 0, x1: 10, noise: 0.02, seed: 1 });
const base = { model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 1, b: 0.1, c: 0 }, strategy: 'chunked' };
const abortMs = [];
const timeoutMs = [];
for (let i = 0; i < runs; i++) {
  const controller = new AbortController();
  let abortedAt = 0;
  try {
    await engine.fit({
      ...base,
      signal: controller.signal,
      onProgress: (event) => {
        if (event.type === 'pass-progress' && event.fraction > 0.3 && abortedAt === 0) {
          abortedAt = performance.now();
          controller.abort();
        }
      },
    });
  } catch {
    if (abortedAt > 0) abortMs.push(performance.now() - abortedAt);
  }
}
for (let i = 0; i < runs; i++) {
  const limit = 30 + 7 * i;
  const started = performance.now();
  try {
    await engine.fit({ ...base, timeoutMs: limit });
  } catch {
    timeoutMs.push(performance.now() - started - limit);
  }
}
const range = (values) => `${Math.min(...values).toFixed(2)} to ${Math.max(...values).toFixed(2)} ms (${values.length} runs)`;
console.log(`${points} points, strategy 'chunked', ${engine.threads} threads`);
console.log(`abort mid-pass -> rejection: ${range(abortMs)}`);
console.log(`timeoutMs deadline -> rejection: ${range(timeoutMs)}`);
await engine.close();
