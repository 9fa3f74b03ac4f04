/**
 * NumPy .npy files (format versions 1.0, 2.0 and 3.0, as specified in
 * numpy/lib/format.py, "NEP 1"). The file is
 *
 *   "\x93NUMPY" | major | minor | header length (uint16 LE for 1.0, uint32 LE
 *   for 2.0 and 3.0) | header | data
 *
 * where the header is a Python dict literal with exactly the keys 'descr'
 * (the dtype string, e.g. '<f8'), 'fortran_order' (True/False) and 'shape' (a
 * tuple), padded with spaces and a newline; 3.0 only changes the header's
 * encoding from latin-1 to UTF-8. nlfit reads float64 and float32 in either
 * byte order, 1-D arrays (one column) and 2-D arrays (rows x columns, C or
 * Fortran order), and checks the file size against the header before any read.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ColumnSource } from '../source.js';
import { invalidInput } from '../../errors.js';
import { closeHandles, FileColumnsSource, type FileColumn } from './fileSource.js';
import { kHostLittleEndian, openForReading, readFully, type RowLayout } from './positionedRead.js';
import { badFile, unsupportedDtype, wrongFileSize } from './sourceErrors.js';

const kMagic = '\x93NUMPY';
/** numpy itself refuses headers over 10000 bytes unless told otherwise; ours are a few hundred. */
const kMaxHeaderBytes = 1 << 20;
/**
 * Brackets nested deeper than this are refused (a real header nests two
 * deep, a structured dtype's list of fields three or four): the parser
 * recurses once per level.
 */
const kMaxHeaderNesting = 32;
/** How much of a bad header an error message quotes. */
const kShownHeaderChars = 200;

/** Header text for a message, cut short when it is long. */
function shownHeader(text: string): string {
  const trimmed = text.trim();
  return trimmed.length <= kShownHeaderChars ? trimmed : `${trimmed.slice(0, kShownHeaderChars)}... (${trimmed.length} characters)`;
}

/** A value of the Python literal subset a .npy header uses. */
type PyValue =
  | string
  | number
  | boolean
  | null
  | { readonly tuple: readonly PyValue[] }
  | { readonly list: readonly PyValue[] }
  | { readonly dict: ReadonlyMap<string, PyValue> };

/** Python's repr of a header value, for messages. */
function pyRepr(value: PyValue): string {
  if (value === null) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'number') return String(value);
  if ('tuple' in value) return `(${value.tuple.map(pyRepr).join(', ')}${value.tuple.length === 1 ? ',' : ''})`;
  if ('list' in value) return `[${value.list.map(pyRepr).join(', ')}]`;
  return `{${[...value.dict].map(([k, v]) => `'${k}': ${pyRepr(v)}`).join(', ')}}`;
}

/** Parses the header's dict literal; `fail` builds the error for a syntax problem at a character offset. */
function parsePyLiteral(text: string, fail: (problem: string, at: number) => Error): PyValue {
  let at = 0;
  let depth = 0;
  const skipSpace = (): void => {
    while (at < text.length && /\s/.test(text[at]!)) at++;
  };
  const expect = (char: string): void => {
    skipSpace();
    if (text[at] !== char) throw fail(`expected '${char}'`, at);
    at++;
  };
  // Items up to `close`, comma-separated, trailing comma allowed; reports whether any comma was seen.
  const sequence = (close: string, item: () => void): boolean => {
    let sawComma = false;
    for (;;) {
      skipSpace();
      if (text[at] === close) break;
      item();
      skipSpace();
      if (text[at] === ',') {
        sawComma = true;
        at++;
      } else if (text[at] !== close) {
        throw fail(`expected ',' or '${close}'`, at);
      }
    }
    at++;
    return sawComma;
  };
  const value = (): PyValue => {
    skipSpace();
    const char = text[at];
    if (char === "'" || char === '"') {
      let out = '';
      for (at++; text[at] !== char; at++) {
        if (at >= text.length) throw fail('unterminated string', at);
        if (text[at] === '\\') at++;
        out += text[at];
      }
      at++;
      return out;
    }
    if (char === '{' || char === '(' || char === '[') {
      if (++depth > kMaxHeaderNesting) throw fail(`brackets nested more than ${kMaxHeaderNesting} deep`, at);
    }
    if (char === '{') {
      at++;
      const dict = new Map<string, PyValue>();
      sequence('}', () => {
        const keyAt = at;
        const key = value();
        if (typeof key !== 'string') throw fail('dictionary keys must be strings', keyAt);
        if (dict.has(key)) throw fail(`key '${shownHeader(key)}' appears twice`, keyAt);
        expect(':');
        dict.set(key, value());
      });
      depth--;
      return { dict };
    }
    if (char === '(' || char === '[') {
      at++;
      const items: PyValue[] = [];
      const sawComma = sequence(char === '(' ? ')' : ']', () => items.push(value()));
      depth--;
      if (char === '[') return { list: items };
      // In Python "(5)" is the integer 5; only a comma (or nothing at all) makes a tuple.
      return items.length === 1 && !sawComma ? items[0]! : { tuple: items };
    }
    const word = /^(?:-?\d+L?|True|False|None)/.exec(text.slice(at, at + 40))?.[0];
    if (word === undefined) throw fail('unexpected character', at);
    at += word.length;
    if (word === 'True') return true;
    if (word === 'False') return false;
    if (word === 'None') return null;
    const integer = Number(word.replace('L', ''));
    // Past 2^53 a double no longer holds every integer: the value would be silently wrong.
    if (!Number.isSafeInteger(integer)) throw fail(`the integer ${word} is larger than 2^53 - 1`, at - word.length);
    return integer;
  };
  const result = value();
  skipSpace();
  if (at < text.length) throw fail('unexpected text after the dictionary', at);
  return result;
}

