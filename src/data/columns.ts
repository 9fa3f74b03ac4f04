/**
 * In-memory columns: accepted types and the conversion to float64 columns in
 * SharedArrayBuffers, so worker threads read them without copies. A
 * Float64Array already backed by a SharedArrayBuffer is used as it is;
 * anything else is copied once.
 */
import { invalidType } from '../errors.js';

/** A data column: plain numbers, Float64Array or Float32Array. */
export type ColumnInput = ArrayLike<number> | Float64Array | Float32Array;

export function isShared(values: Float64Array): boolean {
  return values.buffer instanceof SharedArrayBuffer;
}

/** A new zero-filled float64 column in shared memory. */
export function sharedFloat64(length: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(length * Float64Array.BYTES_PER_ELEMENT));
}

/**
 * Checks that a column is plain numbers, a Float64Array or a Float32Array and
 * returns its length, without copying it (for columns a fit does not read).
 */
export function checkColumn(column: unknown, field: string): number {
  if (column instanceof Float64Array || column instanceof Float32Array) return column.length;
  if (Array.isArray(column)) {
    for (let i = 0; i < column.length; i++) {
      const v: unknown = column[i];
      if (typeof v !== 'number') throw invalidType(`${field}[${i}]`, 'number', v);
    }
    return column.length;
  }
  throw invalidType(field, 'array of numbers, Float64Array or Float32Array', column);
}

/** A checked column as float64 in shared memory: as it is if it already is, else copied once. */
export function toFloat64Column(column: unknown, field: string): Float64Array {
  const length = checkColumn(column, field);
  if (column instanceof Float64Array && isShared(column)) return column;
  const shared = sharedFloat64(length);
  shared.set(column as ArrayLike<number>);
  return shared;
}
