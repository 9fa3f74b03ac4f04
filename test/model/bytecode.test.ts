import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as bytecode from '../../dist/model/index.js';
import { applyBinary, applyUnary, isBinaryOp, isPiecewiseConstant, isTrue, isUnaryOp, kMaxPowi, Op, powC, powi, type BinaryOp } from '../../dist/model/index.js';

const header = readFileSync(new URL('../../native/kernel/bytecode.hpp', import.meta.url), 'utf8');

describe('bytecode.ts mirrors native/kernel/bytecode.hpp', () => {
  const constants = [...header.matchAll(/constexpr\s+\w+\s+(k\w+)\s*=\s*([^;]+);/g)];
  const enumBody = /enum Op[^{]*\{([^}]*)\}/.exec(header)![1]!;
  const opcodes = [...enumBody.matchAll(/k(\w+)\s*=\s*(\d+)/g)];

  it('finds the constants and opcodes in the header', () => {
    expect(constants.map((m) => m[1])).toEqual(['kMagic', 'kVersion', 'kHeaderWords', 'kInstrWords', 'kMaxInstr', 'kMaxParams', 'kMaxVars', 'kMaxPowi']);
    expect(opcodes.length).toBe(37);
  });

  it.each(constants.map((m) => [m[1]!, m[2]!]))('%s = %s', (name, expression) => {
    const shift = /^(\d+)\s*<<\s*(\d+)$/.exec(expression);
    const value = shift ? Number(shift[1]) * 2 ** Number(shift[2]) : Number(expression);
    expect((bytecode as unknown as Record<string, number>)[name]).toBe(value);
  });

  it('has every opcode with the same number, and no other', () => {
    const fromHeader = Object.fromEntries(opcodes.filter((m) => m[1] !== 'OpCount').map((m) => [m[1]!, Number(m[2])]));
    expect({ ...Op }).toEqual(fromHeader);
    expect(bytecode.kOpCount).toBe(Number(opcodes.find((m) => m[1] === 'OpCount')![2]));
  });
});

describe('opcode semantics', () => {
  it('powi multiplies out integer powers, negative as a reciprocal', () => {
    for (const x of [0.7, -1.3, 2, 1e-3]) {
      for (let n = -kMaxPowi; n <= kMaxPowi; n++) {
        const expected = Math.pow(x, n);
        expect(Math.abs(powi(x, n) - expected)).toBeLessThanOrEqual(Math.abs(expected) * 64 * Number.EPSILON);
      }
    }
    expect(powi(3, 2)).toBe(9);
    expect(powi(3, 3)).toBe(27);
    expect(powi(2, -3)).toBe(0.125);
    expect(powi(NaN, 0)).toBe(1);
    expect(powi(0, -1)).toBe(Infinity);
  });

  it('pow follows C99: pow(1, y) = 1 and pow(-1, ±inf) = 1', () => {
    expect(powC(1, NaN)).toBe(1);
    expect(powC(-1, Infinity)).toBe(1);
    expect(powC(-1, -Infinity)).toBe(1);
    expect(powC(2, 0.5)).toBe(Math.SQRT2);
    expect(powC(NaN, 0)).toBe(1);
    expect(powC(-8, 1 / 3)).toBeNaN();
  });

  it('min and max take a on ties and propagate a NaN in either operand, as the kernel does', () => {
    expect(Object.is(applyBinary(Op.Min, 0, -0), 0)).toBe(true);
    expect(Object.is(applyBinary(Op.Min, -0, 0), -0)).toBe(true);
    expect(Object.is(applyBinary(Op.Max, -0, 0), -0)).toBe(true);
    expect(applyBinary(Op.Min, NaN, 1)).toBeNaN();
    expect(applyBinary(Op.Min, 1, NaN)).toBeNaN();
    expect(applyBinary(Op.Max, NaN, 1)).toBeNaN();
    expect(applyBinary(Op.Max, 1, NaN)).toBeNaN();
    expect(applyBinary(Op.Max, 1, 2)).toBe(2);
    expect(applyBinary(Op.Min, 1, 2)).toBe(1);
  });

  it('comparisons give 1 or 0, and 0 for a NaN operand except !=', () => {
    const table: [number, number, number, number][] = [
      // [op, a, b, value]
      [Op.Lt, 1, 2, 1],
      [Op.Lt, 2, 2, 0],
      [Op.Le, 2, 2, 1],
      [Op.Gt, 3, 2, 1],
      [Op.Ge, 2, 3, 0],
      [Op.Eq, 0, -0, 1],
      [Op.Ne, 0, -0, 0],
      [Op.Lt, -Infinity, Infinity, 1],
      [Op.Eq, Infinity, Infinity, 1],
    ];
    for (const [op, a, b, value] of table) expect(applyBinary(op as BinaryOp, a, b), `${op}(${a}, ${b})`).toBe(value);
    for (const op of [Op.Lt, Op.Le, Op.Gt, Op.Ge, Op.Eq] as const) {
      expect(applyBinary(op, NaN, 1)).toBe(0);
      expect(applyBinary(op, 1, NaN)).toBe(0);
      expect(applyBinary(op, NaN, NaN)).toBe(0);
    }
    expect(applyBinary(Op.Ne, NaN, 1)).toBe(1);
    expect(applyBinary(Op.Ne, NaN, NaN)).toBe(1);
  });

  it('logical operators treat nonzero as true and 0, -0 and NaN as false', () => {
    expect([1, -2, Infinity, 1e-300, 0, -0, NaN].map(isTrue)).toEqual([true, true, true, true, false, false, false]);
    expect(applyBinary(Op.And, 2, -3)).toBe(1);
    expect(applyBinary(Op.And, 2, 0)).toBe(0);
    expect(applyBinary(Op.And, NaN, 1)).toBe(0);
    expect(applyBinary(Op.Or, NaN, 0)).toBe(0);
    expect(applyBinary(Op.Or, NaN, 5)).toBe(1);
    expect(applyBinary(Op.Or, -0, 0)).toBe(0);
    expect(applyUnary(Op.Not, 0)).toBe(1);
    expect(applyUnary(Op.Not, -0)).toBe(1);
    expect(applyUnary(Op.Not, NaN)).toBe(1);
    expect(applyUnary(Op.Not, 0.5)).toBe(0);
  });

  it('classifies the new opcodes as binary or unary and piecewise constant', () => {
    for (const op of [Op.Lt, Op.Le, Op.Gt, Op.Ge, Op.Eq, Op.Ne, Op.And, Op.Or]) {
      expect(isBinaryOp(op) && !isUnaryOp(op) && isPiecewiseConstant(op)).toBe(true);
    }
    expect(isUnaryOp(Op.Not) && !isBinaryOp(Op.Not) && isPiecewiseConstant(Op.Not)).toBe(true);
    for (let op = 0; op < Op.Lt; op++) expect(isPiecewiseConstant(op)).toBe(false);
    expect(isBinaryOp(Op.Powi) || isUnaryOp(Op.Powi) || isBinaryOp(bytecode.kOpCount) || isUnaryOp(bytecode.kOpCount)).toBe(false);
  });
});
