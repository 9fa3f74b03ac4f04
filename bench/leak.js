#!/usr/bin/env node
/**
 * Leak check of the addon's life cycle in worker threads (issue 8, item 5):
 * memory must level off however many times workers load the addon and go.
 *
 *   npm run bench:leak                     # node --expose-gc bench/leak.js: 100 cycles of each
 *   node --expose-gc bench/leak.js --cycles 300 --rounds 4 --max-slope-kb 100
 *   node --expose-gc bench/leak.js --only workers        # or --only engines
 *
 * engines  new Engine({ threads: 2 }), warmup() (both workers load the
 *          addon), one fit on the pool (strategy 'chunked', 100,000 points,
 *          so both workers run kernels) and close(), --cycles times.
 * workers  a raw worker_threads Worker that loads build/Release/nlfit.node,
 *          verifies a model program through it and exits, --cycles times.
 *
 * RSS (and the main thread's heap) is sampled every --every cycles, after
 * gc(). Growth must stay under --max-slope-kb per cycle (default 64 KiB,
 * about 6 MiB over 100 cycles; a worker that kept its isolate or the addon's
 * per-environment data would cost MiBs per cycle). Exits 1 when it does not.
 *
 * Engines are judged on memory at rest: Piscina's close() races the pool's
 * flush against a closeTimeout timer (30 s, unref'd) that it never clears, so
 * a closed pool (with its two native histograms) stays reachable for 30 s,
 * and memory sampled while engines come and go counts every pool of the last
 * 30 s. So the engines run in --rounds rounds (3) of --cycles, each followed
 * by --idle-seconds (31) at rest; the first round takes the allocator to the
 * high-water mark that every round reaches (RSS does not shrink below it),
 * and the growth at rest over the last round is what is judged. Workers have
 * no pool: their samples are judged by their least squares slope after
 * --warmup cycles.
 */
import { existsSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { Engine } from '../dist/index.js';
import { addonCandidates } from '../dist/native.js';
import { compileModel } from '../dist/model/index.js';
import { synthetic } from '../dist/data/synthetic.js';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const cycles = option('cycles', 100);
const every = option('every', 10);
const warmupCycles = option('warmup', 20);
const maxSlopeKb = option('max-slope-kb', 64);
const idleSeconds = option('idle-seconds', 31);
const rounds = Math.max(2, option('rounds', 3));

if (typeof globalThis.gc !== 'function') {
  setFlagsFromString('--expose-gc');
  globalThis.gc = runInNewContext('gc');
  console.log('(node ran without --expose-gc; enabled it through v8.setFlagsFromString)');
}
const addonPath = addonCandidates().find((path) => existsSync(path));
if (!addonPath) throw new Error('the addon is not built: run npm run build:native');

const { x, y } = synthetic(100_000, (t) => 3 * Math.exp(-0.8 * t) + 0.5, { x0: 0, x1: 10, noise: 0.01, seed: 1 });

async function settle() {
  for (let k = 0; k < 3; k++) {
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function engineCycle() {
  const engine = new Engine({ threads: 2 });
  try {
    await engine.warmup();
    const result = await engine.fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 1, b: 1, c: 0 }, strategy: 'chunked' });
    if (!(Math.abs(result.params.b - 0.8) < 1e-2)) throw new Error(`the fit went wrong: b = ${result.params.b}`);
  } finally {
    await engine.close();
  }
}

const model = compileModel('a*exp(-b*x)+c', { params: ['a', 'b', 'c'], columns: ['x'] });
const workerSource = `
  const { workerData, parentPort } = require('node:worker_threads');
  const addon = require(workerData.addonPath);
  const kernel = new addon.Kernel(workerData.code, workerData.consts);
  parentPort.postMessage(kernel.nParams);
`;

