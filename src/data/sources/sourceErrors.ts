/**
 * The wording of every error a data source raises, in one place. Errors about
 * a file's contents start with the file's name ("x.npy: dtype '<i4' is not
 * supported ..."); errors about the spec a user passed name the field
 * ("data.x: cannot open 'x.npy': no such file").
 */

import { withCode } from '../../errors.js';

/** The longest text from a file that a message quotes whole. */
const kShownChars = 60;

/** Text from a file for a message, cut short (with its length) when it is long. */
function shown(text: string): string {
  return text.length <= kShownChars ? text : `${text.slice(0, kShownChars - 10)}...${text.slice(-5)} (${text.length} characters)`;
}

/** Why the operating system refused a path, in words (falls back to its own message). */
function systemReason(cause: unknown): string {
  const code = (cause as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    case 'ENOTDIR':
      return 'a part of the path is not a directory';
    case 'EMFILE':
    case 'ENFILE':
      return 'too many open files';
    default:
      return cause instanceof Error ? cause.message : String(cause);
  }
}

/** A file named by `field` could not be opened: "data.x: cannot open 'x.npy': no such file". */
export function cannotOpen(field: string, path: string, cause: unknown): Error {
  return withCode(new Error(`${field}: cannot open '${path}': ${systemReason(cause)}`, { cause }), 'ERR_NLFIT_DATA');
}

/** The spill directory could not be created or written. */
export function cannotSpill(directory: string, cause: unknown): Error {
  return withCode(new Error(`cannot write a spill file in '${directory}': ${systemReason(cause)}`, { cause }), 'ERR_NLFIT_DATA');
}

/** A file whose contents do not fit its format: "<path>: <explanation>". */
export function badFile(path: string, explanation: string): RangeError {
  return withCode(new RangeError(`${path}: ${explanation}`), 'ERR_NLFIT_DATA');
}

/** A float dtype nlfit cannot read, from a .npy header. */
export function unsupportedDtype(path: string, dtype: string): RangeError {
  return badFile(path, `dtype '${dtype}' is not supported; expected float64 or float32 ('<f8', '<f4')`);
}

/** A file of the wrong size for its header and shape (or item size); `layout` says what the size is for. */
export function wrongFileSize(path: string, expectedBytes: number, actualBytes: number, layout: string): RangeError {
  const problem = actualBytes < expectedBytes ? 'the file is truncated' : `the file has ${actualBytes - expectedBytes} bytes past the data`;
  return badFile(path, `${problem}: expected ${expectedBytes} bytes for ${layout}, found ${actualBytes}`);
}

/** A CSV field that does not parse as a number: "data.csv line 17, column 'y': 'abc' is not a number". */
export function csvNotANumber(path: string, line: number, column: string, text: string): RangeError {
  const what = text === '' ? 'the field is empty, not a number' : `'${shown(text)}' is not a number`;
  return withCode(new RangeError(`${path} line ${line}, column '${shown(column)}': ${what}`), 'ERR_NLFIT_DATA');
}

/** A CSV record whose shape is wrong (ragged row, stray quote). */
export function csvBadRecord(path: string, line: number, explanation: string): RangeError {
  return withCode(new RangeError(`${path} line ${line}: ${explanation}`), 'ERR_NLFIT_DATA');
}

/** A positioned read failed, or the file ended before the bytes a read needs. */
export function readFailed(path: string, explanation: string, cause?: unknown): Error {
  return withCode(new Error(`${path}: ${explanation}`, cause === undefined ? undefined : { cause }), 'ERR_NLFIT_DATA');
}

/** A read on a source whose close() has been called. */
export function sourceClosed(description: string): Error {
  return withCode(new Error(`cannot read from ${description}: the source is closed`), 'ERR_NLFIT_DATA');
}
