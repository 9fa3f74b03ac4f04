/**
 * The model bytecode, mirrored number for number from
 * native/kernel/bytecode.hpp (the one contract between this compiler and the
 * C++ VM; a test reads the header and checks every value here).
 *
 * A program is an Int32Array in static single assignment form: a header of
 * kHeaderWords words, then nInstr instructions of kInstrWords words
 * `[op, a, b]`. Instruction i defines value i; operands name earlier values,
 * a constant, a parameter or a variable (data column). The model value is the
 * value of the last instruction.
 *
 * This module also defines what each opcode computes, in TypeScript, so the
 * compiler folds constants with exactly the semantics it evaluates with.
 */
import { invalidInput } from '../errors.js';

export const kMagic = 0x4e4c4631; // "NLF1"
export const kVersion = 2;
export const kHeaderWords = 6;
export const kInstrWords = 3;
export const kMaxInstr = 1 << 16;
/** Dependency masks in the kernel are 64-bit. */
export const kMaxParams = 64;
export const kMaxVars = 256;
/** kPowi exponents lie in [-kMaxPowi, kMaxPowi]. */
export const kMaxPowi = 64;

/** Header word offsets. */
export const kHeaderMagic = 0;
export const kHeaderVersion = 1;
export const kHeaderInstrCount = 2;
export const kHeaderParamCount = 3;
export const kHeaderVarCount = 4;
export const kHeaderConstCount = 5;

/**
 * Opcodes.
 * @example
 * code[kHeaderWords + i * kInstrWords] === Op.Exp // instruction i is exp(value a)
 */
export const Op = {
  Const: 0,
  Param: 1,
  Var: 2,
  // binary
  Add: 3,
  Sub: 4,
  Mul: 5,
  Div: 6,
  Pow: 7,
  Atan2: 8,
  Min: 9,
  Max: 10,
  // unary
  Neg: 11,
  Exp: 12,
  Log: 13,
  Log10: 14,
  Sqrt: 15,
  Abs: 16,
  Sin: 17,
  Cos: 18,
  Tan: 19,
  Asin: 20,
  Acos: 21,
  Atan: 22,
  Sinh: 23,
  Cosh: 24,
  Tanh: 25,
  // integer power with a literal exponent
  Powi: 26,
  // comparisons (binary): 1 or 0, see applyBinary
  Lt: 27,
  Le: 28,
  Gt: 29,
  Ge: 30,
  Eq: 31,
  Ne: 32,
  // logical (binary, then unary): 1 or 0, see isTrue
  And: 33,
  Or: 34,
  Not: 35,
} as const;
export type Op = (typeof Op)[keyof typeof Op];
export const kOpCount = 36;

export type ComparisonOp = typeof Op.Lt | typeof Op.Le | typeof Op.Gt | typeof Op.Ge | typeof Op.Eq | typeof Op.Ne;
export type BinaryOp =
  | typeof Op.Add
  | typeof Op.Sub
  | typeof Op.Mul
  | typeof Op.Div
  | typeof Op.Pow
  | typeof Op.Atan2
  | typeof Op.Min
  | typeof Op.Max
  | ComparisonOp
  | typeof Op.And
  | typeof Op.Or;
export type UnaryOp = Exclude<Op, BinaryOp | typeof Op.Const | typeof Op.Param | typeof Op.Var | typeof Op.Powi>;

export function isBinaryOp(op: number): op is BinaryOp {
  return (op >= Op.Add && op <= Op.Max) || (op >= Op.Lt && op <= Op.Or);
}

export function isUnaryOp(op: number): op is UnaryOp {
  return (op >= Op.Neg && op <= Op.Tanh) || op === Op.Not;
}

/**
 * Whether an opcode is piecewise constant (comparisons and logical
 * operators): its derivative is 0 wherever it exists, so the kernel gives its
 * value no parameter tangents at all.
 */
export function isPiecewiseConstant(op: number): boolean {
  return op >= Op.Lt && op <= Op.Not;
}

/**
 * The truth of a value for the logical operators and filters: true when it is
 * nonzero and not NaN, so a NaN never passes a condition by itself. (`!` of
 * a NaN is 1, as `!` of any false value is; `x != 1` is 1 for a NaN x, as in
 * IEEE arithmetic. To keep NaN rows out, compare: `x > 0`, not `!(x <= 0)`.)
 */
export function isTrue(a: number): boolean {
  return a < 0 || a > 0;
}

/**
 * a^b with C99 (Annex F) semantics, which the kernel's std::pow follows and
 * JavaScript's Math.pow does not in two cases: pow(1, y) is 1 for every y
 * (even NaN) and pow(-1, ±Infinity) is 1.
 */
