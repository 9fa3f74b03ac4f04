#!/usr/bin/env node
/**
 * fitMany benchmark: 1M fits of a 2-D gaussian with offset (5 params, 5x5
 * points) and 1M fits of a 1-D gaussian (4 params, 32 points), fits per
 * second on 1 and 2 threads, and scipy curve_fit in a Python loop on the same
 * curves for a ratio (scipy on a subset: at ~1 ms per fit a million would take
 * a quarter of an hour).
 *
 *   npm run bench:batch                 # 1e6 curves each
 *   node bench/batch.js --curves 1e5 --scipy 2000
 *
 * Curves: seeded truths (amplitude, centre, width, offset) drawn per curve,
 * noise-free or with Gaussian noise (--noise sd), p0 = truth x (1 + U(-0.2, 0.2)).
 * Each nlfit run is a fresh process (its own pool), timing the fitMany call
 * only; converged = status ftol/xtol/gtol; accurate = every parameter within
 * 1e-6 relative of the truth (noise-free only).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { SeededRandom } from '../dist/data/synthetic.js';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const curves = option('curves', 1e6);
const scipyCount = option('scipy', 3000);
const noise = option('noise', 0);
const threadCounts = [1, availableParallelism()].filter((t, i, all) => all.indexOf(t) === i);

const models = [
  {
    id: 'gauss2d',
    title: '2-D gaussian + offset, 5x5 points, 5 params',
    expression: 'a*exp(-((x1-u)^2+(x2-v)^2)/(2*s^2))+c',
    params: ['a', 'u', 'v', 's', 'c'],
    n: 25,
    x: { x1: Float64Array.from({ length: 25 }, (_, i) => i % 5), x2: Float64Array.from({ length: 25 }, (_, i) => Math.floor(i / 5)) },
    truth: (r) => [50 + 100 * r.next(), 1.5 + r.next(), 1.5 + r.next(), 0.8 + 0.6 * r.next(), 5 + 5 * r.next()],
    f: ([a, u, v, s, c], x1, x2) => a * Math.exp(-((x1 - u) ** 2 + (x2 - v) ** 2) / (2 * s * s)) + c,
  },
  {
    id: 'gauss1d',
    title: '1-D gaussian + offset, 32 points, 4 params',
    expression: 'a*exp(-(x-u)^2/(2*s^2))+c',
    params: ['a', 'u', 's', 'c'],
    n: 32,
    x: { x: Float64Array.from({ length: 32 }, (_, i) => i) },
    truth: (r) => [50 + 100 * r.next(), 12 + 8 * r.next(), 2 + 3 * r.next(), 5 + 5 * r.next()],
    f: ([a, u, s, c], x) => a * Math.exp(-((x - u) ** 2) / (2 * s * s)) + c,
  },
];

const dir = mkdtempSync(join(tmpdir(), 'nlfit-batch-'));
try {
  console.log(`# nlfit fitMany benchmark: ${curves} curves per model, noise ${noise}, p0 within 20% of the truth (seed 11)`);
  console.log('');
  console.log('| model | engine | threads | curves | fits/s | converged | accurate (1e-6) |');
  console.log('|---|---|---:|---:|---:|---:|---:|');
  for (const model of models) {
    const p = model.params.length;
    const random = new SeededRandom(11);
    const y = new Float64Array(curves * model.n);
    const p0 = new Float64Array(curves * p);
    const truth = new Float64Array(curves * p);
    const xs = Object.values(model.x);
    for (let c = 0; c < curves; c++) {
      const t = model.truth(random);
      for (let j = 0; j < p; j++) {
        truth[c * p + j] = t[j];
        p0[c * p + j] = t[j] * (1 + 0.4 * (random.next() - 0.5));
      }
      for (let i = 0; i < model.n; i++) y[c * model.n + i] = model.f(t, ...xs.map((x) => x[i])) + (noise ? noise * random.normal() : 0);
    }
    const paths = { y: join(dir, `${model.id}-y.bin`), p0: join(dir, `${model.id}-p0.bin`), truth: join(dir, `${model.id}-truth.bin`) };
    writeFileSync(paths.y, y);
    writeFileSync(paths.p0, p0);
    writeFileSync(paths.truth, truth);
    const xPaths = Object.entries(model.x).map(([name, values]) => {
      const path = join(dir, `${model.id}-${name}.bin`);
      writeFileSync(path, values);
      return path;
    });
    const job = { model: model.id, expression: model.expression, params: model.params, m: curves, n: model.n, p, yPath: paths.y, p0Path: paths.p0, truthPath: paths.truth, xNames: Object.keys(model.x), xPaths, noise };
    const rates = {};
    for (const threads of threadCounts) {
      const run = spawnSync(process.execPath, ['bench/runners/batch_nlfit.js', JSON.stringify({ ...job, threads })], { encoding: 'utf8', maxBuffer: 1 << 24 });
      const line = run.stdout.trim().split('\n').pop();
      if (run.status !== 0 || !line) {
        console.log(`| ${model.id} | nlfit | ${threads} | ${curves} | failed: ${run.stderr.slice(-300)} | | |`);
        continue;
      }
      const r = JSON.parse(line);
      rates[threads] = r.fitsPerSecond;
      console.log(`| ${model.title} | nlfit fitMany | ${threads} | ${curves} | ${Math.round(r.fitsPerSecond).toLocaleString('en')} | ${(100 * r.converged / curves).toFixed(2)}% | ${noise ? '(noisy)' : `${(100 * r.accurate / curves).toFixed(2)}%`} |`);
    }
    const scipy = spawnSync('python3', ['bench/runners/batch_scipy.py', JSON.stringify({ ...job, count: scipyCount })], { encoding: 'utf8' });
    if (scipy.status === 0) {
      const s = JSON.parse(scipy.stdout.trim().split('\n').pop());
      const best = Math.max(...Object.values(rates));
      console.log(`| ${model.title} | scipy curve_fit loop ('lm', analytic jac) | 1 | ${s.count} | ${Math.round(s.fitsPerSecond).toLocaleString('en')} | | |`);
      console.log(`| | **nlfit / scipy** | | | **${(best / s.fitsPerSecond).toFixed(0)}x** | | |`);
    } else {
      console.log(`| ${model.title} | scipy | skipped: ${scipy.stderr.trim().split('\n').pop()} | | | | |`);
    }
    if (model.id === 'gauss2d') {
      const two = rates[availableParallelism()] ?? 0;
      console.log('');
      console.log(`${two >= 200_000 ? 'PASS' : 'FAIL'}      2-D gaussian 5x5 on ${availableParallelism()} threads >= 200,000 fits/s: ${Math.round(two).toLocaleString('en')}`);
      console.log('');
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