/** An opened .npy file with a checked header; `fh` is owned by whoever opened it. */
export interface NpyFile {
  readonly fh: FileHandle;
  readonly path: string;
  readonly rows: number;
  /** Columns: 1 for a 1-D array, shape[1] for a 2-D one. */
  readonly width: number;
  readonly shape: readonly number[];
  readonly itemBytes: 4 | 8;
  readonly littleEndian: boolean;
  readonly fortranOrder: boolean;
  /** Byte offset of the first value. */
  readonly dataOffset: number;
}

/** The shape as Python writes it: (5000,) or (5000, 3). */
export function shapeText(shape: readonly number[]): string {
  return `(${shape.join(', ')}${shape.length === 1 ? ',' : ''})`;
}

function parseDtype(path: string, descr: PyValue): { itemBytes: 4 | 8; littleEndian: boolean } {
  if (typeof descr !== 'string') throw unsupportedDtype(path, shownHeader(pyRepr(descr)));
  // '|' means "byte order does not apply", which is meaningful only for 1-byte types.
  const match = /^([<>=])f([48])$/.exec(descr);
  if (!match) throw unsupportedDtype(path, shownHeader(descr));
  const order = match[1]!;
  return {
    itemBytes: match[2] === '8' ? 8 : 4,
    littleEndian: order === '<' || (order === '=' && kHostLittleEndian),
  };
}

