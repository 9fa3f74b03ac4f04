/**
 * One-shot streams: an async iterable of chunks, each an object of equally
 * long columns with the same names as the first chunk. A stream can be
 * iterated once but a fit reads its data on every pass, so the chunks are
 * ingested at open time into a buffer-or-spill store (store.ts).
 */
import type { ColumnSource, OpenSourceOptions } from '../source.js';
import { invalidInput, invalidType } from '../../errors.js';
import { checkOpenSourceOptions, RowStoreWriter, StoredSource } from './store.js';

/** Checks one column of a chunk (plain numbers or a numeric typed array) and returns its length. */
function checkChunkColumn(values: unknown, field: string): number {
  if (ArrayBuffer.isView(values)) {
    if (values instanceof DataView || values instanceof BigInt64Array || values instanceof BigUint64Array) {
      throw invalidType(field, 'array of numbers, Float64Array or Float32Array', values);
    }
    return (values as Float64Array).length;
  }
  const list = values as { length?: unknown } | null;
  if (list === null || typeof list !== 'object' || typeof list.length !== 'number' || !Number.isSafeInteger(list.length)) {
    throw invalidType(field, 'array of numbers, Float64Array or Float32Array', values);
  }
  const items = values as ArrayLike<unknown>;
  for (let i = 0; i < items.length; i++) {
    if (typeof items[i] !== 'number') throw invalidType(`${field}[${i}]`, 'number', items[i]);
  }
  return items.length;
}

/**
 * Ingests an async iterable of column chunks. Errors name the chunk:
 * "Invalid data chunk 3: column 'y' has 10 values but column 'x' has 12".
 * If the iterable throws, its error is passed on unchanged, after any spill
 * file is deleted.
 *
 *   async function* chunks() { yield { x: [1, 2], y: [3, 4] }; yield { x: [5], y: [6] }; }
 *   const source = await streamSource(chunks(), { bufferBytes: 64 << 20 });
 */
export async function streamSource(chunks: AsyncIterable<unknown>, options: OpenSourceOptions, field = 'data'): Promise<ColumnSource> {
  const checked = checkOpenSourceOptions(options);
  let columns: string[] | null = null;
  let writer: RowStoreWriter | null = null;
  let index = 0;
  try {
    for await (const chunk of chunks) {
      const chunkField = `${field} chunk ${index}`;
      if (chunk === null || typeof chunk !== 'object' || Array.isArray(chunk) || ArrayBuffer.isView(chunk)) {
        throw invalidType(chunkField, 'object of named columns ({ x, y })', chunk);
      }
      const record = chunk as Record<string, unknown>;
      const names = Object.keys(record);
      if (columns === null) {
        if (names.length === 0) throw invalidInput(chunkField, 'the chunk has no columns');
        columns = names;
        writer = new RowStoreWriter(columns.length, checked);
      }
      const missing = columns.find((name) => !Object.hasOwn(record, name));
      if (missing !== undefined) throw invalidInput(chunkField, `column '${missing}' is missing (chunk 0 has ${columns.join(', ')})`);
      const extra = names.find((name) => !columns!.includes(name));
      if (extra !== undefined) throw invalidInput(chunkField, `column '${extra}' is not in chunk 0 (${columns.join(', ')})`);
      const lengths = columns.map((name) => checkChunkColumn(record[name], `${chunkField}, column '${name}'`));
      const mismatch = lengths.findIndex((length) => length !== lengths[0]);
      if (mismatch !== -1) {
        throw invalidInput(chunkField, `column '${columns[mismatch]}' has ${lengths[mismatch]} values but column '${columns[0]}' has ${lengths[0]}`);
      }
      await writer!.append(columns.map((name) => record[name] as ArrayLike<number>), lengths[0]!);
      index++;
    }
    if (columns === null || writer === null) throw invalidInput(field, 'the async iterable yielded no chunks, so its columns are unknown');
    return new StoredSource('stream', 'an async iterable', columns, writer.finish());
  } catch (error) {
    await writer?.abort();
    throw error;
  }
}
