#!/usr/bin/env node
/**
 * Many fits at once on one engine: throughput, fairness and backpressure.
 *
 *   node bench/load.js                         # all three, 10 s per timed phase
 *   node bench/load.js --seconds 2 --only fairness
 *
 * throughput  --callers async callers (64), each looping fit() and
 *             alternating a 1,000-point and a 10,000-point problem (both
 *             run on the calling thread), for --seconds: fits/s, p50/p99.
 * fairness    p50/p99 latency of a 1,000-point fit (calling thread) and of
 *             a 100,000-point fit on the pool (strategy 'chunked'), each
 *             looped alone and then while a 10,000,000-point fit runs back to
 *             back on the same engine; and the big fit's own time per fit
 *             (a big fit that starves completes few or none while shared).
 * queue       Engine({ maxQueue: 100 }) and 1,000 fit() calls made at once:
 *             exactly 1,000 - maxConcurrentFits - 100 must reject with
 *             ERR_NLFIT_QUEUE_FULL, and the rest succeed.
 *
 * The model is a*exp(-b*x)+c on seeded data (dist/data/synthetic.js). The
 * engine has --threads workers (default: the available parallelism). The
 * numbers depend on what else the machine runs: the header prints the load average.
 */
import { availableParallelism, cpus, loadavg } from 'node:os';
import { Engine } from '../dist/index.js';
import { synthetic } from '../dist/data/synthetic.js';

const kModel = 'a*exp(-b*x)+c';
const kP0 = [1, 1, 0];
const kScenarios = ['throughput', 'fairness', 'queue'];

function parse(argv) {
  const options = { seconds: 10, threads: availableParallelism(), callers: 64, only: null };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--help') {
      console.log('Usage: node bench/load.js [--seconds 10] [--threads <n>] [--callers 64] [--only throughput|fairness|queue]');
      process.exit(0);
    } else if (flag === '--seconds') options.seconds = Number(value);
    else if (flag === '--threads') options.threads = Number(value);
    else if (flag === '--callers') options.callers = Number(value);
    else if (flag === '--only') options.only = value;
    else throw new Error(`unknown option ${flag}`);
    i++;
  }
  if (!(options.seconds > 0)) throw new Error('--seconds must be a number > 0');
  if (!Number.isInteger(options.threads) || options.threads < 1) throw new Error('--threads must be a positive integer');
  if (!Number.isInteger(options.callers) || options.callers < 1) throw new Error('--callers must be a positive integer');
  if (options.only !== null && !kScenarios.includes(options.only)) throw new Error(`--only must be one of ${kScenarios.join(', ')}`);
  return options;
}

/** Seeded a*exp(-b*x)+c data of n points, in shared memory. */
function problem(n, seed) {
  return synthetic(n, (x) => 2 * Math.exp(-1.3 * x) + 0.5, { x1: 4, noise: 0.01, seed });
}

/** Nearest-rank percentile of latencies in ms. */
function percentile(values, q) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

const ms = (value) => (Number.isFinite(value) ? value.toFixed(value < 10 ? 2 : 1) : 'n/a');

async function timedFit(engine, data, strategy) {
  const started = performance.now();
  const result = await engine.fit({ model: kModel, data, p0: kP0, strategy });
  if (!result.success) throw new Error(`a fit of ${data.y.length} points did not converge: ${result.message}`);
  return performance.now() - started;
}

/** Loops fit() until `until` (performance.now()); returns the latencies. */
async function loop(engine, data, strategy, until) {
  const latencies = [];
  while (performance.now() < until) latencies.push(await timedFit(engine, data, strategy));
  return latencies;
}

