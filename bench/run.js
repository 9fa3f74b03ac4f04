#!/usr/bin/env node
/**
 * `npm run bench`: runs the trials of bench/trials.js, each engine in its own
 * process on the same generated data, then prints the markdown report
 * (progress goes to stderr) and writes bench/results/bench-<stamp>.json and
 * .svg, plus latest.json and latest.svg. See `node bench/run.js --help`.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { enrich, fmtMs, targets } from './analyze.js';
import { UsageError, parseArgs, usage } from './args.js';
import { renderChart } from './chart.js';
import { Workspace, generatorDescription } from './data.js';
import { commandFor, killActiveChild, runChild } from './launch.js';
import { describeMachine } from './machine.js';
import { renderReport } from './report.js';
import { buildRoofline } from './roofline/build.js';
import { coldStartPoints, expand, kSeed, sizeLabel } from './trials.js';

/** Fresh processes measured for the cold start. */
const kColdStartRuns = 5;
/** Share of the free memory a peer may be expected to use. */
const kMemoryShare = 0.8;

let options;
try {
  options = parseArgs(process.argv.slice(2));
} catch (error) {
  if (!(error instanceof UsageError)) throw error;
  process.stderr.write(`bench: ${error.message}\n\n${usage}\n`);
  process.exit(2);
}
if (options.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
const trials = expand(options);
if (trials.length === 0) {
  process.stderr.write(`bench: no trial matches ${options.filters.map((f) => `'${f}'`).join(' or ')} (ids look like exp3/1e6/nlfit-2t; see --help)\n`);
  process.exit(2);
}

const startedAt = new Date().toISOString();
const machine = describeMachine();
const workspace = new Workspace();
process.on('exit', () => workspace.remove());
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killActiveChild();
    workspace.remove();
    process.exit(130);
  });
}

const progress = (text) => process.stderr.write(`${text}\n`);
progress(`nlfit bench: ${trials.length} trials; data seed ${kSeed} (${generatorDescription}); temporary files in ${workspace.dir}`);

let rooflinePath = null;
let rooflineNote;
let rooflineError = null;
if (trials.some((t) => t.engine?.runner === 'roofline')) {
  try {
    const built = buildRoofline(workspace.dir);
    rooflinePath = built.path;
    rooflineNote = `bench/roofline/roofline.cpp, hand-written loops (model, exact derivatives, residual) into the engine's 512-row blocks, reduced by the engine's own TSQR (native/kernel/tsqr.cpp), threads started per pass, no pool; \`${built.command}\``;
  } catch (error) {
    rooflineError = `could not build: ${String(error.stderr ?? error.message).trim().split('\n').slice(0, 3).join(' ')}`;
    rooflineNote = `not built (${rooflineError})`;
  }
} else {
  rooflineNote = 'not in this run';
}

const records = [];
let coldStart = null;
for (const [index, trial] of trials.entries()) {
  const tag = `[${index + 1}/${trials.length}] ${trial.id}`;
  if (trial.kind === 'coldstart') {
    coldStart = await measureColdStart();
    progress(`${tag}: ${coldStart.ok ? `median ${fmtMs(coldStart.wallMs)}` : coldStart.error}`);
    continue;
  }
  const { engine, model, n } = trial;
  const record = { id: trial.id, kind: 'fit', model: model.id, n, engine: engine.id, runner: engine.runner, label: engine.label, threads: engine.threads ?? null };
  const skipped = skipReason(trial);
  if (skipped) {
    records.push({ ...record, ok: false, timedOut: false, skipped });
    progress(`${tag}: skipped (${skipped})`);
    continue;
  }
  const data = workspace.dataset(model, n);
  const result = await runChild(commandFor(trial, data, { runs: options.runs, timeoutS: options.timeoutS, rooflinePath }));
  records.push({ ...record, ...result });
  progress(`${tag}: ${result.ok ? `${fmtMs(result.wallMs)}, ${result.passes} pass${result.passes === 1 ? '' : 'es'}` : result.timedOut ? `timed out (${fmtMs(result.wallMs)})` : `failed: ${result.error}`}`);
}
workspace.remove();

enrich(records);
const run = {
  commandLine: ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' '),
  startedAt,
  options,
  machine,
  seed: kSeed,
  generator: generatorDescription,
  roofline: rooflineNote,
  records,
  coldStart,
  targets: targets(records, coldStart),
  files: null,
};
run.files = writeResults(run);
process.stdout.write(`${renderReport(run)}\n`);

/** Why a trial does not run, or null. */
function skipReason({ model, n, engine }) {
  if (engine.runner === 'scipy' && machine.scipy === null) return `python3 with scipy not found: ${machine.scipyError}`;
  if (engine.runner === 'roofline' && rooflineError) return rooflineError;
  if (engine.bytesPerPoint) {
    const needed = engine.bytesPerPoint(model.params.length) * n;
    if (needed > kMemoryShare * freemem()) return `would need about ${(needed / 2 ** 30).toFixed(0)} GiB, ${(freemem() / 2 ** 30).toFixed(0)} GiB free`;
  }
  if (engine.peer) {
    const before = records.find((r) => r.model === model.id && r.engine === engine.id && r.n < n && (r.timedOut || r.skipped?.startsWith('timed out')));
    if (before) return `timed out at ${sizeLabel(before.n)}`;
  }
  return null;
}

/** The cold start: median over fresh processes. */
async function measureColdStart() {
  const script = fileURLToPath(new URL('./runners/coldstart.js', import.meta.url));
  const runs = [];
  for (let k = 0; k < kColdStartRuns; k++) {
    const result = await runChild({ command: process.execPath, args: [script, String(coldStartPoints)], capS: options.timeoutS });
    if (!result.ok) return { ok: false, error: result.error, runs };
    runs.push(result);
  }
  const median = (key) => runs.map((r) => r[key]).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
  return { ok: true, runs, wallMs: median('wallMs'), importMs: median('importMs'), fitMs: median('fitMs'), bootMs: median('bootMs'), maxRssKiB: median('maxRssKiB') };
}

/** Writes the JSON and the SVG (stamped and latest); returns the paths written, relative to the repository. */
function writeResults(run) {
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const stamp = run.startedAt.replace(/[:.]/g, '-');
  const json = `${JSON.stringify({ ...run, files: undefined }, null, 2)}\n`;
  const svg = renderChart(run);
  const written = [];
  for (const name of [`bench-${stamp}`, 'latest']) {
    writeFileSync(new URL(`${name}.json`, dir), json);
    writeFileSync(new URL(`${name}.svg`, dir), svg);
    written.push(`bench/results/${name}.json`, `bench/results/${name}.svg`);
  }
  if (run.options.publish) {
    const docs = new URL('../docs/', import.meta.url);
    mkdirSync(docs, { recursive: true });
    copyFileSync(new URL('latest.svg', dir), new URL('benchmark.svg', docs));
    written.push('docs/benchmark.svg');
  }
  return written;
}
