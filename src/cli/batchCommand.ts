/**
 * `nlfit batch`: fits one model to every curve (row) of a 2-D .npy file with
 * the library's fitMany, optionally only one shard of the rows (one task of
 * a job array), and writes the per-curve results as .npy arrays or prints a
 * summary.
 *
 *   nlfit batch y.npy --model gaussian --x x.npy --out results/run
 *   nlfit batch y.npy --model "a*exp(-b*t)+c" --x t=t.npy --p0 p0.npy --params a,b,c \
 *     --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT --out results/part-$SLURM_ARRAY_TASK_ID
 *
 * Exit codes (exit.ts): 0 when every curve of the range was fitted, whatever
 * each curve's status (the counts say how many converged); 2 usage error;
 * 3 data error (a file that cannot be read, arrays whose shapes disagree, a
 * starting value that is not finite); 1 a failure while fitting; 130/143
 * interrupted. Results go to stdout (or files), progress and notices to
 * stderr.
 */
import { statSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';
import { normalizeFitMany, type FitManyOptions } from '../batch/options.js';
import { gatherFitMany } from '../distributed/fitMany.js';
import { evenPart } from '../distributed/partition.js';
import { RankSession } from '../distributed/session.js';
import type { FitManyResult } from '../batch/fitMany.js';
import { Engine } from '../fit.js';
import { loadAddon } from '../native.js';
import { kLosses } from '../options.js';
import { parseArgs, type FlagTable } from './args.js';
import { badValue, DataError, kExitConverged, UsageError } from './exit.js';
import type { CommandIo, FitContext } from './fitCommand.js';
import { kBatchHelp } from './help.js';
import { openNpy, shapeText, writeNpyFile, writeTextFile, type NpyArray, type NpyWritable } from './npy.js';
import { progressMode, type ProgressMode } from './progress.js';
import { toJson } from './report.js';
import { detectCpus } from './resources.js';
import { interruptOnSignals, kSignalExitCodes, type Interruption } from './signals.js';
import {
  choiceFlag as choice,
  integerFlag as integer,
  isIdentifier,
  parseBounds,
  parseNames,
  parseNumber,
  parseParamList,
  parseText as text,
  toleranceFlag as tolerance,
  type BoundsSpec,
} from './values.js';

/** Above this many fitted curves the --json summary leaves the per-curve arrays out (use --out). */
export const kJsonArraysMaxCurves = 1000;

/** --p0: values on the command line, or a .npy file of starting values. */
type P0Spec = { values: Record<string, number> | number[] } | { file: string };

interface Shard {
  index: number;
  count: number;
}


/** "x.npy" -> { x: 'x.npy' }; "x1=a.npy,x2=b.npy" -> { x1: 'a.npy', x2: 'b.npy' }. */
export function parseXFiles(value: string, flag: string): Record<string, string> {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw badValue(flag, 'x.npy or x1=x1.npy,x2=x2.npy', value);
  const named = items.filter((item) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(item));
  if (named.length === 0) {
    if (items.length > 1) throw new UsageError(`--${flag}: several files need the names of their variables: x1=x1.npy,x2=x2.npy (got '${value}')`);
    return { x: items[0]! };
  }
  if (named.length < items.length) throw new UsageError(`--${flag}: give every file a name (x1=x1.npy,x2=x2.npy) or give one file alone, not a mix: '${value}'`);
  const out: Record<string, string> = {};
  for (const item of items) {
    const at = item.indexOf('=');
    const name = item.slice(0, at);
    const path = item.slice(at + 1).trim();
    if (!isIdentifier(name) || path === '') throw badValue(flag, 'name=file.npy', item);
    if (name in out) throw new UsageError(`--${flag}: '${name}' is given twice`);
    out[name] = path;
  }
  return out;
}

/** "a=1,b=2" or "1,2" (shared by every curve), or "p0.npy" (a file: M x p, or p values shared). */
function parseP0(value: string, flag: string): P0Spec {
  if (/\.npy$/i.test(value.trim())) return { file: value.trim() };
  return { values: parseParamList(value, flag) };
}

/** "i/n" with 0 <= i < n: the i-th of n equal parts of the curves. */
export function parseShard(value: string, flag: string): Shard {
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(value);
  const expected = 'i/n with 0 <= i < n (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)';
  if (!match) throw badValue(flag, expected, value);
  const index = Number(match[1]);
  const count = Number(match[2]);
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(count) || count < 1 || index >= count) throw badValue(flag, expected, value);
  return { index, count };
}

