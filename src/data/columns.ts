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

export function toFloat64Column(column: unknown, field: string): Float64Array {
  if (column instanceof Float64Array) {
    if (isShared(column)) return column;
    const shared = sharedFloat64(column.length);
    shared.set(column);
    return shared;
  }
  if (column instanceof Float32Array) {
    const shared = sharedFloat64(column.length);
    shared.set(column);
    return shared;
  }
  if (Array.isArray(column)) {
    const shared = sharedFloat64(column.length);
    for (let i = 0; i < column.length; i++) {
      const v: unknown = column[i];
      if (typeof v !== 'number') throw invalidType(`${field}[${i}]`, 'number', v);
      shared[i] = v;
    }
    return shared;
  }
  throw invalidType(field, 'array of numbers, Float64Array or Float32Array', column);
}
