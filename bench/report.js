/**
 * The markdown report: the setup (so a reader can judge fairness), one table
 * per model, pass time against the roofline, thread scaling, cold start,
 * notes on anything that limited a figure, and the targets.
 */
import { fmtMs, kMB, passComparisons, reproducibility, scaling } from './analyze.js';
import { generatorDescription } from './data.js';
import { mllmDefaultIterations, mllmTunedIterations, modelById, referenceEngine, sizeLabel } from './trials.js';

/**
 * @param {object} run everything run.js gathered: options, machine, startedAt, records, coldStart, targets, roofline, files
 * @returns {string}
 */
export function renderReport(run) {
  const { machine, records } = run;
  const out = [];
  const line = (text = '') => out.push(text);
  const reference = referenceEngine;

  line(`# nlfit benchmark`);
  line();
  line(`${run.startedAt.slice(0, 16).replace('T', ' ')} UTC, \`${run.commandLine}\`; commit ${machine.commit ?? 'unknown'}`);
  line();
  line(`- machine: ${machineLine(machine)}`);
  line(`- data: ${generatorDescription}; each (model, size) generated once, every engine reads the same files`);
  line(`- nlfit: a warm \`Engine({ threads })\` (workers started, one untimed fit), \`strategy: 'chunked'\` (pool) or \`'standard'\` (calling thread), default tolerances (ftol = xtol = 1e-12, tighter than scipy's 1.49e-8); wall time = median of ${run.options.runs} fits (what peers are compared with), best alongside (what thread scaling and the roofline comparison use)`);
  line(`- ml-levenberg-marquardt ${machine.mllm}: exact Jacobian (\`jacobianFunction\`), \`timeout\` ${run.options.timeoutS} s; it has no relative stopping rule, so it runs all of its default \`maxIterations: ${mllmDefaultIterations}\` (the row the target is judged on) and, for transparency, \`maxIterations: ${mllmTunedIterations}\`, the fewest after which its parameters settle here (a setting only knowledge of the answer gives); one run each`);
  line(`- scipy ${machine.scipy ?? '(not available)'} \`curve_fit\` with the analytic \`jac\`, default tolerances, methods 'lm' and 'trf'; numpy ${machine.numpy ?? '-'}, Python ${machine.python ?? '-'}; one run, killed after ${run.options.timeoutS} s`);
  line(`- roofline: ${run.roofline}`);
  line(`- every engine runs in its own process; peak RSS is that process's (data included)`);
  line();

  for (const modelId of [...new Set(records.filter((r) => r.kind === 'fit').map((r) => r.model))]) {
    const model = modelById(modelId);
    line(`## ${model.id}: ${model.title}`);
    line();
    line(`\`${model.expression}\`; truth ${named(model, model.truth)}; p0 ${named(model, model.p0)}; x evenly spaced on [${model.x.join(', ')}], noise sd ${model.noise}`);
    line();
    line(`| points | engine | wall | best | passes | ns/point/pass | peak RSS MB | max rel. error vs truth | max rel. diff. vs ${reference} | time / ${reference} |`);
    line('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of records.filter((x) => x.kind === 'fit' && x.model === modelId)) line(fitRow(r));
    line();
  }
  line(`wall: the fit alone (data already loaded), for the roofline one pass; passes: nlfit passes over the data (each computes residuals and Jacobian), scipy function evaluations + Jacobian evaluations ('trf' reports no Jacobian count), ml-lm iterations (each evaluates model and Jacobian, then the model again); ns/point/pass = wall / (passes x points), the roofline's from its best pass.`);
  line();

  const passes = passComparisons(records);
  if (passes.length) {
    line(`## Pass time against the roofline`);
    line();
    line(`nlfit's pass (\`timing.evaluateMs / nfev\`, best run) against the roofline's best pass, same data, same thread count.`);
    line();
    line('| model | points | threads | nlfit pass | roofline pass | nlfit ns/point | roofline ns/point | ratio |');
    line('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of passes) {
      line(`| ${c.model} | ${sizeLabel(c.n)} | ${c.threads} | ${fmtMs(c.nlfitPassMs)} | ${fmtMs(c.rooflinePassMs)} | ${((c.nlfitPassMs * 1e6) / c.n).toFixed(2)} | ${((c.rooflinePassMs * 1e6) / c.n).toFixed(2)} | ${c.ratio.toFixed(2)}x |`);
    }
    line();
  }

  const scale = scaling(records);
  if (scale.length) {
    line(`## nlfit from 1 to 2 threads`);
    line();
    line(`Best runs of the pool with 1 and with 2 threads; efficiency = speed-up / 2.`);
    line();
    line('| model | points | 1 thread | 2 threads | speed-up (fit) | efficiency | speed-up (pass) |');
    line('|---|---:|---:|---:|---:|---:|---:|');
    for (const c of scale) {
      line(`| ${c.model} | ${sizeLabel(c.n)} | ${fmtMs(c.oneMs)} | ${fmtMs(c.twoMs)} | ${c.speedUp.toFixed(2)}x | ${(100 * c.efficiency).toFixed(0)}% | ${c.passSpeedUp.toFixed(2)}x |`);
    }
    line();
  }

  if (run.coldStart) {
    const c = run.coldStart;
    line(`## Cold start`);
    line();
    if (c.ok) {
      line(`A fresh \`node\` process per run; from the line before \`await import('nlfit')\` to the first result of a 1000-point \`fit()\` (default engine, which runs it on the calling thread): median **${fmtMs(c.wallMs)}** over ${c.runs.length} processes (import ${fmtMs(c.importMs)}, fit ${fmtMs(c.fitMs)}; all: ${c.runs.map((x) => x.wallMs.toFixed(1)).join(', ')} ms). Node itself took ${fmtMs(c.bootMs)} from process start to the first line of the script; peak RSS ${(c.maxRssKiB * 1024 / kMB).toFixed(0)} MB.`);
    } else {
      line(`failed: ${c.error}`);
    }
    line();
  }

  const notes = collectNotes(records);
  if (notes.length) {
    line(`## Notes`);
    line();
    for (const note of notes) line(`- ${note}`);
    line();
  }

  line(`## Targets`);
  line();
  for (const t of run.targets) line(`${t.status.padEnd(9)} ${t.text}`);
  line();
  if (run.files) line(`results: ${run.files.join(', ')}`);
  return out.join('\n');
}

function fitRow(r) {
  const head = `| ${sizeLabel(r.n)} | ${r.label} |`;
  if (r.skipped) return `${head} skipped: ${r.skipped} | | | | | | | |`;
  if (!r.ok && !r.timedOut) return `${head} failed: ${escape(r.error)} | | | | ${rss(r)} | | | |`;
  if (r.timedOut) {
    return `${head} > ${fmtMs(r.wallMs)} (timed out) | | | | ${rss(r)} | | | ${r.timeRatio != null ? `> ${ratio(r.timeRatio)}` : ''} |`;
  }
  const roofline = r.runner === 'roofline';
  const passes = roofline ? '1 (pass only)' : r.runner === 'scipy' ? `${r.passes}${r.njev != null ? ` + ${r.njev}` : ''}` : r.runner === 'mllm' ? `${r.passes} it.` : String(r.passes);
  const best = r.bestWallMs ?? r.bestPassMs;
  const error = roofline ? '' : `${relative(r.maxRelErr)}${r.runner === 'nlfit' && !r.success ? ` (${r.status})` : ''}`;
  const diff = r.relDiffToReference != null ? relative(r.relDiffToReference) : r.engine === referenceEngine ? '(reference)' : '';
  return `${head} ${fmtMs(r.wallMs)} | ${best != null ? fmtMs(best) : ''} | ${passes} | ${r.nsPerPointPass.toFixed(2)} | ${rss(r)} | ${error} | ${diff} | ${r.timeRatio != null ? ratio(r.timeRatio) : ''} |`;
}

function collectNotes(records) {
  const notes = [];
  for (const r of records.filter((x) => x.kind === 'fit')) {
    if (r.timedOut) notes.push(`${r.id}: timed out after ${fmtMs(r.wallMs)} of fitting; its time and every ratio built on it are lower bounds.`);
    else if (r.skipped) notes.push(`${r.id}: skipped (${r.skipped}).`);
    else if (!r.ok) notes.push(`${r.id}: failed: ${r.error}`);
    else if (r.runner === 'nlfit' && !r.success) notes.push(`${r.id}: nlfit did not converge (${r.status}).`);
  }
  const repro = reproducibility(records);
  const differing = repro.filter((g) => !g.identical);
  if (repro.length) {
    notes.push(
      differing.length === 0
        ? `nlfit's parameters are bitwise identical across its rows (threads, pool or calling thread) and across runs, for all ${repro.length} (model, size) pairs.`
        : `nlfit's parameters differ between its rows or runs for: ${differing.map((g) => g.key).join(', ')}.`,
    );
  }
  return notes;
}

function machineLine(m) {
  return `${m.cpu}${m.vector ? ` (${m.vector})` : ''}, ${m.cores} cores, ${m.memoryGiB} GiB; Node ${m.node}; ${m.compiler ?? 'no g++'}`;
}

function named(model, values) {
  return model.params.map((name, i) => `${name} = ${values[i]}`).join(', ');
}

function rss(r) {
  return r.maxRssKiB != null ? ((r.maxRssKiB * 1024) / kMB).toFixed(0) : '';
}

function ratio(x) {
  return `${x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2)}x`;
}

function relative(x) {
  return x === 0 ? '0' : x.toExponential(1);
}

function escape(text) {
  return String(text).replaceAll('|', '\\|').replaceAll('\n', ' ');
}