/** Curves [start, end) of shard i of n over M curves: floor(i*M/n) .. floor((i+1)*M/n) - 1. */
export function shardRange(curves: number, shard: Shard | null): [number, number] {
  // Exact in integers for any M * n below 2^53; the same split as --mpi's ranks.
  return shard === null ? [0, curves] : evenPart(shard.index, shard.count, curves);
}

function parseOutPrefix(value: string, flag: string): string {
  const prefix = text(value, flag);
  if (prefix.endsWith('/') || prefix.endsWith(sep)) throw badValue(flag, 'a file name prefix such as results/run (not a folder)', value);
  return prefix;
}

export const kBatchFlags: FlagTable = {
  model: { parse: text },
  x: { parse: parseXFiles },
  p0: { parse: parseP0 },
  params: { parse: parseNames },
  bounds: { parse: parseBounds },
  sigma: { parse: text },
  'absolute-sigma': {},
  estimator: choice(['lsq', 'poisson']),
  loss: choice(kLosses),
  'f-scale': { parse: (value, flag) => parseNumber(value, flag, { above: 0 }) },
  ftol: tolerance,
  xtol: tolerance,
  gtol: tolerance,
  'max-fev': integer,
  threads: integer,
  shard: { parse: parseShard },
  out: { parse: parseOutPrefix },
  json: {},
  progress: {},
  quiet: {},
  mpi: {},
  help: {},
};

/** The output files of --out: suffix, and how each result array is stored. */
const kOutputs = [
  { key: 'params', dtype: 'float64', perParam: true },
  { key: 'stderr', dtype: 'float64', perParam: true },
  { key: 'chi2', dtype: 'float64', perParam: false },
  { key: 'iterations', dtype: 'int32', perParam: false },
  { key: 'nfev', dtype: 'int32', perParam: false },
  { key: 'status', dtype: 'uint8', perParam: false },
] as const;

type OutputKey = (typeof kOutputs)[number]['key'];

/** What fitMany returned for the range (or an empty result for an empty shard). */
type Outcome = Pick<
  FitManyResult,
  'paramNames' | 'm' | 'p' | 'params' | 'stderr' | 'chi2' | 'iterations' | 'nfev' | 'status' | 'statusNames' | 'counts' | 'converged' | 'threads' | 'timing'
>;

/** The .npy inputs, opened and checked against y's shape. */
interface Inputs {
  y: NpyArray;
  x: Record<string, NpyArray> | null;
  sigma: NpyArray | null;
  p0: NpyArray | null;
  all: NpyArray[];
}

async function closeAll(arrays: readonly NpyArray[]): Promise<void> {
  await Promise.all(arrays.map((array) => array.close().catch(() => undefined)));
}

