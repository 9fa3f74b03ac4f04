/**
 * Parsers for the values of flags, shared by the command line and job files.
 * Each takes the text as typed and the flag's name (for the message) and
 * throws a UsageError in one wording: "Expected <what> for --<flag> but
 * received '<text>'".
 *
 *   parseSize('1.5G', 'memory-limit')          // 1536 (MB)
 *   parseParamList('b1=500,b2=1e-4', 'p0')      // { b1: 500, b2: 0.0001 }
 *   parseBounds('b1=0:inf,b2=-1:1', 'bounds')   // { b1: [0, null], b2: [-1, 1] }
 *   parseColumns('x=time,y=signal', 'columns')  // { rename: { x: 'time', y: 'signal' } }
 */
import type { FlagDef } from './args.js';
import { badValue, didYouMean, UsageError } from './exit.js';

const kIdentifier = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isIdentifier(text: string): boolean {
  return kIdentifier.test(text);
}

function finite(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === '') return null;
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : null;
}

/** A finite number; `min` (inclusive) or `above` (exclusive) bound it below. */
export function parseNumber(text: string, flag: string, range: { min?: number; above?: number } = {}): number {
  const value = finite(text);
  const expected =
    range.above !== undefined ? `a number > ${range.above}` : range.min !== undefined ? `a number >= ${range.min}` : 'a number';
  if (value === null) throw badValue(flag, expected, text);
  if ((range.above !== undefined && !(value > range.above)) || (range.min !== undefined && value < range.min)) throw badValue(flag, expected, text);
  return value;
}

/** An integer >= min (1e6 and 1_000_000 style exponents are fine, 1.5 is not). */
export function parseInteger(text: string, flag: string, min = 1): number {
  const value = finite(text.replaceAll('_', ''));
  const expected = min === 1 ? 'a positive integer' : `an integer >= ${min}`;
  if (value === null || !Number.isSafeInteger(value) || value < min) throw badValue(flag, expected, text);
  return value;
}

/** One of a fixed list of words, with a suggestion for a near miss. */
export function parseChoice<T extends string>(text: string, flag: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(text)) return text as T;
  const error = badValue(flag, `one of ${choices.join(', ')}`, text);
  error.message += didYouMean(text, choices);
  throw error;
}

/** A value that must not be empty. */
export function parseText(text: string, flag: string): string {
  if (text.trim() === '') throw badValue(flag, 'a non-empty value', text);
  return text;
}

/** The kinds of flag the commands share. */
export const choiceFlag = (choices: readonly string[]): FlagDef => ({ parse: (value, flag) => parseChoice(value, flag, choices) });
export const toleranceFlag: FlagDef = { parse: (value, flag) => parseNumber(value, flag, { min: 0 }) };
export const integerFlag: FlagDef = { parse: (value, flag) => parseInteger(value, flag) };
export const switchFlag: FlagDef = {};

const kSizeUnits: Record<string, number> = { b: 2 ** -20, k: 2 ** -10, m: 1, g: 2 ** 10, t: 2 ** 20 };

/**
 * A memory size in MB (2^20 bytes, as the library's memoryLimitMb): '512MB',
 * '2GB', '1.5G', '800M', '4096' (MB), '64KiB'. Units are powers of 1024
 * whatever their spelling (K, KB, KiB; M, MB, MiB; G, GB, GiB; T, TB, TiB; B).
 */
export function parseSize(text: string, flag: string): number {
  const match = /^\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([kmgt]?i?b?)\s*$/i.exec(text);
  const expected = "a size such as 512MB, 2GB or 1.5G (a plain number is MB)";
  if (!match) throw badValue(flag, expected, text);
  const unit = match[2]!.toLowerCase();
  if (unit === 'i' || unit === 'ib' || /^[kmgt]i$/.test(unit)) throw badValue(flag, expected, text);
  const scale = unit === '' ? 1 : kSizeUnits[unit === 'b' ? 'b' : unit[0]!]!;
  const mb = Number(match[1]) * scale;
  if (!Number.isFinite(mb)) throw badValue(flag, expected, text);
  return mb;
}

