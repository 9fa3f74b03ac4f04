/**
 * What `nlfit fit` prints: a short summary (the default), the full report
 * (--report) and the JSON document (--json).
 *
 * JSON numbers are printed by JSON.stringify, the shortest decimal that
 * reads back to the same double, so every value in the document is the
 * library's to the last bit. JSON has no Infinity or NaN: those are written
 * as the strings "Infinity", "-Infinity" and "NaN" (an infinite standard
 * error, for instance), never as null.
 */
import type { FitResult } from '../solver/result.js';

/** Seven significant digits; exponent form outside [1e-4, 1e7). */
function formatValue(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  return magnitude >= 1e-4 && magnitude < 1e7 ? String(Number(value.toPrecision(7))) : value.toExponential(6);
}

function statusLine(r: FitResult): string {
  return r.success ? `converged (${r.status})` : `NOT converged (${r.status}): ${r.message}`;
}

function checkpointText(c: NonNullable<FitResult['checkpoint']>): string {
  const resumed = c.resumedFrom === null ? 'started fresh' : `resumed from iteration ${c.resumedFrom}`;
  return `${c.path}: ${resumed}, written ${c.written} time${c.written === 1 ? '' : 's'}`;
}

/** A few lines for a person at a terminal: the outcome, the parameters with 95% intervals, the fit quality. */
export function shortSummary(r: FitResult): string {
  const intervals = r.confidenceIntervals(0.95);
  const width = Math.max(...r.paramNames.map((name) => name.length));
  const values = r.paramNames.map((name) => formatValue(r.params[name]!));
  const errors = r.paramNames.map((name) => formatValue(r.stderr[name]!));
  const valueWidth = Math.max(...values.map((v) => v.length));
  const errorWidth = Math.max(...errors.map((v) => v.length));
  const lines = [
    `${statusLine(r)}: ${r.paramNames.length} parameter${r.paramNames.length === 1 ? '' : 's'}, ${r.nPoints} points, ` +
      `${r.nfev} passes in ${(r.timing.totalMs / 1000).toFixed(3)} s (${r.strategy}, ${r.threads} thread${r.threads === 1 ? '' : 's'})`,
  ];
  r.paramNames.forEach((name, j) => {
    const [lo, hi] = intervals[name]!;
    lines.push(`  ${name.padEnd(width)} = ${values[j]!.padStart(valueWidth)} +/- ${errors[j]!.padEnd(errorWidth)}   95% CI [${formatValue(lo)}, ${formatValue(hi)}]`);
  });
  lines.push(`  reduced chi-square = ${formatValue(r.reducedChi2)}, R-squared = ${formatValue(r.rSquared)}, RMSE = ${formatValue(r.rmse)}`);
  for (const warning of r.warnings) lines.push(`  warning: ${warning}`);
  if (r.exported) lines.push(`  residuals written to ${r.exported.path} (${r.exported.rows} rows)`);
  if (r.checkpoint) lines.push(`  checkpoint ${checkpointText(r.checkpoint)}`);
  return lines.join('\n');
}

export interface JobFacts {
  /** The data files and their format. */
  data: string;
  threads: string;
  memory: string;
  plot: string | null;
}

/** The library's lmfit-style report, with confidence intervals, multi-start and the job's resources added. */
export function fullReport(r: FitResult, job: JobFacts): string {
  const lines = r.summary().split('\n');
  const intervals = r.confidenceIntervals(0.95);
  const width = Math.max(9, ...r.paramNames.map((name) => name.length));
  const section = [`[[Confidence Intervals]] (95%, Student t with ${r.dof} degrees of freedom)`];
  for (const name of r.paramNames) {
    const [lo, hi] = intervals[name]!;
    section.push(`    ${name.padEnd(width)} = [${formatValue(lo)}, ${formatValue(hi)}]`);
  }
  // After the variables, before correlations, warnings and execution.
  const at = lines.findIndex((line) => /^\[\[(Correlations|Warnings|Execution)\]\]/.test(line));
  lines.splice(at < 0 ? lines.length : at, 0, ...section);
  if (r.multistart) {
    const m = r.multistart;
    lines.push('[[Multi-start]]');
    lines.push(`    starts             = ${m.starts} (${m.sampler}, seed ${m.seed}), ${m.converged} converged, best: start ${m.bestIndex}`);
    if (m.failed.length > 0) lines.push(`    failed             = ${m.failed.map((f) => `start ${f.index}: ${f.error}`).join('; ')}`);
  }
  const t = r.timing;
  lines.push('[[Job]]');
  lines.push(`    data               = ${job.data}`);
  lines.push(`    threads            = ${job.threads}`);
  lines.push(`    memory             = ${job.memory}`);
  lines.push(
    `    passes             = ${t.evaluateMs.toFixed(1)} ms of ${t.totalMs.toFixed(1)} ms wall (${((100 * t.evaluateMs) / Math.max(t.totalMs, 1e-9)).toFixed(0)}%); ` +
      `kernel ${t.kernelMs.toFixed(1)} ms summed over threads`,
  );
  if (r.checkpoint) lines.push(`    checkpoint         = ${checkpointText(r.checkpoint)}`);
  if (job.plot) lines.push(`    plot               = ${job.plot}`);
  return lines.join('\n');
}

/** JSON.stringify, with non-finite numbers as strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2);
}
