// Export of fitted values and residuals (src/data/export.ts): the file against
// a JavaScript reference, the same bytes for every chunk size and on every
// run (plain and gzip), option validation, and no file left behind, under
// the partial name or the final one, when the export fails.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  normalizeExportSpec,
  predictWithKernel,
  writeExport,
  type ExportJob,
  type NormalizedExport,
} from '../dist/data/export.js';
import { compileModel } from '../dist/model/compile.js';

const kTrue = { a: 2.5, b: 0.75, c: -0.125 };
const kLargeRows = 100_003;

interface Data {
  x: Float64Array;
  y: Float64Array;
  sigma: Float64Array;
}

function decay(x: number): number {
  return kTrue.a * Math.exp(-kTrue.b * x) + kTrue.c;
}

/** Deterministic data around a*exp(-b*x)+c; `awkward` plants NaN, infinities, -0 and a zero sigma. */
function makeData(rows: number, awkward = false): Data {
  const x = new Float64Array(rows);
  const y = new Float64Array(rows);
  const sigma = new Float64Array(rows);
  let state = 0x9e3779b9;
  for (let i = 0; i < rows; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const noise = (state >>> 0) / 2 ** 32 - 0.5;
    x[i] = i / 997;
    sigma[i] = 0.01 + Math.abs(noise) / 3;
    y[i] = decay(x[i]!) + noise * sigma[i]!;
  }
  if (awkward && rows > 10) {
    y[1] = Number.NaN;
    y[2] = Number.POSITIVE_INFINITY;
    y[3] = Number.NEGATIVE_INFINITY;
    x[4] = -0;
    sigma[5] = 0;
    y[6] = 1e300;
    y[7] = 5e-324;
    y[8] = 0.1 + 0.2;
  }
  return { x, y, sigma };
}

function jsPredict(vars: Float64Array[], count: number, out: Float64Array): void {
  const x = vars[0]!;
  for (let i = 0; i < count; i++) out[i] = decay(x[i]!);
}

/** A job over in-memory data that records the row ranges it was asked for. */
function makeJob(data: Data, weighted: boolean, reads: Array<[number, number]> = []): ExportJob {
  return {
    nPoints: data.x.length,
    readRows: async (start, count) => {
      reads.push([start, count]);
      const rows: Record<string, Float64Array> = {
        x: data.x.slice(start, start + count),
        y: data.y.slice(start, start + count),
      };
      if (weighted) rows.sigma = data.sigma.slice(start, start + count);
      return rows;
    },
    predict: jsPredict,
    variables: ['x'],
    weighted,
  };
}

/** The expected file, written the obvious way: one row at a time. */
function referenceCsv(columns: string[], data: Data): string {
  const value = (name: string, i: number): number => {
    const fitted = decay(data.x[i]!);
    if (name === 'fitted') return fitted;
    if (name === 'residual') return data.y[i]! - fitted;
    if (name === 'weighted_residual') return (data.y[i]! - fitted) / data.sigma[i]!;
    return data[name as keyof Data][i]!;
  };
  const lines = [columns.join(',')];
  for (let i = 0; i < data.x.length; i++) lines.push(columns.map((name) => String(value(name, i))).join(','));
  return `${lines.join('\n')}\n`;
}

let directory: string;
let fileCount = 0;

function target(extension = '.csv'): string {
  fileCount++;
  return join(directory, `export-${fileCount}${extension}`);
}

function spec(path: string, weighted: boolean, extra: Record<string, unknown> = {}): NormalizedExport {
  return normalizeExportSpec({ path, ...extra }, { variables: ['x'], weighted });
}

