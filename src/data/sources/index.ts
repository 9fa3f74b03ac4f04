/**
 * Data sources: every kind of data nlfit accepts, presented as a ColumnSource
 * (src/data/source.ts). openSource() turns what a user passes as `data` into
 * one; the per-kind openers are exported for callers that know the kind.
 */
export type { ColumnSource, OpenSourceOptions, SourceKind } from '../source.js';
export { openSource, isSourceSpec, isColumnSource } from './open.js';
export { memorySource } from './memory.js';
export { npySource, openNpyFile, npyColumnLayouts, shapeText, type NpyFile } from './npy.js';
export { openBinaryColumn, type BinaryColumnFile, type BinaryDtype } from './binary.js';
export { openColumnFiles, type ColumnFileSpec } from './columnFiles.js';
export { csvSource } from './csv.js';
export { streamSource } from './stream.js';
export { checkOpenSourceOptions, RowStoreWriter, StoredSource, type RowStore } from './store.js';
export { SpillFile } from './spill.js';
export { FileColumnsSource, closeHandles, type FileColumn } from './fileSource.js';
export { readRows, readFully, openForReading, kHostLittleEndian, kPieceBytes, type RowLayout } from './positionedRead.js';
export { checkReadRequest, type ReadTarget } from './readRequest.js';
export { deriveSource, type DerivedSource } from './derived.js';
