/**
 * The result of a fit: parameters, uncertainties, goodness of fit, how the
 * solver ended and where the time went, diagnostics (confidence intervals,
 * bands, predictions, condition number, warnings) and a readable report in
 * the layout of lmfit's fit report.
 */
import { closestName, invalidInput, invalidRange, invalidType } from '../errors.js';
import {
  derivedParameters,
  fitWarnings,
  FittedModel,
  PointColumns,
  type Band,
  type ModelProgram,
  type PointsInput,
} from './diagnostics.js';
import { checkLevel, studentTCritical } from './distributions.js';
import type { CheckpointReport } from './checkpoint.js';
import type { FitStatistics } from './statistics.js';

export type { Band, ModelProgram, PointsInput } from './diagnostics.js';

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
  /** A distributed fit: this rank's part in it. */
  distributed?: DistributedReport;
}

/** What one rank of a distributed fit did (FitResult.execution.distributed). */
export interface DistributedReport {
  /** The transport: 'mpi', or a Communicator's kind. */
  transport: string;
  rank: number;
  ranks: number;
  /** The blocks (of 512 points) this rank read and reduced: [blockStart, blockEnd). */
  blockStart: number;
  blockEnd: number;
  /** Exchanges with the other ranks (one per pass, plus a few to agree on the fit). */
  exchanges: number;
  /** Time in them (ms): waiting for the slowest rank included. */
  exchangeMs: number;
  /** Bytes this rank sent in passes (roots, and costs or moments when needed). */
  passBytesSent: number;
}

/** What a multi-start fit did: starts run, how many converged, which won, every start's cost. */
export interface MultistartReport {
  starts: number;
  converged: number;
  bestIndex: number;
  /** Final cost of every start (NaN where a start failed). */
  costs: number[];
  failed: Array<{ index: number; error: string }>;
  sampler: string;
  seed: number;
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
  /**
   * The model, for predict() and band(): fit.ts passes `job.model` (a
   * CompiledModel has code, consts and variableNames) or, for a JavaScript
   * model, its values function. Without it those two methods throw.
   */
  program?: ModelProgram;
  /**
   * Bounded fits: per parameter (paramNames order), truthy where it ended on
   * one of its bounds. Reported as a warning.
   */
  activeMask?: ArrayLike<number | boolean>;
  /** Multi-start: how the starts went (the result is the best start's). */
  multistart?: MultistartReport;
  /** A robust loss, when one was used. */
  loss?: { name: string; fScale: number };
  /**
   * Parameters held at a value (folded into the model as constants, so not
   * among paramNames), by name. Reported as `name = value (fixed)`.
   */
  fixed?: Record<string, number>;
  /**
   * Parameters defined by an expression of the others (lmfit's `expr`; not
   * among paramNames), by name. Reported with their value and delta-method
   * standard error as `name = value +/- err == 'expr'`.
   */
  expressions?: Record<string, string>;
  /** The checkpoint option: the file, how many times this fit wrote it, and the iteration it resumed from. */
  checkpoint?: CheckpointReport;
}

/** Options of FitResult.band(). */
export interface BandOptions {
  /** Confidence level, in (0, 1). Default 0.95. */
  level?: number;
  /** 'confidence': where the model curve lies; 'prediction': where a new observation falls. Default 'confidence'. */
  kind?: 'confidence' | 'prediction';
  /**
   * Measurement sigma at the new points (a number, or one per point), for a
   * prediction band of a weighted fit: the new observation's variance is
   * sigma^2 times the reduced chi-square (times 1 with absoluteSigma). Default 1.
   */
  sigma?: number | ArrayLike<number>;
}

const kBandOptions = ['level', 'kind', 'sigma'];

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

