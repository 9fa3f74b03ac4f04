/**
 * A table whose columns are separate files: 1-D .npy files and raw binary
 * files, mixed freely, all with the same number of rows.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ColumnSource } from '../source.js';
import { invalidInput } from '../../errors.js';
import { openBinaryColumn, type BinaryDtype } from './binary.js';
import { closeHandles, FileColumnsSource, type FileColumn } from './fileSource.js';
import { npyColumnLayouts, openNpyFile, shapeText } from './npy.js';

/** One column's file: a 1-D .npy (dtype from its header) or a raw binary file of `dtype`. */
export type ColumnFileSpec =
  | { readonly name: string; readonly path: string; readonly format: 'npy' }
  | { readonly name: string; readonly path: string; readonly format: 'binary'; readonly dtype: BinaryDtype };

/**
 * Opens one file per column; `field` prefixes the names in errors
 * ("data.x: cannot open 'x.npy': no such file").
 *
 *   const source = await openColumnFiles([
 *     { name: 'x', path: 'x.npy', format: 'npy' },
 *     { name: 'y', path: 'y.bin', format: 'binary', dtype: 'float32' },
 *   ]);
 */
export async function openColumnFiles(specs: readonly ColumnFileSpec[], field = 'data'): Promise<ColumnSource> {
  if (specs.length === 0) throw invalidInput(field, 'no columns are given');
  const handles: FileHandle[] = [];
  const placements: FileColumn[] = [];
  let nRows = 0;
  try {
    for (const [i, spec] of specs.entries()) {
      const columnField = `${field}.${spec.name}`;
      let rows: number;
      if (spec.format === 'npy') {
        const file = await openNpyFile(spec.path, columnField);
        handles.push(file.fh);
        if (file.width !== 1) {
          throw invalidInput(
            columnField,
            `'${spec.path}' has shape ${shapeText(file.shape)}, ${file.width} columns; a column file must be 1-D (name the columns of a 2-D .npy with { path, columns })`,
          );
        }
        placements.push({ name: spec.name, ...npyColumnLayouts(file)[0]! });
        rows = file.rows;
      } else {
        const file = await openBinaryColumn(spec.path, spec.dtype, columnField);
        handles.push(file.fh);
        placements.push({ name: spec.name, layout: file.layout, index: 0 });
        rows = file.rows;
      }
      if (i === 0) nRows = rows;
      else if (rows !== nRows) {
        const first = specs[0]!;
        throw invalidInput(
          field,
          `columns differ in length: ${columnField} ('${spec.path}') has ${rows} rows, ${field}.${first.name} ('${first.path}') has ${nRows}`,
        );
      }
    }
  } catch (error) {
    await closeHandles(handles);
    throw error;
  }
  const kind = specs.every((spec) => spec.format === 'npy') ? 'npy' : 'binary';
  const description = [...new Set(specs.map((spec) => spec.path))].join(', ');
  return new FileColumnsSource(kind, description, nRows, placements, handles);
}
