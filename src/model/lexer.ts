/**
 * Splits a model expression into tokens, lazily, so the parser reports the
 * first error in reading order whether it is lexical or syntactic.
 *
 * Names are ASCII: `[A-Za-z_][A-Za-z0-9_]*`, except `__proto__`, which a
 * JavaScript object cannot hold as an ordinary key (p0, data columns and
 * results are objects keyed by name). Number literals must be finite.
 */
import { ModelError } from '../errors.js';

export type TokenKind =
  | 'number'
  | 'name'
  | '+'
  | '-'
  | '*'
  | '/'
  | '^'
  | '('
  | ')'
  | ','
  | ComparisonToken
  | '&&'
  | '||'
  | '!'
  | 'end';

export type ComparisonToken = '<' | '<=' | '>' | '>=' | '==' | '!=';

export interface Token {
  readonly kind: TokenKind;
  /** The source text; `^` tokens are `^` or `**`, `end` is empty. */
  readonly text: string;
  /** 0-based character offset in the source. */
  readonly position: number;
  /** The numeric value of a `number` token, else NaN. */
  readonly value: number;
}

const kNumber = /(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/y;
const kName = /[A-Za-z_][A-Za-z0-9_]*/y;
const kWhitespace = /\s*/y;
const kNameOrDigit = /[A-Za-z0-9_.]/;
/** A letter outside ASCII (`α`, `é`): names cannot use it, and the error says which characters they can. */
const kOtherLetter = /\p{L}/u;
/** The one identifier an object literal or assignment cannot store as an own key. */
const kReservedName = '__proto__';
/** The longest stretch of a token an error message repeats. */
const kShownTokenChars = 40;
const kSymbols: ReadonlyMap<string, TokenKind> = new Map<string, TokenKind>([
  ['+', '+'],
  ['-', '-'],
  ['*', '*'],
  ['/', '/'],
  ['^', '^'],
  ['(', '('],
  [')', ')'],
  [',', ','],
  ['<', '<'],
  ['>', '>'],
  ['!', '!'],
]);
/** Operators of two characters; they are matched before the one-character ones. */
const kPairs: ReadonlyMap<string, TokenKind> = new Map<string, TokenKind>([
  ['**', '^'],
  ['<=', '<='],
  ['>=', '>='],
  ['==', '=='],
  ['!=', '!='],
  ['&&', '&&'],
  ['||', '||'],
]);
/** Characters that only appear doubled, with the hint shown when one appears alone. */
const kHalfPairs: ReadonlyMap<string, string> = new Map([
  ['=', "use '==' to compare"],
  ['&', "use '&&' for logical and"],
  ['|', "use '||' for logical or"],
]);

/** Whether a token kind is one of the comparison operators. */
export function isComparison(kind: TokenKind): kind is ComparisonToken {
  return kind === '<' || kind === '<=' || kind === '>' || kind === '>=' || kind === '==' || kind === '!=';
}

/** What a name may be made of, for error messages. */
export const kNameCharacters = "the ASCII letters A-Z and a-z, the digits 0-9 and '_', not starting with a digit";

/** Whether `name` is a valid identifier: `[A-Za-z_][A-Za-z0-9_]*`, other than `__proto__`. */
export function isIdentifier(name: string): boolean {
  kName.lastIndex = 0;
  return kName.test(name) && kName.lastIndex === name.length && name !== kReservedName;
}

/** Why `name` cannot name a parameter, column or definition (only `__proto__` cannot), else undefined. */
export function reservedNameProblem(name: string): string | undefined {
  return name === kReservedName
    ? `'${kReservedName}' cannot be a name: JavaScript objects (p0, data, results) treat it as their prototype, not as a key; rename it`
    : undefined;
}

/** A token's text quoted for an error message; a long one is cut in the middle and its length given. */
export function quoted(text: string): string {
  if (text.length <= kShownTokenChars) return `'${text}'`;
  const head = text.slice(0, kShownTokenChars - 10);
  return `'${head}...${text.slice(-5)}' (${text.length} characters)`;
}

/**
 * The tokens of `source`, ending with one `end` token at `source.length`.
 * Throws ModelError for an unexpected character or a malformed number.
 * @example
 * [...tokenize('2**-x')].map((t) => t.text) // ['2', '**', '-', 'x', '']
 */
export function* tokenize(source: string): Generator<Token, void, undefined> {
  let offset = 0;
  for (;;) {
    kWhitespace.lastIndex = offset;
    kWhitespace.test(source);
    offset = kWhitespace.lastIndex;
    if (offset >= source.length) {
      yield { kind: 'end', text: '', position: source.length, value: NaN };
      return;
    }
    const char = source[offset]!;
    if (/[0-9.]/.test(char)) {
      const text = scanNumber(source, offset);
      const value = Number(text);
      if (!Number.isFinite(value)) {
        throw new ModelError(`number ${quoted(text)} is too large: it would be Infinity (the largest number is about 1.8e308)`, source, offset);
      }
      yield { kind: 'number', text, position: offset, value };
      offset += text.length;
    } else if (/[A-Za-z_]/.test(char)) {
      kName.lastIndex = offset;
      kName.test(source);
      const text = source.slice(offset, kName.lastIndex);
      if (isOtherLetter(source, kName.lastIndex)) throw notAscii(source, kName.lastIndex);
      const reserved = reservedNameProblem(text);
      if (reserved !== undefined) throw new ModelError(reserved, source, offset);
      yield { kind: 'name', text, position: offset, value: NaN };
      offset += text.length;
    } else if (kPairs.has(source.slice(offset, offset + 2))) {
      const text = source.slice(offset, offset + 2);
      yield { kind: kPairs.get(text)!, text, position: offset, value: NaN };
      offset += 2;
    } else {
      const kind = kSymbols.get(char);
      if (kind === undefined) {
        if (isOtherLetter(source, offset)) throw notAscii(source, offset);
        const shown = String.fromCodePoint(source.codePointAt(offset)!);
        const hint = kHalfPairs.get(shown);
        throw new ModelError(`unexpected character '${shown}'${hint === undefined ? '' : ` (${hint})`}`, source, offset);
      }
      yield { kind, text: char, position: offset, value: NaN };
      offset += 1;
    }
  }
}

/** Whether the character at `offset` (a whole code point) is a letter outside ASCII. */
function isOtherLetter(source: string, offset: number): boolean {
  const code = source.codePointAt(offset);
  return code !== undefined && code > 0x7f && kOtherLetter.test(String.fromCodePoint(code));
}

/** The error for a letter outside ASCII at `offset`, inside or at the start of a name. */
function notAscii(source: string, offset: number): ModelError {
  const shown = String.fromCodePoint(source.codePointAt(offset)!);
  return new ModelError(`unexpected character '${shown}': names may use only ${kNameCharacters}`, source, offset);
}

/**
 * The number starting at `start`. A number run straight into a letter, digit,
 * `_` or `.` (`1e`, `1.2.3`, `2x`) is malformed: the error shows the whole run.
 */
function scanNumber(source: string, start: number): string {
  kNumber.lastIndex = start;
  const end = kNumber.test(source) ? kNumber.lastIndex : start;
  if (end > start && !kNameOrDigit.test(source[end] ?? '')) return source.slice(start, end);
  let stop = Math.max(end, start + 1);
  for (; stop < source.length; stop++) {
    const char = source[stop]!;
    const exponentSign = (char === '+' || char === '-') && /[eE]/.test(source[stop - 1]!);
    if (!kNameOrDigit.test(char) && !exponentSign) break;
  }
  throw new ModelError(`malformed number ${quoted(source.slice(start, stop))}`, source, start);
}