/** "b1=500,b2=1e-4" -> { b1: 500, b2: 0.0001 }; "500,1e-4" -> [500, 0.0001]. */
export function parseParamList(text: string, flag: string): Record<string, number> | number[] {
  const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw badValue(flag, 'values such as a=1,b=2 or 1,2', text);
  const named = items.filter((item) => item.includes('='));
  if (named.length > 0 && named.length < items.length) {
    throw new UsageError(`--${flag}: give either every value by name (b1=1,b2=2) or none (1,2), not a mix: '${text}'`);
  }
  if (named.length === 0) {
    return items.map((item, i) => {
      const value = finite(item);
      if (value === null) throw badValue(flag, 'a number', item, `position ${i + 1} of --${flag}`);
      return value;
    });
  }
  const out: Record<string, number> = {};
  for (const item of items) {
    const at = item.indexOf('=');
    const name = item.slice(0, at).trim();
    const raw = item.slice(at + 1).trim();
    if (!isIdentifier(name)) throw badValue(flag, 'a parameter name before =', item);
    if (name in out) throw new UsageError(`--${flag}: '${name}' is given twice`);
    const value = finite(raw);
    if (value === null) throw badValue(flag, 'a number', raw, `${name} in --${flag}`);
    out[name] = value;
  }
  return out;
}

/** A bound side: a number, 'inf', '-inf' or empty (open); an infinite side is stored as null. */
function boundSide(text: string, flag: string, name: string, side: 'lower' | 'upper'): number | null {
  const t = text.trim().toLowerCase();
  if (t === '' || t === 'none' || t === 'null') return null;
  const infinite = /^([+-]?)inf(inity)?$/.exec(t);
  const value = infinite ? (infinite[1] === '-' ? -Infinity : Infinity) : finite(t);
  if (value === null) throw badValue(flag, 'a number, inf or -inf', text, `the ${side} bound of ${name} in --${flag}`);
  if (value === (side === 'lower' ? -Infinity : Infinity)) return null;
  if (!Number.isFinite(value)) throw new UsageError(`--${flag}: the ${side} bound of ${name} is ${text}, which leaves no room`);
  return value;
}

export type BoundsSpec = Record<string, [number | null, number | null]>;

/** "b1=0:inf,b2=-1:1,b3=:5" -> { b1: [0, null], b2: [-1, 1], b3: [null, 5] } (null: no bound on that side). */
export function parseBounds(text: string, flag: string): BoundsSpec {
  const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw badValue(flag, 'bounds such as b1=0:inf,b2=-1:1', text);
  const out: BoundsSpec = {};
  for (const item of items) {
    const match = /^([^=]+)=([^:]*):([^:]*)$/.exec(item);
    if (!match || !isIdentifier(match[1]!.trim())) throw badValue(flag, 'name=lower:upper (e.g. b1=0:inf)', item);
    const name = match[1]!.trim();
    out[name] = [boundSide(match[2]!, flag, name, 'lower'), boundSide(match[3]!, flag, name, 'upper')];
  }
  return out;
}

/** Bounds from a job file: the text form, or { b1: [0, null], b2: '-1:1' }. */
export function boundsFromJob(value: unknown, flag: string): BoundsSpec {
  if (typeof value === 'string') return parseBounds(value, flag);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw badValue(flag, "'b1=0:inf' or { b1: [0, null] }", value);
  }
  const out: BoundsSpec = {};
  for (const [name, pair] of Object.entries(value)) {
    if (typeof pair === 'string') {
      Object.assign(out, parseBounds(`${name}=${pair}`, flag));
      continue;
    }
    if (!Array.isArray(pair) || pair.length !== 2) throw badValue(flag, '[lower, upper]', pair, `${name} in --${flag}`);
    const side = (v: unknown, which: 'lower' | 'upper'): number | null =>
      v === null || v === undefined ? null : boundSide(String(v), flag, name, which);
    out[name] = [side(pair[0], 'lower'), side(pair[1], 'upper')];
  }
  return out;
}

