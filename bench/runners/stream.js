#!/usr/bin/env node
/**
 * One side of the out-of-core benchmark (bench/streaming.js), in its own
 * process so its peak RSS is its own. Job fields: mode 'streaming' (fit the
 * files with memoryLimitMb, the data never loaded) or 'memory' (read both
 * columns into shared memory, then fit in place on the pool); model, xPath,
 * yPath, n, p0, threads, memoryLimitMb. Reports idle RSS (after import, before
 * anything else), peak RSS, wall time, passes, parameters as hex bits, and the
 * execution record.
 */
import { readFileSync } from 'node:fs';
import { Engine } from '../../dist/index.js';
import { modelById } from '../trials.js';
import { announceFitStart, peakRssKiB, readColumn, readJob, report, reportError } from './protocol.js';

function rssKiB() {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) : Math.round(process.memoryUsage().rss / 1024);
}

const job = readJob();
const idleRssKiB = rssKiB();
try {
  const model = modelById(job.model);
  const engine = new Engine({ threads: job.threads });
  const p0 = Object.fromEntries(model.params.map((name, i) => [name, job.p0[i]]));
  let options;
  if (job.mode === 'streaming') {
    options = { model: model.expression, data: { x: job.xPath, y: job.yPath }, p0, memoryLimitMb: job.memoryLimitMb };
  } else {
    const x = readColumn(job.xPath, job.n);
    const y = readColumn(job.yPath, job.n);
    options = { model: model.expression, data: { x, y }, p0, strategy: 'chunked' };
  }
  let pressure = 0;
  options.onProgress = (event) => {
    if (event.type === 'pressure') pressure += 1;
  };
  announceFitStart();
  const started = performance.now();
  const r = await engine.fit(options);
  const wallMs = performance.now() - started;
  await engine.close();
  report({
    idleRssKiB,
    peakAboveIdleKiB: peakRssKiB() - idleRssKiB,
    wallMs,
    passes: r.nfev,
    params: Array.from(r.values),
    bits: Buffer.from(r.values.buffer, r.values.byteOffset, r.values.byteLength).toString('hex'),
    rss: r.rss,
    success: r.success,
    status: r.status,
    execution: r.execution,
    evaluateMs: r.timing.evaluateMs,
    pressureEvents: pressure,
  });
} catch (error) {
  reportError(error);
}
