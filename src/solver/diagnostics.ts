/**
 * Diagnostics of a fitted model: the condition number of the Jacobian, the
 * warnings a careful user wants to see, and the model evaluated at new
 * points with delta-method confidence and prediction bands.
 *
 * Condition number. J = Q R_J, so J and the p x p block R_J of the final
 * factor have the same singular values; they come from a one-sided Jacobi
 * SVD of R_J (Hestenes 1958; Demmel & Veselić 1992): plane rotations
 * orthogonalize the columns pairwise until every pair is orthogonal to
 * rounding, and the column norms are then the singular values, each to high
 * relative accuracy even when the smallest is tiny. kappa_2(J) = s_max / s_min,
 * Infinity when the Jacobian is rank-deficient.
 *
 * Bands. For a new point the variance of the fitted value is, to first order
 * (the delta method), var f = g^T C g with g = df/dtheta at the fit and C the
 * parameter covariance; a prediction adds the variance of a new observation.
 * The kernel evaluates model values only (its Jacobian comes out already
 * reduced by QR), so g is taken by central differences of the native model
 * values, step h_j = eps^(1/3) max(|theta_j|, stderr_j): truncation error
 * O(h^2) and rounding error O(eps/h) balance at eps^(1/3) relative to the
 * scale on which the model changes (Nocedal & Wright 2006, section 8.1).
 * |theta_j| is that scale for most parameters; for one near 0 its standard
 * error is, the range over which the delta method linearizes the model
 * anyway. Steps are made exact (h = (theta + h) - theta) and, where the model
 * is not finite on one side (a parameter at the edge of its domain), taken
 * one-sided. For a model linear in the parameters the differences are exact
 * up to rounding, about eps^(2/3) = 4e-11 relative.
 */
import { closestName, invalidInput, invalidType } from '../errors.js';
import { checkColumn } from '../data/columns.js';
import { checkLayout } from '../exec/layout.js';
import { compileModel } from '../model/compile.js';
import { loadAddon, type NativeKernel } from '../native.js';

/** Model values at `params` for `count` points whose variable columns are given, into out. */
export type ModelValues = (params: Float64Array, vars: Float64Array[], count: number, out: Float64Array) => void;

/**
 * A compiled model as the kernel runs it (a CompiledModel has these fields),
 * or the values of a model the kernel cannot run (a JavaScript model,
 * src/exec/jsModel.ts).
 */
export type ModelProgram =
  | {
      code: Int32Array;
      consts: Float64Array;
      /** Variable v of the bytecode is the column of this name. */
      variableNames: string[];
    }
  | {
      values: ModelValues;
      /** Column v of `vars` is the column of this name. */
      variableNames: string[];
    };

/** New points: the model's variable columns by name, or the one column of a model with one variable. */
export type PointsInput = Record<string, ArrayLike<number>> | ArrayLike<number>;

/** Points evaluated per kernel call, so memory stays bounded for any input size. */
export const kPredictChunk = 65536;
/** Sweeps of the Jacobi SVD before giving up (it converges quadratically; p <= 32 needs < 15). */
const kMaxJacobiSweeps = 60;
const kCubeRootEps = Math.cbrt(Number.EPSILON);
/** Above this condition number the covariance has lost most of its digits. */
export const kIllConditioned = 1e12;
/** Correlations beyond this magnitude are reported as warnings. */
export const kHighCorrelation = 0.99;

/**
 * Singular values of an n x n matrix (row major), largest first, by
 * one-sided Jacobi rotations on its columns.
 * @example
 * singularValues(Float64Array.of(3, 0, 0, 4), 2) // Float64Array [4, 3]
 */
