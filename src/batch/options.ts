/**
 * fitMany's options: their types and the one function that validates them.
 * Everything a batch needs is checked here, before any curve is fitted, and
 * turned into a NormalizedBatch of typed arrays in shared memory that the
 * workers read without copies and write their results into.
 */
import { closestName, invalidInput, invalidRange, invalidType } from '../errors.js';
import { catalogModel, isCatalogName, type CatalogModel } from '../model/catalog.js';
import { compileModel, freeIdentifiers, p0Names, type CompiledModel } from '../model/compile.js';
import { distributedOption, kLosses, timeoutOption, type LossName } from '../options.js';
import type { Communicator } from '../distributed/communicator.js';

/** A column of numbers. */
export type NumericArray = Float64Array | Float32Array | ArrayLike<number>;

export interface FitManyOptions {
  /** Expression (`'a*exp(-((x1-u)^2+(x2-v)^2)/(2*s^2))+c'`) or catalog model (`'gaussian'`). */
  model: string | { name: string; degree?: number };
  /**
   * The independent variable(s): one column (named `x`) or named columns
   * (`{ x1, x2 }`). A column of n values is shared by every curve; one of
   * M x n values (or the ragged total) gives each curve its own.
   */
  x: NumericArray | Record<string, NumericArray>;
  /** The curves, row-major: M x n values (or ragged, with offsets). */
  y: NumericArray;
  /** Points per curve (when neither x nor offsets says). */
  n?: number;
  /** Ragged curves: curve i is y[offsets[i] .. offsets[i+1]); M + 1 increasing values starting at 0. */
  offsets?: NumericArray;
  /** Standard deviations, laid out like y. Not with estimator 'poisson'. */
  sigma?: NumericArray;
  /**
   * Starting values: by name or an array in parameter order (shared by every
   * curve), or a typed array of M x p (one row per curve, order given by
   * `params`). Optional for catalog models (estimated per curve).
   */
  p0?: Record<string, number> | NumericArray;
  /** Parameter order when p0 is an array (default: order of first appearance in the expression). */
  params?: string[];
  /** Bounds by name, shared by every curve. */
  bounds?: Record<string, [number | null, number | null]>;
  loss?: LossName;
  fScale?: number;
  /** 'lsq' (least squares, default) or 'poisson' (maximum likelihood for counts; chi2 is the deviance). */
  estimator?: 'lsq' | 'poisson';
  absoluteSigma?: boolean;
  ftol?: number;
  xtol?: number;
  gtol?: number;
  maxFev?: number;
  stepFactor?: number;
  /** Worker threads (at most the engine's). */
  threads?: number;
  /** Curves per pool task (default: enough tasks to balance the threads). */
  shardSize?: number;
  /** Cancels the batch: the shards stop between curves and fitMany rejects with an error named 'AbortError'. */
  signal?: AbortSignal;
  /** A hard deadline in ms: the shards stop between curves and fitMany rejects with an error named 'TimeoutError'. */
  timeoutMs?: number;
  /**
   * Split the curves over the ranks of an MPI job ('mpi') or of a
   * Communicator: each rank fits its contiguous range, and every rank returns
   * the whole result in curve order (the same bits as one process).
   */
  distributed?: 'mpi' | Communicator | false;
  /** Called as shards complete: `{ type: 'shard', done, total, curvesDone, elapsedMs }`. */
  onProgress?: (event: { type: 'shard'; done: number; total: number; curvesDone: number; elapsedMs: number }) => void;
}

const kKnown = [
  'model', 'x', 'y', 'n', 'offsets', 'sigma', 'p0', 'params', 'bounds', 'loss', 'fScale', 'estimator',
  'absoluteSigma', 'ftol', 'xtol', 'gtol', 'maxFev', 'stepFactor', 'threads', 'shardSize', 'signal', 'timeoutMs', 'onProgress',
  'distributed',
] as const;

