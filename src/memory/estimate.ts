/**
 * What a fit costs in memory, for this engine.
 *
 * No m x p Jacobian ever exists: the kernel evaluates 512-row blocks and
 * reduces each to a (p+1) x (p+1) QR factor, so memory is the data columns
 * plus a few megabytes per worker thread. The prediction, for one fit in a
 * process that has nlfit loaded and nothing else:
 *
 *   peakBytes = data columns           nPoints x (nVariables + 1 + weighted) x 8
 *                                      (in-memory strategies; 0 when already resident)
 *             + worker threads         threads x 10 MiB (the pool's, when not 'standard')
 *             + block scratch          per evaluating thread, from the model's size
 *             + first-pass moments     3 doubles per 512-point block
 *             + fit overhead           3 MiB (addon on the calling thread, compiled
 *                                      model, solver state, result)
 *             + streaming ring         chunksInFlight x chunkSize x columns x 8
 *                                      (streaming only)
 *
 * peakBytes is the increase of the process's peak RSS caused by the fit
 * (loading the columns included). It is what has to fit in the available
 * memory (limits.ts), which is measured above the process's current
 * footprint. predictPeakRss() adds the idle footprint of a Node process with
 * nlfit imported (kIdleRssBytes) to give the absolute peak RSS, the number the
 * benchmark reports.
 *
 * Checked against measurement (Node 20.20, Linux x86-64, 2 cores): peak RSS
 * (VmHWM) of a fresh process per row that imports nlfit, reads x and y into
 * SharedArrayBuffers, starts Engine({ threads }) and warms it up ('chunked'),
 * then fits 'a*exp(-b*x)+c' six times as the benchmark runner does (one
 * untimed and five timed fits; bench/runners/nlfit.js). Script:
 * /tmp/nlfit-mem/measure.mjs <n> <threads> <strategy> runs one case and
 * /tmp/nlfit-mem/table.mjs runs them all and prints this table (the data are
 * the benchmark's exp3 columns written by /tmp/nlfit-mem/gen.mjs with
 * dist/data/synthetic.js, seed 7). MB = 2^20 bytes.
 *
 *   points  strategy   threads  measured MB  predicted MB  error
 *   1e4     chunked          1         64.5          64.3  -0.3%
 *   1e5     chunked          1         66.0          65.7  -0.5%
 *   1e6     chunked          1         80.0          79.4  -0.7%
 *   1e7     chunked          1        219.8         217.2  -1.2%
 *   1e4     chunked          2         73.5          74.4  +1.3%
 *   1e5     chunked          2         75.5          75.8  +0.4%
 *   1e6     chunked          2         89.4          89.6  +0.2%
 *   1e7     chunked          2        229.3         227.3  -0.9%
 *   1e4     standard         1         53.5          54.3  +1.5%
 *   1e5     standard         1         54.9          55.7  +1.4%
 *   1e6     standard         1         68.9          69.4  +0.8%
 *   1e7     standard         1        208.7         207.2  -0.7%
 *
 * Streaming, checked the same way with one fit from the raw files
 * (/tmp/nlfit-mem/stream.mjs <n> <threads> <memoryLimitMb>: the fit decides
 * by memory, the prediction uses decide()'s chunkSize and chunksInFlight):
 *
 *   1e7 points, 2 threads, memoryLimitMb 100: 419840-point chunks, 4 in flight,
 *     measured 100.9 MB, predicted 100.4 MB (-0.5%)
 *   1e7 points, 1 thread, memoryLimitMb 60: 343040-point chunks, 3 in flight,
 *     measured 83.2 MB, predicted 80.3 MB (-3.5%)
 *
 * The prediction is for one fit; each further fit in a process leaves its
 * first-pass moments (0.45 MB at 1e7 points) until the garbage collector
 * runs, about 2 MB of the 1e7 rows above.
 * The worker term is the RSS step of engine.warmup(): 10.3 MB for one
 * thread, 19.1 MB for two. The idle footprint (51 MB) and the fit overhead
 * follow the library's size: re-measure them when it changes much.
 */
import { invalidRange, invalidType } from '../errors.js';
import { kBlockSize } from '../exec/layout.js';
import { kInlineMaxPoints } from '../options.js';
import { kMiB } from './format.js';
import { availableMemory, type MemoryEnvironment, type MemorySource } from './limits.js';

export type ExecutionStrategy = 'standard' | 'chunked' | 'streaming';

