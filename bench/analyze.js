/**
 * Figures derived from the runners' records: error against the truth,
 * agreement with the reference engine, time ratios, pass time against the
 * roofline, parallel efficiency, and the PASS/FAIL targets, all from this
 * run's own numbers.
 *
 * Conventions. Against a peer (one run), nlfit's time is the median of its
 * runs. Between nlfit configurations, and against the roofline, best is
 * compared with best: on a shared machine noise only ever adds time. (nlfit's
 * best pass is a per-run average over its passes, the roofline's a single
 * pass, so that comparison leans against nlfit.) A peer that timed out has a
 * time that is only a lower bound, and every ratio built on it says so.
 */
import { allThreads, modelById, referenceEngine, sizeLabel } from './trials.js';

/** Bytes per MB in every figure (decimal). */
export const kMB = 1e6;

/** @typedef {{ status: 'PASS'|'FAIL'|'UNDECIDED'|'SKIP'|'INFO', text: string }} Target */

/**
 * Adds derived fields to the fit records in place: maxRelErr, relDiffToReference,
 * nsPerPointPass, timeRatio (this row's wall time over the reference's) and
 * ratioIsLowerBound.
 */
export function enrich(records) {
  const fits = records.filter((r) => r.kind === 'fit');
  for (const r of fits) {
    const model = modelById(r.model);
    const reference = find(records, r.model, r.n, referenceEngine);
    if (Array.isArray(r.params)) {
      r.maxRelErr = Math.max(...r.params.map((v, i) => Math.abs(v - model.truth[i]) / Math.abs(model.truth[i])));
      if (reference?.ok && reference !== r) {
        r.relDiffToReference = Math.max(...r.params.map((v, i) => Math.abs(v - reference.params[i]) / Math.abs(reference.params[i])));
      }
    }
    if (r.ok) {
      r.nsPerPointPass = r.runner === 'roofline' ? (r.bestPassMs * 1e6) / r.n : (r.wallMs * 1e6) / (r.n * r.passes);
    }
    if (r.runner !== 'roofline' && reference?.ok && (r.ok || r.timedOut) && r.wallMs != null) {
      r.timeRatio = r.wallMs / reference.wallMs;
      r.ratioIsLowerBound = !r.ok;
    }
  }
}

/** Pass time of nlfit against the roofline at the same thread count, for every (model, size, threads) both ran. */
export function passComparisons(records) {
  const out = [];
  for (const roof of records.filter((r) => r.runner === 'roofline' && r.ok)) {
    const nlfit = find(records, roof.model, roof.n, `nlfit-${roof.threads}t`);
    if (!nlfit?.ok) continue;
    out.push({
      model: roof.model,
      n: roof.n,
      threads: roof.threads,
      nlfitPassMs: nlfit.bestPassMs,
      rooflinePassMs: roof.bestPassMs,
      ratio: nlfit.bestPassMs / roof.bestPassMs,
    });
  }
  return out;
}

/** nlfit's speed-up from 1 to 2 threads (whole fit, and pass alone; best runs), wherever both ran. */
export function scaling(records) {
  const out = [];
  for (const one of records.filter((r) => r.engine === 'nlfit-1t' && r.ok)) {
    const two = find(records, one.model, one.n, 'nlfit-2t');
    if (!two?.ok) continue;
    const speedUp = one.bestWallMs / two.bestWallMs;
    out.push({ model: one.model, n: one.n, oneMs: one.bestWallMs, twoMs: two.bestWallMs, speedUp, efficiency: speedUp / 2, passSpeedUp: one.bestPassMs / two.bestPassMs });
  }
  return out;
}