/** The message of the error a call throws synchronously. */
function thrown(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected an error');
}

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'nlfit-export-'));
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('normalizeExportSpec', () => {
  it('applies the default columns and infers gzip from the path', () => {
    expect(normalizeExportSpec({ path: 'fit.csv' }, { variables: ['t', 'x'], weighted: false })).toEqual({
      path: 'fit.csv',
      gzip: false,
      columns: ['t', 'x', 'y', 'fitted', 'residual'],
    });
    expect(normalizeExportSpec({ path: 'fit.csv.gz' }, { variables: ['x'], weighted: true })).toEqual({
      path: 'fit.csv.gz',
      gzip: true,
      columns: ['x', 'y', 'sigma', 'fitted', 'residual'],
    });
    expect(normalizeExportSpec({ path: 'fit.csv', gzip: true }, { variables: ['x'], weighted: false }).gzip).toBe(true);
  });

  it('keeps the chosen columns in the given order', () => {
    const chosen = ['weighted_residual', 'x', 'fitted', 'sigma'];
    expect(normalizeExportSpec({ path: 'fit.csv', columns: chosen }, { variables: ['x'], weighted: true }).columns).toEqual(chosen);
  });

  it('names the field in every error', () => {
    const unweighted = { variables: ['x'], weighted: false };
    const check = (value: unknown, available = unweighted) => thrown(() => normalizeExportSpec(value, available));
    expect(check('fit.csv')).toBe('Expected an object such as { path: \'fit.csv\' } for export but received "fit.csv" of type string');
    expect(check(null)).toMatch(/^Expected .* for export but received null$/);
    expect(check({ path: 'fit.csv', colums: ['x'] })).toBe(
      "Invalid export: unknown option 'colums' (did you mean 'columns'?) (known: path, gzip, columns)",
    );
    expect(check({})).toBe('Expected a non-empty string for export.path but received undefined');
    expect(check({ path: 'fit.txt' })).toBe("Invalid export.path: 'fit.txt' does not end in '.csv' or '.csv.gz'");
    expect(check({ path: 'fit.csv', gzip: 'yes' })).toBe('Expected boolean for export.gzip but received "yes" of type string');
    expect(check({ path: 'fit.csv.gz', gzip: false })).toMatch(/^Invalid export\.gzip: false contradicts/);
    expect(check({ path: 'fit.csv', columns: 'x' })).toMatch(/^Expected an array of column names for export\.columns/);
    expect(check({ path: 'fit.csv', columns: [] })).toBe('Invalid export.columns: it lists no columns');
    expect(check({ path: 'fit.csv', columns: ['x', 7] })).toBe('Expected a column name for export.columns[1] but received 7 of type number');
    expect(check({ path: 'fit.csv', columns: ['x', 'y', 'fited'] })).toBe(
      "Invalid export.columns[2]: no column 'fited' (did you mean 'fitted'?); expected one of x, y, sigma, fitted, residual, weighted_residual",
    );
    expect(check({ path: 'fit.csv', columns: ['x', 'residual', 'x'] })).toBe(
      "Invalid export.columns[2]: 'x' is already listed at export.columns[0]",
    );
    expect(check({ path: 'fit.csv', columns: ['x', 'weighted_residual'] })).toBe(
      "Invalid export.columns[1]: 'weighted_residual' needs sigma, and the fit is unweighted",
    );
    expect(check({ path: 'fit.csv', columns: ['sigma'] })).toMatch(/^Invalid export\.columns\[0\]: 'sigma' needs sigma/);
    expect(check({ path: 'fit.csv' }, { variables: ['residual'], weighted: false })).toMatch(
      /^Invalid export: the data column 'residual' has the name of a computed column/,
    );
  });
});