async function openInputs(yPath: string, xFiles: Record<string, string> | undefined, sigmaPath: string | undefined, p0: P0Spec | undefined): Promise<Inputs> {
  const all: NpyArray[] = [];
  const track = async (path: string, field: string): Promise<NpyArray> => {
    const array = await openNpy(path, field);
    all.push(array);
    return array;
  };
  try {
    const y = await track(yPath, 'y');
    if (y.shape.length !== 2) {
      throw new DataError(`${yPath}: shape ${shapeText(y.shape)}: expected a 2-D array of curves x points (one curve per row); for a single curve use 'nlfit fit'`);
    }
    const [m, n] = y.shape as [number, number];
    if (m < 1 || n < 1) throw new DataError(`${yPath}: shape ${shapeText(y.shape)} holds no curves`);
    const curveLike = (array: NpyArray, what: string, sharedAllowed: boolean): void => {
      const shared = array.shape.length === 1 && array.shape[0] === n;
      const perCurve = array.shape.length === 2 && array.shape[0] === m && array.shape[1] === n;
      if (!(perCurve || (sharedAllowed && shared))) {
        throw new DataError(
          `${array.path}: shape ${shapeText(array.shape)} does not match y ${shapeText(y.shape)}: ${what} must have shape (${n},) (shared by every curve) or (${m}, ${n}) (one row per curve)`,
        );
      }
    };
    let x: Record<string, NpyArray> | null = null;
    if (xFiles !== undefined) {
      x = {};
      for (const [name, path] of Object.entries(xFiles)) {
        x[name] = await track(path, `x.${name}`);
        curveLike(x[name]!, `x${name === 'x' ? '' : ` ${name}`}`, true);
      }
    }
    let sigma: NpyArray | null = null;
    if (sigmaPath !== undefined) {
      sigma = await track(sigmaPath, 'sigma');
      curveLike(sigma, 'sigma', true);
    }
    let p0Array: NpyArray | null = null;
    if (p0 !== undefined && 'file' in p0) {
      p0Array = await track(p0.file, 'p0');
      if (p0Array.shape.length === 2 && p0Array.shape[0] !== m) {
        throw new DataError(`${p0.file}: shape ${shapeText(p0Array.shape)}: expected one row of starting values per curve of y (${m} rows)`);
      }
    }
    return { y, x, sigma, p0: p0Array, all };
  } catch (error) {
    await closeAll(all);
    throw error;
  }
}

/** `count` copies of a row of values, back to back, in shared memory. */
function tile(row: Float64Array, count: number): Float64Array {
  const out = new Float64Array(new SharedArrayBuffer(Math.max(1, row.length * count) * 8)).subarray(0, row.length * count);
  for (let i = 0; i < count; i++) out.set(row, i * row.length);
  return out;
}

/** Reads rows [start, end) of every input and returns the data part of fitMany's options. */
async function readInputs(inputs: Inputs, start: number, end: number, p0: P0Spec | undefined): Promise<Pick<FitManyOptions, 'x' | 'y' | 'n' | 'sigma' | 'p0'>> {
  const count = end - start;
  const n = inputs.y.width;
  const y = await inputs.y.readRows(start, end);
  // One x per variable: shared (n values) or per curve (count x n). fitMany wants them all alike.
  let x: Record<string, Float64Array>;
  if (inputs.x === null) {
    x = { x: Float64Array.from({ length: n }, (_, i) => i) };
  } else {
    const arrays = Object.entries(inputs.x);
    const perCurve = arrays.some(([, array]) => array.shape.length === 2);
    x = {};
    for (const [name, array] of arrays) {
      const values = array.shape.length === 2 ? await array.readRows(start, end) : await array.readRows(0, array.rows);
      x[name] = perCurve && array.shape.length === 1 ? tile(values, count) : values;
    }
  }
  const options: Pick<FitManyOptions, 'x' | 'y' | 'n' | 'sigma' | 'p0'> = { x, y, n };
  if (inputs.sigma !== null) {
    const values = inputs.sigma.shape.length === 2 ? await inputs.sigma.readRows(start, end) : tile(await inputs.sigma.readRows(0, inputs.sigma.rows), count);
    options.sigma = values;
  }
  if (inputs.p0 !== null) {
    const file = inputs.p0;
    const values = file.shape.length === 2 ? await file.readRows(start, end) : await file.readRows(0, file.rows);
    const width = file.width;
    for (let k = 0; k < values.length; k++) {
      if (!Number.isFinite(values[k]!)) {
        const where = file.shape.length === 2 ? `row ${start + Math.floor(k / width)}, column ${k % width}` : `index ${k}`;
        throw new DataError(`${file.path}: the starting value at ${where} is ${values[k]}, not a finite number`);
      }
    }
    options.p0 = values;
  } else if (p0 !== undefined && 'values' in p0) {
    options.p0 = p0.values;
  }
  return options;
}

