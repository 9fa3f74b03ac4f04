/**
 * Export of a fit's fitted values and residuals to CSV (optionally gzip),
 * one chunk of rows at a time, so the data never has to fit in memory.
 *
 * The bytes depend only on the data, the model values and the columns asked
 * for: never on the chunk size or on whether the fit ran in memory or
 * streaming. Chunks are whole 512-row blocks, so the model is evaluated on the
 * same blocks the fit uses; numbers are printed by String() (the shortest
 * representation that reads back to the same double); gzip runs at a fixed
 * level and its header carries no file name and a zero mtime.
 *
 * The output goes to `<path>.partial-<pid>-<random>` and is renamed to `path`
 * only once it is complete and synced; a failure removes the partial file, so
 * `path` holds either the previous file or the whole new one.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { invalidInput, invalidRange, invalidType } from '../errors.js';
import type { NormalizedExport } from './exportSpec.js';

export { normalizeExportSpec, type ExportSpec, type NormalizedExport } from './exportSpec.js';
import { checkLayout, kBlockSize } from '../exec/layout.js';
import { loadAddon } from '../native.js';

/** Model values for `count` rows whose variable columns are given (in the model's variable order), into out. */
export type PredictFunction = (vars: Float64Array[], count: number, out: Float64Array) => void;

/** What writeExport reads: the fit's data and model, chunk by chunk. */
export interface ExportJob {
  nPoints: number;
  /** Reads rows [start, start+count) of the named columns (variables, 'y', 'sigma') into fresh or given arrays. */
  readRows(start: number, count: number): Promise<Record<string, Float64Array>>;
  predict: PredictFunction;
  /** The model's variable names, in the order predict expects. */
  variables: string[];
  weighted: boolean;
}

export interface ExportOptions {
  /** Rows per chunk, rounded up to whole blocks of 512. Default 65536. Never changes the bytes. */
  chunkRows?: number;
}

export const kDefaultExportChunkRows = 1 << 16;
/** zlib's default trade-off; fixed so that the same rows always give the same bytes. */
export const kExportGzipLevel = 6;

function exportChunkRows(value: unknown): number {
  if (value === undefined) return kDefaultExportChunkRows;
  if (typeof value !== 'number') throw invalidType('chunkRows', 'positive integer', value);
  if (!Number.isSafeInteger(value) || value < 1) throw invalidRange('chunkRows', 'positive integer', value);
  return Math.ceil(value / kBlockSize) * kBlockSize;
}

function checkJob(spec: NormalizedExport, job: ExportJob): void {
  if (!Number.isSafeInteger(job.nPoints) || job.nPoints < 0) throw invalidRange('nPoints', 'integer >= 0', job.nPoints);
  if (!job.weighted) {
    const needsSigma = spec.columns.findIndex((name) => name === 'sigma' || name === 'weighted_residual');
    if (needsSigma >= 0) {
      throw invalidInput(`export.columns[${needsSigma}]`, `'${spec.columns[needsSigma]}' needs sigma, and the fit is unweighted`);
    }
  }
}

/**
 * One chunk's output columns, in spec order. The computed columns live in
 * buffers of one chunk that are reused, so memory does not grow with the data.
 */
class ChunkColumns {
  readonly #spec: NormalizedExport;
  readonly #job: ExportJob;
  readonly #fitted: Float64Array;
  readonly #residual: Float64Array;
  readonly #weightedResidual: Float64Array;

  constructor(spec: NormalizedExport, job: ExportJob, chunkRows: number) {
    this.#spec = spec;
    this.#job = job;
    const rows = Math.min(chunkRows, job.nPoints);
    this.#fitted = new Float64Array(rows);
    this.#residual = new Float64Array(spec.columns.includes('residual') ? rows : 0);
    this.#weightedResidual = new Float64Array(spec.columns.includes('weighted_residual') ? rows : 0);
  }

  /** Reads rows [start, start+count), evaluates the model on them and returns the columns to print. */
  async compute(start: number, count: number): Promise<Float64Array[]> {
    const rows = await this.#job.readRows(start, count);
    const column = (name: string): Float64Array => {
      const values = rows[name];
      if (!(values instanceof Float64Array) || values.length < count) {
        throw invalidInput('export', `readRows(${start}, ${count}) returned ${values === undefined ? 'no' : 'a short'} column '${name}'`);
      }
      return values;
    };
    const y = column('y');
    const fitted = this.#fitted;
    this.#job.predict(this.#job.variables.map(column), count, fitted);
    if (this.#residual.length > 0) {
      for (let i = 0; i < count; i++) this.#residual[i] = y[i]! - fitted[i]!;
    }
    if (this.#weightedResidual.length > 0) {
      const sigma = column('sigma');
      for (let i = 0; i < count; i++) this.#weightedResidual[i] = (y[i]! - fitted[i]!) / sigma[i]!;
    }
    return this.#spec.columns.map((name) => {
      if (name === 'fitted') return fitted;
      if (name === 'residual') return this.#residual;
      if (name === 'weighted_residual') return this.#weightedResidual;
      return column(name);
    });
  }
}

