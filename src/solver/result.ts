/**
 * The result of a fit: parameters, uncertainties, goodness of fit, how the
 * solver ended and where the time went, and a readable report.
 */
import type { FitStatistics } from './statistics.js';

export interface FitTiming {
  /** From the call to the result (ms). */
  totalMs: number;
  /** Validation, compilation, data conversion (ms). */
  setupMs: number;
  /** Wall time of the passes over the data (ms). */
  evaluateMs: number;
  /** Kernel time summed over threads (ms): evaluation and block reduction. */
  kernelMs: number;
  /** Levenberg-Marquardt steps and tests (ms). */
  solverMs: number;
  /** Covariance and statistics (ms). */
  statisticsMs: number;
}

/** How the fit ran and why (the memory coordinator's decision, as applied). */
export interface FitExecution {
  strategy: 'standard' | 'chunked' | 'streaming';
  /** The coordinator's reason, in words. */
  reason: string;
  /** Points per chunk a pass used last (streaming: per buffer read; chunked: per pool task). */
  chunkSize: number;
  /** Streaming: chunk buffers allowed at once (after any pressure relief). */
  chunksInFlight: number;
  /** Predicted peak memory over the threshold (< 1: fits). */
  memoryPressure: number;
  /** Memory-pressure events during the fit. */
  pressureEvents: number;
  /** Where the data came from ('memory', 'npy', 'binary', 'csv', 'stream'). */
  dataSource: string;
  /** Rows a `where` filter dropped (0 without one). */
  droppedRows: number;
}

export interface FitResultInit {
  model: string;
  paramNames: string[];
  values: Float64Array;
  p0: Float64Array;
  statistics: FitStatistics;
  success: boolean;
  status: string;
  message: string;
  iterations: number;
  nfev: number;
  njev: number;
  threads: number;
  absoluteSigma: boolean;
  weighted: boolean;
  timing: FitTiming;
  execution: FitExecution;
  exported: FitExport | null;
}

/** The file the `export` option wrote. */
export interface FitExport {
  path: string;
  rows: number;
  /** Bytes on disk (compressed when gzip). */
  bytes: number;
}

function record(names: string[], values: ArrayLike<number>): Record<string, number> {
  const out: Record<string, number> = {};
  names.forEach((name, i) => (out[name] = values[i]!));
  return out;
}

function formatNumber(value: number, digits = 6): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  return magnitude >= 1e-4 && magnitude < 1e7 ? Number(value.toPrecision(digits + 1)).toString() : value.toExponential(digits);
}

export class FitResult {
  /** The model expression that was fitted. */
  readonly model: string;
  readonly paramNames: string[];
  /** Fitted values in parameter order. */
  readonly values: Float64Array;
  /** Fitted values by name. */
  readonly params: Record<string, number>;
  /** Starting values used (given or guessed). */
  readonly initialParams: Record<string, number>;
  /** Standard errors by name (Infinity where the covariance does not exist). */
  readonly stderr: Record<string, number>;
  readonly covariance: number[][];
  readonly correlation: number[][];
  /** Weighted residual sum of squares (what the fit minimises). */
  readonly rss: number;
  /** rss / 2, as scipy's least_squares reports it. */
  readonly cost: number;
  readonly chi2: number;
  readonly reducedChi2: number;
  readonly rSquared: number;
  readonly rmse: number;
  readonly aic: number;
  readonly bic: number;
  readonly dof: number;
  readonly nPoints: number;
  /** Numerical rank of the Jacobian at the solution. */
  readonly rank: number;
  readonly success: boolean;
  /** How the solver ended: 'ftol', 'xtol', 'ftol_xtol', 'gtol', 'ftol_limit', 'xtol_limit', 'gtol_limit' (converged); 'max_fev', 'nonfinite_edge' (not). */
  readonly status: string;
  readonly message: string;
  readonly iterations: number;
  /** Passes over the data (each evaluates residuals and Jacobian together). */
  readonly nfev: number;
  /** Jacobians the solver factorised (the starting point and every accepted step). */
  readonly njev: number;
  /** 'standard': passes on the calling thread; 'chunked': on the worker pool; 'streaming': read from the source every pass. */
  readonly strategy: 'standard' | 'chunked' | 'streaming';
  /** The memory coordinator's decision as applied, with its reason. */
  readonly execution: FitExecution;
  /** What the `export` option wrote, or null. */
  readonly exported: FitExport | null;
  readonly threads: number;
  readonly absoluteSigma: boolean;
  readonly timing: FitTiming;
  private readonly weighted: boolean;

