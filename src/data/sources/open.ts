/**
 * From what a user passes as `data` to an open ColumnSource. The specs:
 *
 *   'data.csv', 'data.csv.gz'             CSV with a header row
 *   { path: 'data.csv' }                  the same
 *   { path: 'data.npy', columns: [...] }  a .npy file, one name per column
 *   { x: 'x.npy', y: 'y.bin' }            one file per column: 1-D .npy or raw binary
 *   { y: { path: 'y.bin', dtype: 'float32' } }   raw binary of float32
 *   an async iterable of chunks           a one-shot stream, ingested at open time
 *   a ColumnSource                        used as it is
 *
 * Plain in-memory columns ({ x: number[] | Float64Array, ... }) are not a
 * source spec; src/data/columns.ts handles them.
 */
import type { ColumnSource, OpenSourceOptions } from '../source.js';
import { invalidInput, invalidType } from '../../errors.js';
import type { BinaryDtype } from './binary.js';
import { openColumnFiles, type ColumnFileSpec } from './columnFiles.js';
import { csvSource } from './csv.js';
import { npySource } from './npy.js';
import { checkOpenSourceOptions } from './store.js';
import { streamSource } from './stream.js';
import { isAsyncIterable, isColumnFileValue, isColumnSource, isPlainObject, isTableSpec } from './spec.js';

export { isColumnSource, isSourceSpec } from './spec.js';

const kTableFormats = ".csv, .csv.gz, or .npy as { path, columns }; raw .bin and 1-D .npy files go one per column: { x: 'x.bin', y: 'y.npy' }";

/** Whether `data` already implements ColumnSource (read and close functions, columns, nRows). */
function checkColumnNames(columns: unknown, field: string): string[] {
  if (!Array.isArray(columns) || columns.length === 0) throw invalidType(field, 'non-empty array of column names', columns);
  columns.forEach((name: unknown, i) => {
    if (typeof name !== 'string' || name === '') throw invalidType(`${field}[${i}]`, 'non-empty string', name);
    if (columns.indexOf(name) !== i) throw invalidInput(field, `the column name '${name}' appears twice`);
  });
  return columns as string[];
}

/** A file holding the whole table: a CSV, or a .npy whose columns are named. */
function openTable(path: string, columns: unknown, options: OpenSourceOptions): Promise<ColumnSource> {
  const lower = path.toLowerCase();
  if (lower.endsWith('.csv') || lower.endsWith('.csv.gz')) {
    if (columns !== undefined) throw invalidInput('data.columns', "a CSV file names its columns in its header row; leave out 'columns'");
    return csvSource(path, options);
  }
  if (lower.endsWith('.npy')) {
    if (columns === undefined) {
      throw invalidInput('data', `a .npy file needs names for its columns: pass { path: '${path}', columns: ['x', 'y'] }`);
    }
    return npySource(path, checkColumnNames(columns, 'data.columns'));
  }
  throw invalidInput('data', `'${path}' has an unsupported extension; expected ${kTableFormats}`);
}

/** Reads { x: 'x.npy', y: { path: 'y.bin', dtype: 'float32' } } into one spec per column. */
function columnFileSpecs(data: Record<string, unknown>): ColumnFileSpec[] {
  return Object.entries(data).map(([name, value]): ColumnFileSpec => {
    const field = `data.${name}`;
    let path: string;
    let dtype: unknown;
    if (typeof value === 'string') path = value;
    else if (isPlainObject(value) && typeof value.path === 'string') {
      const unknownKey = Object.keys(value).find((key) => key !== 'path' && key !== 'dtype');
      if (unknownKey !== undefined) throw invalidInput(field, `unknown key '${unknownKey}'; expected { path, dtype }`);
      path = value.path;
      dtype = value.dtype;
    } else {
      throw invalidType(field, "a file path or { path, dtype } (file columns cannot be mixed with in-memory arrays)", value);
    }
    const lower = path.toLowerCase();
    if (lower.endsWith('.npy')) {
      if (dtype !== undefined) throw invalidInput(`${field}.dtype`, "a .npy file gives its dtype in its header; leave out 'dtype'");
      return { name, path, format: 'npy' };
    }
    if (lower.endsWith('.bin')) {
      if (dtype !== undefined && dtype !== 'float64' && dtype !== 'float32') {
        throw invalidType(`${field}.dtype`, "'float64' or 'float32'", dtype);
      }
      return { name, path, format: 'binary', dtype: (dtype ?? 'float64') as BinaryDtype };
    }
    throw invalidInput(field, `'${path}' has an unsupported extension; expected .npy (1-D) or .bin (raw little-endian floats)`);
  });
}

/**
 * Opens the data source `data` names (see isSourceSpec). Rejects, never
 * throws, with errors naming the field: "data.x: cannot open 'x.npy': no such file".
 *
 *   const source = await openSource({ x: 'x.npy', y: 'y.npy' }, { bufferBytes: 256 << 20 });
 *   try {
 *     const y = new Float64Array(1000);
 *     await source.read(0, 1000, { y });
 *   } finally {
 *     await source.close();
 *   }
 */
export async function openSource(data: unknown, options: OpenSourceOptions): Promise<ColumnSource> {
  const checked = checkOpenSourceOptions(options);
  if (typeof data === 'string') return openTable(data, undefined, checked);
  if (isColumnSource(data)) return data;
  if (isAsyncIterable(data)) return streamSource(data, checked);
  if (isPlainObject(data)) {
    if (isTableSpec(data)) return openTable(data.path as string, data.columns, checked);
    if (Object.values(data).some(isColumnFileValue)) return openColumnFiles(columnFileSpecs(data));
  }
  throw invalidType('data', "a file path, { path, columns }, columns of files ({ x: 'x.npy' }), an async iterable or a ColumnSource", data);
}