/** The sigma option of band(): a positive number, or one positive value per point. */
function bandSigma(sigma: unknown, nPoints: number): number | ArrayLike<number> {
  if (sigma === undefined) return 1;
  if (typeof sigma === 'number') {
    if (!(sigma > 0 && Number.isFinite(sigma))) throw invalidRange('sigma', 'positive finite number', sigma);
    return sigma;
  }
  if (!(Array.isArray(sigma) || sigma instanceof Float64Array || sigma instanceof Float32Array)) {
    throw invalidType('sigma', 'positive number or array of one per point', sigma);
  }
  const values = sigma as ArrayLike<number>;
  if (values.length !== nPoints) throw invalidInput('sigma', `${values.length} values for ${nPoints} points`);
  for (let i = 0; i < nPoints; i++) {
    const v: unknown = values[i];
    if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw invalidRange(`sigma[${i}]`, 'positive finite number', v);
  }
  return values;
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
  /** 2-norm condition number of the Jacobian at the solution (Infinity when rank-deficient). */
  readonly conditionNumber: number;
  /**
   * What may make the result untrustworthy, in words: not converged, no
   * degrees of freedom, a rank-deficient or nearly singular Jacobian
   * (condition number > 1e12), a pair of parameters correlated beyond 0.99, a
   * parameter at a bound. Empty when none; summary() lists them.
   */
  readonly warnings: string[];
  /** Bounded fits: per parameter 0 free, 1 on its lower bound, 2 on its upper bound; null without bounds. */
  readonly activeMask: Uint8Array | null;
  /** Multi-start fits: the starts and their outcome; null otherwise. */
  readonly multistart: MultistartReport | null;
  /** The robust loss and its fScale, or null for least squares. */
  readonly loss: { name: string; fScale: number } | null;
  /** With the checkpoint option: `{ path, written, resumedFrom }` (resumedFrom null for a fresh start); null otherwise. */
  readonly checkpoint: CheckpointReport | null;
  private readonly weighted: boolean;
  private readonly program: ModelProgram | null;
  private readonly fixed: Record<string, number>;
  private readonly expressions: Record<string, string>;
  #evaluator: FittedModel | null = null;

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
    this.conditionNumber = s.conditionNumber;
    this.program = init.program ?? null;
    this.activeMask = init.activeMask ? Uint8Array.from(init.activeMask, (v) => Number(v)) : null;
    this.multistart = init.multistart ?? null;
    this.loss = init.loss ?? null;
    this.checkpoint = init.checkpoint ?? null;
    this.fixed = init.fixed ?? {};
    this.expressions = init.expressions ?? {};
    this.warnings = fitWarnings({
      paramNames: init.paramNames,
      values: init.values,
      correlation: s.correlation,
      rank: s.rank,
      conditionNumber: s.conditionNumber,
      success: init.success,
      message: init.message,
      dof: s.dof,
      activeMask: init.activeMask,
    });
  }

  /**
   * Two-sided confidence intervals for the parameters: value ± t·stderr, t
   * the quantile of Student's t with `dof` degrees of freedom at (1 + level)/2
   * (what lmfit and statsmodels report for a least-squares fit). ±Infinity
   * where the standard error is infinite or there are no degrees of freedom.
   * @example
   * const r = await fit({ model: 'a*x+b', data: { x, y }, p0: [1, 0] });
   * r.confidenceIntervals(0.99).a // [lo, hi]
   */
  confidenceIntervals(level = 0.95): Record<string, [number, number]> {
    const critical = this.criticalValue(level);
    const out: Record<string, [number, number]> = {};
    this.paramNames.forEach((name) => {
      const value = this.params[name]!;
      const half = critical === Infinity ? Infinity : critical * this.stderr[name]!;
      out[name] = [value - half, value + half];
    });
    return out;
  }

  /**
   * The fitted model at new points: `data` holds the model's variable columns
   * by name (other columns are ignored), or is one column when the model reads
   * one variable. Evaluated natively (a JavaScript model: by its function), 65536 points at a time.
   * @example
   * r.predict({ x: [0, 0.5, 1] }); r.predict(Float64Array.of(0, 0.5, 1))
   */
  predict(data: PointsInput): Float64Array {
    const { model, variableNames } = this.evaluator();
    return model.predict(PointColumns.from(data, variableNames, 'data'));
  }

  /**
   * The fitted model at new points with a confidence or prediction band, by
   * the delta method: var f = g^T C g, g the gradient in the parameters at
   * the fit (central differences of the native model values), C the
   * covariance; a prediction band adds the variance of a new observation
   * (the reduced chi-square, or 1 with absoluteSigma, times sigma^2). The
   * half-width is t·sqrt(var), t as in confidenceIntervals(). Where the
   * covariance does not exist the band is (-Infinity, Infinity).
   * @example
   * const { fitted, lower, upper } = r.band({ x: grid }, { level: 0.95, kind: 'prediction' });
   */
  band(x: PointsInput, options: BandOptions = {}): Band {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw invalidType('band options', 'object ({ level, kind, sigma })', options);
    }
    for (const key of Object.keys(options)) {
      if (!kBandOptions.includes(key)) {
        const hint = closestName(key, kBandOptions);
        throw invalidInput('band options', `unknown option '${key}'${hint ? ` (did you mean '${hint}'?)` : ''}; the options are ${kBandOptions.join(', ')}`);
      }
    }
    const kind: unknown = options.kind ?? 'confidence';
    if (kind !== 'confidence' && kind !== 'prediction') throw invalidRange('kind', "'confidence' or 'prediction'", kind);
    const critical = this.criticalValue(options.level ?? 0.95);
    const { model, variableNames } = this.evaluator();
    const points = PointColumns.from(x, variableNames, 'x');
    let observationVariance: ((i: number) => number) | null = null;
    if (kind === 'prediction') {
      const scale = this.absoluteSigma ? 1 : this.reducedChi2;
      const sigma = bandSigma(options.sigma, points.nPoints);
      observationVariance = typeof sigma === 'number' ? () => scale * sigma * sigma : (i) => scale * sigma[i]! * sigma[i]!;
    } else if (options.sigma !== undefined) {
      throw invalidInput('sigma', "applies only to kind: 'prediction'");
    }
    return model.band(points, {
      covariance: this.covariance,
      stderr: this.paramNames.map((name) => this.stderr[name]!),
      critical,
      observationVariance,
    });
  }

  /** Student's t critical value at a level for this fit's degrees of freedom (Infinity without any). */
  private criticalValue(level: unknown): number {
    checkLevel(level);
    return this.dof > 0 ? studentTCritical(level, this.dof) : Infinity;
  }

  /** The fitted model on the kernel, made on first use. */
  private evaluator(): { model: FittedModel; variableNames: string[] } {
    if (!this.program) throw new Error('nlfit: this result carries no compiled model (FitResultInit.program), so it cannot evaluate the model');
    this.#evaluator ??= new FittedModel(this.program, this.values);
    return { model: this.#evaluator, variableNames: this.program.variableNames };
  }

  /** A plain object (for JSON). */
  toJSON(): Record<string, unknown> {
    return {
      activeMask: this.activeMask ? Array.from(this.activeMask) : null,
      checkpoint: this.checkpoint,
      multistart: this.multistart,
      loss: this.loss,
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
      conditionNumber: this.conditionNumber,
      warnings: this.warnings,
      confidenceLevel: 0.95,
      confidenceIntervals: this.confidenceIntervals(0.95),
      ...(Object.keys(this.fixed).length > 0 ? { fixed: this.fixed } : {}),
      ...(Object.keys(this.expressions).length > 0 ? { expressions: this.expressions } : {}),
    };
  }

  /**
   * A readable fit report in the layout of lmfit's: [[Model]], [[Fit
   * Statistics]], [[Variables]] (value +/- stderr (relative) (init = p0);
   * fixed and expression-defined parameters marked), [[Correlations]] above
   * 0.1 by magnitude, [[Warnings]] when there are any, then [[Execution]].
   */
  summary(): string {
    const lines: string[] = [];
    const fixedNames = Object.keys(this.fixed);
    const expressionNames = Object.keys(this.expressions);
    const width = Math.max(9, ...[...this.paramNames, ...fixedNames, ...expressionNames].map((n) => n.length));
    const stat = (label: string, value: string | number): void => {
      lines.push(`    ${label.padEnd(18)} = ${typeof value === 'number' ? formatNumber(value) : value}`);
    };
    lines.push('[[Model]]');
    lines.push(`    ${this.model}`);
    lines.push('[[Fit Statistics]]');
    stat('# fitting method', 'Levenberg-Marquardt');
    stat('# function evals', String(this.nfev));
    stat('# data points', String(this.nPoints));
    stat('# variables', String(this.paramNames.length));
    stat('weights', this.weighted ? `1/sigma^2 (${this.absoluteSigma ? 'absolute' : 'relative'} sigma)` : 'none');
    stat('chi-square', this.chi2);
    stat('reduced chi-square', this.reducedChi2);
    stat('Akaike info crit', this.aic);
    stat('Bayesian info crit', this.bic);
    stat('R-squared', this.rSquared);
    stat('RMSE', this.rmse);
    stat('condition number', this.conditionNumber);
    stat('status', `${this.status} (${this.success ? 'converged' : 'NOT converged'})`);
    stat('message', this.message);
    stat('iterations', `${this.iterations} (${this.njev} Jacobians factorised)`);
    lines.push('[[Variables]]');
    const uncertainty = (value: number, err: number): string => {
      const relative = Number.isFinite(err) && value !== 0 ? ` (${((100 * err) / Math.abs(value)).toFixed(2)}%)` : '';
      return `+/- ${formatNumber(err)}${relative}`;
    };
    const row = (name: string, value: number, rest: string): void => {
      lines.push(`    ${name.padEnd(width)} = ${formatNumber(value).padStart(14)} ${rest}`);
    };
    this.paramNames.forEach((name) => {
      const value = this.params[name]!;
      row(name, value, `${uncertainty(value, this.stderr[name]!)} (init = ${formatNumber(this.initialParams[name]!)})`);
    });
    fixedNames.forEach((name) => row(name, this.fixed[name]!, '(fixed)'));
    if (expressionNames.length > 0) {
      const derived = derivedParameters(
        this.expressions,
        this.fixed,
        this.paramNames,
        this.values,
        this.covariance,
        this.paramNames.map((name) => this.stderr[name]!),
      );
      expressionNames.forEach((name) => {
        const expression = `== '${this.expressions[name]}'`;
        const at = derived[name];
        if (at) row(name, at.value, `${uncertainty(at.value, at.stderr)} ${expression}`);
        else lines.push(`    ${name.padEnd(width)}   ${expression}`);
      });
    }
    const correlations: { text: string; magnitude: number }[] = [];
    for (let i = 0; i < this.paramNames.length; i++) {
      for (let j = i + 1; j < this.paramNames.length; j++) {
        const c = this.correlation[i]![j]!;
        if (Math.abs(c) > 0.1) {
          correlations.push({ text: `    C(${this.paramNames[i]}, ${this.paramNames[j]}) = ${c >= 0 ? '+' : ''}${c.toFixed(4)}`, magnitude: Math.abs(c) });
        }
      }
    }
    if (correlations.length > 0) {
      lines.push('[[Correlations]] (unreported correlations are < 0.100)');
      correlations.sort((a, b) => b.magnitude - a.magnitude);
      lines.push(...correlations.map((c) => c.text));
    }
    if (this.warnings.length > 0) {
      lines.push('[[Warnings]]');
      lines.push(...this.warnings.map((warning) => `    ${warning}`));
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
