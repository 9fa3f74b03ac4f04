#!/usr/bin/env node
/** One fitMany run for bench/batch.js, in its own process: prints fits/s, converged and accurate counts. */
import { readFileSync } from 'node:fs';
import { Engine } from '../../dist/index.js';

const job = JSON.parse(process.argv[2]);
const read = (path) => {
  const bytes = readFileSync(path);
  const shared = new Float64Array(new SharedArrayBuffer(bytes.length));
  new Uint8Array(shared.buffer).set(bytes);
  return shared;
};
const y = read(job.yPath);
const p0 = read(job.p0Path);
const truth = read(job.truthPath);
const x = Object.fromEntries(job.xNames.map((name, i) => [name, read(job.xPaths[i])]));
const engine = new Engine({ threads: job.threads });
await engine.warmup();
const options = { model: job.expression, x: job.xNames.length === 1 ? x[job.xNames[0]] : x, y, p0, params: job.params, threads: job.threads };
// A short untimed run warms the workers' caches.
await engine.fitMany({ ...options, y: y.subarray(0, 1000 * job.n), p0: p0.subarray(0, 1000 * job.p), shardSize: 500 });
const r = await engine.fitMany(options);
let accurate = 0;
for (let c = 0; c < job.m; c++) {
  let ok = true;
  for (let j = 0; j < job.p; j++) {
    const t = truth[c * job.p + j];
    if (!(Math.abs(r.params[c * job.p + j] - t) <= 1e-6 * Math.abs(t))) ok = false;
  }
  if (ok) accurate++;
}
await engine.close();
process.stdout.write(`${JSON.stringify({ fitsPerSecond: r.timing.fitsPerSecond, fitMs: r.timing.fitMs, converged: r.converged, accurate, counts: r.counts })}\n`);