/** RSS of an idle Node 20 process with nlfit imported (addon not yet loaded). */
export const kIdleRssBytes = 51 * kMiB;
/** RSS one started pool worker thread adds: its isolate, the addon, its kernel. */
export const kWorkerRssBytes = 10 * kMiB;
/** What one fit adds besides data, workers and buffers: the addon on the calling thread, compiled model, solver state. */
export const kFitOverheadBytes = 3 * kMiB;
/** Default share of the available memory a fit plans to use. */
export const kDefaultSafetyFactor = 0.75;
/** Smallest chunk the engine plans with (64 blocks); smaller chunks cost more in task round trips than they save. */
export const kMinChunkPoints = 64 * kBlockSize;
/**
 * Scratch columns of kBlockSize doubles one evaluating thread holds per model
 * parameter (+1 for the residual): the block matrix [J | r], its QR workspace
 * and the VM's registers with their tangents. An upper bound for the catalog's
 * models; it is a few hundred kilobytes, small beside the data and the threads.
 */
const kScratchColumnsPerParam = 8;
/** Scratch columns independent of the parameters: staged variables' temporaries, y, weights. */
const kScratchFixedColumns = 4;

export interface EstimateOptions {
  nPoints: number;
  nParams: number;
  /** Variable columns the model reads (not y or sigma). */
  nVariables: number;
  /** Worker threads the fit would use. */
  threads: number;
  /** A sigma column is read too. Default false. */
  weighted?: boolean;
  /** The user's budget above the current footprint, MB (2^20 bytes). */
  memoryLimitMb?: number;
  /** Share of the available memory the fit plans to use, in (0, 1]. Default 0.75. */
  safetyFactor?: number;
  /** The strategy to estimate. Default: 'standard' up to 65536 points, else 'chunked'. */
  strategy?: ExecutionStrategy;
  /** Points per streamed chunk (streaming). Default kMinChunkPoints. */
  chunkSize?: number;
  /** Chunk buffers in flight (streaming). Default threads + 2. */
  chunksInFlight?: number;
  /** The columns are already in this process's memory, so loading them adds nothing. Default false. */
  dataResident?: boolean;
  /** The machine, for deterministic tests; defaults read the real one. */
  environment?: MemoryEnvironment;
}

export interface MemoryBudget {
  /** The strategy this budget is for. */
  strategy: ExecutionStrategy;
  /** Bytes the fit may add to the process (limits.ts availableMemory). */
  availableBytes: number;
  /** availableBytes x safetyFactor: what the plan may use. */
  thresholdBytes: number;
  /** The data columns, bytes (whether or not the plan loads them). */
  dataBytes: number;
  /** Everything in peakBytes except the data columns, bytes. */
  workingBytes: number;
  /** Predicted increase of the peak RSS caused by the fit: the sum of `breakdown`. */
  peakBytes: number;
  /** peakBytes <= thresholdBytes. */
  fitsInMemory: boolean;
  /** dataBytes <= thresholdBytes. */
  dataFits: boolean;
  safetyFactor: number;
  source: MemorySource;
  /** How availableBytes was found. */
  detail: string;
  /** The terms of peakBytes. */
  breakdown: { label: string; bytes: number }[];
}

function positiveInteger(value: unknown, field: string): number {
  if (typeof value !== 'number') throw invalidType(field, 'positive integer', value);
  if (!Number.isInteger(value) || value < 1) throw invalidRange(field, 'positive integer', value);
  return value;
}

function nonNegativeInteger(value: unknown, field: string): number {
  if (typeof value !== 'number') throw invalidType(field, 'integer >= 0', value);
  if (!Number.isInteger(value) || value < 0) throw invalidRange(field, 'integer >= 0', value);
  return value;
}

/** Checks the sizes every estimate needs; throws TypeError/RangeError naming the field. */
export function checkSizes(options: { nPoints: unknown; nParams: unknown; nVariables: unknown; threads: unknown }): void {
  positiveInteger(options.nPoints, 'nPoints');
  positiveInteger(options.nParams, 'nParams');
  nonNegativeInteger(options.nVariables, 'nVariables');
  positiveInteger(options.threads, 'threads');
}

/** Checks a safety factor: a number in (0, 1]. */
export function checkSafetyFactor(value: unknown): number {
  if (value === undefined) return kDefaultSafetyFactor;
  if (typeof value !== 'number') throw invalidType('safetyFactor', 'number in (0, 1]', value);
  if (!(value > 0 && value <= 1)) throw invalidRange('safetyFactor', 'number in (0, 1]', value);
  return value;
}

/** Columns a pass reads: the variables, y, and sigma when weighted. */
export function columnCount(nVariables: number, weighted: boolean): number {
  return nVariables + 1 + (weighted ? 1 : 0);
}

/** Bytes of the data columns as float64. */
export function dataBytesOf(nPoints: number, nVariables: number, weighted: boolean): number {
  return nPoints * columnCount(nVariables, weighted) * Float64Array.BYTES_PER_ELEMENT;
}