/** For each (model, size): whether every nlfit row found bitwise the same parameters. */
export function reproducibility(records) {
  const groups = new Map();
  for (const r of records.filter((x) => x.runner === 'nlfit' && x.ok)) {
    const key = `${r.model}/${sizeLabel(r.n)}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  return [...groups].map(([key, rows]) => ({
    key,
    engines: rows.map((r) => r.engine),
    identical: rows.every((r) => r.reproducible && r.params.every((v, i) => Object.is(v, rows[0].params[i]))),
  }));
}

/**
 * The targets of the benchmark, judged on this run's numbers.
 * @returns {Target[]}
 */
export function targets(records, coldStart) {
  return [
    peerTarget(records, 'scipy-lm', 1e7, 20, "1e7 points, 3 params, all threads >= 20x faster than scipy 'lm'"),
    peerTarget(records, 'mllm', 1e6, 500, '1e6 points, 3 params, all threads >= 500x faster than ml-levenberg-marquardt (its default 100 iterations)'),
    peerTarget(records, 'mllm-tuned', 1e6, 500, '(for information) the same against ml-levenberg-marquardt tuned to 5 iterations', { informational: true }),
    rooflineTarget(records),
    efficiencyTarget(records),
    rssTarget(records),
    estimateTarget(records),
    coldStartTarget(coldStart),
  ];
}

/** An informational comparison reports INFO instead of PASS/FAIL: it is not a target. */
function peerTarget(records, peerId, n, factor, title, { informational = false } = {}) {
  const ours = find(records, 'exp3', n, referenceEngine);
  const peer = find(records, 'exp3', n, peerId);
  if (!ours || !peer) return { status: 'SKIP', text: `${title}: not run (exp3/${sizeLabel(n)}/${!ours ? referenceEngine : peerId} is not in this run)` };
  if (!ours.ok) return { status: 'FAIL', text: `${title}: nlfit failed: ${ours.error}` };
  if (peer.skipped) return { status: 'SKIP', text: `${title}: ${peer.label} skipped (${peer.skipped})` };
  if (!peer.ok && !peer.timedOut) return { status: 'UNDECIDED', text: `${title}: ${peer.label} failed (${peer.error})` };
  const ratio = peer.wallMs / ours.wallMs;
  const detail = `${fmtMs(ours.wallMs)} vs ${fmtMs(peer.wallMs)}`;
  if (peer.timedOut) {
    if (ratio >= factor) return { status: 'PASS', text: `${title}: >= ${ratio.toFixed(0)}x, a lower bound: ${peer.label} timed out (${detail})` };
    return { status: 'UNDECIDED', text: `${title}: >= ${ratio.toFixed(0)}x only, a lower bound: ${peer.label} timed out (${detail}); a longer --timeout decides it` };
  }
  const status = informational ? 'INFO' : ratio >= factor ? 'PASS' : 'FAIL';
  return { status, text: `${title}: ${ratio.toFixed(ratio < 10 ? 2 : 0)}x (${detail})` };
}

function rooflineTarget(records) {
  const title = 'nlfit pass time within 2x of the roofline at 1e6 and 1e7';
  const cases = passComparisons(records).filter((c) => c.n === 1e6 || c.n === 1e7);
  if (cases.length === 0) return { status: 'SKIP', text: `${title}: no nlfit and roofline pair at 1e6 or 1e7 in this run` };
  const worst = cases.reduce((a, b) => (b.ratio > a.ratio ? b : a));
  const failing = cases.filter((c) => c.ratio > 2);
  const list = failing.map((c) => `${c.model}/${sizeLabel(c.n)}/${c.threads}t ${c.ratio.toFixed(2)}x`).join(', ');
  return {
    status: failing.length === 0 ? 'PASS' : 'FAIL',
    text: `${title}: worst ${worst.ratio.toFixed(2)}x (${worst.model}/${sizeLabel(worst.n)}, ${worst.threads} thread${worst.threads === 1 ? '' : 's'}) over ${cases.length} cases` +
      (failing.length ? `; above 2x: ${list}` : ''),
  };
}

function efficiencyTarget(records) {
  const title = 'parallel efficiency at 2 threads >= 85% at 1e6 and above';
  if (allThreads < 2) return { status: 'SKIP', text: `${title}: this machine has 1 core` };
  const cases = scaling(records).filter((c) => c.n >= 1e6);
  if (cases.length === 0) return { status: 'SKIP', text: `${title}: no nlfit-1t and nlfit-2t pair at 1e6 or above in this run` };
  const worst = cases.reduce((a, b) => (b.efficiency < a.efficiency ? b : a));
  const failing = cases.filter((c) => c.efficiency < 0.85);
  const list = failing.map((c) => `${c.model}/${sizeLabel(c.n)} ${pct(c.efficiency)}`).join(', ');
  return {
    status: failing.length === 0 ? 'PASS' : 'FAIL',
    text: `${title}: worst ${pct(worst.efficiency)} (${worst.model}/${sizeLabel(worst.n)}) over ${cases.length} cases` + (failing.length ? `; below 85%: ${list}` : ''),
  };
}

function rssTarget(records) {
  const n = 1e7;
  const r = find(records, 'exp3', n, referenceEngine);
  const title = 'peak RSS of an in-memory 1e7-point nlfit fit <= input columns + 100 MB';
  if (!r) return { status: 'SKIP', text: `${title}: exp3/1e7/${referenceEngine} is not in this run` };
  if (!r.ok || r.maxRssKiB == null) return { status: 'FAIL', text: `${title}: the fit failed (${r.error})` };
  const input = 2 * 8 * n;
  const rss = r.maxRssKiB * 1024;
  const limit = input + 100 * kMB;
  return {
    status: rss <= limit ? 'PASS' : 'FAIL',
    text: `${title}: ${(rss / kMB).toFixed(0)} MB (x and y: ${(input / kMB).toFixed(0)} MB, limit ${(limit / kMB).toFixed(0)} MB; exp3, ${r.label})`,
  };
}

/** estimateMemory's prediction (reported by the nlfit runner) against the measured peak RSS of every nlfit run. */
function estimateTarget(records) {
  const title = "memory estimate within 25% of the measured peak RSS (every nlfit run)";
  const cases = records.filter((r) => r.runner === 'nlfit' && r.ok && r.maxRssKiB != null && r.predictedPeakRssKiB != null);
  if (cases.length === 0) return { status: 'SKIP', text: `${title}: no nlfit run reported a prediction` };
  const error = (r) => (r.predictedPeakRssKiB - r.maxRssKiB) / r.maxRssKiB;
  const worst = cases.reduce((a, b) => (Math.abs(error(b)) > Math.abs(error(a)) ? b : a));
  const e = error(worst);
  return {
    status: Math.abs(e) <= 0.25 ? 'PASS' : 'FAIL',
    text: `${title}: worst ${(100 * e).toFixed(1)}% (${worst.model}/${sizeLabel(worst.n)}, ${worst.label}: predicted ${(worst.predictedPeakRssKiB / 1024).toFixed(1)} MB, measured ${(worst.maxRssKiB / 1024).toFixed(1)} MB) over ${cases.length} runs`,
  };
}

function coldStartTarget(coldStart) {
  const title = 'cold start (import to first result of a 1000-point fit, fresh process) < 100 ms';
  if (!coldStart) return { status: 'SKIP', text: `${title}: not in this run` };
  if (!coldStart.ok) return { status: 'FAIL', text: `${title}: ${coldStart.error}` };
  return {
    status: coldStart.wallMs < 100 ? 'PASS' : 'FAIL',
    text: `${title}: median ${fmtMs(coldStart.wallMs)} of ${coldStart.runs.length} processes`,
  };
}

export function find(records, model, n, engine) {
  return records.find((r) => r.kind === 'fit' && r.model === model && r.n === n && r.engine === engine);
}

export function fmtMs(ms) {
  if (ms == null) return '-';
  if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10000 ? 1 : 2)} s`;
  if (ms < 1) return `${(ms * 1000).toFixed(ms >= 0.1 ? 0 : 1)} µs`;
  return `${ms.toFixed(ms >= 100 ? 0 : ms >= 10 ? 1 : 2)} ms`;
}

function pct(x) {
  return `${(100 * x).toFixed(0)}%`;
}