/** The output folder must exist before the fit, not after. */
function checkOutPrefix(prefix: string): void {
  const folder = dirname(prefix);
  let isFolder = false;
  try {
    isFolder = statSync(folder).isDirectory();
  } catch {
    isFolder = false;
  }
  if (!isFolder) throw new UsageError(`--out ${prefix}: the folder '${folder}' does not exist`);
}

/** The progress of the batch on stderr: a live line on a terminal, a line a second in a log. */
class BatchProgress {
  private last = -Infinity;
  private pending: string | null = null;
  private shown = false;

  constructor(
    private readonly stream: { write(text: string): unknown; columns?: number },
    private readonly mode: ProgressMode,
    private readonly label: string,
  ) {}

  readonly onEvent = (event: { done: number; total: number; curvesDone: number; elapsedMs: number }): void => {
    if (this.mode === 'off') return;
    const rate = event.elapsedMs > 0 ? (event.curvesDone / event.elapsedMs) * 1000 : 0;
    this.pending =
      `${this.label}${event.curvesDone} curves done, part ${event.done} of ${event.total} | ${formatRate(rate)} fits/s | ${(event.elapsedMs / 1000).toFixed(2)} s`;
    const now = performance.now();
    if (now - this.last >= (this.mode === 'tty' ? 100 : 1000)) this.flush(now);
  };

  note(text: string): void {
    if (this.mode === 'off') return;
    this.clear();
    this.stream.write(`${text}\n`);
  }

  finish(): void {
    if (this.mode === 'off') return;
    if (this.pending !== null) this.flush(performance.now());
    if (this.shown && this.mode === 'tty') this.stream.write('\n');
    this.shown = false;
  }

  clear(): void {
    if (this.shown && this.mode === 'tty') this.stream.write('\r\x1b[K');
    this.shown = false;
  }

  private flush(now: number): void {
    const line = this.pending;
    if (line === null) return;
    this.pending = null;
    this.last = now;
    if (this.mode === 'tty') {
      const width = this.stream.columns ?? 0;
      this.stream.write(`\r\x1b[K${width > 1 && line.length >= width ? line.slice(0, width - 1) : line}`);
      this.shown = true;
    } else {
      this.stream.write(`${line}\n`);
    }
  }
}

function formatRate(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  return value.toFixed(0);
}

function percent(part: number, whole: number): string {
  if (whole === 0) return '-';
  if (part === whole || part === 0) return part === 0 ? '0%' : '100%';
  // Enough digits that 199999 of 200000 does not read as 100%.
  const value = (100 * part) / whole;
  let digits = 1;
  while (digits < 8 && (Number(value.toFixed(digits)) === 100 || Number(value.toFixed(digits)) === 0)) digits++;
  return `${value.toFixed(digits)}%`;
}

/** A result with no curves: an empty shard (more shards than curves). */
function emptyOutcome(paramNames: string[]): Outcome {
  const p = paramNames.length;
  return {
    paramNames,
    m: 0,
    p,
    params: new Float64Array(0),
    stderr: new Float64Array(0),
    chi2: new Float64Array(0),
    iterations: new Float64Array(0),
    nfev: new Float64Array(0),
    status: new Uint8Array(0),
    statusNames: loadAddon().batchStatusNames,
    counts: {},
    converged: 0,
    threads: 0,
    timing: { totalMs: 0, fitMs: 0, fitsPerSecond: 0 },
  };
}

function outputArray(r: Outcome, key: OutputKey): { values: NpyWritable; shape: number[]; dtype: string } {
  const spec = kOutputs.find((o) => o.key === key)!;
  const shape = spec.perParam ? [r.m, r.p] : [r.m];
  if (key === 'status') return { values: r.status, shape, dtype: spec.dtype };
  if (key === 'iterations' || key === 'nfev') return { values: Int32Array.from(r[key]), shape, dtype: spec.dtype };
  return { values: r[key], shape, dtype: spec.dtype };
}