export interface NormalizedBatch {
  model: CompiledModel;
  catalog: CatalogModel | null;
  paramNames: string[];
  /** Curves. */
  m: number;
  /** Points per curve when regular, else 0 (see offsets). */
  n: number;
  /** M + 1 row offsets into y (regular curves too: i * n). */
  offsets: Float64Array;
  /** One column per model variable, in bytecode order. */
  x: Float64Array[];
  xPerCurve: boolean;
  y: Float64Array;
  sigma: Float64Array | null;
  /** p (shared) or M x p (per curve); null: estimate per curve (catalog models). */
  p0: Float64Array | null;
  lower: Float64Array | null;
  upper: Float64Array | null;
  loss: { code: number; fScale: number } | null;
  estimator: 0 | 1;
  absoluteSigma: boolean;
  solver: { ftol: number; xtol: number; gtol: number; maxFev: number; factor: number };
  threads: number;
  shardSize: number | null;
  signal: AbortSignal | null;
  timeoutMs: number | null;
  onProgress: FitManyOptions['onProgress'] | null;
  /** Curves split over ranks (the engine opens the transport). */
  distributed: 'mpi' | Communicator | null;
}

function suggest(name: string, known: readonly string[]): string {
  const close = closestName(name, known);
  return close === undefined ? '' : ` (did you mean '${close}'?)`;
}

function isNumericArray(value: unknown): value is NumericArray {
  return value instanceof Float64Array || value instanceof Float32Array || Array.isArray(value);
}

/** A numeric column as float64 in shared memory (copied once unless it already is). */
function sharedColumn(value: unknown, field: string): Float64Array {
  if (!isNumericArray(value)) throw invalidType(field, 'Float64Array, Float32Array or array of numbers', value);
  if (value instanceof Float64Array && value.buffer instanceof SharedArrayBuffer) return value;
  const out = new Float64Array(new SharedArrayBuffer(value.length * 8));
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      if (typeof v !== 'number') throw invalidType(`${field}[${i}]`, 'number', v);
      out[i] = v;
    }
  } else {
    out.set(value);
  }
  return out;
}

function number(value: unknown, field: string, fallback: number, check: (v: number) => boolean, expected: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw invalidType(field, expected, value);
  if (!check(value)) throw invalidRange(field, expected, value);
  return value;
}

