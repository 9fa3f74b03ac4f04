// Data sources: every kind of file and stream nlfit reads gives the same bits
// for any row range; bad files are errors naming the file; spill files never
// outlive their source or a failed ingest. Fixtures are written at test time.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSourceSpec, memorySource, openSource, type ColumnSource } from '../dist/data/sources/index.js';

const execFileAsync = promisify(execFile);
const kRows = 5003;
const kNames = ['x', 'y', 'z'] as const;
const kBuffer = { bufferBytes: 64 << 20 };

/** Values that are hard to round-trip: short decimals, thirds, extremes, subnormals. */
const kAwkward = [
  0.1, 1 / 3, 1e-300, -2.5e300, 5e-324, 2.2250738585072014e-308 / 7, -1e-310, 1.7976931348623157e308,
  0.30000000000000004, 123456789.12345679, 1e-40, 3.4e38, -7, 0, 2 / 3, 6.02214076e23,
];

/** Deterministic awkward data: every 5th value from kAwkward, the rest spread over 60 decades. */
function makeColumn(rows: number, seed: number): Float64Array {
  const values = new Float64Array(rows);
  let state = seed * 2654435761 + 1;
  for (let i = 0; i < rows; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const unit = (state >>> 0) / 2 ** 32;
    values[i] = i % 5 === 0 ? kAwkward[(i / 5 + seed) % kAwkward.length]! : (unit - 0.5) * 10 ** (((state >>> 0) % 61) - 30);
  }
  return values;
}

function columnsOf(rows: number): Record<string, Float64Array> {
  return Object.fromEntries(kNames.map((name, i) => [name, makeColumn(rows, i + 1)]));
}

const data = columnsOf(kRows);
const dataF32 = Object.fromEntries(kNames.map((name) => [name, Float64Array.from(data[name]!, Math.fround)]));

/** The first row where two arrays differ in bits, or -1. */
function firstDifference(actual: Float64Array, expected: Float64Array): number {
  if (actual.length !== expected.length) return Math.min(actual.length, expected.length);
  const a = new BigUint64Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new BigUint64Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function floatBytes(values: ArrayLike<number>, itemBytes: 4 | 8, littleEndian: boolean): Uint8Array {
  const bytes = new Uint8Array(values.length * itemBytes);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) {
    if (itemBytes === 8) view.setFloat64(i * 8, values[i]!, littleEndian);
    else view.setFloat32(i * 4, values[i]!, littleEndian);
  }
  return bytes;
}

/** A .npy file as the spec lays it out: magic, version, header length, dict padded to 64 bytes, data. */
function npyBytes(descr: string, shape: number[], fortranOrder: boolean, body: Uint8Array, version: 1 | 2 = 1): Buffer {
  const shapeText = `(${shape.join(', ')}${shape.length === 1 ? ',' : ''})`;
  const dict = `{'descr': '${descr}', 'fortran_order': ${fortranOrder ? 'True' : 'False'}, 'shape': ${shapeText}, }`;
  const preambleBytes = version === 1 ? 10 : 12;
  const total = Math.ceil((preambleBytes + dict.length + 1) / 64) * 64;
  const header = `${dict.padEnd(total - preambleBytes - 1, ' ')}\n`;
  const preamble = Buffer.alloc(preambleBytes);
  preamble.write('\x93NUMPY', 'latin1');
  preamble[6] = version;
  preamble[7] = 0;
  if (version === 1) preamble.writeUInt16LE(header.length, 8);
  else preamble.writeUInt32LE(header.length, 8);
  return Buffer.concat([preamble, Buffer.from(header, 'latin1'), body]);
}

/** Row-major (C order) or column-major (Fortran order) values of the named columns. */
function table(columns: Record<string, Float64Array>, fortranOrder: boolean): Float64Array {
  const rows = columns[kNames[0]]!.length;
  const out = new Float64Array(rows * kNames.length);
  kNames.forEach((name, j) => {
    const values = columns[name]!;
    for (let i = 0; i < rows; i++) out[fortranOrder ? j * rows + i : i * kNames.length + j] = values[i]!;
  });
  return out;
}