/** CSV text of rows [0, count) of the columns: String() of each value, ',' between, '\n' after each row. */
function formatRows(columns: Float64Array[], count: number): string {
  const last = columns.length - 1;
  const lastColumn = columns[last]!;
  let text = '';
  for (let i = 0; i < count; i++) {
    for (let c = 0; c < last; c++) text += `${String(columns[c]![i])},`;
    text += `${String(lastColumn[i])}\n`;
  }
  return text;
}

async function* csvText(spec: NormalizedExport, job: ExportJob, chunkRows: number): AsyncGenerator<string> {
  yield `${spec.columns.join(',')}\n`;
  const chunk = new ChunkColumns(spec, job, chunkRows);
  for (let start = 0; start < job.nPoints; start += chunkRows) {
    const count = Math.min(chunkRows, job.nPoints - start);
    yield formatRows(await chunk.compute(start, count), count);
  }
}

/**
 * A Writable over an open file that syncs it when the stream ends, so the
 * rename that follows never publishes data still in the page cache. The caller
 * closes the handle (a stream from handle.createWriteStream() would hold it
 * open until the stream itself closes it, which leaves no point to sync).
 */
class SyncedFileSink extends Writable {
  bytesWritten = 0;
  readonly #handle: FileHandle;

  constructor(handle: FileHandle) {
    super();
    this.#handle = handle;
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.#writeAll(chunks.map(({ chunk }) => chunk)).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#handle.sync().then(() => callback(), callback);
  }

  async #writeAll(buffers: Buffer[]): Promise<void> {
    for (const buffer of buffers) {
      // A write may be partial (a signal, a nearly full disk): continue from where it stopped.
      for (let offset = 0; offset < buffer.length; ) {
        const { bytesWritten } = await this.#handle.write(buffer, offset, buffer.length - offset);
        offset += bytesWritten;
      }
      this.bytesWritten += buffer.length;
    }
  }
}

function unwritable(path: string, cause: unknown): RangeError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  const error = invalidInput('export.path', `cannot write '${path}': ${detail}`);
  error.cause = cause;
  return error;
}

/**
 * Writes the export described by `spec`, reading the data chunk by chunk.
 * Memory holds one chunk and the write stream's buffer: pipeline() asks the
 * generator for the next chunk only once the previous one has drained, so a
 * slow disk slows the export down instead of filling memory. Resolves to the
 * data rows written and the file's size in bytes; on failure no file is left
 * at `spec.path`'s partial name and `spec.path` is untouched.
 * @example
 * const spec = normalizeExportSpec({ path: 'fit.csv' }, { variables: ['x'], weighted: false });
 * const { rows, bytes } = await writeExport(spec, {
 *   nPoints: x.length,
 *   readRows: async (start, count) => ({ x: x.subarray(start, start + count), y: y.subarray(start, start + count) }),
 *   predict: predictWithKernel(model.code, model.consts, params),
 *   variables: model.variableNames,
 *   weighted: false,
 * });
 */
export async function writeExport(
  spec: NormalizedExport,
  job: ExportJob,
  options?: ExportOptions,
): Promise<{ rows: number; bytes: number }> {
  const chunkRows = exportChunkRows(options?.chunkRows);
  checkJob(spec, job);
  const partial = `${spec.path}.partial-${process.pid}-${randomBytes(6).toString('hex')}`;
  let handle: FileHandle;
  try {
    handle = await open(partial, 'wx');
  } catch (error) {
    throw unwritable(spec.path, error);
  }
  try {
    const file = new SyncedFileSink(handle);
    const text = csvText(spec, job, chunkRows);
    if (spec.gzip) await pipeline(text, createGzip({ level: kExportGzipLevel }), file);
    else await pipeline(text, file);
    await handle.close();
    try {
      await rename(partial, spec.path);
    } catch (error) {
      throw unwritable(spec.path, error);
    }
    return { rows: job.nPoints, bytes: file.bytesWritten };
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(partial, { force: true }).catch(() => undefined);
    throw error;
  }
}

/**
 * A predict function for writeExport backed by the native kernel: the model
 * `code`/`consts` (compileModel) at the parameters `params`, which are copied.
 * @example
 * const model = compileModel('a*exp(-b*x)+c', { params: ['a', 'b', 'c'], columns: ['x', 'y'], reserved: ['y', 'sigma'] });
 * const predict = predictWithKernel(model.code, model.consts, Float64Array.of(2, 0.5, 1));
 */
export function predictWithKernel(code: Int32Array, consts: Float64Array, params: Float64Array): PredictFunction {
  if (!(code instanceof Int32Array)) throw invalidType('code', 'Int32Array', code);
  if (!(consts instanceof Float64Array)) throw invalidType('consts', 'Float64Array', consts);
  if (!(params instanceof Float64Array)) throw invalidType('params', 'Float64Array', params);
  const addon = loadAddon();
  checkLayout(addon);
  const kernel = new addon.Kernel(code, consts);
  if (params.length !== kernel.nParams) {
    throw invalidInput('params', `the model has ${kernel.nParams} parameters but ${params.length} values were given`);
  }
  const fixedParams = Float64Array.from(params);
  return (vars, count, out) => kernel.predict(fixedParams, vars, 0, count, out);
}