/** Validates fitMany options for an engine of `engineThreads` workers. Throws naming the field. */
export function normalizeFitMany(input: unknown, engineThreads: number): NormalizedBatch {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw invalidType('fitMany options', 'object', input);
  const o = input as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!(kKnown as readonly string[]).includes(key)) throw new TypeError(`Unknown fitMany option '${key}'${suggest(key, kKnown)}`);
  }

  // The model and its variables.
  let source: string;
  let catalog: CatalogModel | null = null;
  if (typeof o.model === 'string' && isCatalogName(o.model)) catalog = catalogModel(o.model);
  else if (o.model !== null && typeof o.model === 'object' && typeof (o.model as { name?: unknown }).name === 'string') {
    catalog = catalogModel(o.model as { name: string; degree?: number });
  }
  if (catalog) source = catalog.expression;
  else if (typeof o.model === 'string' && o.model.trim() !== '') source = o.model;
  else throw invalidType('model', 'expression string or catalog model', o.model);

  const xColumns: Record<string, unknown> =
    o.x !== null && typeof o.x === 'object' && !isNumericArray(o.x) ? (o.x as Record<string, unknown>) : { x: o.x };
  if (o.x === undefined) throw invalidInput('x', 'the independent variable is required (a column, or named columns { x1, x2 })');
  const columnNames = Object.keys(xColumns);

  // Parameter names.
  let paramNames: string[];
  if (catalog) paramNames = [...catalog.params];
  else if (o.params !== undefined) {
    if (!Array.isArray(o.params) || !o.params.every((name) => typeof name === 'string')) {
      throw invalidType('params', 'array of parameter names', o.params);
    }
    paramNames = o.params as string[];
  } else if (o.p0 !== null && typeof o.p0 === 'object' && !isNumericArray(o.p0)) {
    paramNames = p0Names(o.p0, 0);
  } else {
    paramNames = freeIdentifiers(source).filter((name) => !columnNames.includes(name));
  }
  const model = compileModel(source, { params: paramNames, columns: columnNames, reserved: ['y', 'sigma'] });
  const unused = paramNames.filter((_, i) => !model.usesParam[i]);
  if (unused.length > 0) throw invalidInput('params', `${unused.map((n) => `'${n}'`).join(', ')} not in the model ${JSON.stringify(source)}`);
  const p = paramNames.length;

  // The curves.
  const y = sharedColumn(o.y, 'y');
  let offsets: Float64Array;
  let n = 0;
  if (o.offsets !== undefined) {
    offsets = Float64Array.from(sharedColumn(o.offsets, 'offsets'));
    if (offsets.length < 2 || offsets[0] !== 0) throw invalidInput('offsets', 'M + 1 increasing row offsets starting at 0');
    for (let i = 1; i < offsets.length; i++) {
      if (!Number.isInteger(offsets[i]) || offsets[i]! < offsets[i - 1]!) {
        throw invalidInput(`offsets[${i}]`, `${offsets[i]} is not an integer >= offsets[${i - 1}] (${offsets[i - 1]})`);
      }
    }
    if (offsets[offsets.length - 1] !== y.length) {
      throw invalidInput('offsets', `the last offset (${offsets[offsets.length - 1]}) must equal y's length (${y.length})`);
    }
  } else {
    const used = model.variableNames.map((name) => xColumns[name]);
    const first = used.find((column) => isNumericArray(column));
    n = o.n !== undefined ? number(o.n, 'n', 0, (v) => Number.isInteger(v) && v >= 1, 'positive integer') : first && (first as NumericArray).length < y.length ? (first as NumericArray).length : 0;
    if (n === 0) throw invalidInput('n', 'say how many points each curve has (n), or give a shared x column of n values, or offsets');
    if (y.length % n !== 0) throw invalidInput('y', `its ${y.length} values are not a whole number of curves of n = ${n} points`);
    offsets = Float64Array.from({ length: y.length / n + 1 }, (_, i) => i * n);
  }
  const m = offsets.length - 1;
  if (m < 1) throw invalidInput('y', 'no curves');

  // x: shared (n values, regular curves only) or per curve (y's layout).
  let xPerCurve: boolean | null = null;
  const x = model.variableNames.map((name) => {
    const column = sharedColumn(xColumns[name], `x.${name}`);
    const perCurve = column.length === y.length && !(n > 0 && column.length === n && m === 1);
    if (!perCurve && !(n > 0 && column.length === n)) {
      throw invalidInput(`x.${name}`, `${column.length} values: expected ${n > 0 ? `${n} (shared by every curve) or ` : ''}${y.length} (one per point of y)`);
    }
    if (xPerCurve !== null && xPerCurve !== perCurve) throw invalidInput(`x.${name}`, 'every x column must be shared, or every x column per curve');
    xPerCurve = perCurve;
    return column;
  });

  const estimator = o.estimator === undefined || o.estimator === 'lsq' ? 0 : o.estimator === 'poisson' ? 1 : -1;
  if (estimator < 0) throw invalidRange('estimator', "'lsq' or 'poisson'", o.estimator);
  let sigma: Float64Array | null = null;
  if (o.sigma !== undefined) {
    if (estimator === 1) throw invalidInput('sigma', "the Poisson estimator weights by the model itself; leave out sigma");
    sigma = sharedColumn(o.sigma, 'sigma');
    if (sigma.length !== y.length) throw invalidInput('sigma', `${sigma.length} values for ${y.length} in y`);
  }

  // p0: by name or array (shared), or M x p (per curve); estimated for catalog models.
  let p0: Float64Array | null = null;
  if (o.p0 === undefined) {
    if (!catalog) throw invalidInput('p0', 'starting values are required for an expression model (catalog models estimate them per curve)');
  } else if (isNumericArray(o.p0)) {
    const values = sharedColumn(o.p0, 'p0');
    if (values.length !== p && values.length !== m * p) {
      throw invalidInput('p0', `${values.length} values: expected ${p} (shared: ${paramNames.join(', ')}) or ${m * p} (M x p, one row per curve)`);
    }
    values.forEach((v, i) => {
      if (!Number.isFinite(v)) throw invalidRange(`p0[${i}]`, 'finite number', v);
    });
    p0 = values;
  } else if (o.p0 !== null && typeof o.p0 === 'object') {
    const given = o.p0 as Record<string, unknown>;
    for (const key of Object.keys(given)) {
      if (!paramNames.includes(key)) throw invalidInput(`p0.${key}`, `not a parameter (${paramNames.join(', ')})${suggest(key, paramNames)}`);
    }
    p0 = new Float64Array(new SharedArrayBuffer(p * 8));
    paramNames.forEach((name, j) => {
      p0![j] = number(given[name], `p0.${name}`, NaN, Number.isFinite, 'finite number');
      if (Number.isNaN(p0![j])) throw invalidInput(`p0.${name}`, 'missing');
    });
  } else {
    throw invalidType('p0', 'object by name, array, or M x p typed array', o.p0);
  }

  // Bounds (shared).
  let lower: Float64Array | null = null;
  let upper: Float64Array | null = null;
  if (o.bounds !== undefined) {
    if (o.bounds === null || typeof o.bounds !== 'object' || Array.isArray(o.bounds)) throw invalidType('bounds', '{ name: [lower, upper] }', o.bounds);
    lower = new Float64Array(p).fill(-Infinity);
    upper = new Float64Array(p).fill(Infinity);
    for (const [name, pair] of Object.entries(o.bounds as Record<string, unknown>)) {
      const j = paramNames.indexOf(name);
      if (j < 0) throw invalidInput(`bounds.${name}`, `not a parameter (${paramNames.join(', ')})${suggest(name, paramNames)}`);
      if (!Array.isArray(pair) || pair.length !== 2) throw invalidType(`bounds.${name}`, '[lower, upper] (null for none)', pair);
      lower[j] = pair[0] === null ? -Infinity : number(pair[0], `bounds.${name}[0]`, -Infinity, (v) => !Number.isNaN(v), 'number');
      upper[j] = pair[1] === null ? Infinity : number(pair[1], `bounds.${name}[1]`, Infinity, (v) => !Number.isNaN(v), 'number');
      if (!(lower[j]! < upper[j]!)) throw invalidInput(`bounds.${name}`, `lower ${lower[j]} must be below upper ${upper[j]}`);
    }
  }

  // Loss.
  let loss: NormalizedBatch['loss'] = null;
  if (o.loss !== undefined && o.loss !== 'linear') {
    const code = (kLosses as readonly string[]).indexOf(o.loss as string);
    if (code < 0) throw invalidRange('loss', `one of ${kLosses.map((l) => `'${l}'`).join(', ')}`, o.loss);
    if (estimator === 1) throw invalidInput('loss', "a robust loss and the Poisson estimator do not combine");
    loss = { code, fScale: number(o.fScale, 'fScale', 1, (v) => v > 0 && Number.isFinite(v), 'finite number > 0') };
  } else if (o.fScale !== undefined) {
    throw invalidInput('fScale', "applies to a robust loss; with loss 'linear' it would do nothing");
  }

  const tolerance = (key: string, fallback: number): number => number(o[key], key, fallback, (v) => v >= 0 && Number.isFinite(v), 'finite number >= 0');
  const threads = number(o.threads, 'threads', engineThreads, (v) => Number.isInteger(v) && v >= 1 && v <= engineThreads, `integer from 1 to the engine's ${engineThreads}`);
  const signal = o.signal ?? null;
  if (signal !== null && !(signal instanceof AbortSignal)) throw invalidType('signal', 'AbortSignal', signal);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw invalidType('onProgress', 'function', o.onProgress);
  const absoluteSigma = o.absoluteSigma ?? false;
  if (typeof absoluteSigma !== 'boolean') throw invalidType('absoluteSigma', 'boolean', absoluteSigma);
  return {
    model,
    catalog,
    paramNames,
    m,
    n,
    offsets: toShared(offsets),
    x,
    xPerCurve: xPerCurve ?? false,
    y,
    sigma,
    p0,
    lower,
    upper,
    loss,
    estimator: estimator as 0 | 1,
    absoluteSigma,
    solver: {
      ftol: tolerance('ftol', 1e-10),
      xtol: tolerance('xtol', 1e-10),
      gtol: tolerance('gtol', 0),
      maxFev: number(o.maxFev, 'maxFev', 100 * (p + 1), (v) => Number.isInteger(v) && v >= 1, 'positive integer'),
      factor: number(o.stepFactor, 'stepFactor', 100, (v) => v > 0 && Number.isFinite(v), 'finite number > 0'),
    },
    threads,
    shardSize: o.shardSize === undefined ? null : number(o.shardSize, 'shardSize', 0, (v) => Number.isInteger(v) && v >= 1, 'positive integer'),
    signal: signal as AbortSignal | null,
    timeoutMs: timeoutOption(o.timeoutMs),
    onProgress: (o.onProgress as FitManyOptions['onProgress']) ?? null,
    distributed: distributedOption(o.distributed, null),
  };
}

function toShared(values: Float64Array): Float64Array {
  const out = new Float64Array(new SharedArrayBuffer(values.length * 8));
  out.set(values);
  return out;
}
