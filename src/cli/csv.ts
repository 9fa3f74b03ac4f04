/**
 * Reads a CSV file with a header row into named float64 columns. Separators:
 * comma, tab or semicolon (detected from the header). Empty lines are skipped;
 * a value that is not a number is an error naming the line and column.
 */
import { readFileSync } from 'node:fs';
import { sharedFloat64 } from '../data/columns.js';

export function readCsvColumns(path: string): Record<string, Float64Array> {
  const text = readFileSync(path, 'utf8');
  const lines = text.split(/\r?\n/);
  let headerLine = 0;
  while (headerLine < lines.length && lines[headerLine]!.trim() === '') headerLine++;
  if (headerLine >= lines.length) throw new Error(`${path}: the file is empty`);
  const header = lines[headerLine]!;
  const separator = [',', '\t', ';'].find((s) => header.includes(s)) ?? ',';
  const names = header.split(separator).map((name) => name.trim().replace(/^"(.*)"$/, '$1'));
  names.forEach((name, i) => {
    if (name === '') throw new Error(`${path}: column ${i + 1} of the header has no name`);
  });
  const rows: string[] = [];
  for (let i = headerLine + 1; i < lines.length; i++) if (lines[i]!.trim() !== '') rows.push(lines[i]!);
  const columns = names.map(() => sharedFloat64(rows.length));
  let row = 0;
  for (let i = headerLine + 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    const cells = line.split(separator);
    if (cells.length !== names.length) {
      throw new Error(`${path}:${i + 1}: expected ${names.length} values, found ${cells.length}`);
    }
    for (let c = 0; c < cells.length; c++) {
      const cell = cells[c]!.trim();
      const value = Number(cell);
      if (cell === '' || Number.isNaN(value)) {
        throw new Error(`${path}:${i + 1}: '${cell}' in column '${names[c]}' is not a number`);
      }
      columns[c]![row] = value;
    }
    row++;
  }
  const out: Record<string, Float64Array> = {};
  names.forEach((name, c) => (out[name] = columns[c]!));
  return out;
}