function csvText(columns: Record<string, Float64Array>, lineEnd = '\n'): string {
  const rows = columns[kNames[0]]!.length;
  const lines = [kNames.join(',')];
  for (let i = 0; i < rows; i++) lines.push(kNames.map((name) => String(columns[name]![i])).join(','));
  return lines.join(lineEnd) + lineEnd;
}

async function* chunksOf(columns: Record<string, Float64Array>, sizes: number[]): AsyncGenerator<Record<string, ArrayLike<number>>> {
  const rows = columns[kNames[0]]!.length;
  let start = 0;
  for (let c = 0; start < rows; c++) {
    const end = Math.min(rows, start + sizes[c % sizes.length]!);
    // Alternate typed arrays and plain number arrays.
    yield Object.fromEntries(
      kNames.map((name, j) => {
        const part = columns[name]!.subarray(start, end);
        return [name, (c + j) % 2 === 0 ? part : Array.from(part)];
      }),
    );
    start = end;
  }
}

let dir = '';
const at = (name: string): string => join(dir, name);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nlfit-sources-test-'));
  const files: [string, Uint8Array | string][] = [
    ['data.csv', csvText(data)],
    ['data.csv.gz', gzipSync(csvText(data))],
    ['c.npy', npyBytes('<f8', [kRows, 3], false, floatBytes(table(data, false), 8, true))],
    ['fortran.npy', npyBytes('<f8', [kRows, 3], true, floatBytes(table(data, true), 8, true))],
    ['c-v2.npy', npyBytes('<f8', [kRows, 3], false, floatBytes(table(data, false), 8, true), 2)],
    ['big-endian-c.npy', npyBytes('>f8', [kRows, 3], false, floatBytes(table(data, false), 8, false))],
    ['c-f32-big-endian.npy', npyBytes('>f4', [kRows, 3], false, floatBytes(table(data, false), 4, false))],
  ];
  for (const name of kNames) {
    files.push(
      [`${name}.npy`, npyBytes('<f8', [kRows], false, floatBytes(data[name]!, 8, true))],
      [`${name}-be.npy`, npyBytes('>f8', [kRows], false, floatBytes(data[name]!, 8, false))],
      [`${name}-f32.npy`, npyBytes('<f4', [kRows], false, floatBytes(data[name]!, 4, true))],
      [`${name}.bin`, floatBytes(data[name]!, 8, true)],
      [`${name}-f32.bin`, floatBytes(data[name]!, 4, true)],
    );
  }
  await Promise.all(files.map(([name, contents]) => writeFile(at(name), contents)));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Row ranges a streaming pass might read, including empty and last partial ones. */
const kRanges: [number, number][] = [
  [0, kRows],
  [1237, 777],
  [0, 1],
  [4000, 1000],
  [5000, 3],
  [kRows - 1, 1],
  [0, 0],
  [kRows, 0],
];

/** Reads ranges into SharedArrayBuffer views at an offset, with guard values past `count`, and compares bits. */
async function expectSameData(source: ColumnSource, expected: Record<string, Float64Array>): Promise<void> {
  expect(source.nRows).toBe(kRows);
  expect([...source.columns]).toEqual([...kNames]);
  for (const [start, count] of kRanges) {
    const into = Object.fromEntries(
      kNames.map((name) => [name, new Float64Array(new SharedArrayBuffer((count + 3) * 8), 8, count + 2).fill(42)]),
    );
    await source.read(start, count, into);
    for (const name of kNames) {
      const got = into[name]!;
      const where = firstDifference(got.subarray(0, count), expected[name]!.subarray(start, start + count));
      expect(where, `${source.description}: column ${name}, rows [${start}, ${start + count}), first difference`).toBe(-1);
      expect([got[count], got[count + 1]], 'values past count are untouched').toEqual([42, 42]);
    }
  }
  // A pass in chunks of 1000 rows, reading one column only.
  const y = new Float64Array(kRows);
  for (let start = 0; start < kRows; start += 1000) {
    const count = Math.min(1000, kRows - start);
    const chunk = new Float64Array(count);
    await source.read(start, count, { y: chunk });
    y.set(chunk, start);
  }
  expect(firstDifference(y, expected.y!), `${source.description}: y read in chunks`).toBe(-1);
}

