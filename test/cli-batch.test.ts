// `nlfit batch`: many curves from a 2-D .npy fitted with fitMany, the same bits
// as the library, shards of a job array, .npy outputs, usage and data errors.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { shardRange } from '../dist/cli/batchCommand.js';

const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'nlfit-batch-'));
const engine = new Engine({ threads: 2 });
afterAll(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

function nlfit(...args: string[]) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('SLURM_')));
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000, cwd: dir, env });
}

type Typed = Float64Array | Float32Array | Int32Array | Uint8Array;

/** A format 1.0 .npy of a typed array; `fortran` stores a 2-D array column by column. */
function writeNpy(name: string, values: Typed, shape: number[], fortran = false): string {
  const descr = values instanceof Float64Array ? '<f8' : values instanceof Float32Array ? '<f4' : values instanceof Int32Array ? '<i4' : '|u1';
  let data = values;
  if (fortran && shape.length === 2) {
    const [rows, cols] = shape as [number, number];
    data = new (values.constructor as new (n: number) => Typed)(values.length);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[c * rows + r] = values[r * cols + c]!;
  }
  let header = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const prefix = Buffer.alloc(10);
  prefix.write('\x93NUMPY', 0, 'latin1');
  prefix.writeUInt8(1, 6);
  prefix.writeUInt8(0, 7);
  prefix.writeUInt16LE(header.length, 8);
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
  return path;
}

/** Reads back a .npy this test or nlfit wrote: dtype, order, shape and the values. */
function readNpy(path: string): { descr: string; fortran: boolean; shape: number[]; values: Typed; headerEnd: number } {
  const bytes = readFileSync(path);
  expect(bytes.toString('latin1', 0, 6)).toBe('\x93NUMPY');
  expect(bytes[6]).toBe(1);
  const length = bytes.readUInt16LE(8);
  const headerEnd = 10 + length;
  const header = bytes.toString('latin1', 10, headerEnd);
  const descr = /'descr': '([^']+)'/.exec(header)![1]!;
  const fortran = /'fortran_order': True/.test(header);
  const shape = /'shape': \(([^)]*)\)/.exec(header)![1]!.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  const body = bytes.subarray(headerEnd);
  const copy = new Uint8Array(body.length);
  copy.set(body);
  const kinds: Record<string, (b: ArrayBuffer) => Typed> = {
    '<f8': (b) => new Float64Array(b),
    '<f4': (b) => new Float32Array(b),
    '<i4': (b) => new Int32Array(b),
    '|u1': (b) => new Uint8Array(b),
  };
  return { descr, fortran, shape, values: kinds[descr]!(copy.buffer), headerEnd };
}

/** A small deterministic generator (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// 200 noise-free gaussian curves of 32 points, on the catalog model a*exp(-(x-mu)^2/(2*s^2))+c.
const M = 200;
const N = 32;
const P = 4;
const names = ['a', 'mu', 's', 'c'];
const x = Float64Array.from({ length: N }, (_, i) => (10 * i) / (N - 1));
const truth = new Float64Array(M * P);
const p0 = new Float64Array(M * P);
const y = new Float64Array(M * N);
{
  const next = random(42);
  for (let c = 0; c < M; c++) {
    const t = [1 + 4 * next(), 4 + 2 * next(), 1 + next(), 0.5 + next()];
    t.forEach((v, j) => {
      truth[c * P + j] = v;
      p0[c * P + j] = v * (1 + 0.4 * (next() - 0.5)); // within 20%
    });
    const [a, mu, s, base] = t as [number, number, number, number];
    for (let i = 0; i < N; i++) y[c * N + i] = a * Math.exp(-((x[i]! - mu) ** 2) / (2 * s * s)) + base;
  }
}
const kConverged = ['ftol', 'xtol', 'ftol_xtol', 'gtol'];

interface Summary {
  command: string;
  paramNames: string[];
  points: number;
  curves: { total: number; start: number; end: number; fitted: number };
  shard: { index: number; count: number } | null;
  statusNames: string[];
  counts: Record<string, number>;
  converged: number;
  convergedFraction: number | null;
  threads: number;
  timing: { fitMs: number; fitsPerSecond: number | string; totalMs: number };
  exitCode: number;
  files?: Record<string, { path: string; shape: number[]; dtype: string }>;
  params?: number[][];
  stderr?: Array<Array<number | string>>;
  chi2?: Array<number | string>;
  iterations?: number[];
  nfev?: number[];
  status?: string[];
}

const parse = (stdout: string): Summary => JSON.parse(stdout) as Summary;
/** JSON writes non-finite numbers as strings. */
const num = (v: number | string): number => (typeof v === 'number' ? v : Number(v));

