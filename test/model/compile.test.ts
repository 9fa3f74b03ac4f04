import { describe, expect, it } from 'vitest';
import { failure } from './helpers.js';
import { ModelError } from '../../dist/errors.js';
import {
  compileModel,
  evaluateCompiled,
  freeIdentifiers,
  isBinaryOp,
  kHeaderWords,
  kInstrWords,
  kMagic,
  kVersion,
  Op,
  parseExpression,
  reduceExpr,
  type CompiledModel,
  type CompileOptions,
} from '../../dist/model/index.js';

const options: CompileOptions = { params: ['a', 'b', 'c'], columns: ['x', 'y', 'sigma'], reserved: ['y', 'sigma'] };

function instructions(model: CompiledModel): { op: number; a: number; b: number }[] {
  const count = model.code[2]!;
  return Array.from({ length: count }, (_, i) => {
    const at = kHeaderWords + i * kInstrWords;
    return { op: model.code[at]!, a: model.code[at + 1]!, b: model.code[at + 2]! };
  });
}

function countOp(model: CompiledModel, op: number): number {
  return instructions(model).filter((instr) => instr.op === op).length;
}


/** Checks the SSA rules: operands earlier, no duplicate instruction, every value but the last used. */
function expectWellFormed(model: CompiledModel): void {
  const program = instructions(model);
  const used = new Set<number>();
  const seen = new Set<string>();
  program.forEach(({ op, a, b }, i) => {
    const key = `${op},${a},${b}`;
    expect(seen.has(key), `instruction ${i} duplicates an earlier one`).toBe(false);
    seen.add(key);
    if (op === Op.Const) expect(a).toBeLessThan(model.consts.length);
    else if (op === Op.Param) expect(a).toBeLessThan(model.paramNames.length);
    else if (op === Op.Var) expect(a).toBeLessThan(model.variableNames.length);
    else {
      expect(a).toBeLessThan(i);
      used.add(a);
      if (isBinaryOp(op)) {
        expect(b).toBeLessThan(i);
        used.add(b);
      }
    }
  });
  for (let i = 0; i < program.length - 1; i++) expect(used.has(i), `instruction ${i} is dead`).toBe(true);
  const constsUsed = new Set(program.filter((instr) => instr.op === Op.Const).map((instr) => instr.a));
  expect(constsUsed.size).toBe(model.consts.length);
}

describe('bytecode header', () => {
  it('holds magic, version and the counts, followed by the instructions', () => {
    const model = compileModel('a*exp(-b*x)+c*2', options);
    const count = instructions(model).length;
    expect([...model.code.slice(0, kHeaderWords)]).toEqual([kMagic, kVersion, count, 3, 1, 1]);
    expect(model.code.length).toBe(kHeaderWords + count * kInstrWords);
    expect(model.code).toBeInstanceOf(Int32Array);
    expect(model.consts).toBeInstanceOf(Float64Array);
    expect([...model.consts]).toEqual([2]);
    expectWellFormed(model);
  });

  it('counts every parameter in p0, used or not, and only the columns used', () => {
    const model = compileModel('a', { params: ['a', 'b'], columns: ['x', 'z'] });
    expect([...model.code.slice(0, kHeaderWords)]).toEqual([kMagic, kVersion, 1, 2, 0, 0]);
    expect(instructions(model)).toEqual([{ op: Op.Param, a: 0, b: 0 }]);
  });
});

