/**
 * What kind of `data` a fit was given, decided without loading any source
 * module: fit() imports the readers (npy, CSV, streams) only for data that
 * needs them, so importing nlfit for in-memory fits stays cheap.
 */
import type { ColumnSource } from '../source.js';

export function isColumnSource(data: unknown): data is ColumnSource {
  if (data === null || typeof data !== 'object') return false;
  const source = data as Record<string, unknown>;
  return typeof source.read === 'function' && typeof source.close === 'function' && Array.isArray(source.columns) && typeof source.nRows === 'number';
}

export function isAsyncIterable(data: unknown): data is AsyncIterable<unknown> {
  return (
    data !== null &&
    (typeof data === 'object' || typeof data === 'function') &&
    typeof (data as Record<symbol, unknown>)[Symbol.asyncIterator] === 'function'
  );
}

export function isPlainObject(data: unknown): data is Record<string, unknown> {
  return data !== null && typeof data === 'object' && !Array.isArray(data) && !ArrayBuffer.isView(data);
}

/** { path } or { path, columns }: one file holding the whole table. */
export function isTableSpec(data: Record<string, unknown>): boolean {
  return typeof data.path === 'string' && Object.keys(data).every((key) => key === 'path' || key === 'columns');
}

/** A column given as a file: 'x.npy' or { path: 'y.bin', dtype }. */
export function isColumnFileValue(value: unknown): boolean {
  return typeof value === 'string' || (isPlainObject(value) && typeof value.path === 'string');
}

/**
 * Whether `data` names a data source (a path, a file spec, columns of files,
 * an async iterable or a ColumnSource) rather than in-memory columns.
 */
export function isSourceSpec(data: unknown): boolean {
  if (typeof data === 'string') return true;
  if (!isPlainObject(data)) return false;
  if (isColumnSource(data) || isAsyncIterable(data)) return true;
  return isTableSpec(data) || Object.values(data).some(isColumnFileValue);
}

