/**
 * The `export` fit option: its shape and validation (the writer is in
 * export.ts, loaded only when a fit exports).
 */
import { closestName, invalidInput, invalidType } from '../errors.js';

/** What the user passes as the fit option `export`. */
export interface ExportSpec {
  /** Where to write: '.csv', or '.csv.gz' for gzip. */
  path: string;
  /** Compress with gzip. Default: whether the path ends in '.gz'. */
  gzip?: boolean;
  /**
   * Columns to write, in order, from: the data's variable columns by name,
   * 'y', 'sigma', 'fitted', 'residual', 'weighted_residual'. Default: the
   * model's variables, then y, (sigma if weighted), fitted, residual.
   */
  columns?: string[];
}

/** A checked ExportSpec with its defaults applied. */
export interface NormalizedExport {
  path: string;
  gzip: boolean;
  /** At least one, no repeats, each a variable or a response column the fit has. */
  columns: string[];
}


const kSpecKeys = ['path', 'gzip', 'columns'] as const;
const kComputedColumns = ['fitted', 'residual', 'weighted_residual'] as const;
const kResponseColumns = ['y', 'sigma'] as const;
const kExportPath = /\.csv(\.gz)?$/i;

function suggest(name: string, known: readonly string[]): string {
  const close = closestName(name, known);
  return close === undefined ? '' : ` (did you mean '${close}'?)`;
}

/**
 * Checks the fit option `export` against the columns the fit has and applies
 * the defaults. Throws TypeError or RangeError naming the field
 * ('export.path', 'export.columns[2]').
 * @example
 * normalizeExportSpec({ path: 'fit.csv.gz' }, { variables: ['x'], weighted: true })
 * // { path: 'fit.csv.gz', gzip: true, columns: ['x', 'y', 'sigma', 'fitted', 'residual'] }
 */
export function normalizeExportSpec(value: unknown, available: { variables: string[]; weighted: boolean }): NormalizedExport {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidType('export', "an object such as { path: 'fit.csv' }", value);
  }
  const spec = value as Record<string, unknown>;
  for (const key of Object.keys(spec)) {
    if (!(kSpecKeys as readonly string[]).includes(key)) {
      throw invalidInput('export', `unknown option '${key}'${suggest(key, kSpecKeys)} (known: ${kSpecKeys.join(', ')})`);
    }
  }
  for (const name of available.variables) {
    if ((kComputedColumns as readonly string[]).includes(name)) {
      throw invalidInput('export', `the data column '${name}' has the name of a computed column; rename it to export`);
    }
  }
  const path = exportPath(spec.path);
  return { path, gzip: exportGzip(spec.gzip, path), columns: exportColumns(spec.columns, available) };
}

function exportPath(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidType('export.path', 'a non-empty string', value);
  if (!kExportPath.test(value)) throw invalidInput('export.path', `'${value}' does not end in '.csv' or '.csv.gz'`);
  return value;
}

function exportGzip(value: unknown, path: string): boolean {
  const gzipPath = /\.gz$/i.test(path);
  if (value === undefined) return gzipPath;
  if (typeof value !== 'boolean') throw invalidType('export.gzip', 'boolean', value);
  if (!value && gzipPath) throw invalidInput('export.gzip', `false contradicts the path '${path}', which ends in '.gz'`);
  return value;
}

function exportColumns(value: unknown, available: { variables: string[]; weighted: boolean }): string[] {
  const weightedOnly = ['sigma', 'weighted_residual'];
  if (value === undefined) {
    return [...available.variables, 'y', ...(available.weighted ? ['sigma'] : []), 'fitted', 'residual'];
  }
  if (!Array.isArray(value)) throw invalidType('export.columns', 'an array of column names', value);
  if (value.length === 0) throw invalidInput('export.columns', 'it lists no columns');
  const known = [...available.variables, ...kResponseColumns, ...kComputedColumns];
  const columns: string[] = [];
  value.forEach((name: unknown, i) => {
    const field = `export.columns[${i}]`;
    if (typeof name !== 'string') throw invalidType(field, 'a column name', name);
    if (!known.includes(name)) {
      throw invalidInput(field, `no column '${name}'${suggest(name, known)}; expected one of ${known.join(', ')}`);
    }
    if (!available.weighted && weightedOnly.includes(name)) {
      throw invalidInput(field, `'${name}' needs sigma, and the fit is unweighted`);
    }
    const previous = columns.indexOf(name);
    if (previous >= 0) throw invalidInput(field, `'${name}' is already listed at export.columns[${previous}]`);
    columns.push(name);
  });
  return columns;
}

