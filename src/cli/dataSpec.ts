/**
 * Where `nlfit fit` reads its data, from the command line or a job file:
 *
 *   data.csv | data.csv.gz                    a table with a header row
 *   table.npy --columns x,y,sigma             a 2-D .npy: names of its columns, in order
 *   x=x.npy y=y.npy                           one file per column: 1-D .npy ...
 *   x=t.bin y=v.bin:float32                   ... or raw little-endian floats (float64 unless :float32)
 *
 * and how its columns are named for the fit (--columns x=time,y=signal
 * renames through the library's `transform` option). The result is the
 * `data` spec the library's openSource() takes.
 */
import { isAbsolute, join } from 'node:path';
import { badValue, UsageError } from './exit.js';
import { isIdentifier, type ColumnsSpec } from './values.js';

export interface DataItem {
  /** The column this file holds, or null for a whole table (CSV, 2-D .npy). */
  name: string | null;
  path: string;
  /** Raw binary files only. */
  dtype?: 'float32' | 'float64';
}

type Format = 'csv' | 'npy' | 'bin';

function formatOf(path: string): Format | null {
  const lower = path.toLowerCase();
  if (lower.endsWith('.csv') || lower.endsWith('.csv.gz')) return 'csv';
  if (lower.endsWith('.npy')) return 'npy';
  if (lower.endsWith('.bin')) return 'bin';
  return null;
}

const kFormats = 'a .csv or .csv.gz table, a 2-D .npy with --columns, or one file per column as name=file.npy or name=file.bin[:float32]';

/** "data.csv", "x=x.npy", "y=y.bin:float32". */
export function parseDataItem(text: string): DataItem {
  const eq = text.indexOf('=');
  const name = eq > 0 && isIdentifier(text.slice(0, eq)) ? text.slice(0, eq) : null;
  let path = name === null ? text : text.slice(eq + 1);
  let dtype: DataItem['dtype'];
  const typed = /^(.*\.bin):(float32|float64)$/i.exec(path);
  if (typed) {
    path = typed[1]!;
    dtype = typed[2]!.toLowerCase() as 'float32' | 'float64';
  }
  if (path === '') throw new UsageError(`no file path in the data argument '${text}'`);
  return { name, path, ...(dtype ? { dtype } : {}) };
}

export function formatDataItem(item: DataItem): string {
  return `${item.name === null ? '' : `${item.name}=`}${item.path}${item.dtype ? `:${item.dtype}` : ''}`;
}

/** `data` in a job file: 'data.csv', ['x=x.npy', 'y=y.npy'] or { x: 'x.npy', y: 'y.bin:float32' }; paths relative to the job file. */
export function dataFromJob(value: unknown, jobDir: string): DataItem[] {
  let texts: string[];
  if (typeof value === 'string') texts = [value];
  else if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string')) texts = value as string[];
  else if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.values(value).every((v) => typeof v === 'string')) {
    texts = Object.entries(value).map(([name, path]) => `${name}=${String(path)}`);
  } else {
    throw badValue('data', "a file ('data.csv'), a list (['x=x.npy', 'y=y.npy']) or columns ({ x: 'x.npy' })", value);
  }
  return texts.map((text) => {
    const item = parseDataItem(text);
    return isAbsolute(item.path) ? item : { ...item, path: join(jobDir, item.path) };
  });
}

export interface DataPlan {
  /** What openSource() takes. */
  spec: string | { path: string; columns: string[] } | Record<string, string | { path: string; dtype: string }>;
  /** Fit column name -> source column, for --columns renames (the fit's `transform`). */
  rename: Record<string, string>;
  /** Every file read, for messages. */
  paths: string[];
}

/** The openSource() spec and renames for the data arguments and --columns. */
export function planData(items: readonly DataItem[], columns: ColumnsSpec | undefined): DataPlan {
  if (items.length === 0) throw new UsageError('fit needs a data file: nlfit fit data.csv --model ...');
  const paths = items.map((item) => item.path);
  for (const item of items) {
    if (formatOf(item.path) === null) throw new UsageError(`'${item.path}' is not a data file nlfit reads; give ${kFormats}`);
  }
  const names = columns && 'names' in columns ? columns.names : null;
  const rename = columns && 'rename' in columns ? columns.rename : {};
  const table = items.length === 1 && items[0]!.name === null ? items[0]! : null;
  if (table) {
    const format = formatOf(table.path)!;
    if (format === 'bin') throw new UsageError(`raw binary files hold one column each: give them as x=${table.path} y=...`);
    if (format === 'csv') {
      if (names) throw new UsageError(`a CSV file names its columns in its header; --columns renames them: --columns x=${names[0]},...`);
      return { spec: table.path, rename, paths };
    }
    if (!names) throw new UsageError(`a .npy table needs names for its columns, in order: --columns x,y (or give 1-D files as x=${table.path} y=...)`);
    return { spec: { path: table.path, columns: names }, rename, paths };
  }
  if (names) throw new UsageError('--columns x,y names the columns of one .npy table; files given one per column are already named (rename with --columns x=name)');
  const spec: Record<string, string | { path: string; dtype: string }> = {};
  for (const item of items) {
    if (item.name === null) throw new UsageError(`with several data files, name the column each holds: x=${item.path}`);
    const format = formatOf(item.path)!;
    if (format === 'csv') throw new UsageError(`a CSV file is a whole table: give it alone (nlfit fit ${item.path})`);
    if (item.name in spec) throw new UsageError(`the column '${item.name}' is given twice`);
    if (item.dtype && format !== 'bin') throw new UsageError(`':${item.dtype}' applies to raw .bin files only (${item.path})`);
    spec[item.name] = format === 'bin' ? { path: item.path, dtype: item.dtype ?? 'float64' } : item.path;
  }
  return { spec, rename, paths };
}
