/**
 * Whole-array .npy reading and writing for `nlfit batch`.
 *
 * Reading goes through the data layer's own header parser and size check
 * (src/data/sources/npy.ts, openNpyFile) and its positioned reads
 * (positionedRead.ts, readRows): a range of rows of a 1-D or 2-D float64 or
 * float32 array, in either byte order and either memory order, comes back as
 * float64 in C (row-major) order in shared memory, so fitMany uses it without
 * another copy. Only the requested rows are read from the file: a task of a
 * job array reads its own part of y, not all of it.
 *
 * Writing produces format 1.0 files (header padded to a multiple of 64
 * bytes, as numpy writes them) in C order, through a temporary file renamed
 * into place, so a reader never sees half a file.
 *
 *   const y = await openNpy('y.npy', 'y');          // y.shape: [M, n]
 *   const rows = await y.readRows(50, 100);         // 50 x n values
 *   await y.close();
 *   await writeNpyFile('out.params.npy', params, [m, p]);
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { openNpyFile, shapeText, type NpyFile } from '../data/sources/npy.js';
import { kHostLittleEndian, readRows, type RowLayout } from '../data/sources/positionedRead.js';

export { shapeText };

/** An opened .npy array (header checked); read ranges of its rows, then close it. */
export interface NpyArray {
  readonly path: string;
  /** (rows,) or (rows, columns). */
  readonly shape: readonly number[];
  readonly rows: number;
  /** Values per row: 1 for a 1-D array. */
  readonly width: number;
  readonly dtype: 'float64' | 'float32';
  readonly fortranOrder: boolean;
  /** Rows [start, end) as float64, row-major, in a SharedArrayBuffer. */
  readRows(start: number, end: number): Promise<Float64Array>;
  close(): Promise<void>;
}

function sharedFloat64(length: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(Math.max(1, length) * 8)).subarray(0, length);
}

function layoutAt(file: NpyFile, offset: number): RowLayout {
  return { fh: file.fh, path: file.path, offset, itemBytes: file.itemBytes, littleEndian: file.littleEndian, width: 1 };
}

async function readRowRange(file: NpyFile, start: number, end: number): Promise<Float64Array> {
  const count = end - start;
  const width = file.width;
  const out = sharedFloat64(count * width);
  if (count === 0 || width === 0) return out;
  if (file.shape.length === 1 || !file.fortranOrder || width === 1) {
    // Row-major on disk: the rows are one contiguous run of values.
    await readRows(layoutAt(file, file.dataOffset), start * width, count * width, [out]);
    return out;
  }
  // Fortran order: each column is contiguous; read its part and interleave.
  const column = new Float64Array(count);
  for (let j = 0; j < width; j++) {
    await readRows(layoutAt(file, file.dataOffset + j * file.rows * file.itemBytes), start, count, [column]);
    for (let r = 0, k = j; r < count; r++, k += width) out[k] = column[r]!;
  }
  return out;
}

/** Opens a .npy file (1-D or 2-D, float64 or float32); `field` names it if it cannot be opened. */
export async function openNpy(path: string, field: string): Promise<NpyArray> {
  const file = await openNpyFile(path, field);
  return {
    path,
    shape: file.shape,
    rows: file.rows,
    width: file.width,
    dtype: file.itemBytes === 8 ? 'float64' : 'float32',
    fortranOrder: file.fortranOrder,
    readRows: (start, end) => {
      if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= file.rows)) {
        throw new RangeError(`${path}: rows ${start}..${end} are outside its ${file.rows} rows`);
      }
      return readRowRange(file, start, end);
    },
    close: () => file.fh.close(),
  };
}

/** The whole of a .npy file as float64, row-major, with its shape. */
export async function readNpy(path: string, field: string): Promise<{ shape: readonly number[]; data: Float64Array }> {
  const array = await openNpy(path, field);
  try {
    return { shape: array.shape, data: await array.readRows(0, array.rows) };
  } finally {
    await array.close();
  }
}

export type NpyWritable = Float64Array | Int32Array | Uint8Array;

/** The dtype string of a typed array in this host's byte order. */
function descrOf(values: NpyWritable): string {
  const order = kHostLittleEndian ? '<' : '>';
  if (values instanceof Float64Array) return `${order}f8`;
  if (values instanceof Int32Array) return `${order}i4`;
  return '|u1';
}

/** The format 1.0 preamble and header for an array of `shape`, padded so the data starts on a 64-byte boundary. */
export function npyHeader(descr: string, shape: readonly number[]): Buffer {
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText(shape)}, }`;
  const unpadded = 10 + dict.length + 1;
  const text = dict + ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  if (text.length > 0xffff) throw new RangeError(`a .npy header of ${text.length} bytes does not fit format 1.0`);
  const out = Buffer.alloc(10 + text.length);
  out.write('\x93NUMPY', 0, 'latin1');
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(text.length, 8);
  out.write(text, 10, 'latin1');
  return out;
}

/** Bytes the fs layer accepts per write, comfortably below its 2^31 - 1 limit. */
const kWriteBytes = 1 << 30;

/**
 * Writes `values` (C order, `shape`) as a .npy file: to a temporary file in
 * the same folder, then renamed over `path`. The temporary file is removed if
 * anything fails.
 */
export async function writeNpyFile(path: string, values: NpyWritable, shape: readonly number[]): Promise<void> {
  const expected = shape.reduce((a, b) => a * b, 1);
  if (values.length !== expected) throw new RangeError(`${path}: ${values.length} values for shape ${shapeText(shape)}`);
  const temporary = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(temporary, 'w');
  try {
    try {
      await fh.write(npyHeader(descrOf(values), shape));
      const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      for (let at = 0; at < bytes.length; at += kWriteBytes) {
        const piece = bytes.subarray(at, Math.min(bytes.length, at + kWriteBytes));
        let done = 0;
        while (done < piece.length) done += (await fh.write(piece, done, piece.length - done)).bytesWritten;
      }
    } finally {
      await fh.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/** Writes a text file through a temporary file and a rename, like writeNpyFile. */
export async function writeTextFile(path: string, text: string): Promise<void> {
  const temporary = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fh = await open(temporary, 'w');
    try {
      await fh.writeFile(text, 'utf8');
    } finally {
      await fh.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
