/**
 * Raw binary columns: one file per column holding nothing but little-endian
 * IEEE floats (float64 by default, or float32), as written by
 * `numpy.ndarray.tofile` on a little-endian machine, `Float64Array` buffers or
 * `fwrite` of a double array. The row count is the file size over the item
 * size, so the size must be a whole number of items.
 */
import type { FileHandle } from 'node:fs/promises';
import { closeHandles } from './fileSource.js';
import { openForReading, type RowLayout } from './positionedRead.js';
import { badFile } from './sourceErrors.js';

export type BinaryDtype = 'float64' | 'float32';

/** An opened raw binary column; `fh` is owned by whoever opened it. */
export interface BinaryColumnFile {
  readonly fh: FileHandle;
  readonly rows: number;
  readonly layout: RowLayout;
}

/** Opens one raw binary column and checks its size; `field` names it if it cannot be opened. */
export async function openBinaryColumn(path: string, dtype: BinaryDtype, field: string): Promise<BinaryColumnFile> {
  const { fh, size } = await openForReading(path, field);
  const itemBytes = dtype === 'float64' ? 8 : 4;
  if (size % itemBytes !== 0) {
    await closeHandles([fh]);
    throw badFile(path, `its ${size} bytes are not a whole number of ${dtype} values (${itemBytes} bytes each)`);
  }
  return { fh, rows: size / itemBytes, layout: { fh, path, offset: 0, itemBytes, littleEndian: true, width: 1 } };
}
