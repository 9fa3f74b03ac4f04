/**
 * The contract between where data lives and the passes that read it. A
 * ColumnSource is a table of named float64 columns of one length that can be
 * read a row range at a time; in-memory arrays, .npy and raw binary files, CSV
 * and one-shot streams (src/data/sources/) all present it. The streaming
 * evaluator reads it chunk by chunk on every pass; a source that fits the
 * memory budget is read once, whole, into shared memory.
 */

/** How a source keeps its values on disk (or in memory). */
export type SourceKind = 'memory' | 'npy' | 'binary' | 'csv' | 'stream';

export interface ColumnSource {
  readonly kind: SourceKind;
  /** Column names, in the source's order. */
  readonly columns: readonly string[];
  /** Rows in every column. */
  readonly nRows: number;
  /** Where the values come from, for messages ("x.npy, y.npy", "data.csv", "an async iterable"). */
  readonly description: string;
  /**
   * Copies rows [start, start + count) of the named columns, converted to
   * float64, into `into[name][0 .. count)` (arrays may be views of
   * SharedArrayBuffers and longer than count). Reads may run concurrently with
   * passes but a source serves one read at a time; callers await each read.
   * Rejects with a clear error naming the file for I/O failures or a short file.
   */
  read(start: number, count: number, into: Readonly<Record<string, Float64Array>>): Promise<void>;
  /** Releases file handles and removes any temporary file. Idempotent; safe after a failed read. */
  close(): Promise<void>;
}

/** What opening a source may use: memory for buffering a one-shot stream, and where to spill. */
export interface OpenSourceOptions {
  /** Bytes a one-shot stream or CSV may hold in memory before it spills to a temporary file. */
  bufferBytes: number;
  /** Directory for spill files (default os.tmpdir()). */
  tmpDir?: string;
}
