/**
 * Positioned reads of float rows from a file: the one routine behind .npy,
 * raw binary columns and spill files. A file region is described by a
 * RowLayout (where row 0 starts, how many values a row holds, their size and
 * byte order); a read of rows [start, start + count) touches exactly those
 * bytes, never the whole file. One float64 column in the host's byte order
 * is read straight into the destination's memory (which may be a
 * SharedArrayBuffer); anything else goes through a bounded scratch buffer and
 * is converted, de-interleaved or byte-swapped on the way.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { cannotOpen, readFailed } from './sourceErrors.js';

export const kHostLittleEndian = endianness() === 'LE';

/** Bytes a converting read or a spill write moves through its scratch buffer at a time. */
export const kPieceBytes = 4 * 1024 * 1024;

/** The fs layer takes at most 2^31 - 1 bytes per read; direct reads go in pieces of this many. */
const kDirectReadBytes = 1024 * 1024 * 1024;

/** Where a table of floats lies in a file: `width` values per row, rows back to back from `offset`. */
export interface RowLayout {
  readonly fh: FileHandle;
  /** The file's path, for messages. */
  readonly path: string;
  /** Byte offset of row 0. */
  readonly offset: number;
  readonly itemBytes: 4 | 8;
  readonly littleEndian: boolean;
  /** Values per row (1 for a column stored contiguously). */
  readonly width: number;
}

/** A regular file opened for reading, with its size; `field` names it in the error if it cannot be opened. */
export async function openForReading(path: string, field: string): Promise<{ fh: FileHandle; size: number }> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (error) {
    throw cannotOpen(field, path, error);
  }
  try {
    const stats = await fh.stat();
    if (stats.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    return { fh, size: stats.size };
  } catch (error) {
    await fh.close();
    throw cannotOpen(field, path, error);
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Fills `bytes` from the file at `position`, looping over short reads; a file that ends early is an error. */
export async function readFully(fh: FileHandle, path: string, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read({ buffer: bytes, offset: done, length: bytes.length - done, position: position + done }));
    } catch (error) {
      throw readFailed(path, `reading ${bytes.length} bytes at offset ${position} failed: ${errorText(error)}`, error);
    }
    if (bytesRead === 0) {
      throw readFailed(
        path,
        `the file ends at byte ${position + done} but the read needs bytes up to ${position + bytes.length} (did it shrink after it was opened?)`,
      );
    }
    done += bytesRead;
  }
}

/** Copies `rows` decoded rows from `scratch` into the targets, from index `at`. */
function decodeRows(
  layout: RowLayout,
  scratch: ArrayBuffer,
  rows: number,
  targets: readonly (Float64Array | undefined)[],
  at: number,
): void {
  const { width, itemBytes, littleEndian } = layout;
  if (littleEndian === kHostLittleEndian) {
    const values = itemBytes === 8 ? new Float64Array(scratch, 0, rows * width) : new Float32Array(scratch, 0, rows * width);
    for (let j = 0; j < width; j++) {
      const into = targets[j];
      if (!into) continue;
      if (width === 1) {
        into.set(values, at);
        continue;
      }
      for (let r = 0, k = j; r < rows; r++, k += width) into[at + r] = values[k]!;
    }
    return;
  }
  const view = new DataView(scratch);
  for (let j = 0; j < width; j++) {
    const into = targets[j];
    if (!into) continue;
    for (let r = 0, byte = j * itemBytes; r < rows; r++, byte += width * itemBytes) {
      into[at + r] = itemBytes === 8 ? view.getFloat64(byte, littleEndian) : view.getFloat32(byte, littleEndian);
    }
  }
}

/**
 * Reads rows [start, start + count) of a layout into `targets[j][0 .. count)`
 * for each value position j of a row that has a target (undefined: skipped).
 */
export async function readRows(
  layout: RowLayout,
  start: number,
  count: number,
  targets: readonly (Float64Array | undefined)[],
): Promise<void> {
  const { fh, path, offset, itemBytes, littleEndian, width } = layout;
  if (width === 1 && itemBytes === 8 && littleEndian === kHostLittleEndian) {
    const into = targets[0];
    if (!into) return;
    const pieceRows = kDirectReadBytes / 8;
    for (let done = 0; done < count; done += pieceRows) {
      const rows = Math.min(count - done, pieceRows);
      const bytes = new Uint8Array(into.buffer, into.byteOffset + done * 8, rows * 8);
      await readFully(fh, path, bytes, offset + (start + done) * 8);
    }
    return;
  }
  const rowBytes = width * itemBytes;
  const pieceRows = Math.max(1, Math.floor(kPieceBytes / rowBytes));
  // A fresh ArrayBuffer is aligned for the typed views decodeRows makes.
  const scratch = new ArrayBuffer(Math.min(count, pieceRows) * rowBytes);
  const bytes = new Uint8Array(scratch);
  for (let done = 0; done < count; done += pieceRows) {
    const rows = Math.min(count - done, pieceRows);
    await readFully(fh, path, bytes.subarray(0, rows * rowBytes), offset + (start + done) * rowBytes);
    decodeRows(layout, scratch, rows, targets, done);
  }
}
