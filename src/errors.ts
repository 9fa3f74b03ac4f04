/**
 * Every error nlfit raises is built here, so each failure has one wording.
 * Option errors name the field, what was expected and what was received:
 *   "Expected positive integer for maxFev but received 1.5 of type number"
 */

/** Describes a received value for an error message, briefly. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') {
    const text = value.length > 40 ? `${value.slice(0, 37)}...` : value;
    return `${JSON.stringify(text)} of type string`;
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return `${String(value)} of type ${typeof value}`;
  }
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) {
    const length = (value as unknown as { length?: number }).length;
    return `a ${value.constructor.name}${length === undefined ? '' : ` of length ${length}`}`;
  }
  if (typeof value === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}

/** Levenshtein distance between two names (case-insensitive). */
function editDistance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const row = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= y.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (x[i - 1] === y[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[y.length]!;
}

/** The known name closest to a misspelt one, if it is within two edits: for "did you mean" hints. */
export function closestName(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return best;
}

/** A value of the wrong type: `Expected <expected> for <field> but received <value>`. */
/**
 * Machine-readable kinds of error, in `error.code` (the message wording may
 * change; scripts and the CLI's exit codes branch on these):
 *   ERR_NLFIT_DATA        the data: a bad value, an unreadable or malformed file
 *   ERR_NLFIT_OPTION      an option or a model that cannot be used
 *   ERR_NLFIT_CHECKPOINT  a checkpoint that resume refuses
 *   ERR_NLFIT_DISTRIBUTED the ranks of a distributed fit disagree (not the
 *                         same command or data) or their transport failed; a
 *                         rank's own failure keeps that failure's code
 */
export type NlfitErrorCode = 'ERR_NLFIT_DATA' | 'ERR_NLFIT_OPTION' | 'ERR_NLFIT_CHECKPOINT' | 'ERR_NLFIT_DISTRIBUTED';

export function withCode<E extends Error>(error: E, code: NlfitErrorCode): E & { code: NlfitErrorCode } {
  return Object.assign(error, { code });
}

/** Errors about `data` or one of its columns are data errors; the rest are option errors. */
function fieldCode(field: string): NlfitErrorCode {
  return field === 'data' || field.startsWith('data.') || field.startsWith('data[') ? 'ERR_NLFIT_DATA' : 'ERR_NLFIT_OPTION';
}

export function invalidType(field: string, expected: string, value: unknown): TypeError {
  return withCode(new TypeError(`Expected ${expected} for ${field} but received ${describeValue(value)}`), fieldCode(field));
}

/** A value of the right type outside its allowed range. */
export function invalidRange(field: string, expected: string, value: unknown): RangeError {
  return withCode(new RangeError(`Expected ${expected} for ${field} but received ${describeValue(value)}`), fieldCode(field));
}

/** An input that is well typed but unusable, with a free-form explanation naming the field. */
export function invalidInput(field: string, explanation: string, cause?: unknown): RangeError {
  return withCode(new RangeError(`Invalid ${field}: ${explanation}`, cause === undefined ? undefined : { cause }), fieldCode(field));
}

/**
 * A JavaScript model's function threw. The message keeps the user's and says
 * where; the user's error is the cause (across worker threads, its clone).
 */
export function modelFunctionFailed(field: string, name: string, where: string, cause: unknown): Error {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new Error(`nlfit: ${field} '${name}' threw ${where}: ${detail}`, { cause });
}

/** A ModelError quotes an expression longer than this as a window of kModelErrorWindow characters. */
const kModelErrorWholeSource = 80;
const kModelErrorWindow = 60;
/** Longest reason a ModelError's message carries (a name in it may be any length). */
const kModelErrorMaxReason = 300;

/**
 * The lines under a ModelError's first: the expression, or for a long one a
 * window of it around the error (`...` where it is cut, and a line saying
 * which characters of how many it shows), with a caret at the error.
 * Line breaks and tabs show as spaces so the caret stays under its character.
 */
function sourceExcerpt(source: string, position: number): string {
  const at = Math.min(Math.max(0, position), source.length);
  let start = 0;
  let end = source.length;
  if (source.length > kModelErrorWholeSource) {
    start = Math.max(0, at - kModelErrorWindow / 2);
    end = Math.min(source.length, start + kModelErrorWindow);
    start = Math.max(0, end - kModelErrorWindow);
    // Never split a surrogate pair (the window would quote half a character).
    if (start > 0 && /[\udc00-\udfff]/.test(source[start]!)) start -= 1;
    if (end < source.length && /[\ud800-\udbff]/.test(source[end - 1]!)) end += 1;
  }
  const head = start > 0 ? '...' : '';
  const shown = `${head}${source.slice(start, end).replace(/[\t\n\v\f\r]/g, ' ')}${end < source.length ? '...' : ''}`;
  const caret = `  ${' '.repeat(head.length + at - start)}^`;
  const window = start > 0 || end < source.length ? `\n  (characters ${start} to ${end - 1} of an expression of ${source.length})` : '';
  return `  ${shown}\n${caret}${window}`;
}

/** `text` cut in the middle past `limit` characters, saying its length. */
function boundedText(text: string, limit: number): string {
  if (text.length <= limit) return text;
  return `${text.slice(0, limit - 60)} ... ${text.slice(-30)} (a message of ${text.length} characters, cut)`;
}

/**
 * An error in a model expression (also transform, where and expr): code
 * ERR_NLFIT_OPTION. `position` is the 0-based character offset in `source`;
 * the message is the reason, the position and the expression with a caret
 * under it: all of it when short, else a window of about 60 characters
 * around the position and its length, so a hostile 1 MiB expression does not
 * make a 1 MB message.
 */
export class ModelError extends SyntaxError {
  declare readonly code: 'ERR_NLFIT_OPTION';
  readonly position: number;
  readonly source: string;
  /** The message's first part, without the position and the expression. */
  readonly reason: string;
  constructor(message: string, source: string, position: number) {
    const reason = boundedText(message, kModelErrorMaxReason);
    super(`${reason} at position ${position}\n${sourceExcerpt(source, position)}`);
    this.name = 'ModelError';
    this.position = position;
    this.source = source;
    this.reason = reason;
    withCode(this, 'ERR_NLFIT_OPTION');
  }
}

/** Raised when the native addon cannot be loaded (not built, wrong platform). */
export function addonMissing(cause: unknown): Error {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new Error(
    `nlfit: the native addon is not built (${detail}). Run "npm run build:native" (node-gyp) or "npm run build:cmake" (cmake-js).`,
  );
}

/**
 * The fit's AbortSignal fired: `name` is 'AbortError' (as fetch's) and the
 * cause is the signal's reason.
 */
export function fitAborted(signal: AbortSignal): Error {
  const error = new Error('nlfit: the fit was aborted', { cause: signal.reason });
  error.name = 'AbortError';
  return error;
}

/**
 * The fit's timeoutMs passed: `name` is 'TimeoutError' (as the error of
 * AbortSignal.timeout()). `what` is the call: 'fit' or 'fitMany'.
 */
export function fitTimedOut(what: 'fit' | 'fitMany', timeoutMs: number): Error {
  const error = new Error(`nlfit: the ${what} did not finish within timeoutMs (${timeoutMs} ms)`);
  error.name = 'TimeoutError';
  return error;
}

/**
 * A pool task whose worker thread kept dying (an uncaught exception, a
 * JavaScript model calling process.exit(), the thread terminated): `task`
 * says what it ran; the cause is the last death's error.
 */
export function workerLost(task: string, failures: number, cause: unknown): Error {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new Error(
    `nlfit: the worker thread running ${task} died ${failures} times (last: ${detail}); a model that exits or crashes its thread cannot be fitted`,
    { cause },
  );
}

/** A checkpoint that cannot be resumed from: `checkpoint <path> <why>, refusing to resume`. */
export function checkpointRefused(path: string, why: string, cause?: unknown): Error {
  return withCode(new Error(`nlfit: checkpoint ${path} ${why}, refusing to resume`, cause === undefined ? undefined : { cause }), 'ERR_NLFIT_CHECKPOINT');
}