export function singularValues(matrix: Float64Array, n: number): Float64Array {
  // Scaled by the largest entry so that squared norms neither overflow nor underflow.
  let largest = 0;
  for (const v of matrix) largest = Math.max(largest, Math.abs(v));
  const singular = new Float64Array(n);
  if (largest === 0 || !Number.isFinite(largest)) return singular.fill(largest === 0 ? 0 : NaN);
  const columns = Array.from({ length: n }, (_, j) => Float64Array.from({ length: n }, (_, i) => matrix[i * n + j]! / largest));
  for (let sweep = 0; sweep < kMaxJacobiSweeps; sweep++) {
    let rotated = false;
    for (let j = 0; j < n - 1; j++) {
      for (let k = j + 1; k < n; k++) {
        const u = columns[j]!;
        const v = columns[k]!;
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < n; i++) {
          alpha += u[i]! * u[i]!;
          beta += v[i]! * v[i]!;
          gamma += u[i]! * v[i]!;
        }
        if (Math.abs(gamma) <= Number.EPSILON * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        // The rotation that zeroes the (j, k) entry of the Gram matrix, the smaller angle.
        const zeta = (beta - alpha) / (2 * gamma);
        const tangent = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.hypot(1, zeta));
        const cosine = 1 / Math.hypot(1, tangent);
        const sine = cosine * tangent;
        for (let i = 0; i < n; i++) {
          const a = u[i]!;
          const b = v[i]!;
          u[i] = cosine * a - sine * b;
          v[i] = sine * a + cosine * b;
        }
      }
    }
    if (!rotated) break;
  }
  columns.forEach((column, j) => (singular[j] = largest * Math.hypot(...column)));
  return singular.sort().reverse();
}

/**
 * The 2-norm condition number of J from the final (p+1) x (p+1) factor of
 * [J | r] (row major): that of its leading p x p block R_J. Infinity when the
 * Jacobian is rank-deficient (rank < p).
 */
export function conditionNumber(factor: Float64Array, p: number, rank: number): number {
  if (p === 0) return 1;
  if (rank < p) return Infinity;
  const q = p + 1;
  const block = new Float64Array(p * p);
  for (let i = 0; i < p; i++) for (let j = 0; j < p; j++) block[i * p + j] = factor[i * q + j]!;
  const singular = singularValues(block, p);
  const smallest = singular[p - 1]!;
  return smallest > 0 ? singular[0]! / smallest : Infinity;
}

/** Checked columns of new points, in the model's variable order, read a chunk at a time. */
export class PointColumns {
  private constructor(
    private readonly columns: ArrayLike<number>[],
    readonly nPoints: number,
  ) {}

  /**
   * Checks `input` (named `field` in errors) against the variables a model
   * reads: every one present, all of one length.
   */
  static from(input: unknown, variableNames: readonly string[], field: string): PointColumns {
    const reads = variableNames.length === 0 ? 'no variables' : variableNames.map((name) => `'${name}'`).join(', ');
    if (Array.isArray(input) || ArrayBuffer.isView(input)) {
      if (variableNames.length > 1) {
        throw invalidInput(field, `an array is accepted only for a model with one variable, and this model reads ${reads}: pass an object of columns`);
      }
      const nPoints = checkColumn(input, field);
      return new PointColumns(variableNames.length === 1 ? [input as ArrayLike<number>] : [], nPoints);
    }
    if (input === null || typeof input !== 'object') {
      throw invalidType(field, 'object of variable columns or an array of numbers', input);
    }
    const given = input as Record<string, unknown>;
    const names = Object.keys(given);
    const columns: ArrayLike<number>[] = [];
    let nPoints = -1;
    let first = '';
    for (const name of variableNames) {
      if (given[name] === undefined) {
        const hint = closestName(name, names);
        throw invalidInput(
          field,
          `the model's variable '${name}' is missing (the model reads ${reads}; given: ${names.length > 0 ? names.join(', ') : 'none'}${hint ? `; did you mean '${hint}'?` : ''})`,
        );
      }
      const length = checkColumn(given[name], `${field}.${name}`);
      if (nPoints === -1) {
        nPoints = length;
        first = name;
      } else if (length !== nPoints) {
        throw invalidInput(field, `columns differ in length: ${field}.${name} has ${length} values, ${field}.${first} has ${nPoints}`);
      }
      columns.push(given[name] as ArrayLike<number>);
    }
    if (nPoints === -1) {
      // A model without variables: the number of points comes from any column given.
      if (names.length === 0) throw invalidInput(field, 'the model reads no variables, so give one column to say how many points');
      nPoints = checkColumn(given[names[0]!], `${field}.${names[0]}`);
    }
    return new PointColumns(columns, nPoints);
  }

  /** `nPoints` points of a model that reads no variables (a parameter expression). */
  static none(nPoints: number): PointColumns {
    return new PointColumns([], nPoints);
  }

