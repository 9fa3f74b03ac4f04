/**
 * The pipeline stage between a source and a fit: `transform` and `where`
 * (src/data/derive.ts) applied chunk by chunk as the source is read once, the
 * output stored like a one-shot stream (in memory up to bufferBytes, spilled
 * to a temporary file beyond). A filter changes which rows exist, so the
 * derived table is materialised once; every pass then reads it like any other
 * source and the fit's blocks are the derived rows'.
 */
import type { DeriveStage } from '../derive.js';
import type { ColumnSource, OpenSourceOptions } from '../source.js';
import { RowStoreWriter, StoredSource } from './store.js';

/** Rows read from the input per step. */
const kDeriveRows = 1 << 16;

export interface DerivedSource {
  source: ColumnSource;
  /** Rows the filter dropped. */
  dropped: number;
}

/** Reads `input` once through `stage` into a new source; the input stays open (the caller closes it). */
export async function deriveSource(input: ColumnSource, stage: DeriveStage, options: OpenSourceOptions): Promise<DerivedSource> {
  const writer = new RowStoreWriter(stage.outputColumns.length, options);
  try {
    const chunk: Record<string, Float64Array> = {};
    let dropped = 0;
    for (let start = 0; start < input.nRows; start += kDeriveRows) {
      const count = Math.min(kDeriveRows, input.nRows - start);
      for (const name of stage.inputColumns) {
        if (!chunk[name] || chunk[name]!.length < count) chunk[name] = new Float64Array(kDeriveRows);
      }
      const views: Record<string, Float64Array> = {};
      for (const name of stage.inputColumns) views[name] = chunk[name]!.subarray(0, count);
      await input.read(start, count, views);
      const out = stage.apply(views, count);
      dropped += out.dropped;
      if (out.count > 0) await writer.append(stage.outputColumns.map((name) => out.columns[name]!), out.count);
    }
    const store = writer.finish();
    const description = `${input.description} (transformed${dropped > 0 ? `, ${dropped} rows filtered out` : ''})`;
    return { source: new StoredSource('stream', description, stage.outputColumns, store), dropped };
  } catch (error) {
    await writer.abort();
    throw error;
  }
}