  constructor(init: FitResultInit) {
    const s = init.statistics;
    this.model = init.model;
    this.paramNames = init.paramNames;
    this.values = init.values;
    this.params = record(init.paramNames, init.values);
    this.initialParams = record(init.paramNames, init.p0);
    this.stderr = record(init.paramNames, s.stderr);
    this.covariance = s.covariance;
    this.correlation = s.correlation;
    this.rss = s.rss;
    this.cost = s.cost;
    this.chi2 = s.chi2;
    this.reducedChi2 = s.reducedChi2;
    this.rSquared = s.rSquared;
    this.rmse = s.rmse;
    this.aic = s.aic;
    this.bic = s.bic;
    this.dof = s.dof;
    this.nPoints = s.nPoints;
    this.rank = s.rank;
    this.success = init.success;
    this.status = init.status;
    this.message = init.message;
    this.iterations = init.iterations;
    this.nfev = init.nfev;
    this.njev = init.njev;
    this.strategy = init.execution.strategy;
    this.execution = init.execution;
    this.exported = init.exported;
    this.threads = init.threads;
    this.absoluteSigma = init.absoluteSigma;
    this.weighted = init.weighted;
    this.timing = init.timing;
  }

  /** A plain object (for JSON). */
  toJSON(): Record<string, unknown> {
    return {
      model: this.model,
      success: this.success,
      status: this.status,
      message: this.message,
      params: this.params,
      stderr: this.stderr,
      initialParams: this.initialParams,
      paramNames: this.paramNames,
      covariance: this.covariance,
      correlation: this.correlation,
      rss: this.rss,
      cost: this.cost,
      chi2: this.chi2,
      reducedChi2: this.reducedChi2,
      rSquared: this.rSquared,
      rmse: this.rmse,
      aic: this.aic,
      bic: this.bic,
      dof: this.dof,
      nPoints: this.nPoints,
      rank: this.rank,
      iterations: this.iterations,
      nfev: this.nfev,
      njev: this.njev,
      strategy: this.strategy,
      execution: this.execution,
      exported: this.exported,
      threads: this.threads,
      absoluteSigma: this.absoluteSigma,
      timing: this.timing,
    };
  }

  /** A readable fit report. */
  summary(): string {
    const lines: string[] = [];
    const width = Math.max(9, ...this.paramNames.map((n) => n.length));
    lines.push('[[Model]]');
    lines.push(`    ${this.model}`);
    lines.push('[[Fit Statistics]]');
    lines.push(`    status             = ${this.status} (${this.success ? 'converged' : 'NOT converged'})`);
    lines.push(`    message            = ${this.message}`);
    lines.push(`    data points        = ${this.nPoints}`);
    lines.push(`    variables          = ${this.paramNames.length}`);
    lines.push(`    iterations         = ${this.iterations}`);
    lines.push(`    passes over data   = ${this.nfev}`);
    lines.push(`    ${this.weighted ? 'chi-square        ' : 'residual sum sq.  '} = ${formatNumber(this.chi2)}`);
    lines.push(`    reduced chi-square = ${formatNumber(this.reducedChi2)}`);
    lines.push(`    R-squared          = ${formatNumber(this.rSquared)}`);
    lines.push(`    RMSE               = ${formatNumber(this.rmse)}`);
    lines.push(`    Akaike info crit   = ${formatNumber(this.aic)}`);
    lines.push(`    Bayesian info crit = ${formatNumber(this.bic)}`);
    lines.push('[[Variables]]');
    this.paramNames.forEach((name) => {
      const value = this.params[name]!;
      const err = this.stderr[name]!;
      const relative = Number.isFinite(err) && value !== 0 ? ` (${formatNumber((100 * err) / Math.abs(value), 3)}%)` : '';
      lines.push(
        `    ${name.padEnd(width)} = ${formatNumber(value).padStart(14)} +/- ${formatNumber(err)}${relative}  (init = ${formatNumber(this.initialParams[name]!)})`,
      );
    });
    if (this.rank < this.paramNames.length) {
      lines.push(`    (the Jacobian has rank ${this.rank} < ${this.paramNames.length}: the covariance does not exist)`);
    }
    const correlations: string[] = [];
    for (let i = 0; i < this.paramNames.length; i++) {
      for (let j = i + 1; j < this.paramNames.length; j++) {
        const c = this.correlation[i]![j]!;
        if (Math.abs(c) >= 0.1) correlations.push(`    C(${this.paramNames[i]}, ${this.paramNames[j]}) = ${c >= 0 ? '+' : ''}${c.toFixed(4)}`);
      }
    }
    if (correlations.length > 0) {
      lines.push('[[Correlations]] (unreported correlations are < 0.100)');
      lines.push(...correlations);
    }
    const t = this.timing;
    lines.push('[[Execution]]');
    lines.push(`    strategy           = ${this.strategy} (${this.threads} thread${this.threads === 1 ? '' : 's'}): ${this.execution.reason}`);
    if (this.execution.droppedRows > 0) lines.push(`    filtered out       = ${this.execution.droppedRows} rows`);
    if (this.exported) lines.push(`    exported           = ${this.exported.path} (${this.exported.rows} rows, ${this.exported.bytes} bytes)`);
    lines.push(
      `    time               = ${t.totalMs.toFixed(1)} ms (setup ${t.setupMs.toFixed(1)}, passes ${t.evaluateMs.toFixed(1)}, solver ${t.solverMs.toFixed(2)}, statistics ${t.statisticsMs.toFixed(2)})`,
    );
    return lines.join('\n');
  }
}