describe('writeExport', () => {
  const small = makeData(1300, true);
  const large = makeData(kLargeRows);

  it('writes the header and every row as the reference does, awkward values included', async () => {
    const path = target();
    const result = await writeExport(spec(path, false), makeJob(small, false), { chunkRows: 512 });
    const expected = referenceCsv(['x', 'y', 'fitted', 'residual'], small);
    const text = await readFile(path, 'utf8');
    expect(text).toBe(expected);
    for (const printed of [',NaN,', ',Infinity,', ',-Infinity,', ',1e+300,', ',5e-324,', ',0.30000000000000004,']) expect(text).toContain(printed);
    expect(text.split('\n')[5]).toMatch(/^0,/);
    expect(result).toEqual({ rows: 1300, bytes: Buffer.byteLength(expected) });
  });

  it('writes weighted residuals, sigma and the chosen columns in order', async () => {
    const columns = ['weighted_residual', 'sigma', 'x', 'residual'];
    const path = target();
    await writeExport(spec(path, true, { columns }), makeJob(small, true));
    const text = await readFile(path, 'utf8');
    expect(text).toBe(referenceCsv(columns, small));
    // sigma[5] is 0: the weighted residual is infinite, the plain one is not.
    expect(text.split('\n')[6]).toMatch(/^-?Infinity,0,[\d.e-]+,-?[\d.e-]+$/);
  });

  it('writes the same bytes for every chunk size', async () => {
    const files: Buffer[] = [];
    for (const chunkRows of [512, 1024, 65536, undefined]) {
      const path = target();
      const reads: Array<[number, number]> = [];
      const result = await writeExport(spec(path, true), makeJob(large, true, reads), chunkRows === undefined ? {} : { chunkRows });
      expect(result.rows).toBe(kLargeRows);
      expect(reads.length).toBe(Math.ceil(kLargeRows / (chunkRows ?? 65536)));
      files.push(await readFile(path));
    }
    expect(files[0]!.toString('utf8')).toBe(referenceCsv(['x', 'y', 'sigma', 'fitted', 'residual'], large));
    for (const file of files.slice(1)) expect(file.equals(files[0]!)).toBe(true);
  });

  it('rounds the chunk up to whole blocks of 512 rows', async () => {
    const reads: Array<[number, number]> = [];
    await writeExport(spec(target(), false), makeJob(makeData(3000), false, reads), { chunkRows: 1000 });
    expect(reads).toEqual([
      [0, 1024],
      [1024, 1024],
      [2048, 952],
    ]);
  });

  it('writes only the header when there are no rows', async () => {
    const path = target();
    expect(await writeExport(spec(path, false), makeJob(makeData(0), false))).toEqual({ rows: 0, bytes: 20 });
    expect(await readFile(path, 'utf8')).toBe('x,y,fitted,residual\n');
  });

  it('gzips deterministically: gunzip gives the plain file, and runs and chunk sizes give the same bytes', async () => {
    const plainPath = target();
    await writeExport(spec(plainPath, false), makeJob(large, false));
    const plain = await readFile(plainPath);
    const zipped: Buffer[] = [];
    for (const chunkRows of [512, 65536, 65536, 1024]) {
      const path = target('.csv.gz');
      const result = await writeExport(spec(path, false), makeJob(large, false), { chunkRows });
      const bytes = await readFile(path);
      expect(result.bytes).toBe(bytes.length);
      zipped.push(bytes);
    }
    expect(gunzipSync(zipped[0]!).equals(plain)).toBe(true);
    expect(zipped[0]!.length).toBeLessThan(plain.length / 2);
    for (const bytes of zipped.slice(1)) expect(bytes.equals(zipped[0]!)).toBe(true);
    // The header: no file name (FLG 0) and a zero mtime.
    expect(zipped[0]![3]).toBe(0);
    expect(zipped[0]!.readUInt32LE(4)).toBe(0);
  });

  it('gzips a .csv path when gzip is true', async () => {
    const path = target();
    await writeExport(spec(path, false, { gzip: true }), makeJob(small, false));
    expect(gunzipSync(await readFile(path)).toString('utf8')).toBe(referenceCsv(['x', 'y', 'fitted', 'residual'], small));
  });

  it('refuses sigma columns for an unweighted job', async () => {
    const weightedSpec = spec(target(), true, { columns: ['x', 'weighted_residual'] });
    await expect(writeExport(weightedSpec, makeJob(small, false))).rejects.toThrow(
      "Invalid export.columns[1]: 'weighted_residual' needs sigma, and the fit is unweighted",
    );
  });

  it('rejects a chunkRows that is not a positive integer', async () => {
    await expect(writeExport(spec(target(), false), makeJob(small, false), { chunkRows: 0 })).rejects.toThrow(
      'Expected positive integer for chunkRows but received 0 of type number',
    );
  });
});