let full: Summary;

beforeAll(() => {
  writeNpy('x.npy', x, [N]);
  writeNpy('y.npy', y, [M, N]);
  writeNpy('y-fortran.npy', y, [M, N], true);
  writeNpy('y32.npy', Float32Array.from(y), [M, N]);
  writeNpy('p0.npy', p0, [M, P]);
  const run = nlfit('batch', 'y.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'p0.npy', '--json');
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  full = parse(run.stdout);
});

describe('nlfit batch', () => {
  it('fits 200 gaussian curves to the truth, with the library fitMany bits', async () => {
    expect(full.command).toBe('batch');
    expect(full.paramNames).toEqual(names);
    expect(full.points).toBe(N);
    expect(full.curves).toEqual({ total: M, start: 0, end: M, fitted: M });
    expect(full.shard).toBeNull();
    expect(full.converged).toBe(M);
    expect(full.convergedFraction).toBe(1);
    expect(Object.values(full.counts).reduce((a, b) => a + b, 0)).toBe(M);
    expect(full.exitCode).toBe(0);
    expect(full.params).toHaveLength(M);
    for (let c = 0; c < M; c++) {
      expect(kConverged).toContain(full.status![c]);
      for (let j = 0; j < P; j++) expect(Math.abs(full.params![c]![j]! - truth[c * P + j]!)).toBeLessThan(1e-6);
    }

    const library = await engine.fitMany({ model: 'gaussian', x, y, p0 });
    expect(library.paramNames).toEqual(full.paramNames);
    expect([...library.statusNames]).toEqual(full.statusNames);
    expect(library.counts).toEqual(full.counts);
    for (let c = 0; c < M; c++) {
      for (let j = 0; j < P; j++) {
        expect(Object.is(full.params![c]![j], library.params[c * P + j])).toBe(true);
        expect(Object.is(num(full.stderr![c]![j]!), library.stderr[c * P + j])).toBe(true);
      }
      expect(Object.is(num(full.chi2![c]!), library.chi2[c])).toBe(true);
      expect(full.iterations![c]).toBe(library.iterations[c]);
      expect(full.nfev![c]).toBe(library.nfev[c]);
      expect(full.status![c]).toBe(library.statusNames[library.status[c]!]);
    }
  });

  it('reads Fortran-order and float32 curves', async () => {
    const fortran = nlfit('batch', 'y-fortran.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'p0.npy', '--json');
    expect(fortran.status).toBe(0);
    expect(parse(fortran.stdout).params).toEqual(full.params);

    const single = nlfit('batch', 'y32.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'p0.npy', '--json');
    expect(single.status).toBe(0);
    const result = parse(single.stdout);
    const library = await engine.fitMany({ model: 'gaussian', x, y: Float32Array.from(y), p0 });
    expect(result.params!.flat()).toEqual(Array.from(library.params));
  });

  it('prints a short summary by default', () => {
    const run = nlfit('batch', 'y.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'p0.npy');
    expect(run.status).toBe(0);
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^200 curves fitted \(all 200 curves of y\.npy\): 4 parameters \(a, mu, s, c\), 32 points each/);
    expect(run.stdout).toMatch(/converged +200 of 200 \(100%\)/);
    expect(run.stdout).toMatch(/fits\/s on \d+ threads?/);
  });

  it('--shard i/n fits curves floor(i*M/n) .. floor((i+1)*M/n) - 1, with the same bits as the whole run', () => {
    const run = nlfit('batch', 'y.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'p0.npy', '--shard', '1/4', '--json');
    expect(run.status).toBe(0);
    const part = parse(run.stdout);
    expect(part.curves).toEqual({ total: M, start: 50, end: 100, fitted: 50 });
    expect(part.shard).toEqual({ index: 1, count: 4 });
    expect(part.params).toEqual(full.params!.slice(50, 100));
    expect(part.status).toEqual(full.status!.slice(50, 100));

    // Every curve in exactly one shard, in order, for awkward sizes too.
    for (const [m, n] of [[200, 4], [7, 3], [3, 7], [1000003, 17], [1, 1]] as const) {
      let next = 0;
      for (let i = 0; i < n; i++) {
        const [start, end] = shardRange(m, { index: i, count: n });
        expect(start).toBe(next);
        expect(start).toBe(Math.floor((i * m) / n));
        expect(end).toBeGreaterThanOrEqual(start);
        next = end;
      }
      expect(next).toBe(m);
    }
  });

  it('a shard with no curves (more shards than curves) writes empty arrays', () => {
    writeNpy('y3.npy', y.subarray(0, 3 * N), [3, N]);
    mkdirSync(join(dir, 'empty'), { recursive: true });
    const run = nlfit('batch', 'y3.npy', '--model', 'gaussian', '--x', 'x.npy', '--shard', '0/5', '--out', 'empty/part', '--json');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(parse(run.stdout).curves).toEqual({ total: 3, start: 0, end: 0, fitted: 0 });
    expect(readNpy(join(dir, 'empty/part.params.npy')).shape).toEqual([0, P]);
    expect(readNpy(join(dir, 'empty/part.status.npy')).shape).toEqual([0]);
  });

  it('--out writes the arrays as .npy (through temporary files) and the JSON last', () => {
    mkdirSync(join(dir, 'results'), { recursive: true });
    const run = nlfit('batch', 'y.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'p0.npy', '--shard', '3/4', '--out', 'results/part-3');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/50 curves fitted \(curves 150\.\.199 of 200 in y\.npy, shard 3\/4\)/);
    expect(run.stdout).toMatch(/written +results\/part-3\.params\.npy/);
    expect(readdirSync(join(dir, 'results')).sort()).toEqual(
      ['chi2', 'iterations', 'json', 'nfev', 'params', 'status', 'stderr'].map((k) => `part-3.${k}${k === 'json' ? '' : '.npy'}`).sort(),
    );
    const read = (key: string) => readNpy(join(dir, `results/part-3.${key}.npy`));
    const params = read('params');
    expect(params).toMatchObject({ descr: '<f8', fortran: false, shape: [50, P] });
    expect(params.headerEnd % 64).toBe(0);
    expect(Array.from(params.values)).toEqual(full.params!.slice(150).flat());
    expect(read('stderr')).toMatchObject({ descr: '<f8', shape: [50, P] });
    expect(Array.from(read('stderr').values)).toEqual(full.stderr!.slice(150).flat().map(num));
    expect(read('chi2')).toMatchObject({ descr: '<f8', shape: [50] });
    expect(read('iterations')).toMatchObject({ descr: '<i4', shape: [50] });
    expect(Array.from(read('iterations').values)).toEqual(full.iterations!.slice(150));
    expect(Array.from(read('nfev').values)).toEqual(full.nfev!.slice(150));
    const status = read('status');
    expect(status).toMatchObject({ descr: '|u1', shape: [50] });
    const summary = JSON.parse(readFileSync(join(dir, 'results/part-3.json'), 'utf8')) as Summary;
    expect(Array.from(status.values, (code) => summary.statusNames[code])).toEqual(full.status!.slice(150));
    expect(summary.paramNames).toEqual(names);
    expect(summary.curves).toEqual({ total: M, start: 150, end: 200, fitted: 50 });
    expect(summary.shard).toEqual({ index: 3, count: 4 });
    expect(summary.counts).toEqual(Object.fromEntries(Object.entries(countBy(full.status!.slice(150)))));
    expect(summary.files!.params).toEqual({ path: 'results/part-3.params.npy', shape: [50, P], dtype: 'float64' });
    expect(summary.files!.status).toEqual({ path: 'results/part-3.status.npy', shape: [50], dtype: 'uint8' });
    expect(summary.params).toBeUndefined();
    expect(typeof summary.timing.fitMs).toBe('number');
  });

  it('a curve with NaN gets a failure status, the others converge, the exit code is 0', () => {
    const bad = Float64Array.from(y.subarray(0, 20 * N));
    bad[7 * N + 3] = NaN;
    writeNpy('y-nan.npy', bad, [20, N]);
    writeNpy('p0-20.npy', p0.subarray(0, 20 * P), [20, P]);
    const run = nlfit('batch', 'y-nan.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'p0-20.npy', '--json');
    expect(run.status).toBe(0);
    const result = parse(run.stdout);
    expect(kConverged).not.toContain(result.status![7]);
    expect(result.converged).toBe(19);
    result.status!.forEach((status, c) => {
      if (c !== 7) expect(kConverged).toContain(status);
    });
    expect(result.params!.slice(8)).toEqual(full.params!.slice(8, 20));
  });

  it('fits a two-variable model (5x5 images) with x1, x2 shared and per-curve x', async () => {
    const images = 30;
    const x1 = Float64Array.from({ length: 25 }, (_, i) => i % 5);
    const x2 = Float64Array.from({ length: 25 }, (_, i) => Math.floor(i / 5));
    const pixels = new Float64Array(images * 25);
    const next = random(7);
    for (let k = 0; k < images; k++) {
      const [a, u, v, s, c] = [5 + next(), 1.5 + next(), 1.5 + next(), 0.8 + 0.4 * next(), 1 + next()];
      for (let i = 0; i < 25; i++) pixels[k * 25 + i] = a * Math.exp(-((x1[i]! - u) ** 2 + (x2[i]! - v) ** 2) / (2 * s * s)) + c;
    }
    writeNpy('pixels.npy', pixels, [images, 25]);
    writeNpy('x1.npy', x1, [25]);
    writeNpy('x2.npy', x2, [25]);
    const perCurve = new Float64Array(images * 25);
    for (let k = 0; k < images; k++) perCurve.set(x2, k * 25);
    writeNpy('x2-per-curve.npy', perCurve, [images, 25]);
    const model = 'a*exp(-((x1-u)^2+(x2-v)^2)/(2*s^2))+c';
    const start = 'a=5,u=2,v=2,s=1,c=1';
    const shared = nlfit('batch', 'pixels.npy', '--model', model, '--x', 'x1=x1.npy,x2=x2.npy', '--p0', start, '--json');
    expect(shared.stderr).toBe('');
    expect(shared.status).toBe(0);
    const result = parse(shared.stdout);
    expect(result.paramNames).toEqual(['a', 'u', 'v', 's', 'c']);
    expect(result.converged).toBe(images);
    const library = await engine.fitMany({ model, x: { x1, x2 }, y: pixels, p0: { a: 5, u: 2, v: 2, s: 1, c: 1 } });
    expect(result.params!.flat()).toEqual(Array.from(library.params));
    // x1 shared and x2 one row per image: x1 is repeated per curve; the same fits.
    const mixed = nlfit('batch', 'pixels.npy', '--model', model, '--x', 'x1=x1.npy,x2=x2-per-curve.npy', '--p0', start, '--json');
    expect(mixed.status).toBe(0);
    expect(parse(mixed.stdout).converged).toBe(images);
  });

  it('--progress writes progress to stderr only; stdout stays JSON', () => {
    const run = nlfit('batch', 'y.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'p0.npy', '--shard', '0/2', '--progress', '--json');
    expect(run.status).toBe(0);
    expect(run.stderr).toMatch(/^nlfit: y\.npy: curves 0\.\.99 of 200/);
    expect(run.stderr).toMatch(/batch shard 0\/2: 100 curves done/);
    expect(parse(run.stdout).curves.fitted).toBe(100);
  });

  it('usage errors exit 2', () => {
    const cases: Array<[string[], RegExp]> = [
      [['y.npy', '--x', 'x.npy'], /batch needs --model/],
      [['--model', 'gaussian'], /batch needs the curves/],
      [['y.npy', 'x.npy', '--model', 'gaussian'], /takes one file of curves/],
      [['y.npy', '--model', 'gaussian', '--shardd', '1/4'], /unknown flag --shardd \(did you mean --shard\?\)/],
      [['y.npy', '--model', 'gaussian', '--shard', '4/4'], /Expected i\/n with 0 <= i < n .* for --shard but received '4\/4'/],
      [['y.npy', '--model', 'gaussian', '--shard', '1-4'], /for --shard but received '1-4'/],
      [['y.npy', '--model', 'gaussian', '--out', 'no/such/folder/run'], /--out no\/such\/folder\/run: the folder 'no\/such\/folder' does not exist/],
      [['y.npy', '--model', 'gaussian', '--loss', 'hubber'], /--loss/],
      [['y.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'a=1,mu=5,s=1,q=0'], /p0\.q/],
      [['y.npy', '--model', 'a*exp(-b*x)', '--x', 'x.npy'], /p0/],
      [['y.npy', '--model', 'a*exp(-b*x', '--x', 'x.npy', '--p0', 'a=1,b=1'], /./],
      [['y.npy', '--model', 'gaussian', '--x', 'x.npy', '--f-scale', '2'], /--f-scale applies to a robust --loss/],
      [['y.npy', '--model', 'gaussian', '--x', 'a.npy,b.npy'], /several files need the names/],
    ];
    for (const [args, message] of cases) {
      const run = nlfit('batch', ...args);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(message);
      expect(run.stderr).toMatch(/Run 'nlfit batch --help' for the options\./);
      expect(run.status, args.join(' ')).toBe(2);
    }
  });

  it('data errors exit 3', () => {
    writeNpy('y-1d.npy', y.subarray(0, N), [N]);
    writeNpy('x-short.npy', x.subarray(0, N - 1), [N - 1]);
    writeNpy('p0-short.npy', p0.subarray(0, 10 * P), [10, P]);
    const p0nan = Float64Array.from(p0);
    p0nan[5 * P + 2] = NaN;
    writeNpy('p0-nan.npy', p0nan, [M, P]);
    writeNpy('y-int.npy', Int32Array.from({ length: 4 }, (_, i) => i), [2, 2]);
    const cases: Array<[string[], RegExp]> = [
      [['missing.npy', '--model', 'gaussian'], /y: cannot open 'missing\.npy': no such file/],
      [['y-1d.npy', '--model', 'gaussian'], /y-1d\.npy: shape \(32,\): expected a 2-D array/],
      [['y-int.npy', '--model', 'gaussian'], /y-int\.npy: dtype '<i4' is not supported/],
      [['y.npy', '--model', 'gaussian', '--x', 'x-short.npy'], /x-short\.npy: shape \(31,\) does not match y \(200, 32\)/],
      [['y.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'p0-short.npy'], /p0-short\.npy: shape \(10, 4\): expected one row of starting values per curve of y \(200 rows\)/],
      [['y.npy', '--model', 'gaussian', '--x', 'x.npy', '--p0', 'p0-nan.npy'], /p0-nan\.npy: the starting value at row 5, column 2 is NaN/],
    ];
    for (const [args, message] of cases) {
      const run = nlfit('batch', ...args);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(message);
      expect(run.status, args.join(' ')).toBe(3);
    }
  });

  it('is listed in the help', () => {
    const main = nlfit('--help');
    expect(main.stdout).toMatch(/batch <y\.npy> --model <m>/);
    const help = nlfit('help', 'batch');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: nlfit batch <y\.npy>/);
    expect(help.stdout).toMatch(/--shard <i\/n>/);
  });
});

function countBy(values: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