  /** Points [start, start + count) as float64 columns: views of Float64Array input, else copies into `scratch`. */
  chunk(start: number, count: number, scratch: Float64Array[]): Float64Array[] {
    return this.columns.map((column, v) => {
      if (column instanceof Float64Array) return column.subarray(start, start + count);
      const out = (scratch[v] ??= new Float64Array(Math.min(kPredictChunk, this.nPoints))).subarray(0, count);
      if (column instanceof Float32Array) out.set(column.subarray(start, start + count));
      else for (let i = 0; i < count; i++) out[i] = column[start + i]!;
      return out;
    });
  }
}

/** What band() computes besides the points: the covariance and how wide to go. */
export interface BandSpec {
  covariance: number[][];
  stderr: number[];
  /** Two-sided critical value (Student's t at the level, dof). */
  critical: number;
  /**
   * For a prediction band, the variance of a new observation at point i
   * (absolute index); null for a confidence band.
   */
  observationVariance: ((i: number) => number) | null;
}

export interface Band {
  /** Model values at the new points. */
  fitted: Float64Array;
  lower: Float64Array;
  upper: Float64Array;
}

/** The fitted model (on the native kernel, or a JavaScript model's function): values and their gradient in the parameters at new points. */
export class FittedModel {
  private readonly values: ModelValues;

  constructor(
    program: ModelProgram,
    private readonly params: Float64Array,
  ) {
    if ('values' in program) {
      this.values = program.values;
    } else {
      const addon = loadAddon();
      checkLayout(addon);
      const kernel: NativeKernel = new addon.Kernel(program.code, program.consts);
      this.values = (params, vars, count, out) => kernel.predict(params, vars, 0, count, out);
    }
  }

  /** Model values at every point, a chunk at a time. */
  predict(points: PointColumns): Float64Array {
    const fitted = new Float64Array(points.nPoints);
    const scratch: Float64Array[] = [];
    for (let start = 0; start < points.nPoints; start += kPredictChunk) {
      const count = Math.min(kPredictChunk, points.nPoints - start);
      this.values(this.params, points.chunk(start, count, scratch), count, fitted.subarray(start, start + count));
    }
    return fitted;
  }

  /** Model values with delta-method bands (see the file comment). */
  band(points: PointColumns, spec: BandSpec): Band {
    const n = points.nPoints;
    const p = this.params.length;
    const fitted = this.predict(points);
    const lower = new Float64Array(n);
    const upper = new Float64Array(n);
    const defined = Number.isFinite(spec.critical) && spec.covariance.every((row) => row.every(Number.isFinite));
    if (!defined) {
      lower.fill(-Infinity);
      upper.fill(Infinity);
      return { fitted, lower, upper };
    }
    const scratch: Float64Array[] = [];
    const chunk = Math.min(kPredictChunk, n);
    const gradient = Array.from({ length: p }, () => new Float64Array(chunk));
    const trial = new Float64Array(chunk * 2);
    for (let start = 0; start < n; start += kPredictChunk) {
      const count = Math.min(kPredictChunk, n - start);
      const vars = points.chunk(start, count, scratch);
      this.gradient(vars, count, fitted.subarray(start, start + count), spec.stderr, gradient, trial);
      for (let i = 0; i < count; i++) {
        let variance = 0;
        for (let j = 0; j < p; j++) {
          const row = spec.covariance[j]!;
          let cg = 0;
          for (let k = 0; k < p; k++) cg += row[k]! * gradient[k]![i]!;
          variance += gradient[j]![i]! * cg;
        }
        // Rounding can leave a tiny negative variance where the true one is 0.
        variance = Math.max(variance, 0);
        if (spec.observationVariance) variance += spec.observationVariance(start + i);
        const half = spec.critical * Math.sqrt(variance);
        const value = fitted[start + i]!;
        lower[start + i] = value - half;
        upper[start + i] = value + half;
      }
    }
    return { fitted, lower, upper };
  }

