/**
 * Buffer-or-spill storage for data that can be read only once: a one-shot
 * stream, and a CSV (parsing text on every pass of a fit would cost more than
 * the fit). Rows are ingested once at open time. While their float64 values
 * fit in `bufferBytes` they stay in memory, in blocks; the first chunk that
 * would overflow the budget moves everything to one spill file (spill.ts),
 * and every later row goes there too. Reads then come from the blocks or from
 * the file, and close() frees the blocks or deletes the file.
 */
import type { ColumnSource, OpenSourceOptions, SourceKind } from '../source.js';
import { invalidType } from '../../errors.js';
import { kPieceBytes, readRows } from './positionedRead.js';
import { checkReadRequest } from './readRequest.js';
import { SpillFile } from './spill.js';
import { sourceClosed } from './sourceErrors.js';

/** Checks OpenSourceOptions: bufferBytes a non-negative number, tmpDir absent or a non-empty string. */
export function checkOpenSourceOptions(options: unknown): OpenSourceOptions {
  if (options === null || typeof options !== 'object') throw invalidType('source options', 'object', options);
  const { bufferBytes, tmpDir } = options as Record<string, unknown>;
  if (typeof bufferBytes !== 'number' || !(bufferBytes >= 0)) {
    throw invalidType('bufferBytes', 'non-negative number', bufferBytes);
  }
  if (tmpDir !== undefined && (typeof tmpDir !== 'string' || tmpDir === '')) {
    throw invalidType('tmpDir', 'non-empty string', tmpDir);
  }
  return tmpDir === undefined ? { bufferBytes } : { bufferBytes, tmpDir };
}

type NumericArray =
  | Float64Array
  | Float32Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray;

/** Copies source[from .. from + n) to target[at ..). */
function copyValues(target: Float64Array, at: number, source: ArrayLike<number>, from: number, n: number): void {
  if (ArrayBuffer.isView(source)) target.set((source as NumericArray).subarray(from, from + n), at);
  else for (let i = 0; i < n; i++) target[at + i] = source[from + i]!;
}

/** Rows that were ingested once, read back by row range. */
export interface RowStore {
  readonly nRows: number;
  /** Rows [start, start + count) into targets[j][0 .. count) for each column j with a target. */
  read(start: number, count: number, targets: readonly (Float64Array | undefined)[]): Promise<void>;
  /** Frees the memory or deletes the spill file. Idempotent. */
  close(): Promise<void>;
}

/** Rows held in memory as blocks, each one Float64Array per column. */
class BufferedRows implements RowStore {
  readonly nRows: number;
  #blocks: (readonly Float64Array[])[];
  /** First row of each block. */
  readonly #starts: number[];

  constructor(blocks: (readonly Float64Array[])[], nRows: number) {
    this.nRows = nRows;
    this.#blocks = blocks;
    this.#starts = [];
    let row = 0;
    for (const block of blocks) {
      this.#starts.push(row);
      row += block[0]!.length;
    }
  }

  async read(start: number, count: number, targets: readonly (Float64Array | undefined)[]): Promise<void> {
    // The last block starting at or before `start`.
    let lo = 0;
    let hi = this.#starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#starts[mid]! <= start) lo = mid;
      else hi = mid - 1;
    }
    for (let done = 0, b = lo; done < count; b++) {
      const block = this.#blocks[b]!;
      const from = start + done - this.#starts[b]!;
      const n = Math.min(block[0]!.length - from, count - done);
      targets.forEach((into, j) => into?.set(block[j]!.subarray(from, from + n), done));
      done += n;
    }
  }

  async close(): Promise<void> {
    this.#blocks = [];
  }
}

/** Rows in a spill file. */
class SpilledRows implements RowStore {
  readonly nRows: number;
  readonly #spill: SpillFile;

  constructor(spill: SpillFile, nRows: number) {
    this.#spill = spill;
    this.nRows = nRows;
  }

  read(start: number, count: number, targets: readonly (Float64Array | undefined)[]): Promise<void> {
    return readRows(this.#spill.layout, start, count, targets);
  }

  close(): Promise<void> {
    return this.#spill.remove();
  }
}

/**
 * Takes rows in chunks (one array per column, any lengths) and produces a
 * RowStore. Call abort() if ingestion fails, so a spill file never outlives
 * the error.
 */
export class RowStoreWriter {
  readonly #width: number;
  readonly #budgetRows: number;
  readonly #tmpDir: string | undefined;
  /** Full blocks, then the block being filled (#openBlock, #openRows filled). */
  #blocks: (readonly Float64Array[])[] = [];
  #openBlock: Float64Array[] | null = null;
  #openRows = 0;
  #bufferedRows = 0;
  #spill: SpillFile | null = null;
  #rows = 0;