describe('constant folding', () => {
  it('turns 2*pi*x into one constant times x', () => {
    const model = compileModel('2*pi*x', options);
    expect([...model.consts]).toEqual([2 * Math.PI]);
    expect(instructions(model).map((i) => i.op)).toEqual([Op.Const, Op.Var, Op.Mul]);
  });

  it('folds whole constant expressions with the evaluator semantics', () => {
    for (const [source, value] of [
      ['2+3*4', 14],
      ['exp(1)', Math.E],
      ['sin(pi/2)', 1],
      ['2^10', 1024],
      ['1^(0/0)', 1],
      ['min(0, -0)', 0],
      ['-0', -0],
      ['atan2(1, -1)', Math.atan2(1, -1)],
      ['max(1, 5, 3)', 5],
    ] as const) {
      const model = compileModel(source, options);
      expect(instructions(model), source).toEqual([{ op: Op.Const, a: 0, b: 0 }]);
      expect(Object.is(model.consts[0], value), source).toBe(true);
    }
  });

  it('folds constant subtrees only: it does not reassociate', () => {
    expect([...compileModel('x*(1+2)', options).consts]).toEqual([3]);
    expect([...compileModel('pi*x*2', options).consts]).toEqual([Math.PI, 2]);
    expect([...compileModel('a*x + 2*3', options).consts]).toEqual([6]);
  });

  it('keeps one constant per distinct value, telling 0 from -0', () => {
    expect([...compileModel('2*x + 2*a', options).consts]).toEqual([2]);
    const signed = compileModel('x*0 + a*(-0)', options);
    expect(signed.consts.length).toBe(2);
    expect(Object.is(signed.consts[1], -0)).toBe(true);
  });

  it('drops operands of folded subtrees (no dead instructions or constants)', () => {
    const model = compileModel('a*(2*3) + x^(1+1)', options);
    expect([...model.consts]).toEqual([6]);
    expectWellFormed(model);
  });

  it('turns integer powers into kPowi and leaves other powers alone', () => {
    const powiOf = (source: string) => instructions(compileModel(source, options)).filter((i) => i.op === Op.Powi).map((i) => i.b);
    expect(powiOf('x^2')).toEqual([2]);
    expect(powiOf('x^-2')).toEqual([-2]);
    expect(powiOf('x^(-2)')).toEqual([-2]);
    expect(powiOf('pow(x, 3)')).toEqual([3]);
    expect(powiOf('x^(1+1)')).toEqual([2]);
    expect(powiOf('x^64 + x^-64 + x^0')).toEqual([64, -64, 0]);
    for (const source of ['x^65', 'x^2.5', 'x^0.5', 'pow(x, 0.5)', 'x^a', 'x^-65']) {
      const model = compileModel(source, options);
      expect(countOp(model, Op.Powi), source).toBe(0);
      expect(countOp(model, Op.Pow), source).toBe(1);
      expect(countOp(model, Op.Sqrt), source).toBe(0);
    }
  });

  it('cancels double negation', () => {
    expect(instructions(compileModel('--x', options))).toEqual([{ op: Op.Var, a: 0, b: 0 }]);
    expect(countOp(compileModel('---x', options), Op.Neg)).toBe(1);
  });
});

describe('comparison and logical operators', () => {
  it('emit their own opcodes', () => {
    const ops = (source: string) => instructions(compileModel(source, options)).map((i) => i.op);
    expect(ops('x < a')).toEqual([Op.Var, Op.Param, Op.Lt]);
    expect(ops('x <= a').at(-1)).toBe(Op.Le);
    expect(ops('x > a').at(-1)).toBe(Op.Gt);
    expect(ops('x >= a').at(-1)).toBe(Op.Ge);
    expect(ops('x == a').at(-1)).toBe(Op.Eq);
    expect(ops('x != a').at(-1)).toBe(Op.Ne);
    expect(ops('x && a').at(-1)).toBe(Op.And);
    expect(ops('x || a').at(-1)).toBe(Op.Or);
    expect(ops('!x')).toEqual([Op.Var, Op.Not]);
    expect(ops('!!x')).toEqual([Op.Var, Op.Not, Op.Not]);
  });

  it('fold constant operands with the kernel semantics, NaN included', () => {
    for (const [source, value] of [
      ['1 < 2', 1],
      ['2 <= 1', 0],
      ['0 == -0', 1],
      ['0/0 == 0/0', 0],
      ['0/0 != 0/0', 1],
      ['0/0 < 1 || 0/0 >= 1', 0],
      ['1/0 > 1e308', 1],
      ['2 && -1', 1],
      ['0/0 && 1', 0],
      ['0/0 || 0', 0],
      ['!(0/0)', 1],
      ['!0.5', 0],
      ['!-0', 1],
      ['pi > 3 && e < 3', 1],
      ['(1 < 2) + (3 < 4)', 2],
      ['min(1, 0/0) == min(1, 0/0)', 0],
    ] as const) {
      const model = compileModel(source, options);
      expect(instructions(model), source).toEqual([{ op: Op.Const, a: 0, b: 0 }]);
      expect(Object.is(model.consts[0], value), `${source} = ${model.consts[0]}`).toBe(true);
    }
  });

  it('fold constant subtrees inside a condition', () => {
    const model = compileModel('x > 2*3 && a < 1/0', options);
    expect([...model.consts]).toEqual([6, Infinity]);
    expect(instructions(model).map((i) => i.op)).toEqual([Op.Var, Op.Const, Op.Gt, Op.Param, Op.Const, Op.Lt, Op.And]);
    expectWellFormed(model);
  });

  it('share common subexpressions, conditions included', () => {
    const model = compileModel('a*(x > b) + c*(x > b) + (x > b && x <= 2*b) + !(x > b)', options);
    expect(countOp(model, Op.Gt)).toBe(1);
    expect(countOp(model, Op.Var)).toBe(1);
    expect(countOp(model, Op.Le)).toBe(1);
    expect(countOp(model, Op.Not)).toBe(1);
    expectWellFormed(model);
  });

  it('evaluate a piecewise model per point', () => {
    const model = compileModel('a*(x > 0) + b*(x <= 0)', options);
    expect(evaluateCompiled(model, [2, -3, 0], [[1, 0, -1, NaN]], 0)).toBe(2);
    expect(evaluateCompiled(model, [2, -3, 0], [[1, 0, -1, NaN]], 1)).toBe(-3);
    expect(evaluateCompiled(model, [2, -3, 0], [[1, 0, -1, NaN]], 2)).toBe(-3);
    // A NaN x is neither > 0 nor <= 0: both indicators are 0.
    expect(evaluateCompiled(model, [2, -3, 0], [[1, 0, -1, NaN]], 3)).toBe(0);
    expect(model.usesParam).toEqual([true, true, false]);
  });

  it('mark parameters used only inside a condition as used, with no derivative', () => {
    const inside = compileModel('x > a', options);
    expect(inside.usesParam).toEqual([true, false, false]);
    expect(inside.hasDerivative).toEqual([false, false, false]);
    const piecewise = compileModel('a*(x > b) + c*!(x > b) + (a < c)', options);
    expect(piecewise.usesParam).toEqual([true, true, true]);
    expect(piecewise.hasDerivative).toEqual([true, false, true]);
    expect(compileModel('exp(-a*x)*(a*x < 1)', options).hasDerivative).toEqual([true, false, false]);
  });

  it('give no derivative through x^0 or in an unused parameter, like the kernel', () => {
    expect(compileModel('(a*x)^0 + c', options).hasDerivative).toEqual([false, false, true]);
    expect(compileModel('a*x + b', options).hasDerivative).toEqual([true, true, false]);
  });
});

