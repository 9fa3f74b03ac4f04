#!/usr/bin/env node
// Core-engine benchmark: one a*exp(-b*x)+c fit on N generated points (default
// 10 million) with 1 and with all threads, best and median of several runs on
// a warm engine, plus scipy curve_fit on the very same data when python3 has
// scipy. Not a test: run it on a quiet machine.
//
//   node bench/core.js [--points N] [--runs K] [--no-scipy]
//
// Prints a markdown table and writes bench/results/core-<date>.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../dist/index.js';
import { synthetic } from '../dist/data/synthetic.js';

function flag(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}
const points = flag('points', 10_000_000);
const runs = flag('runs', 5);
const withScipy = !process.argv.includes('--no-scipy');
const seed = 7;
const truth = { a: 5, b: 1.3, c: 0.7 };
const p0 = { a: 1, b: 0.5, c: 0 };

console.log(`# nlfit core benchmark`);
console.log(`model a*exp(-b*x)+c, ${points.toLocaleString('en-US')} points, x on [0, 5], noise sd 0.05, seed ${seed}; p0 = ${JSON.stringify(p0)}`);
console.log(`machine: ${cpus()[0]?.model ?? 'unknown'}, ${availableParallelism()} cores, node ${process.version}; ${runs} runs per row, warm engine\n`);

const { x, y } = synthetic(points, (xi) => truth.a * Math.exp(-truth.b * xi) + truth.c, { x0: 0, x1: 5, noise: 0.05, seed });

const rows = [];
const threadCounts = [...new Set([1, availableParallelism()])];
let reference = null;
for (const threads of threadCounts) {
  const engine = new Engine({ threads });
  await engine.warmup();
  await engine.fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0, strategy: 'chunked' });
  const times = [];
  let result = null;
  for (let k = 0; k < runs; k++) {
    const started = performance.now();
    result = await engine.fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0, strategy: 'chunked' });
    times.push(performance.now() - started);
  }
  await engine.close();
  times.sort((a, b) => a - b);
  const identical = reference === null || result.values.every((v, i) => Object.is(v, reference[i]));
  reference ??= result.values;
  rows.push({
    engine: `nlfit ${threads} thread${threads === 1 ? '' : 's'}`,
    bestMs: times[0],
    medianMs: times[Math.floor(times.length / 2)],
    passes: result.nfev,
    nsPerPointPass: (times[0] * 1e6) / (points * result.nfev),
    params: result.params,
    success: result.success,
    identicalToOneThread: identical,
  });
}

if (withScipy) {
  const probe = spawnSync('python3', ['-c', 'import scipy, numpy; print(scipy.__version__)'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    console.log('scipy: skipped (python3 with scipy not found)\n');
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'nlfit-bench-'));
    try {
      writeFileSync(join(dir, 'x.bin'), Buffer.from(x.buffer, x.byteOffset, x.byteLength));
      writeFileSync(join(dir, 'y.bin'), Buffer.from(y.buffer, y.byteOffset, y.byteLength));
      const script = `
import numpy as np, time, json, sys
from scipy.optimize import curve_fit
x = np.fromfile(sys.argv[1], dtype='<f8'); y = np.fromfile(sys.argv[2], dtype='<f8')
def f(x, a, b, c): return a*np.exp(-b*x)+c
def jac(x, a, b, c):
    e = np.exp(-b*x); return np.stack([e, -a*x*e, np.ones_like(x)], axis=1)
out = []
for label, kw in [('analytic jac', {'jac': jac}), ('finite differences', {})]:
    t = time.perf_counter(); popt, pcov = curve_fit(f, x, y, p0=[${p0.a}, ${p0.b}, ${p0.c}], method='lm', **kw); dt = time.perf_counter() - t
    out.append({'label': label, 'ms': dt*1000, 'params': popt.tolist()})
print(json.dumps(out))`;
      const run = spawnSync('python3', ['-c', script, join(dir, 'x.bin'), join(dir, 'y.bin')], { encoding: 'utf8', maxBuffer: 1 << 20 });
      if (run.status === 0) {
        for (const r of JSON.parse(run.stdout.trim().split('\n').pop())) {
          rows.push({ engine: `scipy ${probe.stdout.trim()} curve_fit lm, ${r.label} (1 run)`, bestMs: r.ms, medianMs: r.ms, passes: null, nsPerPointPass: null, params: { a: r.params[0], b: r.params[1], c: r.params[2] }, success: true });
        }
      } else {
        console.log(`scipy failed: ${run.stderr.slice(-500)}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

const fmt = (v, d = 1) => (v === null || v === undefined ? '-' : v.toFixed(d));
console.log('| engine | best ms | median ms | passes | ns/point/pass | a | b | c |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.engine} | ${fmt(r.bestMs)} | ${fmt(r.medianMs)} | ${r.passes ?? '-'} | ${fmt(r.nsPerPointPass, 2)} | ${r.params.a.toPrecision(10)} | ${r.params.b.toPrecision(10)} | ${r.params.c.toPrecision(10)} |`);
}
const one = rows.find((r) => r.engine === 'nlfit 1 thread');
const all = rows.find((r) => r.engine.startsWith('nlfit') && r !== one);
for (const peer of rows.filter((r) => r.engine.startsWith('scipy'))) {
  if (all) console.log(`${all.engine} vs ${peer.engine}: ${(peer.bestMs / all.bestMs).toFixed(1)}x faster`);
}
if (one && all) {
  console.log(`\nspeed-up ${all.engine} vs 1 thread: ${(one.bestMs / all.bestMs).toFixed(2)}x (best), ${(one.medianMs / all.medianMs).toFixed(2)}x (median); parameters bitwise identical: ${all.identicalToOneThread}`);
}
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/core-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
writeFileSync(file, JSON.stringify({ points, runs, seed, rows }, null, 2));
console.log(`\nresults: ${file.pathname}`);