  constructor(width: number, options: OpenSourceOptions) {
    this.#width = width;
    this.#budgetRows = Math.floor(options.bufferBytes / (8 * width));
    this.#tmpDir = options.tmpDir;
  }

  /** Appends `rows` rows: columns[j][0 .. rows) is column j. The arrays may be reused once this resolves. */
  async append(columns: readonly ArrayLike<number>[], rows: number): Promise<void> {
    if (rows === 0) return;
    if (!this.#spill && this.#bufferedRows + rows > this.#budgetRows) await this.#startSpill();
    if (this.#spill) await this.#spill.append(columns, 0, rows);
    else this.#buffer(columns, rows);
    this.#rows += rows;
  }

  #buffer(columns: readonly ArrayLike<number>[], rows: number): void {
    const width = this.#width;
    const blockRows = Math.max(1, Math.floor(kPieceBytes / (8 * width)));
    for (let from = 0; from < rows; ) {
      if (!this.#openBlock || this.#openRows === this.#openBlock[0]!.length) {
        if (this.#openBlock) this.#blocks.push(this.#openBlock);
        // Never allocate past the budget: the last block is only as long as what is left of it.
        const capacity = Math.min(blockRows, this.#budgetRows - this.#bufferedRows);
        this.#openBlock = Array.from({ length: width }, () => new Float64Array(capacity));
        this.#openRows = 0;
      }
      const n = Math.min(rows - from, this.#openBlock[0]!.length - this.#openRows);
      for (let j = 0; j < width; j++) copyValues(this.#openBlock[j]!, this.#openRows, columns[j]!, from, n);
      this.#openRows += n;
      this.#bufferedRows += n;
      from += n;
    }
  }

  /** The rows held in memory so far, the open block trimmed to its filled part. */
  #bufferedBlocks(): (readonly Float64Array[])[] {
    const blocks = this.#blocks;
    if (this.#openBlock && this.#openRows > 0) blocks.push(this.#openBlock.map((c) => c.subarray(0, this.#openRows)));
    this.#blocks = [];
    this.#openBlock = null;
    this.#openRows = 0;
    this.#bufferedRows = 0;
    return blocks;
  }

  async #startSpill(): Promise<void> {
    // Own the file before the first write, so abort() deletes it if a write fails.
    this.#spill = await SpillFile.create(this.#tmpDir, this.#width);
    const blocks = this.#bufferedBlocks();
    while (blocks.length > 0) {
      const block = blocks.shift()!;
      await this.#spill.append(block, 0, block[0]!.length);
    }
  }

  /** The store of everything appended. */
  finish(): RowStore {
    if (this.#spill) return new SpilledRows(this.#spill, this.#rows);
    return new BufferedRows(this.#bufferedBlocks(), this.#rows);
  }

  /** Drops what was ingested and deletes the spill file, if any. */
  async abort(): Promise<void> {
    this.#bufferedBlocks();
    await this.#spill?.remove();
  }
}

/** A ColumnSource over a RowStore (a CSV file or a one-shot stream, ingested once). */
export class StoredSource implements ColumnSource {
  readonly kind: SourceKind;
  readonly columns: readonly string[];
  readonly nRows: number;
  readonly description: string;
  readonly #store: RowStore;
  #closing: Promise<void> | null = null;

  constructor(kind: SourceKind, description: string, columns: readonly string[], store: RowStore) {
    this.kind = kind;
    this.description = description;
    this.columns = Object.freeze([...columns]);
    this.nRows = store.nRows;
    this.#store = store;
  }

  async read(start: number, count: number, into: Readonly<Record<string, Float64Array>>): Promise<void> {
    if (this.#closing) throw sourceClosed(this.description);
    const request = checkReadRequest(this.columns, this.nRows, start, count, into);
    const targets = new Array<Float64Array | undefined>(this.columns.length).fill(undefined);
    for (const { column, into: values } of request) targets[column] = values;
    await this.#store.read(start, count, targets);
  }

  close(): Promise<void> {
    this.#closing ??= this.#store.close();
    return this.#closing;
  }
}
