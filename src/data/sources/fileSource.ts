/**
 * A ColumnSource whose columns live in files at fixed places: each column is
 * one value position of a RowLayout. A 1-D .npy or raw binary column is a
 * layout of width 1; a C-order 2-D .npy is one layout of width k shared by its
 * k columns (a row range is one contiguous read); a Fortran-order 2-D .npy is
 * k layouts of width 1 in one file.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ColumnSource, SourceKind } from '../source.js';
import { readRows, type RowLayout } from './positionedRead.js';
import { checkReadRequest } from './readRequest.js';
import { sourceClosed } from './sourceErrors.js';

/** Where one named column lies: value position `index` of each row of `layout`. */
export interface FileColumn {
  readonly name: string;
  readonly layout: RowLayout;
  readonly index: number;
}

/**
 * Closes read-only handles. A failed close of a file opened for reading loses
 * nothing, so it must not turn a successful fit (or the error being reported)
 * into a different error.
 */
export async function closeHandles(handles: readonly FileHandle[]): Promise<void> {
  await Promise.allSettled(handles.map((fh) => fh.close()));
}

export class FileColumnsSource implements ColumnSource {
  readonly kind: SourceKind;
  readonly columns: readonly string[];
  readonly nRows: number;
  readonly description: string;
  readonly #placements: readonly FileColumn[];
  readonly #handles: readonly FileHandle[];
  #closing: Promise<void> | null = null;

  /** Takes ownership of `handles`: close() closes each once. */
  constructor(kind: SourceKind, description: string, nRows: number, placements: readonly FileColumn[], handles: readonly FileHandle[]) {
    this.kind = kind;
    this.description = description;
    this.nRows = nRows;
    this.columns = Object.freeze(placements.map((p) => p.name));
    this.#placements = placements;
    this.#handles = handles;
  }

  async read(start: number, count: number, into: Readonly<Record<string, Float64Array>>): Promise<void> {
    if (this.#closing) throw sourceClosed(this.description);
    const targets = checkReadRequest(this.columns, this.nRows, start, count, into);
    const byLayout = new Map<RowLayout, (Float64Array | undefined)[]>();
    for (const { column, into: values } of targets) {
      const { layout, index } = this.#placements[column]!;
      let layoutTargets = byLayout.get(layout);
      if (!layoutTargets) {
        layoutTargets = new Array<Float64Array | undefined>(layout.width).fill(undefined);
        byLayout.set(layout, layoutTargets);
      }
      layoutTargets[index] = values;
    }
    // Column files are read in parallel, but the read settles only when all
    // have stopped writing into the caller's arrays.
    const outcomes = await Promise.allSettled([...byLayout].map(([layout, t]) => readRows(layout, start, count, t)));
    for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
  }

  close(): Promise<void> {
    this.#closing ??= closeHandles(this.#handles);
    return this.#closing;
  }
}
