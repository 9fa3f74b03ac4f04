/**
 * openSource for the package's public surface, loading the readers (npy, CSV,
 * streams, spill files) on first use rather than when nlfit is imported.
 */
import type { ColumnSource, OpenSourceOptions } from '../source.js';

/** Opens `data` as a ColumnSource: see src/data/sources/open.ts. */
export async function openSource(data: unknown, options: OpenSourceOptions): Promise<ColumnSource> {
  return (await import('./open.js')).openSource(data, options);
}
