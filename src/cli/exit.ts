/**
 * Exit codes of the nlfit command and the errors that choose them. A batch
 * script branches on these, so each failure maps to exactly one code:
 *
 *   0    the fit converged (or the command did what it was asked)
 *   1    the fit ran but did not converge (success: false), or failed while running
 *   2    usage error: unknown flag, bad value, missing --model, a model that does not parse,
 *        a checkpoint that --resume refuses (written for other data or options)
 *   3    data error: a file that cannot be read, a value that is not a number, NaN in y
 *   130  interrupted by SIGINT; 143 interrupted by SIGTERM (128 + the signal number)
 */
import { closestName } from '../errors.js';

export const kExitConverged = 0;
export const kExitNotConverged = 1;
export const kExitUsage = 2;
export const kExitData = 3;
export const kExitSigint = 130;
export const kExitSigterm = 143;

/** The command line or a job file asks for something impossible; exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The data cannot be used as it is: unreadable, malformed, a bad value; exit 3. */
export class DataError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'DataError';
  }
}

/** A value of a flag (or job-file key) that does not parse: "Expected <what> for --<flag> but received '<text>'". */
export function badValue(flag: string, expected: string, received: unknown, subject = `--${flag}`): UsageError {
  const text = typeof received === 'string' ? `'${received}'` : JSON.stringify(received) ?? String(received);
  return new UsageError(`Expected ${expected} for ${subject} but received ${text}`);
}

/** " (did you mean 'x'?)" when a known name is within two edits of `name`, else "". */
export function didYouMean(name: string, known: readonly string[], show: (name: string) => string = (n) => `'${n}'`): string {
  const close = closestName(name, known);
  return close === undefined ? '' : ` (did you mean ${show(close)}?)`;
}

/**
 * The library reports bad input with TypeError/RangeError for options and
 * data alike; the data ones name the data (`Invalid data.y: value NaN at
 * index 3 ...`, `Expected ... for data.x ...`, `data.x: cannot open ...`) or
 * start with the data file's path (`table.npy: the file is truncated ...`).
 */
function isDataMessage(message: string, dataPaths: readonly string[]): boolean {
  if (/^(Invalid data\b|data\.[A-Za-z_])/.test(message) || / for data\.[A-Za-z_]/.test(message)) return true;
  return dataPaths.some((path) => message.startsWith(`${path}:`) || message.startsWith(`${path} line `));
}

/** The exit code for an error a command raised. */
export function exitCodeFor(error: unknown, dataPaths: readonly string[] = []): number {
  if (error instanceof UsageError) return kExitUsage;
  if (error instanceof DataError) return kExitData;
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ERR_NLFIT_DATA') return kExitData;
  if (code === 'ERR_NLFIT_CHECKPOINT' || code === 'ERR_NLFIT_OPTION') return kExitUsage;
  // Errors without a code (from Node, or older wording): classify by the message.
  const message = error instanceof Error ? error.message : String(error);
  // --resume with a checkpoint written for other data or options (or not a checkpoint at all).
  if (/^(nlfit: )?checkpoint .* refusing to resume$/.test(message)) return kExitUsage;
  if (isDataMessage(message, dataPaths)) return kExitData;
  // Options and model expressions (ModelError is a SyntaxError) the library rejected.
  if (error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError) return kExitUsage;
  return kExitNotConverged;
}