async function throughput(options, problems) {
  const engine = new Engine({ threads: options.threads, maxQueue: options.callers });
  await engine.warmup();
  const sizes = [problems.p1e3, problems.p1e4];
  const latencies = sizes.map(() => []);
  const started = performance.now();
  const until = started + options.seconds * 1000;
  await Promise.all(
    Array.from({ length: options.callers }, async (_, caller) => {
      for (let k = caller; performance.now() < until; k++) {
        const which = k % 2;
        latencies[which].push(await timedFit(engine, sizes[which], 'auto'));
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  await engine.close();
  const all = latencies.flat();
  return [
    ['1,000 points', latencies[0]],
    ['10,000 points', latencies[1]],
    ['both', all],
  ].map(([label, values]) => `| ${label} | ${values.length} | ${(values.length / elapsedS).toFixed(0)} | ${ms(percentile(values, 0.5))} | ${ms(percentile(values, 0.99))} |`);
}

async function fairness(options, problems) {
  const engine = new Engine({ threads: options.threads });
  await engine.warmup();
  const phaseMs = options.seconds * 1000;
  const probes = [
    ['1,000 points, calling thread', problems.p1e3, 'auto'],
    ['100,000 points, pool', problems.p1e5, 'chunked'],
  ];
  const rows = [];
  const bigAlone = await loop(engine, problems.p1e7, 'chunked', performance.now() + phaseMs / 2);
  for (const [label, data, strategy] of probes) {
    const alone = await loop(engine, data, strategy, performance.now() + phaseMs / 2);
    let stop = false;
    const bigShared = [];
    const background = (async () => {
      while (!stop) bigShared.push(await timedFit(engine, problems.p1e7, 'chunked'));
    })();
    // Let the big fit get going before the first probe.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const shared = await loop(engine, data, strategy, performance.now() + phaseMs);
    stop = true;
    await background;
    rows.push(
      `| ${label} | ${alone.length} | ${ms(percentile(alone, 0.5))} | ${ms(percentile(alone, 0.99))} | ${shared.length} | ${ms(percentile(shared, 0.5))} | ${ms(percentile(shared, 0.99))} | ${ms(percentile(bigAlone, 0.5))} | ${bigShared.length} | ${ms(percentile(bigShared, 0.5))} |`,
    );
  }
  await engine.close();
  return rows;
}

async function queue(options, problems) {
  const maxQueue = 100;
  const calls = 1000;
  let engine;
  try {
    engine = new Engine({ threads: options.threads, maxQueue });
  } catch (error) {
    return { rows: [`| ${calls} | ${maxQueue} | n/a | n/a | n/a | n/a (${error.message}) |`], pass: false };
  }
  const pending = Array.from({ length: calls }, () => engine.fit({ model: kModel, data: problems.p1e3, p0: kP0 }));
  // Admission is decided as each call is made: these are the fits that started at once.
  const maxConcurrentFits = engine.running;
  const outcomes = await Promise.allSettled(pending);
  await engine.close();
  const succeeded = outcomes.filter((o) => o.status === 'fulfilled' && o.value.success).length;
  const refused = outcomes.filter((o) => o.status === 'rejected' && o.reason.code === 'ERR_NLFIT_QUEUE_FULL').length;
  const other = calls - succeeded - refused;
  const expected = calls - maxConcurrentFits - maxQueue;
  const pass = refused === expected && other === 0;
  const sample = outcomes.find((o) => o.status === 'rejected');
  return {
    rows: [`| ${calls} | ${maxQueue} | ${maxConcurrentFits} | ${succeeded} | ${refused} (expected ${expected}) | ${other} |`],
    pass,
    message: sample ? `${sample.reason.name}: ${sample.reason.message}` : null,
  };
}

const options = parse(process.argv.slice(2));
const run = (name) => options.only === null || options.only === name;
console.log(`# nlfit under load: ${cpus()[0]?.model?.trim() ?? 'unknown CPU'}, ${availableParallelism()} cores, Node ${process.version}`);
console.log(`engine threads ${options.threads}, ${options.seconds} s per timed phase, load average before: ${loadavg().map((v) => v.toFixed(2)).join(' ')}`);
const problems = {
  p1e3: problem(1_000, 1),
  p1e4: problem(10_000, 2),
  p1e5: problem(100_000, 3),
  p1e7: run('fairness') ? problem(10_000_000, 4) : null,
};

let failed = false;
if (run('throughput')) {
  console.log('');
  console.log(`## Throughput: ${options.callers} callers looping fit(), alternating 1,000 and 10,000 points`);
  console.log('');
  console.log('| problem | fits | fits/s | p50 ms | p99 ms |');
  console.log('|---|---:|---:|---:|---:|');
  for (const row of await throughput(options, problems)) console.log(row);
}
if (run('fairness')) {
  console.log('');
  console.log('## Fairness: a small fit alone, and while a 10,000,000-point fit runs back to back');
  console.log('');
  console.log('| probe | fits alone | p50 ms | p99 ms | fits shared | p50 ms | p99 ms | big fit alone, p50 ms | big fits while shared | p50 ms |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of await fairness(options, problems)) console.log(row);
}
if (run('queue')) {
  console.log('');
  console.log('## Backpressure: 1,000 fit() calls at once, maxQueue 100');
  console.log('');
  console.log('| calls | maxQueue | maxConcurrentFits | succeeded | refused (queue full) | other errors |');
  console.log('|---:|---:|---:|---:|---:|---:|');
  const outcome = await queue(options, problems);
  for (const row of outcome.rows) console.log(row);
  if (outcome.message) console.log(`\nrefusal: ${outcome.message}`);
  console.log(`\n${outcome.pass ? 'PASS' : 'FAIL'}      exactly the calls beyond maxConcurrentFits + maxQueue were refused`);
  failed ||= !outcome.pass;
}
console.log(`\nload average after: ${loadavg().map((v) => v.toFixed(2)).join(' ')}`);
process.exitCode = failed ? 1 : 0;
