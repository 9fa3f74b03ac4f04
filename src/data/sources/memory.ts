/**
 * In-memory columns as a ColumnSource, for code that reads every kind of
 * data through one interface. The arrays are referenced, not copied; read()
 * copies the requested rows out, converting float32 and plain numbers to
 * float64.
 */
import type { ColumnSource } from '../source.js';
import { checkColumn } from '../columns.js';
import { invalidInput, invalidType } from '../../errors.js';
import { checkReadRequest } from './readRequest.js';
import { sourceClosed } from './sourceErrors.js';

type MemoryColumn = Float64Array | Float32Array | number[];

class MemorySource implements ColumnSource {
  readonly kind = 'memory';
  readonly columns: readonly string[];
  readonly nRows: number;
  readonly description: string;
  readonly #values: readonly MemoryColumn[];
  #closed = false;

  constructor(columns: readonly string[], values: readonly MemoryColumn[], nRows: number) {
    this.columns = Object.freeze([...columns]);
    this.#values = values;
    this.nRows = nRows;
    this.description = `in-memory columns (${columns.join(', ')})`;
  }

  async read(start: number, count: number, into: Readonly<Record<string, Float64Array>>): Promise<void> {
    if (this.#closed) throw sourceClosed(this.description);
    for (const { column, into: target } of checkReadRequest(this.columns, this.nRows, start, count, into)) {
      const values = this.#values[column]!;
      if (Array.isArray(values)) for (let i = 0; i < count; i++) target[i] = values[start + i]!;
      else target.set(values.subarray(start, start + count));
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

/**
 * A source over named in-memory columns of one length.
 *
 *   const source = memorySource({ x: [0, 1, 2], y: new Float64Array([1, 2.7, 7.4]) });
 */
export function memorySource(columns: Record<string, Float64Array | Float32Array | number[]>): ColumnSource {
  if (columns === null || typeof columns !== 'object' || Array.isArray(columns)) {
    throw invalidType('data', 'object of named columns ({ x, y })', columns);
  }
  const entries = Object.entries(columns);
  if (entries.length === 0) throw invalidInput('data', 'no columns are given');
  let nRows = -1;
  for (const [name, values] of entries) {
    const length = checkColumn(values, `data.${name}`);
    if (nRows === -1) nRows = length;
    else if (length !== nRows) {
      throw invalidInput(`data.${name}`, `column '${name}' has ${length} values but column '${entries[0]![0]}' has ${nRows}`);
    }
  }
  return new MemorySource(
    entries.map(([name]) => name),
    entries.map(([, values]) => values),
    nRows,
  );
}