/** "c" or "c,d" -> ['c', 'd']: identifiers, no repeats. */
export function parseNames(text: string, flag: string): string[] {
  const names = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 0) throw badValue(flag, 'one or more names separated by commas', text);
  for (const name of names) if (!isIdentifier(name)) throw badValue(flag, 'names (letters, digits, _)', name);
  return names;
}

/**
 * --columns: how the data's columns are named for the fit.
 *   rename: { x: 'time', y: 'signal' }   fit name = source column (x=time,y=signal)
 *   names:  ['x', 'y', 'sigma']          the columns of a 2-D .npy, in order (x,y,sigma)
 */
export type ColumnsSpec = { rename: Record<string, string> } | { names: string[] };

export function parseColumns(text: string, flag: string): ColumnsSpec {
  const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw badValue(flag, 'x=col1,y=col2 (renames) or x,y (the columns of a .npy table in order)', text);
  const renames = items.filter((item) => item.includes('='));
  if (renames.length === 0) return { names: checkDistinct(parseNames(text, flag), flag) };
  if (renames.length < items.length) {
    throw new UsageError(`--${flag}: give either renames (x=time,y=signal) or the names of a .npy table's columns in order (x,y), not a mix: '${text}'`);
  }
  const rename: Record<string, string> = {};
  for (const item of items) {
    const [target, from] = item.split('=', 2).map((s) => s.trim()) as [string, string];
    if (!isIdentifier(target) || !isIdentifier(from)) {
      throw badValue(flag, 'name=column with plain column names (x=time)', item);
    }
    if (target in rename) throw new UsageError(`--${flag}: '${target}' is named twice`);
    rename[target] = from;
  }
  return { rename };
}

function checkDistinct(names: string[], flag: string): string[] {
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  if (twice !== undefined) throw new UsageError(`--${flag}: the column name '${twice}' appears twice`);
  return names;
}

/** --columns from a job file: the text form, { x: 'time' } or ['x', 'y']. */
export function columnsFromJob(value: unknown, flag: string): ColumnsSpec {
  if (typeof value === 'string') return parseColumns(value, flag);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return parseColumns(value.join(','), flag);
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.values(value).every((v) => typeof v === 'string')) {
    return parseColumns(Object.entries(value).map(([k, v]) => `${k}=${String(v)}`).join(','), flag);
  }
  throw badValue(flag, "'x=time,y=signal', { x: 'time' } or ['x', 'y']", value);
}

/** --p0 from a job file: the text form, { a: 1 } or [1, 2]. */
export function paramListFromJob(value: unknown, flag: string): Record<string, number> | number[] {
  if (typeof value === 'string') return parseParamList(value, flag);
  if (Array.isArray(value) && value.length > 0) {
    return value.map((v, i) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw badValue(flag, 'a number', v, `position ${i + 1} of --${flag}`);
      return v;
    });
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const out: Record<string, number> = {};
    for (const [name, v] of Object.entries(value)) {
      if (!isIdentifier(name)) throw badValue(flag, 'parameter names', name);
      if (typeof v !== 'number' || !Number.isFinite(v)) throw badValue(flag, 'a number', v, `${name} in --${flag}`);
      out[name] = v;
    }
    if (Object.keys(out).length > 0) return out;
  }
  throw badValue(flag, "'a=1,b=2', { a: 1, b: 2 } or [1, 2]", value);
}

/** A list of names from a job file: 'c,d' or ['c', 'd']. */
export function namesFromJob(value: unknown, flag: string): string[] {
  if (typeof value === 'string') return parseNames(value, flag);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return parseNames(value.join(','), flag);
  throw badValue(flag, "'c,d' or ['c', 'd']", value);
}
