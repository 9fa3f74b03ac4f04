/**
 * The checks every ColumnSource.read() makes before it touches a file or a
 * buffer: the row range lies inside the source, each destination is a
 * Float64Array long enough for `count` values, and each name is a column.
 */
import { invalidInput, invalidRange, invalidType } from '../../errors.js';

/** A destination for one column of a read, by the column's index in the source. */
export interface ReadTarget {
  readonly column: number;
  readonly into: Float64Array;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Checks a read request against a source's shape; returns its targets in the source's column order. */
export function checkReadRequest(
  columns: readonly string[],
  nRows: number,
  start: unknown,
  count: unknown,
  into: unknown,
): ReadTarget[] {
  if (!isNonNegativeInteger(start)) throw invalidType('read start', 'non-negative integer', start);
  if (!isNonNegativeInteger(count)) throw invalidType('read count', 'non-negative integer', count);
  if (start + count > nRows) {
    throw invalidInput('read', `rows [${start}, ${start + count}) lie outside the source's ${nRows} rows`);
  }
  if (into === null || typeof into !== 'object') throw invalidType('read into', 'object of Float64Array columns', into);
  const targets: ReadTarget[] = [];
  for (const [name, values] of Object.entries(into)) {
    const column = columns.indexOf(name);
    if (column === -1) {
      throw invalidInput(`read into.${name}`, `'${name}' is not a column of the source (columns: ${columns.join(', ')})`);
    }
    if (!(values instanceof Float64Array)) throw invalidType(`read into.${name}`, 'Float64Array', values);
    if (values.length < count) {
      throw invalidRange(`read into.${name}`, `Float64Array of at least ${count} values`, values);
    }
    targets.push({ column, into: values });
  }
  return targets.sort((a, b) => a.column - b.column);
}
