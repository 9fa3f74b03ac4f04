#!/usr/bin/env node
/**
 * Out-of-core acceptance check: fits a file pair larger than the memory it is
 * given, and the same data in memory, each in its own process, and checks
 *   - the streaming fit's peak RSS is at most memoryLimitMb above its idle RSS,
 *   - both fits give the same parameters, bit for bit.
 *
 *   npm run bench:streaming                      # 1e8 points (x, y: 1.6 GB), memoryLimitMb 160
 *   node bench/streaming.js --points 1e7 --limit 60 --threads 1
 *
 * The data is generated (seeded, bench/data.js) into a temporary directory
 * that is removed afterwards. Needs ~2x the data in free disk and, for the
 * in-memory reference, the data in free memory.
 */
import { availableParallelism } from 'node:os';
import { Workspace } from './data.js';
import { runChild } from './launch.js';
import { modelById } from './trials.js';

function parse(argv) {
  const options = { points: 1e8, limit: 160, threads: availableParallelism(), model: 'exp3' };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--points') options.points = Number(value);
    else if (flag === '--limit') options.limit = Number(value);
    else if (flag === '--threads') options.threads = Number(value);
    else if (flag === '--model') options.model = value;
    else if (flag === '--help') {
      console.log('Usage: node bench/streaming.js [--points 1e8] [--limit <memoryLimitMb>] [--threads <n>] [--model exp3]');
      process.exit(0);
    } else throw new Error(`unknown option ${flag}`);
    i++;
  }
  if (!Number.isInteger(options.points) || options.points < 1) throw new Error('--points must be a positive integer');
  if (!(options.limit > 0)) throw new Error('--limit must be a number of MB > 0');
  return options;
}

const mb = (kib) => `${(kib / 1024).toFixed(1)} MB`;

const options = parse(process.argv.slice(2));
const model = modelById(options.model);
const workspace = new Workspace();
process.on('SIGINT', () => {
  workspace.remove();
  process.exit(130);
});
try {
  console.log(`# nlfit out-of-core check: ${options.points} points of ${model.title}, memoryLimitMb ${options.limit}, ${options.threads} threads`);
  const data = workspace.dataset(model, options.points);
  console.log(`data: ${(options.points * 16 / 2 ** 20).toFixed(0)} MB of x and y generated in ${(data.generateMs / 1000).toFixed(1)} s`);
  const base = { model: model.id, xPath: data.xPath, yPath: data.yPath, n: options.points, p0: model.p0, threads: options.threads };
  const run = (mode) =>
    runChild({ command: process.execPath, args: ['bench/runners/stream.js', JSON.stringify({ ...base, mode, memoryLimitMb: options.limit })], capS: 3600 });
  const streamed = await run('streaming');
  if (!streamed.ok) throw new Error(`streaming fit failed: ${streamed.error}`);
  const resident = await run('memory');
  if (!resident.ok) throw new Error(`in-memory fit failed: ${resident.error}`);

  console.log('');
  console.log('| run | strategy | wall | passes | idle RSS | peak RSS | peak - idle |');
  console.log('|---|---|---:|---:|---:|---:|---:|');
  for (const [label, r] of [['files, memoryLimitMb ' + options.limit, streamed], ['in memory (reference)', resident]]) {
    console.log(`| ${label} | ${r.execution.strategy} | ${(r.wallMs / 1000).toFixed(2)} s | ${r.passes} | ${mb(r.idleRssKiB)} | ${mb(r.maxRssKiB)} | ${mb(r.peakAboveIdleKiB)} |`);
  }
  console.log('');
  console.log(`streaming decision: ${streamed.execution.reason}`);
  console.log(`last chunking: ${streamed.execution.chunkSize} points x ${streamed.execution.chunksInFlight} in flight; pressure events: ${streamed.pressureEvents}`);
  console.log(`parameters (streaming): ${streamed.params.join(', ')}`);
  console.log(`parameters (in memory): ${resident.params.join(', ')}`);
  const identical = streamed.bits === resident.bits;
  const withinLimit = streamed.peakAboveIdleKiB <= options.limit * 1024;
  console.log('');
  console.log(`${withinLimit ? 'PASS' : 'FAIL'}      peak RSS - idle RSS = ${mb(streamed.peakAboveIdleKiB)} <= memoryLimitMb ${options.limit} MB`);
  console.log(`${identical ? 'PASS' : 'FAIL'}      parameters bit-identical to the in-memory fit`);
  process.exitCode = identical && withinLimit ? 0 : 1;
} finally {
  workspace.remove();
}