/** Rows of a row-major M x p array as arrays (for JSON). */
function rowsOf(values: Float64Array, m: number, p: number): number[][] {
  return Array.from({ length: m }, (_, i) => Array.from(values.subarray(i * p, (i + 1) * p)));
}

/** The given flags in job-file form (camelCase keys, absolute paths), for the JSON summary. */
function echoOptions(values: Map<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [flag, value] of values) {
    if (flag === 'json' || flag === 'quiet' || flag === 'progress' || flag === 'help') continue;
    const key = flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (flag === 'x') out[key] = Object.fromEntries(Object.entries(value as Record<string, string>).map(([name, path]) => [name, resolve(path)]));
    else if (flag === 'p0') out[key] = 'file' in (value as P0Spec) ? resolve((value as { file: string }).file) : (value as { values: unknown }).values;
    else if (flag === 'sigma' || flag === 'out') out[key] = resolve(value as string);
    else if (flag === 'shard') out[key] = `${(value as Shard).index}/${(value as Shard).count}`;
    else out[key] = value;
  }
  return out;
}

export async function commandBatch(argv: readonly string[], commandIo: CommandIo, context: FitContext): Promise<number> {
  let io = commandIo;
  const started = performance.now();
  const { positionals, values } = parseArgs(argv, kBatchFlags);
  if (values.get('help') === true) {
    io.out(kBatchHelp);
    return kExitConverged;
  }
  if (positionals.length === 0) throw new UsageError('batch needs the curves: a 2-D .npy file (curves x points), e.g. nlfit batch y.npy --model gaussian --x x.npy');
  if (positionals.length > 1) throw new UsageError(`batch takes one file of curves (y.npy), got ${positionals.length}: ${positionals.join(' ')}; give x with --x`);
  const yPath = positionals[0]!;
  const get = <T>(flag: string): T | undefined => values.get(flag) as T | undefined;
  const on = (flag: string): boolean => values.get(flag) === true;
  const model = get<string>('model');
  if (model === undefined) throw new UsageError(`batch needs --model (an expression such as "a*exp(-b*x)+c", or a catalog model: see 'nlfit models')`);
  if (get('f-scale') !== undefined && (get('loss') ?? 'linear') === 'linear') throw new UsageError('--f-scale applies to a robust --loss (soft_l1, huber, cauchy, arctan)');
  const xFiles = get<Record<string, string>>('x');
  const p0 = get<P0Spec>('p0');
  const sigmaPath = get<string>('sigma');
  let shard = get<Shard>('shard') ?? null;
  // --mpi: the ranks split the curves (each its shard), and rank 0 gathers and writes them.
  let session: RankSession | null = null;
  if (on('mpi')) {
    if (shard !== null) throw new UsageError('--mpi splits the curves over the ranks; give --mpi or --shard, not both');
    const { mpiCommunicator } = await import('../distributed/mpi.js');
    session = new RankSession(mpiCommunicator());
    shard = { index: session.rank, count: session.size };
    if (session.rank > 0) {
      io = { out: () => {}, err: () => {} };
      context.silent = true;
    }
  }
  const outPrefix = get<string>('out');
  const json = on('json');
  const quiet = on('quiet');
  if (outPrefix !== undefined) checkOutPrefix(outPrefix);
  context.dataPaths = [yPath, ...Object.values(xFiles ?? {}), ...(sigmaPath === undefined ? [] : [sigmaPath]), ...(p0 !== undefined && 'file' in p0 ? [p0.file] : [])];

  const cpus = detectCpus();
  const threads = get<number>('threads') ?? cpus.cpus;
  const threadsSource = values.has('threads') ? '--threads' : `${cpus.source}: ${cpus.detail}`;
  const progress = new BatchProgress(
    process.stderr,
    progressMode(process.stderr.isTTY === true, quiet || context.silent === true, on('progress')),
    shard === null ? 'batch: ' : `batch shard ${shard.index}/${shard.count}: `,
  );

  const batchRange = async (): Promise<number> => {
    // Read this range of the curves (and of every per-curve input).
    const inputs = await openInputs(yPath, xFiles, sigmaPath, p0);
    const [totalCurves, n] = inputs.y.shape as [number, number];
    const [start, end] = shardRange(totalCurves, shard);
    let options: FitManyOptions;
    try {
      // An empty shard still checks the options, on the first curve.
      const data = await readInputs(inputs, start === end ? 0 : start, start === end ? 1 : end, p0);
      options = { model, ...data, threads };
    } finally {
      await closeAll(inputs.all);
    }
    const params = get<string[]>('params');
    if (params !== undefined) options.params = params;
    const bounds = get<BoundsSpec>('bounds');
    if (bounds !== undefined) options.bounds = bounds;
    const estimator = get<'lsq' | 'poisson'>('estimator');
    if (estimator !== undefined) options.estimator = estimator;
    const loss = get<(typeof kLosses)[number]>('loss');
    if (loss !== undefined) options.loss = loss;
    const fScale = get<number>('f-scale');
    if (fScale !== undefined) options.fScale = fScale;
    if (on('absolute-sigma')) options.absoluteSigma = true;
    for (const [flag, key] of [['ftol', 'ftol'], ['xtol', 'xtol'], ['gtol', 'gtol'], ['max-fev', 'maxFev']] as const) {
      const value = get<number>(flag);
      if (value !== undefined) options[key] = value;
    }
    const readMs = performance.now() - started;
    progress.note(
      `nlfit: ${yPath}: curves ${start}..${end - 1} of ${totalCurves} (${end - start}), ${n} points each` +
        `${shard === null ? '' : ` (shard ${shard.index}/${shard.count})`}; ${threads} thread${threads === 1 ? '' : 's'} (${threadsSource})`,
    );

    let outcome: Outcome;
    if (start === end) {
      outcome = emptyOutcome(normalizeFitMany(options, threads).paramNames);
    } else {
      const engine = new Engine({ threads });
      let interruption: Interruption | null = null;
      try {
        interruption = interruptOnSignals((signal) => {
          progress.clear();
          if (!quiet) io.err(`nlfit: ${signal}: stopping after the curves being fitted (again to exit at once)`);
        });
        options.signal = interruption.controller.signal;
        options.onProgress = progress.onEvent;
        try {
          outcome = await engine.fitMany(options);
        } finally {
          progress.finish();
        }
      } catch (error) {
        const signal = interruption?.received() ?? null;
        if (signal === null) throw error;
        await session?.fail(error);
        if (!quiet) io.err(`nlfit: interrupted by ${signal}; nothing was written`);
        return kSignalExitCodes[signal];
      } finally {
        interruption?.dispose();
        await engine.close();
      }
    }

    let r = outcome;
    let [first, last] = [start, end];
    if (session) {
      // Every rank's curves, in order (fitting ends when the slowest rank's are in); then rank 0 alone writes.
      r = await gatherFitMany(session, spread(outcome, totalCurves, start));
      session.close();
      [first, last] = [0, totalCurves];
      if (session.rank > 0) return kExitConverged;
    }
    const summary: Record<string, unknown> = {
      command: 'batch',
      y: resolve(yPath),
      model,
      paramNames: r.paramNames,
      points: n,
      curves: { total: totalCurves, start: first, end: last, fitted: r.m },
      shard: shard === null || session ? null : { index: shard.index, count: shard.count },
      ...(session ? { mpi: { ranks: session.size } } : {}),
      statusNames: r.statusNames,
      counts: r.counts,
      converged: r.converged,
      convergedFraction: r.m === 0 ? null : r.converged / r.m,
      threads: r.threads,
      threadsSource,
      timing: { readMs, fitMs: r.timing.fitMs, fitsPerSecond: r.timing.fitsPerSecond, totalMs: 0 },
      options: echoOptions(values),
      exitCode: kExitConverged,
  };

  let written: string[] = [];
  if (outPrefix !== undefined) {
    const files: Record<string, { path: string; shape: number[]; dtype: string }> = {};
    for (const { key } of kOutputs) {
      const { values: array, shape, dtype } = outputArray(r, key);
      const path = `${outPrefix}.${key}.npy`;
      await writeNpyFile(path, array, shape);
      files[key] = { path, shape, dtype };
    }
    summary.files = files;
    (summary.timing as { totalMs: number }).totalMs = performance.now() - started;
    // The JSON last: when it is there, every array is complete.
    await writeTextFile(`${outPrefix}.json`, `${toJson(summary)}\n`);
    written = [...Object.values(files).map((f) => f.path), `${outPrefix}.json`];
  } else {
    (summary.timing as { totalMs: number }).totalMs = performance.now() - started;
  }

  if (json) {
    if (outPrefix === undefined && r.m <= kJsonArraysMaxCurves) {
      summary.params = rowsOf(r.params, r.m, r.p);
      summary.stderr = rowsOf(r.stderr, r.m, r.p);
      summary.chi2 = Array.from(r.chi2);
      summary.iterations = Array.from(r.iterations);
      summary.nfev = Array.from(r.nfev);
      summary.status = Array.from(r.status, (code) => r.statusNames[code] ?? `status_${code}`);
    }
    io.out(toJson(summary));
    return kExitConverged;
  }

  const range = session
    ? `all ${totalCurves} curves of ${yPath}, over ${session.size} MPI ranks`
    : shard === null && start === 0 && end === totalCurves ? `all ${totalCurves} curves of ${yPath}` : `curves ${start}..${end - 1} of ${totalCurves} in ${yPath}${shard === null ? '' : `, shard ${shard.index}/${shard.count}`}`;
  const statuses = Object.entries(r.counts).sort((a, b) => b[1] - a[1]).map(([name, count]) => `${name} ${count}`);
  const lines = [
    `${r.m} curve${r.m === 1 ? '' : 's'} fitted (${range}): ${r.p} parameter${r.p === 1 ? '' : 's'} (${r.paramNames.join(', ')}), ${n} points each`,
    `  converged  ${r.converged} of ${r.m} (${percent(r.converged, r.m)})`,
    `  status     ${statuses.length === 0 ? '-' : statuses.join(', ')}`,
    `  time       ${(r.timing.fitMs / 1000).toFixed(3)} s fitting, ${formatRate(r.timing.fitsPerSecond)} fits/s on ${r.threads} thread${r.threads === 1 ? '' : 's'}`,
  ];
  if (written.length > 0) lines.push(`  written    ${written.join(', ')}`);
  else if (r.m > 0) lines.push('  (--out prefix writes every curve\'s parameters, errors and status as .npy files; --json prints them for up to 1000 curves)');
  io.out(lines.join('\n'));
  return kExitConverged;
  };
  try {
    return await batchRange();
  } catch (error) {
    // A rank's failure reaches the others at their next exchange, so none waits for it.
    await session?.fail(error);
    throw error;
  }
}

/** A range's result placed in arrays for all `total` curves (from curve `start`), for gatherFitMany. */
function spread(r: Outcome, total: number, start: number): Outcome {
  const p = r.p;
  const place = <T extends Float64Array | Uint8Array>(values: T, width: number, make: (n: number) => T): T => {
    const out = make(total * width);
    out.set(values.subarray(0, r.m * width), start * width);
    return out;
  };
  const f64 = (n: number): Float64Array => new Float64Array(n);
  return {
    ...r,
    m: total,
    params: place(r.params, p, f64),
    stderr: place(r.stderr, p, f64),
    chi2: place(r.chi2, 1, f64),
    iterations: place(r.iterations, 1, f64),
    nfev: place(r.nfev, 1, f64),
    status: place(r.status, 1, (n) => new Uint8Array(n)),
  };
}