async function readHeader(fh: FileHandle, path: string, size: number): Promise<Omit<NpyFile, 'fh' | 'path'>> {
  const preamble = new Uint8Array(Math.min(size, 12));
  await readFully(fh, path, preamble, 0);
  const bytes = Buffer.from(preamble.buffer, 0, preamble.length);
  if (bytes.length < 10 || bytes.toString('latin1', 0, 6) !== kMagic) {
    throw badFile(path, 'is not a .npy file (it does not start with the magic string \\x93NUMPY)');
  }
  const major = bytes[6]!;
  const minor = bytes[7]!;
  if ((major !== 1 && major !== 2 && major !== 3) || minor !== 0) {
    throw badFile(path, `.npy format version ${major}.${minor} is not supported; expected 1.0, 2.0 or 3.0`);
  }
  if (major > 1 && bytes.length < 12) throw wrongFileSize(path, 12, size, `a version ${major}.0 preamble`);
  const headerStart = major === 1 ? 10 : 12;
  const headerBytes = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  if (headerBytes > kMaxHeaderBytes) throw badFile(path, `the .npy header claims ${headerBytes} bytes, more than the ${kMaxHeaderBytes} allowed`);
  if (headerStart + headerBytes > size) throw wrongFileSize(path, headerStart + headerBytes, size, 'the header');
  const headerRaw = Buffer.alloc(headerBytes);
  await readFully(fh, path, headerRaw, headerStart);
  const text = headerRaw.toString(major === 3 ? 'utf8' : 'latin1');

  const header = parsePyLiteral(text, (problem, at) => badFile(path, `the .npy header is not a valid dictionary (${problem} at character ${at}): ${shownHeader(text)}`));
  if (header === null || typeof header !== 'object' || !('dict' in header)) {
    throw badFile(path, `the .npy header is not a dictionary: ${shownHeader(text)}`);
  }
  const keys = [...header.dict.keys()].sort();
  if (keys.join() !== 'descr,fortran_order,shape') {
    const listed = keys.slice(0, 10).map((k) => `'${shownHeader(k)}'`).join(', ');
    throw badFile(path, `the .npy header must have exactly the keys 'descr', 'fortran_order' and 'shape'; it has ${listed}${keys.length > 10 ? ` and ${keys.length - 10} more` : ''}`);
  }
  const { itemBytes, littleEndian } = parseDtype(path, header.dict.get('descr')!);
  const fortranOrder = header.dict.get('fortran_order');
  if (typeof fortranOrder !== 'boolean') throw badFile(path, `fortran_order must be True or False, not ${shownHeader(pyRepr(fortranOrder!))}`);
  const shapeValue = header.dict.get('shape')!;
  const shapeItems = shapeValue !== null && typeof shapeValue === 'object' && 'tuple' in shapeValue ? shapeValue.tuple : null;
  if (!shapeItems || !shapeItems.every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)) {
    throw badFile(path, `shape must be a tuple of non-negative integers, not ${shownHeader(pyRepr(shapeValue))}`);
  }
  const shape = shapeItems as readonly number[];
  if (shape.length !== 1 && shape.length !== 2) {
    throw badFile(path, `shape ${shapeText(shape)} has ${shape.length} dimensions; expected 1 (one column) or 2 (rows x columns)`);
  }
  const rows = shape[0]!;
  const width = shape.length === 2 ? shape[1]! : 1;
  const dataOffset = headerStart + headerBytes;
  const dataBytes = rows * width * itemBytes;
  if (!Number.isSafeInteger(dataBytes)) {
    throw badFile(path, `shape ${shapeText(shape)} describes more than 2^53 bytes of data; the header is corrupt`);
  }
  const expectedSize = dataOffset + dataBytes;
  if (size !== expectedSize) {
    throw wrongFileSize(path, expectedSize, size, `a ${dataOffset}-byte header and shape ${shapeText(shape)} of ${itemBytes === 8 ? 'float64' : 'float32'}`);
  }
  return { rows, width, shape, itemBytes, littleEndian, fortranOrder, dataOffset };
}

/** Opens a .npy file and checks its header and size; `field` names it if it cannot be opened. */
export async function openNpyFile(path: string, field: string): Promise<NpyFile> {
  const { fh, size } = await openForReading(path, field);
  try {
    return { fh, path, ...(await readHeader(fh, path, size)) };
  } catch (error) {
    await closeHandles([fh]);
    throw error;
  }
}

/**
 * Where each column of an opened .npy file lies. C order interleaves the
 * columns (one layout of width k); Fortran order stores them one after the
 * other (k layouts of width 1). A 1-D array is one column either way.
 */
export function npyColumnLayouts(file: NpyFile): { layout: RowLayout; index: number }[] {
  const { fh, path, itemBytes, littleEndian, dataOffset, width, rows } = file;
  if (!file.fortranOrder && width > 1) {
    const layout: RowLayout = { fh, path, offset: dataOffset, itemBytes, littleEndian, width };
    return Array.from({ length: width }, (_, index) => ({ layout, index }));
  }
  return Array.from({ length: width }, (_, column) => ({
    layout: { fh, path, offset: dataOffset + column * rows * itemBytes, itemBytes, littleEndian, width: 1 },
    index: 0,
  }));
}

/**
 * A source over one .npy file whose columns are given names: a 1-D array takes
 * one name, a 2-D array of k columns takes k.
 *
 *   const source = await npySource('data.npy', ['x', 'y']);
 */
export async function npySource(path: string, columns: readonly string[], field = 'data'): Promise<ColumnSource> {
  const file = await openNpyFile(path, field);
  if (columns.length !== file.width) {
    await closeHandles([file.fh]);
    throw invalidInput(
      `${field}.columns`,
      `${columns.length} column names (${columns.join(', ')}) given for '${path}', whose shape ${shapeText(file.shape)} has ${file.width} column${file.width === 1 ? '' : 's'}`,
    );
  }
  const placements: FileColumn[] = npyColumnLayouts(file).map((placement, c) => ({ name: columns[c]!, ...placement }));
  return new FileColumnsSource('npy', path, file.rows, placements, [file.fh]);
}