describe('a failed export leaves no file behind', () => {
  const data = makeData(5000);
  let failDirectory: string;

  beforeAll(async () => {
    failDirectory = await mkdtemp(join(directory, 'fail-'));
  });

  it('removes the partial file and keeps the previous file when readRows throws midway', async () => {
    const path = join(failDirectory, 'fit.csv');
    await writeFile(path, 'previous export\n');
    const job = makeJob(data, false);
    const readRows = job.readRows;
    let calls = 0;
    job.readRows = async (start, count) => {
      if (++calls === 4) throw new Error('disk unplugged');
      return readRows(start, count);
    };
    await expect(writeExport(spec(path, false), job, { chunkRows: 512 })).rejects.toThrow('disk unplugged');
    expect(await readdir(failDirectory)).toEqual(['fit.csv']);
    expect(await readFile(path, 'utf8')).toBe('previous export\n');
  });

  it('removes the partial gzip file when predict throws', async () => {
    const path = join(failDirectory, 'fit.csv.gz');
    const job = makeJob(data, false);
    let calls = 0;
    job.predict = (vars, count, out) => {
      if (++calls === 3) throw new RangeError('model blew up');
      jsPredict(vars, count, out);
    };
    await expect(writeExport(spec(path, false), job, { chunkRows: 512 })).rejects.toThrow('model blew up');
    expect(await readdir(failDirectory)).toEqual(['fit.csv']);
  });

  it('names export.path when the directory does not exist', async () => {
    const path = join(failDirectory, 'missing', 'fit.csv');
    await expect(writeExport(spec(path, false), makeJob(data, false))).rejects.toThrow(
      new RegExp(`^Invalid export\\.path: cannot write '${path.replace(/[.\\]/g, '\\$&')}': ENOENT`),
    );
    expect(await readdir(failDirectory)).toEqual(['fit.csv']);
  });

  it('names export.path when the final name cannot be replaced, and removes the partial file', async () => {
    const path = join(failDirectory, 'taken.csv');
    await mkdir(path);
    await expect(writeExport(spec(path, false), makeJob(data, false))).rejects.toThrow(/^Invalid export\.path: cannot write/);
    expect((await readdir(failDirectory)).sort()).toEqual(['fit.csv', 'taken.csv']);
  });

  it('names the short column when readRows returns too few rows', async () => {
    const job = makeJob(data, false);
    job.readRows = async (start, count) => ({ x: data.x.slice(start, start + count), y: data.y.slice(start, start + count - 1) });
    await expect(writeExport(spec(join(failDirectory, 'short.csv'), false), job)).rejects.toThrow(
      "Invalid export: readRows(0, 5000) returned a short column 'y'",
    );
    expect((await readdir(failDirectory)).sort()).toEqual(['fit.csv', 'taken.csv']);
  });
});

describe('predictWithKernel', () => {
  it('evaluates a compiled model as the JavaScript formula does, and exports it chunk-size independently', async () => {
    const model = compileModel('a*exp(-b*x)+c', { params: ['a', 'b', 'c'], columns: ['x', 'y'], reserved: ['y', 'sigma'] });
    const params = Float64Array.of(kTrue.a, kTrue.b, kTrue.c);
    const predict = predictWithKernel(model.code, model.consts, params);
    params[0] = 99; // the helper keeps its own copy
    const data = makeData(2500);
    const native = new Float64Array(data.x.length);
    predict([data.x], data.x.length, native);
    const js = new Float64Array(data.x.length);
    jsPredict([data.x], data.x.length, js);
    let worst = 0;
    for (let i = 0; i < js.length; i++) worst = Math.max(worst, Math.abs(native[i]! - js[i]!) / Math.abs(js[i]!));
    expect(worst).toBeLessThan(1e-14);

    const files: string[] = [];
    for (const chunkRows of [512, 65536]) {
      const path = target();
      await writeExport(spec(path, false), { ...makeJob(data, false), predict, variables: model.variableNames }, { chunkRows });
      files.push(await readFile(path, 'utf8'));
    }
    expect(files[1]).toBe(files[0]);
    expect(files[0]!.split('\n')[1]).toBe(`0,${data.y[0]},${native[0]},${data.y[0]! - native[0]!}`);
  });

  it('refuses parameters that do not match the model', () => {
    const model = compileModel('a*x', { params: ['a'], columns: ['x', 'y'], reserved: ['y', 'sigma'] });
    expect(thrown(() => predictWithKernel(model.code, model.consts, Float64Array.of(1, 2)))).toBe(
      'Invalid params: the model has 1 parameters but 2 values were given',
    );
  });
});