describe('common subexpressions', () => {
  const gauss1 = 'b1*exp(-b2*x)+b3*exp(-(x-b4)^2/b5^2)+b6*exp(-(x-b7)^2/b8^2)';
  const gaussParams = ['b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'b8'];

  /** Instructions a tree-walking emitter would produce: one per node, integer exponents inlined. */
  function treeSize(source: string): number {
    return reduceExpr<number>(parseExpression(source), (expr, kids) => {
      const inlined = expr.kind === 'binary' && expr.op === '^' && expr.right.kind === 'number' ? 1 : 0;
      return 1 + kids.reduce((sum, size) => sum + size, 0) - inlined;
    });
  }

  it('computes (x-b4) once', () => {
    const model = compileModel('exp(-(x-b4)^2) + (x-b4)', { params: ['b4'], columns: ['x'] });
    expect(countOp(model, Op.Sub)).toBe(1);
    expect(countOp(model, Op.Var)).toBe(1);
    expectWellFormed(model);
  });

  it('shares the loads of Gauss1 and emits fewer instructions than the tree', () => {
    const model = compileModel(gauss1, { params: gaussParams, columns: ['x'] });
    const count = instructions(model).length;
    expect(count).toBe(29);
    expect(treeSize(gauss1)).toBe(31);
    expect(count).toBeLessThan(treeSize(gauss1));
    expect(countOp(model, Op.Var)).toBe(1);
    expect(countOp(model, Op.Param)).toBe(8);
    expectWellFormed(model);
  });

  it('shares whole repeated terms', () => {
    const model = compileModel('exp(-a*x)/(1+exp(-a*x))', options);
    expect(countOp(model, Op.Exp)).toBe(1);
    expect(countOp(model, Op.Mul)).toBe(1);
    expectWellFormed(model);
  });

  it('puts the output last', () => {
    const model = compileModel('(x-a) * exp(x-a)', options);
    const program = instructions(model);
    expect(program[program.length - 1]!.op).toBe(Op.Mul);
    expect(program.length).toBe(5);
  });
});

describe('functions', () => {
  const x = 0.37;
  const a = 1.9;
  const unary: [string, (v: number) => number][] = [
    ['exp', Math.exp],
    ['log', Math.log],
    ['log10', Math.log10],
    ['sqrt', Math.sqrt],
    ['abs', Math.abs],
    ['sin', Math.sin],
    ['cos', Math.cos],
    ['tan', Math.tan],
    ['asin', Math.asin],
    ['acos', Math.acos],
    ['atan', Math.atan],
    ['sinh', Math.sinh],
    ['cosh', Math.cosh],
    ['tanh', Math.tanh],
  ];

  it.each(unary)('%s(x) matches Math and folds to the same value', (name, reference) => {
    const model = compileModel(`${name}(x)`, options);
    expect(evaluateCompiled(model, [], [[x, -x]], 0)).toBe(reference(x));
    expect(evaluateCompiled(model, [], [[x, -x]], 1)).toBe(reference(-x));
    expect(compileModel(`${name}(0.37)`, options).consts[0]).toBe(reference(x));
  });

  it.each([
    ['atan2(x, a)', Math.atan2(x, a)],
    ['pow(x, a)', Math.pow(x, a)],
    ['x^a', Math.pow(x, a)],
    ['min(a, x)', x],
    ['max(a, x)', a],
    ['min(a, 2, x, 0.5)', x],
    ['max(x, a, -1)', a],
    ['e^x', Math.exp(x)],
    ['pi*x', Math.PI * x],
  ])('%s', (source, expected) => {
    const model = compileModel(source, options);
    expect(evaluateCompiled(model, [a], [[x]], 0)).toBeCloseTo(expected, 15);
    expectWellFormed(model);
  });

  it('folds min and max with more than two arguments into nested binary calls', () => {
    const model = compileModel('min(a, b, c, x)', options);
    expect(instructions(model).filter((i) => i.op === Op.Min)).toEqual([
      { op: Op.Min, a: 0, b: 1 },
      { op: Op.Min, a: 4, b: 2 },
      { op: Op.Min, a: 5, b: 3 },
    ]);
  });
});

describe('name resolution', () => {
  it('lists only the columns used, in order of first appearance', () => {
    const model = compileModel('x2*a + x1 + x2', { params: ['a'], columns: ['x1', 'x2', 'x3'] });
    expect(model.variableNames).toEqual(['x2', 'x1']);
    expect(evaluateCompiled(model, [3], [[2], [10]], 0)).toBe(2 * 3 + 10 + 2);
  });

  it('keeps the parameter order of p0 and reports unused parameters', () => {
    const model = compileModel('c*x + a', options);
    expect(model.paramNames).toEqual(['a', 'b', 'c']);
    expect(model.usesParam).toEqual([true, false, true]);
    expect(evaluateCompiled(model, [1, 100, 2], [[5]], 0)).toBe(11);
  });

  it('prefers parameters, then columns, to the constants pi and e', () => {
    const byParam = compileModel('e*x', { params: ['e'], columns: ['x'] });
    expect(byParam.usesParam).toEqual([true]);
    expect(evaluateCompiled(byParam, [3], [[2]], 0)).toBe(6);
    const byColumn = compileModel('a*pi', { params: ['a'], columns: ['pi'] });
    expect(byColumn.variableNames).toEqual(['pi']);
    expect(compileModel('a*pi*e', { params: ['a'], columns: [] }).consts.length).toBe(2);
  });

  it('treats a function name as a call only when followed by (', () => {
    const model = compileModel('exp(exp)', { params: [], columns: ['exp'] });
    expect(model.variableNames).toEqual(['exp']);
    expect(evaluateCompiled(model, [], [[1]], 0)).toBe(Math.E);
  });

  it.each([
    ['a*q', "unknown identifier 'q' (not a parameter in p0 and not a data column)", 2],
    ['a + y', "'y' is the response column and cannot appear in the model", 4],
    ['a/sigma', "'sigma' is the weight column and cannot appear in the model", 2],
    ['exp + 1', "'exp' is a function and needs arguments, as in exp(x)", 0],
    ['a*foo(x)', "unknown function 'foo'", 2],
    ['exp(a,b)', "function 'exp' takes 1 argument but was given 2", 0],
  ])('%s: %s', (source, message, position) => {
    expect(failure(() => compileModel(source, options))).toEqual({ message, position });
  });

  it('rejects a name that is both a parameter and a column', () => {
    expect(failure(() => compileModel('a + x*2', { params: ['a', 'x'], columns: ['x'] }))).toEqual({
      message: "'x' is both a parameter (p0) and a data column",
      position: 4,
    });
    expect(() => compileModel('a', { params: ['a', 'x'], columns: ['x'] })).toThrow(expect.objectContaining({ name: 'RangeError', message: "Invalid p0: 'x' is both a parameter (p0) and a data column" }));
  });

  it('rejects reserved names even when they are parameters, and labels extra reserved names', () => {
    expect(failure(() => compileModel('y', { params: ['y'], columns: [], reserved: ['y'] })).message).toBe(
      "'y' is the response column and cannot appear in the model",
    );
    expect(failure(() => compileModel('w', { params: [], columns: ['w'], reserved: ['y', 'sigma', 'w'] })).message).toBe(
      "'w' is a reserved column and cannot appear in the model",
    );
  });
});

describe('option validation', () => {
  it.each([
    [() => compileModel(42 as unknown as string, options), TypeError, 'Expected a string for model but received 42 of type number'],
    [() => compileModel('a', null as unknown as CompileOptions), TypeError, 'Expected an object for options but received null'],
    [() => compileModel('a', { params: 'a' as unknown as string[], columns: [] }), TypeError, 'Expected an array of strings for params but received "a" of type string'],
    [() => compileModel('a', { params: ['a', 3 as unknown as string], columns: [] }), TypeError, 'Expected a string for params[1] but received 3 of type number'],
    [() => compileModel('a', { params: ['a'], columns: undefined as unknown as string[] }), TypeError, 'Expected an array of strings for columns but received undefined'],
    [() => compileModel('a', { params: ['a'], columns: [], reserved: 'y' as unknown as string[] }), TypeError, 'Expected an array of strings for reserved but received "y" of type string'],
    [() => compileModel('a', { params: ['a', 'exp'], columns: [] }), RangeError, "Invalid p0: 'exp' is a function name and cannot be a parameter"],
    [() => compileModel('a', { params: ['a', 'a'], columns: [] }), RangeError, "Invalid p0: 'a' is listed twice"],
    [() => compileModel('a', { params: ['a', 'k 1'], columns: [] }), RangeError, "Invalid p0: 'k 1' is not a valid parameter name (letters, digits and '_', not starting with a digit)"],
    [() => freeIdentifiers(undefined as unknown as string), TypeError, 'Expected a string for model but received undefined'],
  ])('%#', (run, type, message) => {
    expect(run).toThrow(type);
    expect(run).toThrow(message);
  });
});

describe('limits', () => {
  it('accepts kMaxParams parameters and rejects one more', () => {
    const names = Array.from({ length: 65 }, (_, i) => `p${i}`);
    expect(compileModel(names.slice(0, 64).join('+'), { params: names.slice(0, 64), columns: [] }).paramNames.length).toBe(64);
    expect(() => compileModel('p0', { params: names, columns: [] })).toThrow(expect.objectContaining({ name: 'RangeError', message: 'Expected at most 64 parameters for p0 but received an array of length 65' }));
  });

  it('accepts kMaxVars variables and rejects one more at its first use', () => {
    const columns = Array.from({ length: 257 }, (_, i) => `c${i}`);
    expect(compileModel(columns.slice(0, 256).join('+'), { params: [], columns }).variableNames.length).toBe(256);
    const source = columns.join('+');
    expect(failure(() => compileModel(source, { params: [], columns }))).toEqual({
      message: "too many data columns in the model: 'c256' would be column 257, the limit is 256",
      position: source.lastIndexOf('c256'),
    });
  });

  it('rejects programs longer than kMaxInstr instructions, and compiles long chains without deep recursion', () => {
    const terms = (n: number) => Array.from({ length: n }, () => 'x').join('+');
    expect(instructions(compileModel(terms(65536), options)).length).toBe(65536);
    expect(failure(() => compileModel(terms(65538), options))).toEqual({
      message: 'expression is too large: 65538 instructions, more than the limit of 65536',
      position: 0,
    });
  });
});

describe('freeIdentifiers', () => {
  it('lists names in order of first appearance, without functions, pi or e', () => {
    expect(freeIdentifiers('b1*(1-exp(-b2*x)) + pi*b1 - e^y')).toEqual(['b1', 'b2', 'x', 'y']);
    expect(freeIdentifiers('exp + log(z)')).toEqual(['z']);
    expect(freeIdentifiers('2*3')).toEqual([]);
  });

  it('throws ModelError for syntax errors', () => {
    expect(failure(() => freeIdentifiers('a*(b'))).toEqual({ message: "unbalanced parentheses: this '(' is never closed", position: 2 });
    expect(failure(() => freeIdentifiers('bar(b)')).message).toBe("unknown function 'bar'");
  });
});
