#!/usr/bin/env node
/**
 * nlfit in its own process: reads the columns into shared memory (no copy on
 * the way in), starts an Engine with the job's threads, fits once untimed when
 * more than one run is asked for (so every timed run sees warm workers and
 * caches), then times `runs` fits. Reports the best and median wall time, the
 * passes, the time spent in passes, and whether every run gave the same bits.
 */
import { Engine } from '../../dist/index.js';
import { predictPeakRss } from '../../dist/memory/index.js';
import { modelById } from '../trials.js';
import { announceFitStart, median, readColumn, readJob, report, reportError } from './protocol.js';

const job = readJob();
try {
  const model = modelById(job.model);
  const x = readColumn(job.xPath, job.n);
  const y = readColumn(job.yPath, job.n);
  const engine = new Engine({ threads: job.threads });
  if (job.strategy === 'chunked') await engine.warmup();
  const options = {
    model: model.expression,
    data: { x, y },
    p0: Object.fromEntries(model.params.map((name, i) => [name, job.p0[i]])),
    strategy: job.strategy,
    threads: job.threads,
  };
  if (job.runs > 1) await engine.fit(options);
  announceFitStart();
  const runs = [];
  let last = null;
  let reproducible = true;
  for (let k = 0; k < job.runs; k++) {
    const started = performance.now();
    const r = await engine.fit(options);
    const wallMs = performance.now() - started;
    if (last !== null && !r.values.every((v, i) => Object.is(v, last.values[i]))) reproducible = false;
    last = r;
    runs.push({ wallMs, passMs: r.timing.evaluateMs / r.nfev, ...r.timing });
  }
  await engine.close();
  report({
    wallMs: median(runs.map((r) => r.wallMs)),
    bestWallMs: Math.min(...runs.map((r) => r.wallMs)),
    passMs: median(runs.map((r) => r.passMs)),
    bestPassMs: Math.min(...runs.map((r) => r.passMs)),
    passes: last.nfev,
    iterations: last.iterations,
    params: Array.from(last.values),
    success: last.success,
    status: last.status,
    threadsUsed: last.threads,
    strategyUsed: last.strategy,
    reproducible,
    runs,
    // The memory coordinator's prediction for this process (src/memory/estimate.ts).
    predictedPeakRssKiB:
      predictPeakRss({ nPoints: job.n, nParams: model.params.length, nVariables: 1, threads: last.threads, strategy: last.strategy }) / 1024,
  });
} catch (error) {
  reportError(error);
}