/** The strategy 'auto' uses for data in memory: the calling thread up to kInlineMaxPoints, else the pool. */
export function inMemoryStrategy(nPoints: number): 'standard' | 'chunked' {
  return nPoints <= kInlineMaxPoints ? 'standard' : 'chunked';
}

function blockScratchBytes(nParams: number, nVariables: number): number {
  const columns = nVariables + kScratchFixedColumns + kScratchColumnsPerParam * (nParams + 1);
  return columns * kBlockSize * Float64Array.BYTES_PER_ELEMENT;
}

/**
 * The memory arithmetic of one fit: what it needs (peakBytes, with its
 * breakdown) against what the machine has (availableBytes, from the
 * container, the user's memoryLimitMb and free memory). Throws TypeError or
 * RangeError for invalid sizes.
 *
 *   const budget = estimateMemory({ nPoints: 1e7, nParams: 3, nVariables: 1, threads: 2 });
 *   budget.peakBytes;    // about 176 MB: 153 MB of columns, 20 MB for 2 workers, moments, overhead
 *   budget.fitsInMemory; // peakBytes <= 75% of the available memory
 */
export function estimateMemory(options: EstimateOptions): MemoryBudget {
  const nPoints = positiveInteger(options.nPoints, 'nPoints');
  const nParams = positiveInteger(options.nParams, 'nParams');
  const nVariables = nonNegativeInteger(options.nVariables, 'nVariables');
  const threads = positiveInteger(options.threads, 'threads');
  const weighted = options.weighted ?? false;
  const safetyFactor = checkSafetyFactor(options.safetyFactor);
  const strategy = options.strategy ?? inMemoryStrategy(nPoints);
  if (strategy !== 'standard' && strategy !== 'chunked' && strategy !== 'streaming') {
    throw invalidType('strategy', "'standard', 'chunked' or 'streaming'", strategy);
  }
  const available = availableMemory({ ...options.environment, memoryLimitMb: options.memoryLimitMb });

  const dataBytes = dataBytesOf(nPoints, nVariables, weighted);
  const evaluatingThreads = strategy === 'standard' ? 1 : threads;
  const breakdown: { label: string; bytes: number }[] = [];
  if (strategy !== 'streaming' && !options.dataResident) {
    breakdown.push({ label: `data columns (${columnCount(nVariables, weighted)} x ${nPoints} float64)`, bytes: dataBytes });
  }
  if (strategy !== 'standard') breakdown.push({ label: `worker threads (${threads})`, bytes: threads * kWorkerRssBytes });
  breakdown.push({ label: `block scratch (${evaluatingThreads} thread${evaluatingThreads === 1 ? '' : 's'})`, bytes: evaluatingThreads * blockScratchBytes(nParams, nVariables) });
  breakdown.push({ label: 'first-pass moments', bytes: 3 * Math.ceil(nPoints / kBlockSize) * Float64Array.BYTES_PER_ELEMENT });
  breakdown.push({ label: 'fit overhead', bytes: kFitOverheadBytes });
  if (strategy === 'streaming') {
    const chunkSize = options.chunkSize === undefined ? kMinChunkPoints : positiveInteger(options.chunkSize, 'chunkSize');
    const chunksInFlight = options.chunksInFlight === undefined ? threads + 2 : positiveInteger(options.chunksInFlight, 'chunksInFlight');
    const chunkRows = Math.ceil(chunkSize / kBlockSize) * kBlockSize;
    breakdown.push({
      label: `streaming ring (${chunksInFlight} x ${chunkRows} points)`,
      bytes: chunksInFlight * dataBytesOf(chunkRows, nVariables, weighted),
    });
  }

  const peakBytes = breakdown.reduce((sum, term) => sum + term.bytes, 0);
  const loaded = strategy !== 'streaming' && !options.dataResident ? dataBytes : 0;
  const thresholdBytes = available.availableBytes * safetyFactor;
  return {
    strategy,
    availableBytes: available.availableBytes,
    thresholdBytes,
    dataBytes,
    workingBytes: peakBytes - loaded,
    peakBytes,
    fitsInMemory: peakBytes <= thresholdBytes,
    dataFits: dataBytes <= thresholdBytes,
    safetyFactor,
    source: available.source,
    detail: available.detail,
    breakdown,
  };
}

/**
 * The absolute peak RSS of a process that starts idle with nlfit imported,
 * loads the columns and fits once: kIdleRssBytes (or `idleRssBytes`) +
 * peakBytes. This is the number checked against the benchmark's measured peak
 * RSS (see the table above).
 */
export function predictPeakRss(options: Omit<EstimateOptions, 'dataResident'> & { idleRssBytes?: number }): number {
  const { idleRssBytes = kIdleRssBytes, ...rest } = options;
  return idleRssBytes + estimateMemory(rest).peakBytes;
}