export function powC(a: number, b: number): number {
  if (a === 1 || (a === -1 && (b === Infinity || b === -Infinity))) return 1;
  return Math.pow(a, b);
}

/**
 * x^n for an integer n by binary powering (square and multiply), negative n
 * as 1 / x^|n|; x^0 is 1 for every x. The rounding differs from pow(x, n) in
 * the last bits, which is why kPowi is its own opcode.
 */
export function powi(x: number, n: number): number {
  let result = 1;
  let square = x;
  for (let k = Math.abs(n); k > 0; k >>= 1) {
    if (k & 1) result *= square;
    if (k > 1) square *= square;
  }
  return n < 0 ? 1 / result : result;
}

/**
 * The value of a binary opcode, as the kernel computes it (vm_ops.hpp). Min
 * and max return a on ties and a NaN in either operand.
 *
 * Comparisons are IEEE comparisons giving 1 or 0: any comparison with a NaN
 * operand is 0 except `!=`, which is 1; -0 equals 0. `&&` and `||` are 1 or 0
 * by isTrue of both operands (both are always evaluated).
 */
export function applyBinary(op: BinaryOp, a: number, b: number): number {
  switch (op) {
    case Op.Add:
      return a + b;
    case Op.Sub:
      return a - b;
    case Op.Mul:
      return a * b;
    case Op.Div:
      return a / b;
    case Op.Pow:
      return powC(a, b);
    case Op.Atan2:
      return Math.atan2(a, b);
    case Op.Min:
      return a <= b || a !== a ? a : b;
    case Op.Max:
      return a >= b || a !== a ? a : b;
    case Op.Lt:
      return a < b ? 1 : 0;
    case Op.Le:
      return a <= b ? 1 : 0;
    case Op.Gt:
      return a > b ? 1 : 0;
    case Op.Ge:
      return a >= b ? 1 : 0;
    case Op.Eq:
      return a === b ? 1 : 0;
    case Op.Ne:
      return a !== b ? 1 : 0;
    case Op.And:
      return isTrue(a) && isTrue(b) ? 1 : 0;
    case Op.Or:
      return isTrue(a) || isTrue(b) ? 1 : 0;
  }
}

/** The value of a unary opcode. */
export function applyUnary(op: UnaryOp, a: number): number {
  switch (op) {
    case Op.Neg:
      return -a;
    case Op.Exp:
      return Math.exp(a);
    case Op.Log:
      return Math.log(a);
    case Op.Log10:
      return Math.log10(a);
    case Op.Sqrt:
      return Math.sqrt(a);
    case Op.Abs:
      return Math.abs(a);
    case Op.Sin:
      return Math.sin(a);
    case Op.Cos:
      return Math.cos(a);
    case Op.Tan:
      return Math.tan(a);
    case Op.Asin:
      return Math.asin(a);
    case Op.Acos:
      return Math.acos(a);
    case Op.Atan:
      return Math.atan(a);
    case Op.Sinh:
      return Math.sinh(a);
    case Op.Cosh:
      return Math.cosh(a);
    case Op.Tanh:
      return Math.tanh(a);
    case Op.Not:
      return isTrue(a) ? 0 : 1;
  }
}

/**
 * Interprets a program for one data point (values only, no derivatives): the
 * reference the kernel is tested against. `vars[v][i]` is variable v at point
 * i. The program is assumed well formed (the compiler's output); this is not
 * the kernel's verifier.
 * @example
 * evaluateProgram(model.code, model.consts, [2, 0.5], [xs], 3) // f(xs[3]; 2, 0.5)
 */
export function evaluateProgram(
  code: Int32Array,
  consts: ArrayLike<number>,
  params: ArrayLike<number>,
  vars: readonly ArrayLike<number>[],
  i: number,
): number {
  const nInstr = code[kHeaderInstrCount];
  const values = new Float64Array(nInstr);
  for (let k = 0; k < nInstr; k++) {
    const at = kHeaderWords + k * kInstrWords;
    const op = code[at];
    const a = code[at + 1];
    const b = code[at + 2];
    if (op === Op.Const) values[k] = consts[a];
    else if (op === Op.Param) values[k] = params[a];
    else if (op === Op.Var) values[k] = vars[a][i];
    else if (op === Op.Powi) values[k] = powi(values[a], b);
    else if (isBinaryOp(op)) values[k] = applyBinary(op, values[a], values[b]);
    else if (isUnaryOp(op)) values[k] = applyUnary(op, values[a]);
    else throw invalidInput('bytecode', `unknown opcode ${op} in instruction ${k}`);
  }
  return nInstr > 0 ? values[nInstr - 1] : NaN;
}