describe('fit({ export }): the same file whether the fit ran in memory or streaming', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nlfit-export-fit-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('standard, chunked and streamed fits (memory and .bin files) write identical bytes, plain and gzip', async () => {
    const { Engine } = await import('../dist/index.js');
    const data = makeData(70_001);
    await writeFile(join(dir, 'x.bin'), new Uint8Array(data.x.buffer));
    await writeFile(join(dir, 'y.bin'), new Uint8Array(data.y.buffer));
    const engine = new Engine({ threads: 2 });
    try {
      const base = { model: 'a*exp(-b*x)+c', p0: { a: 2, b: 1, c: 0 } };
      const runs: Array<[string, Record<string, unknown>]> = [
        ['standard', { data: { x: data.x, y: data.y }, strategy: 'standard' }],
        ['chunked', { data: { x: data.x, y: data.y }, strategy: 'chunked', chunkSize: 5000 }],
        ['streaming', { data: { x: data.x, y: data.y }, strategy: 'streaming', chunkSize: 3000 }],
        ['files', { data: { x: join(dir, 'x.bin'), y: join(dir, 'y.bin') }, memoryLimitMb: 1 }],
      ];
      const plain: Buffer[] = [];
      const zipped: Buffer[] = [];
      for (const [label, extra] of runs) {
        const path = join(dir, `${label}.csv`);
        const r = await engine.fit({ ...base, ...extra, export: { path } } as never);
        expect(r.exported).toEqual({ path, rows: 70_001, bytes: (await readFile(path)).length });
        plain.push(await readFile(path));
        const gzPath = join(dir, `${label}.csv.gz`);
        await engine.fit({ ...base, ...extra, export: { path: gzPath, columns: ['x', 'fitted', 'residual'] } } as never);
        zipped.push(await readFile(gzPath));
      }
      expect((await engine.fit({ ...base, ...runs[3]![1] } as never)).strategy).toBe('streaming');
      for (const bytes of plain.slice(1)) expect(bytes.equals(plain[0]!)).toBe(true);
      for (const bytes of zipped.slice(1)) expect(bytes.equals(zipped[0]!)).toBe(true);
      const lines = plain[0]!.toString('utf8').trimEnd().split('\n');
      expect(lines[0]).toBe('x,y,fitted,residual');
      expect(lines).toHaveLength(70_002);
      const [x, y, fitted, residual] = lines[12_345]!.split(',').map(Number);
      expect(x).toBe(data.x[12_344]);
      expect(y).toBe(data.y[12_344]);
      expect(residual).toBe(y! - fitted!);
      expect(gunzipSync(zipped[0]!).toString('utf8').split('\n')[0]).toBe('x,fitted,residual');
    } finally {
      await engine.close();
    }
  }, 60_000);

  it('a bad export option is rejected before the fit runs, naming the field', async () => {
    const { fit } = await import('../dist/index.js');
    const data = makeData(100);
    await expect(
      fit({ model: 'a*exp(-b*x)+c', p0: { a: 2, b: 1, c: 0 }, data: { x: data.x, y: data.y }, export: { path: join(dir, 'e.csv'), columns: ['fited'] } } as never),
    ).rejects.toThrow(/export\.columns\[0\].*did you mean 'fitted'/);
  });
});