async function workerCycle() {
  const worker = new Worker(workerSource, { eval: true, workerData: { addonPath, code: model.code, consts: model.consts } });
  // Listen for the exit from the start: it may come right behind the message.
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  const nParams = await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  if (nParams !== 3) throw new Error(`the worker's kernel has ${nParams} parameters, not 3`);
  await exited;
}

/** Least squares slope of y over x. */
function slope(points) {
  const n = points.length;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  const sxy = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0);
  const sxx = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  return sxx === 0 ? 0 : sxy / sxx;
}

const mb = (bytes) => (bytes / 2 ** 20).toFixed(1);

async function sample() {
  await settle();
  return process.memoryUsage();
}

/** Runs `count` cycles, printing RSS and heap every `every`; returns the samples. */
async function runCycles(cycle, first, count) {
  const samples = [];
  let last = performance.now();
  for (let c = first; c < first + count; c++) {
    await cycle();
    if (c % every !== 0) continue;
    const { rss, heapUsed } = await sample();
    const now = performance.now();
    console.log(`  ${String(c).padStart(5)}   ${mb(rss).padStart(7)}   ${mb(heapUsed).padStart(8)}   ${((now - last) / every).toFixed(0).padStart(8)}`);
    last = now;
    samples.push({ x: c, y: rss, heap: heapUsed });
  }
  return samples;
}

const idle = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));
const header = '  cycle   RSS MiB   heap MiB   ms/cycle';

async function checkEngines() {
  const start = await sample();
  console.log(`\nengines (new Engine({ threads: 2 }), warmup, a pooled fit, close): ${rounds} rounds of ${cycles} cycles, each followed by ${idleSeconds} s at rest`);
  console.log(`  start RSS ${mb(start.rss)} MiB, heap ${mb(start.heapUsed)} MiB`);
  console.log(header);
  const atRest = [];
  for (let round = 0; round < rounds; round++) {
    await runCycles(engineCycle, round * cycles + 1, cycles);
    await idle(idleSeconds);
    const rest = await sample();
    atRest.push(rest);
    console.log(`  round ${round + 1} at rest: RSS ${mb(rest.rss)} MiB, heap ${mb(rest.heapUsed)} MiB`);
  }
  // The first round is the warm-up: it takes the allocator to the high-water mark every round reaches.
  const [before, after] = atRest.slice(-2);
  const perCycle = (after.rss - before.rss) / cycles / 1024;
  const heapPerCycle = (after.heapUsed - before.heapUsed) / cycles / 1024;
  const ok = perCycle < maxSlopeKb;
  console.log(`  growth at rest over the last round: RSS ${perCycle.toFixed(1)} KiB/cycle, heap ${heapPerCycle.toFixed(1)} KiB/cycle (limit ${maxSlopeKb} KiB/cycle): ${ok ? 'ok' : 'GROWING'}`);
  return ok;
}

async function checkWorkers() {
  const start = await sample();
  console.log(`\nworkers (a Worker loads the addon, verifies a program, exits): ${cycles} cycles`);
  console.log(`  start RSS ${mb(start.rss)} MiB, heap ${mb(start.heapUsed)} MiB`);
  console.log(header);
  const trend = (await runCycles(workerCycle, 1, cycles)).filter((s) => s.x > warmupCycles);
  const rssSlope = slope(trend) / 1024;
  const heapSlope = slope(trend.map((s) => ({ x: s.x, y: s.heap }))) / 1024;
  const ok = rssSlope < maxSlopeKb;
  console.log(`  after cycle ${warmupCycles}: RSS slope ${rssSlope.toFixed(1)} KiB/cycle, heap slope ${heapSlope.toFixed(1)} KiB/cycle (limit ${maxSlopeKb} KiB/cycle): ${ok ? 'ok' : 'GROWING'}`);
  return ok;
}

console.log(`leak check: node ${process.version}, addon ${addonPath}`);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
const enginesOk = only === 'workers' ? true : await checkEngines();
const workersOk = only === 'engines' ? true : await checkWorkers();
process.exit(enginesOk && workersOk ? 0 : 1);