  /** df/dtheta_j at `count` points into gradient[j] by central differences; `fitted` holds f there. */
  private gradient(
    vars: Float64Array[],
    count: number,
    fitted: Float64Array,
    stderr: number[],
    gradient: Float64Array[],
    trial: Float64Array,
  ): void {
    const plus = trial.subarray(0, count);
    const minus = trial.subarray(count, 2 * count);
    const shifted = Float64Array.from(this.params);
    for (let j = 0; j < this.params.length; j++) {
      const value = this.params[j]!;
      const scale = Math.max(Math.abs(value), Number.isFinite(stderr[j]!) ? stderr[j]! : 0);
      const step = kCubeRootEps * (scale > 0 ? scale : 1);
      const up = value + step;
      const down = value - step;
      shifted[j] = up;
      this.values(shifted, vars, count, plus);
      shifted[j] = down;
      this.values(shifted, vars, count, minus);
      shifted[j] = value;
      const stepUp = up - value;
      const stepDown = value - down;
      const out = gradient[j]!;
      for (let i = 0; i < count; i++) {
        const hi = plus[i]!;
        const lo = minus[i]!;
        if (Number.isFinite(hi) && Number.isFinite(lo)) out[i] = (hi - lo) / (stepUp + stepDown);
        else if (Number.isFinite(hi)) out[i] = (hi - fitted[i]!) / stepUp;
        else if (Number.isFinite(lo)) out[i] = (fitted[i]! - lo) / stepDown;
        else out[i] = NaN;
      }
    }
  }
}

/** An expression-defined parameter at the fit: its value and delta-method standard error, or null when it reads data. */
export interface DerivedParameter {
  value: number;
  stderr: number;
}

/**
 * Values and standard errors of parameters defined by expressions of the
 * fitted ones (lmfit's `expr`), for the report. An expression that reads a
 * data column has no single value: null.
 */
export function derivedParameters(
  expressions: Record<string, string>,
  fixed: Record<string, number>,
  paramNames: string[],
  values: Float64Array,
  covariance: number[][],
  stderr: number[],
): Record<string, DerivedParameter | null> {
  const out: Record<string, DerivedParameter | null> = {};
  for (const [name, source] of Object.entries(expressions)) {
    const others = Object.fromEntries(Object.entries(expressions).filter(([other]) => other !== name));
    let program: ModelProgram;
    try {
      program = compileModel(source, { params: paramNames, columns: [], constants: fixed, definitions: others });
    } catch {
      out[name] = null;
      continue;
    }
    const band = new FittedModel(program, values).band(PointColumns.none(1), {
      covariance,
      stderr,
      critical: 1,
      observationVariance: null,
    });
    out[name] = { value: band.fitted[0]!, stderr: band.upper[0]! - band.fitted[0]! };
  }
  return out;
}

/** What the warnings are drawn from. */
export interface WarningInput {
  paramNames: string[];
  values: Float64Array;
  correlation: number[][];
  rank: number;
  conditionNumber: number;
  success: boolean;
  message: string;
  dof: number;
  activeMask?: ArrayLike<number | boolean>;
}

function formatShort(value: number): string {
  return Number.isFinite(value) && value !== 0 && (Math.abs(value) >= 1e6 || Math.abs(value) < 1e-3)
    ? value.toExponential(2)
    : String(Number(value.toPrecision(6)));
}

/** The fit's problems, in words, most serious first. */
export function fitWarnings(input: WarningInput): string[] {
  const warnings: string[] = [];
  const p = input.paramNames.length;
  if (!input.success) warnings.push(`the fit did not converge: ${input.message}`);
  if (input.dof <= 0) {
    warnings.push(`no degrees of freedom (${p} parameters for ${p + input.dof} points): the reduced chi-square, the uncertainties and the bands are undefined`);
  }
  if (input.rank < p) {
    warnings.push(`the Jacobian is rank-deficient (rank ${input.rank} < ${p} parameters): the parameters are not all determined by the data and the covariance does not exist`);
  } else if (input.conditionNumber > kIllConditioned) {
    warnings.push(`the Jacobian is nearly singular (condition number ${formatShort(input.conditionNumber)} > ${formatShort(kIllConditioned)}): the uncertainties are unreliable; rescale or reparameterize`);
  }
  for (let i = 0; i < p; i++) {
    for (let j = i + 1; j < p; j++) {
      const c = input.correlation[i]?.[j] ?? NaN;
      if (Math.abs(c) > kHighCorrelation) {
        warnings.push(`'${input.paramNames[i]}' and '${input.paramNames[j]}' are highly correlated (${c > 0 ? '+' : ''}${c.toFixed(4)}): the data barely tell them apart`);
      }
    }
  }
  if (input.activeMask) {
    for (let i = 0; i < p; i++) {
      if (input.activeMask[i]) {
        warnings.push(`'${input.paramNames[i]}' = ${formatShort(input.values[i]!)} ended at a bound: its standard error and interval ignore the bound`);
      }
    }
  }
  return warnings;
}