async function expectSourceReads(spec: () => unknown, expected: Record<string, Float64Array>, options = kBuffer): Promise<ColumnSource> {
  const source = await openSource(spec(), options);
  try {
    await expectSameData(source, expected);
  } finally {
    await source.close();
  }
  await source.close();
  await expect(source.read(0, 1, { x: new Float64Array(1) })).rejects.toThrow(/closed/);
  return source;
}

describe('every source returns identical bits for any row range', () => {
  const float64Cases: [string, () => unknown, string][] = [
    ['CSV', () => at('data.csv'), 'csv'],
    ['gzipped CSV', () => at('data.csv.gz'), 'csv'],
    ['CSV as { path }', () => ({ path: at('data.csv') }), 'csv'],
    ['1-D npy per column', () => Object.fromEntries(kNames.map((n) => [n, at(`${n}.npy`)])), 'npy'],
    ['1-D big-endian npy per column', () => Object.fromEntries(kNames.map((n) => [n, at(`${n}-be.npy`)])), 'npy'],
    ['2-D npy, C order', () => ({ path: at('c.npy'), columns: [...kNames] }), 'npy'],
    ['2-D npy, Fortran order', () => ({ path: at('fortran.npy'), columns: [...kNames] }), 'npy'],
    ['2-D npy, format version 2.0', () => ({ path: at('c-v2.npy'), columns: [...kNames] }), 'npy'],
    ['2-D big-endian npy', () => ({ path: at('big-endian-c.npy'), columns: [...kNames] }), 'npy'],
    ['binary columns', () => Object.fromEntries(kNames.map((n) => [n, at(`${n}.bin`)])), 'binary'],
    [
      'npy and binary columns mixed',
      () => ({ x: at('x.npy'), y: at('y.bin'), z: { path: at('z.bin'), dtype: 'float64' } }),
      'binary',
    ],
    ['an async iterable', () => chunksOf(data, [1000, 1, 0, 2499, 333]), 'stream'],
    ['a ColumnSource', () => memorySource({ x: data.x!, y: Array.from(data.y!), z: data.z! }), 'memory'],
  ];
  for (const [label, spec, kind] of float64Cases) {
    it(label, async () => {
      expect(isSourceSpec(spec())).toBe(true);
      const source = await expectSourceReads(spec, data);
      expect(source.kind).toBe(kind);
    });
  }

  const float32Cases: [string, () => unknown][] = [
    ['float32 binary columns', () => Object.fromEntries(kNames.map((n) => [n, { path: at(`${n}-f32.bin`), dtype: 'float32' }]))],
    ['float32 npy columns', () => Object.fromEntries(kNames.map((n) => [n, at(`${n}-f32.npy`)]))],
    ['2-D big-endian float32 npy', () => ({ path: at('c-f32-big-endian.npy'), columns: [...kNames] })],
  ];
  for (const [label, spec] of float32Cases) {
    it(`${label} (Math.fround of the data)`, async () => {
      await expectSourceReads(spec, dataF32);
    });
  }

  it('a stream and a CSV that spill to disk read the same', async () => {
    const tmpDir = at('spill-small');
    await mkdir(tmpDir);
    const options = { bufferBytes: 16 << 10, tmpDir };
    await expectSourceReads(() => chunksOf(data, [700]), data, options);
    await expectSourceReads(() => at('data.csv'), data, options);
    expect(await readdir(tmpDir)).toEqual([]);
  });

  it('reads only the columns asked for, and checks the request', async () => {
    const source = await openSource({ path: at('c.npy'), columns: [...kNames] }, kBuffer);
    try {
      const z = new Float64Array(10);
      await source.read(100, 10, { z });
      expect(firstDifference(z, data.z!.subarray(100, 110))).toBe(-1);
      await expect(source.read(kRows - 5, 10, { z })).rejects.toThrow(/outside the source's 5003 rows/);
      await expect(source.read(0, 10, { q: z })).rejects.toThrow(/'q' is not a column/);
      await expect(source.read(0, 20, { z })).rejects.toThrow(/at least 20 values/);
      await expect(source.read(1.5, 1, { z })).rejects.toThrow(TypeError);
    } finally {
      await source.close();
    }
  });
});

describe('CSV details', () => {
  it('BOM, CRLF, quoted fields, blank lines, no final newline, nan and inf in any case', async () => {
    const path = at('details.csv');
    const text = '\uFEFF"time, s","y ""raw""",w\r\n1,"2.5","-0.5"\r\n\r\n 3 , " 4 ",nan\r\n5,6,-INF\r\n7,8,Infinity';
    await writeFile(path, text);
    const source = await openSource(path, kBuffer);
    try {
      expect([...source.columns]).toEqual(['time, s', 'y "raw"', 'w']);
      const into = { 'time, s': new Float64Array(4), 'y "raw"': new Float64Array(4), w: new Float64Array(4) };
      await source.read(0, 4, into);
      expect([...into['time, s']]).toEqual([1, 3, 5, 7]);
      expect([...into['y "raw"']]).toEqual([2.5, 4, 6, 8]);
      expect([...into.w]).toEqual([-0.5, NaN, -Infinity, Infinity]);
    } finally {
      await source.close();
    }
  });

  it('a quoted header spanning lines keeps the line numbers of later rows right', async () => {
    const path = at('multiline.csv');
    await writeFile(path, 'x,"y\nsecond line"\n1,2\n3,oops\n');
    await expect(openSource(path, kBuffer)).rejects.toThrow(`${path} line 4, column 'y\nsecond line': 'oops' is not a number`);
  });

  it('a large CRLF CSV read in many stream chunks, spilled', async () => {
    const tmpDir = at('spill-csv');
    await mkdir(tmpDir);
    const big = columnsOf(60_000);
    const path = at('big.csv');
    await writeFile(path, csvText(big, '\r\n'));
    const source = await openSource(path, { bufferBytes: 64 << 10, tmpDir });
    try {
      expect(await readdir(tmpDir)).toHaveLength(1);
      const into = Object.fromEntries(kNames.map((name) => [name, new Float64Array(60_000)]));
      await source.read(0, 60_000, into);
      for (const name of kNames) expect(firstDifference(into[name]!, big[name]!), name).toBe(-1);
    } finally {
      await source.close();
    }
    expect(await readdir(tmpDir)).toEqual([]);
  });
});

describe('spilling a stream', () => {
  const bigRows = 44_000; // 3 columns x 8 bytes x 44000 rows = 1.06 MB
  const big = columnsOf(bigRows);

  it('beyond bufferBytes, the stream goes to one temporary file that close() removes', async () => {
    const tmpDir = at('spill-stream');
    await mkdir(tmpDir);
    const source = await openSource(chunksOf(big, [1000, 4096, 17]), { bufferBytes: 64 << 10, tmpDir });
    try {
      const spillDirectories = await readdir(tmpDir);
      expect(spillDirectories).toHaveLength(1);
      const spillFiles = await readdir(join(tmpDir, spillDirectories[0]!));
      expect(spillFiles).toHaveLength(1);
      expect((await stat(join(tmpDir, spillDirectories[0]!, spillFiles[0]!))).size).toBe(bigRows * 3 * 8);
      const into = Object.fromEntries(kNames.map((name) => [name, new Float64Array(bigRows)]));
      await source.read(0, bigRows, into);
      for (const name of kNames) expect(firstDifference(into[name]!, big[name]!), name).toBe(-1);
      const y = new Float64Array(777);
      await source.read(31_237, 777, { y });
      expect(firstDifference(y, big.y!.subarray(31_237, 31_237 + 777))).toBe(-1);
    } finally {
      await source.close();
    }
    expect(await readdir(tmpDir)).toEqual([]);
  });

  it('within bufferBytes, nothing is written to disk', async () => {
    const tmpDir = at('spill-none');
    await mkdir(tmpDir);
    const source = await openSource(chunksOf(big, [5000]), { bufferBytes: 2 << 20, tmpDir });
    expect(await readdir(tmpDir)).toEqual([]);
    const x = new Float64Array(bigRows);
    await source.read(0, bigRows, { x });
    expect(firstDifference(x, big.x!)).toBe(-1);
    await source.close();
  });

  it('a buffered stream of several memory blocks reads across their boundaries', async () => {
    const rows = 400_000; // 9.6 MB: more than one 4 MiB block of the in-memory store
    const large = columnsOf(rows);
    const source = await openSource(chunksOf(large, [65_536, 3]), { bufferBytes: 64 << 20 });
    try {
      const into = Object.fromEntries(kNames.map((name) => [name, new Float64Array(rows)]));
      for (let start = 0; start < rows; start += 7919) {
        const count = Math.min(7919, rows - start);
        const part = Object.fromEntries(kNames.map((name) => [name, into[name]!.subarray(start)]));
        await source.read(start, count, part);
      }
      for (const name of kNames) expect(firstDifference(into[name]!, large[name]!), name).toBe(-1);
    } finally {
      await source.close();
    }
  });

  it('an iterable that throws after some chunks: the same error, and the spill file is gone', async () => {
    const tmpDir = at('spill-throw');
    await mkdir(tmpDir);
    const failure = new Error('the upstream connection dropped');
    async function* broken(): AsyncGenerator<Record<string, ArrayLike<number>>> {
      yield* chunksOf(big, [1000]);
      throw failure;
    }
    await expect(openSource(broken(), { bufferBytes: 64 << 10, tmpDir })).rejects.toBe(failure);
    expect(await readdir(tmpDir)).toEqual([]);
  });

  it('a malformed chunk after the spill: an error naming the chunk and column, and the spill file is gone', async () => {
    const tmpDir = at('spill-malformed');
    await mkdir(tmpDir);
    async function* malformed(): AsyncGenerator<unknown> {
      for (let c = 0; c < 40; c++) yield { x: big.x!.subarray(0, 1000), y: big.y!.subarray(0, 1000), z: big.z!.subarray(0, 1000) };
      yield { x: [1, 2], y: [1, 2, 3], z: [1, 2] };
    }
    await expect(openSource(malformed(), { bufferBytes: 64 << 10, tmpDir })).rejects.toThrow(
      "Invalid data chunk 40: column 'y' has 3 values but column 'x' has 2",
    );
    expect(await readdir(tmpDir)).toEqual([]);
    async function* wrongColumns(): AsyncGenerator<unknown> {
      yield { x: [1], y: [2] };
      yield { x: [1], w: [2] };
    }
    await expect(openSource(wrongColumns(), kBuffer)).rejects.toThrow("Invalid data chunk 1: column 'y' is missing");
    async function* notNumbers(): AsyncGenerator<unknown> {
      yield { x: [1, 'two'] };
    }
    await expect(openSource(notNumbers(), kBuffer)).rejects.toThrow("data chunk 0, column 'x'[1]");
  });

  it('a process that exits without close() still removes its spill files', async () => {
    const tmpDir = at('spill-exit');
    await mkdir(tmpDir);
    const script = at('exit-without-close.mjs');
    const sources = pathToFileURL(join(process.cwd(), 'dist/data/sources/index.js')).href;
    await writeFile(
      script,
      `import { readdirSync } from 'node:fs';
       import { openSource } from ${JSON.stringify(sources)};
       async function* chunks() { for (let c = 0; c < 10; c++) yield { x: new Float64Array(10000).fill(c) }; }
       await openSource(chunks(), { bufferBytes: 1024, tmpDir: ${JSON.stringify(tmpDir)} });
       console.log(readdirSync(${JSON.stringify(tmpDir)}).length);
       process.exit(0);`,
    );
    const { stdout } = await execFileAsync(process.execPath, [script]);
    expect(stdout.trim(), 'spill directories while the source was open').toBe('1');
    expect(await readdir(tmpDir)).toEqual([]);
  });

  it('a CSV with a bad value after the spill leaves no file behind', async () => {
    const tmpDir = at('spill-bad-csv');
    await mkdir(tmpDir);
    const path = at('bad-late.csv');
    await writeFile(path, `${csvText(columnsOf(20_000))}1,2,abc\n`);
    await expect(openSource(path, { bufferBytes: 64 << 10, tmpDir })).rejects.toThrow(`${path} line 20002, column 'z': 'abc' is not a number`);
    expect(await readdir(tmpDir)).toEqual([]);
  });
});

describe('bad files and specs are errors naming the file', () => {
  it('a truncated npy: expected and actual bytes', async () => {
    const path = at('truncated.npy');
    const whole = npyBytes('<f8', [100], false, floatBytes(data.x!.subarray(0, 100), 8, true));
    await writeFile(path, whole.subarray(0, whole.length - 12));
    await expect(openSource({ x: path }, kBuffer)).rejects.toThrow(
      `${path}: the file is truncated: expected ${whole.length} bytes for a 128-byte header and shape (100,) of float64, found ${whole.length - 12}`,
    );
  });

  it('unsupported dtypes', async () => {
    for (const [descr, itemBytes] of [['<i4', 4], ['<c16', 16], ['|O', 8], ['<f2', 2], ['|f8', 8]] as const) {
      const path = at(`dtype-${itemBytes}-${descr.replace(/\W/g, '')}.npy`);
      await writeFile(path, npyBytes(descr, [10], false, new Uint8Array(10 * itemBytes)));
      await expect(openSource({ x: path }, kBuffer)).rejects.toThrow(
        `${path}: dtype '${descr}' is not supported; expected float64 or float32 ('<f8', '<f4')`,
      );
    }
  });

  it('headers that are not what the spec says', async () => {
    const cases: [string, Buffer, RegExp][] = [
      ['3-D', npyBytes('<f8', [2, 2, 2], false, new Uint8Array(64)), /shape \(2, 2, 2\) has 3 dimensions/],
      ['no magic', Buffer.from('just some text, not an array'), /is not a \.npy file/],
      ['version 4.0', Buffer.concat([Buffer.from('\x93NUMPY\x04\x00', 'latin1'), Buffer.alloc(60)]), /version 4\.0 is not supported/],
    ];
    for (const [label, bytes, message] of cases) {
      const path = at(`header-${label}.npy`);
      await writeFile(path, bytes);
      await expect(openSource({ x: path }, kBuffer), label).rejects.toThrow(message);
    }
  });

  it('a 2-D npy with the wrong number of column names', async () => {
    await expect(openSource({ path: at('c.npy'), columns: ['x', 'y'] }, kBuffer)).rejects.toThrow(
      `Invalid data.columns: 2 column names (x, y) given for '${at('c.npy')}', whose shape (5003, 3) has 3 columns`,
    );
    await expect(openSource({ x: at('c.npy') }, kBuffer)).rejects.toThrow(/a column file must be 1-D/);
  });

  it('a CSV value that is not a number: line and column', async () => {
    const lines = csvText(data).split('\n');
    for (const [bad, shown] of [['abc', "'abc' is not a number"], ['"1,2"', "'1,2' is not a number"], ['', 'the field is empty'], ['0x10', "'0x10' is not a number"]]) {
      const edited = [...lines];
      edited[16] = `0.5,${bad},1`; // line 17: the header is line 1
      const path = at('bad-number.csv');
      await writeFile(path, edited.join('\n'));
      await expect(openSource(path, kBuffer)).rejects.toThrow(`${path} line 17, column 'y': ${shown}`);
    }
  });

  it('a CSV row with the wrong number of fields', async () => {
    const lines = csvText(data).split('\n');
    lines[22] = '1,2';
    const path = at('ragged.csv');
    await writeFile(path, lines.join('\n'));
    await expect(openSource(path, kBuffer)).rejects.toThrow(`${path} line 23: expected 3 fields (x, y, z), found 2`);
    await writeFile(path, '');
    await expect(openSource(path, kBuffer)).rejects.toThrow(`${path}: the file is empty`);
  });

  it('column files with different row counts: both files and counts', async () => {
    const short = at('short.bin');
    await writeFile(short, floatBytes(data.y!.subarray(0, 5000), 8, true));
    await expect(openSource({ x: at('x.npy'), y: short }, kBuffer)).rejects.toThrow(
      `Invalid data: columns differ in length: data.y ('${short}') has 5000 rows, data.x ('${at('x.npy')}') has 5003`,
    );
    const odd = at('odd.bin');
    await writeFile(odd, new Uint8Array(20));
    await expect(openSource({ x: odd }, kBuffer)).rejects.toThrow(`${odd}: its 20 bytes are not a whole number of float64 values (8 bytes each)`);
  });

  it('a file that shrinks after it was opened: the read rejects naming the file', async () => {
    const path = at('shrinks.bin');
    await writeFile(path, floatBytes(data.x!, 8, true));
    const source = await openSource({ x: path }, kBuffer);
    try {
      await truncate(path, 800);
      await expect(source.read(50, 100, { x: new Float64Array(100) })).rejects.toThrow(
        `${path}: the file ends at byte 800 but the read needs bytes up to 1200`,
      );
    } finally {
      await source.close();
    }
  });

  it('a file that does not exist', async () => {
    const missing = at('missing.npy');
    await expect(openSource({ x: at('x.npy'), y: missing }, kBuffer)).rejects.toThrow(`data.y: cannot open '${missing}': no such file`);
    await expect(openSource(at('missing.csv'), kBuffer)).rejects.toThrow(`data: cannot open '${at('missing.csv')}': no such file`);
  });

  it('extensions and spec shapes it does not know', async () => {
    await expect(openSource('data.txt', kBuffer)).rejects.toThrow(/'data\.txt' has an unsupported extension; expected \.csv, \.csv\.gz, or \.npy/);
    await expect(openSource({ x: 'x.dat' }, kBuffer)).rejects.toThrow(/Invalid data\.x: 'x\.dat' has an unsupported extension; expected \.npy \(1-D\) or \.bin/);
    await expect(openSource(at('c.npy'), kBuffer)).rejects.toThrow(/a \.npy file needs names for its columns: pass \{ path: /);
    await expect(openSource({ x: 'x.npy', y: [1, 2] }, kBuffer)).rejects.toThrow(/Expected a file path or \{ path, dtype \}.* for data\.y/);
    await expect(openSource({ x: { path: 'x.bin', dtype: 'int8' } }, kBuffer)).rejects.toThrow(/'float64' or 'float32' for data\.x\.dtype/);
    await expect(openSource(42, kBuffer)).rejects.toThrow(TypeError);
    await expect(openSource('data.csv', { bufferBytes: -1 })).rejects.toThrow('Expected non-negative number for bufferBytes but received -1 of type number');
  });

  it('memorySource checks its columns', () => {
    expect(() => memorySource({ x: [1, 2, 3], y: [1, 2] })).toThrow(RangeError);
    expect(() => memorySource({ x: [1, 2, 3], y: [1, 2] })).toThrow(/column 'y' has 2 values but column 'x' has 3/);
  });
});

describe('isSourceSpec', () => {
  it('tells source specs from in-memory columns', () => {
    const source = memorySource({ x: [1] });
    const specs: unknown[] = ['data.csv', { path: 'data.csv' }, { path: 'd.npy', columns: ['x'] }, { x: 'x.npy' }, { y: { path: 'y.bin' } }, chunksOf(data, [10]), source];
    for (const spec of specs) expect(isSourceSpec(spec)).toBe(true);
    const notSpecs: unknown[] = [{ x: [1, 2], y: new Float64Array(2) }, { path: [1, 2] }, null, 42, [1, 2], new Float64Array(2)];
    for (const value of notSpecs) expect(isSourceSpec(value)).toBe(false);
  });
});
