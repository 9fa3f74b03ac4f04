#!/usr/bin/env node
/**
 * Cold start, in a fresh process: from the top of this script (before nlfit
 * is imported) to the first result of a 1000-point fit with the default
 * engine, as a Node backend would see it. Also reports how long Node took to
 * reach the top of the script (performance.now() counts from process start).
 * The data are plain arrays made before the clock starts (only node:fs,
 * for the RSS figure, is loaded before it).
 */
import { peakRssKiB } from './protocol.js';

const bootMs = performance.now();
const n = Number(process.argv[2] ?? 1000);
const x = Array.from({ length: n }, (_, i) => (5 * i) / (n - 1));
const y = x.map((xi, i) => 5 * Math.exp(-1.3 * xi) + 0.7 + 0.05 * Math.sin(i * 12.9898));

const t0 = performance.now();
const { fit } = await import('../../dist/index.js');
const imported = performance.now();
const r = await fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 4, b: 1.6, c: 0.56 } });
const t1 = performance.now();
process.stdout.write(
  `${JSON.stringify({
    ok: r.success,
    timedOut: false,
    error: r.success ? null : r.message,
    bootMs,
    importMs: imported - t0,
    fitMs: t1 - imported,
    wallMs: t1 - t0,
    strategyUsed: r.strategy,
    maxRssKiB: peakRssKiB(),
  })}\n`,
);
