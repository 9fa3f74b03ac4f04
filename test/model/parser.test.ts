import { describe, expect, it } from 'vitest';
import { failure } from './helpers.js';
import { compileModel, evaluateCompiled, parseExpression, tokenize, type Expr } from '../../dist/model/index.js';

/** Evaluates `source` with a, b, c as parameters and x as the only column. */
function evaluate(source: string, values: { a?: number; b?: number; c?: number; x?: number } = {}): number {
  const model = compileModel(source, { params: ['a', 'b', 'c'], columns: ['x'] });
  return evaluateCompiled(model, [values.a ?? NaN, values.b ?? NaN, values.c ?? NaN], [[values.x ?? NaN]], 0);
}

/** Renders a tree fully parenthesised, e.g. (-(x^2)). */
function show(expr: Expr): string {
  switch (expr.kind) {
    case 'number':
      return String(expr.value);
    case 'name':
      return expr.name;
    case 'unary':
      return `(${expr.op}${show(expr.operand)})`;
    case 'binary':
      return `(${show(expr.left)}${expr.op}${show(expr.right)})`;
    case 'call':
      return `${expr.name}(${expr.args.map(show).join(',')})`;
  }
}


describe('precedence and associativity', () => {
  it.each([
    ['-x^2', '(-(x^2))'],
    ['2^3^2', '(2^(3^2))'],
    ['2**-1', '(2^(-1))'],
    ['2^-x^2', '(2^(-(x^2)))'],
    ['a-b-c', '((a-b)-c)'],
    ['a/b/c', '((a/b)/c)'],
    ['a-b+c', '((a-b)+c)'],
    ['a+b*c', '(a+(b*c))'],
    ['a*b^c', '(a*(b^c))'],
    ['-a*b', '((-a)*b)'],
    ['a*-b', '(a*(-b))'],
    ['a--b', '(a-(-b))'],
    ['(a+b)*c', '((a+b)*c)'],
    ['x**2**a', '(x^(2^a))'],
    ['(-x)^2', '((-x)^2)'],
    ['+x', '(+x)'],
    ['min(a, b*c, -x)', 'min(a,(b*c),(-x))'],
  ])('%s parses as %s', (source, expected) => {
    expect(show(parseExpression(source))).toBe(expected);
  });

  it.each([
    ['-x^2', { x: 3 }, -9],
    ['(-x)^2', { x: 3 }, 9],
    ['2^3^2', {}, 512],
    ['(2^3)^2', {}, 64],
    ['2**-1', {}, 0.5],
    ['2^-x', { x: 2 }, 0.25],
    ['-2^2', {}, -4],
    ['a-b-c', { a: 10, b: 3, c: 2 }, 5],
    ['a/b/c', { a: 24, b: 4, c: 2 }, 3],
    ['a+b*c', { a: 2, b: 3, c: 4 }, 14],
    ['(a+b)*c', { a: 2, b: 3, c: 4 }, 20],
    ['a*x^b', { a: 2, b: 3, x: 2 }, 16],
    ['--x', { x: 5 }, 5],
    ['a+-+-b', { a: 1, b: 2 }, 3],
    ['2^+3', {}, 8],
    ['x**2', { x: 7 }, 49],
  ])('%s = %d', (source, values, expected) => {
    expect(evaluate(source, values)).toBe(expected);
  });

  it('records source spans and operator positions', () => {
    const tree = parseExpression('a + exp(b * x)');
    expect(tree).toMatchObject({ kind: 'binary', op: '+', position: 2, start: 0, end: 14 });
    if (tree.kind !== 'binary') throw new Error('expected a binary node');
    expect(tree.right).toMatchObject({ kind: 'call', name: 'exp', start: 4, end: 14 });
  });
});

describe('comparison and logical operators', () => {
  it.each([
    ['a < b', '(a<b)'],
    ['a+b <= c*x', '((a+b)<=(c*x))'],
    ['-a > b^2', '((-a)>(b^2))'],
    ['a >= b', '(a>=b)'],
    ['a == b', '(a==b)'],
    ['a != b', '(a!=b)'],
    ['a < b && b < c', '((a<b)&&(b<c))'],
    ['a || b && c', '(a||(b&&c))'],
    ['a && b || c', '((a&&b)||c)'],
    ['a || b || c', '((a||b)||c)'],
    ['a && b && c', '((a&&b)&&c)'],
    ['a < b || x == c && a != 0', '((a<b)||((x==c)&&(a!=0)))'],
    ['!a', '(!a)'],
    ['!!a', '(!(!a))'],
    ['!a && b', '((!a)&&b)'],
    ['!(a < b)', '(!(a<b))'],
    ['(!a) < b', '((!a)<b)'],
    ['!x^2', '(!(x^2))'],
    ['-!x', '(-(!x))'],
    ['2^!x', '(2^(!x))'],
    ['a*(x > 0) + b*(x <= 0)', '((a*(x>0))+(b*(x<=0)))'],
    ['(a < b) < c', '((a<b)<c)'],
    ['a < (b < c)', '(a<(b<c))'],
    ['min(x > 0, a || b)', 'min((x>0),(a||b))'],
    ['a<-b', '(a<(-b))'],
    ['a<=-b', '(a<=(-b))'],
    ['a!=!b', '(a!=(!b))'],
  ])('%s parses as %s', (source, expected) => {
    expect(show(parseExpression(source))).toBe(expected);
  });

  it('reads two-character operators as one token', () => {
    expect([...tokenize('a<=b>=c==d!=e&&f||!g<h>i')].map((t) => t.text)).toEqual(
      ['a', '<=', 'b', '>=', 'c', '==', 'd', '!=', 'e', '&&', 'f', '||', '!', 'g', '<', 'h', '>', 'i', ''],
    );
  });

  it.each([
    ['a < b', { a: 1, b: 2 }, 1],
    ['a < b', { a: 2, b: 2 }, 0],
    ['a <= b', { a: 2, b: 2 }, 1],
    ['a > b', { a: 2, b: 1 }, 1],
    ['a >= b', { a: 1, b: 2 }, 0],
    ['a == b', { a: 0, b: -0 }, 1],
    ['a != b', { a: 0, b: -0 }, 0],
    ['a < b', { a: NaN, b: 1 }, 0],
    ['a != b', { a: NaN, b: 1 }, 1],
    ['a && b', { a: 2, b: -1 }, 1],
    ['a && b', { a: NaN, b: 1 }, 0],
    ['a || b', { a: 0, b: NaN }, 0],
    ['a || b', { a: 0, b: 3 }, 1],
    ['!a', { a: 0 }, 1],
    ['!a', { a: NaN }, 1],
    ['!a', { a: -2 }, 0],
    ['1 + (a < b)*2', { a: 0, b: 1 }, 3],
    ['(a < b) == (b > a)', { a: 0, b: 1 }, 1],
    ['!(x > 0)', { x: NaN }, 1],
  ] as const)('%s with %o = %d', (source, values, expected) => {
    expect(evaluate(source, values)).toBe(expected);
  });

  it.each([
    ['a < b < c', "comparisons cannot be chained: write 'a < b && b < c'", 6],
    ['0 <= x < 1', "comparisons cannot be chained: write '0 <= x && x < 1'", 7],
    ['a+1 == b == c*2', "comparisons cannot be chained: write 'a+1 == b && b == c*2'", 9],
    ['(a) > b >= c', "comparisons cannot be chained: write '(a) > b && b >= c'", 8],
    ['a < b < )', "comparisons cannot be chained: write 'a < b && b < c'", 6],
    ['a < b < c < x', "comparisons cannot be chained: write 'a < b && b < c'", 6],
    ['!x < 1', "'!x < 1' is ambiguous: write '!(x < 1)' to negate the comparison or '(!x) < 1' to compare the negation", 0],
    ['a && !b == c', "'!b == c' is ambiguous: write '!(b == c)' to negate the comparison or '(!b) == c' to compare the negation", 5],
    ['!x >= )', "'!x >= ...' is ambiguous: write '!(x >= ...)' to negate the comparison or '(!x) >= ...' to compare the negation", 0],
    ['a <', "unexpected end of expression, expected a number, a name or '('", 3],
    ['a && ', "unexpected end of expression, expected a number, a name or '('", 5],
    ['|| a', "unexpected '||', expected a number, a name or '('", 0],
    ['a ! b', "unexpected '!', expected an operator or the end of the expression", 2],
    ['a !', "unexpected '!', expected an operator or the end of the expression", 2],
    ['a < > b', "unexpected '>', expected a number, a name or '('", 4],
    ['a => b', "unexpected character '=' (use '==' to compare)", 2],
    ['a === b', "unexpected character '=' (use '==' to compare)", 4],
    ['a < = b', "unexpected character '=' (use '==' to compare)", 4],
  ])('%j: %s at %d', (source, message, position) => {
    expect(failure(() => parseExpression(source))).toEqual({ message, position });
  });

  it('bounds the nesting of ! like that of signs', () => {
    expect(failure(() => parseExpression(`${'!'.repeat(300)}x`)).message).toMatch(/nested too deeply/);
    expect(show(parseExpression(`${'!'.repeat(100)}x`)).length).toBe(100 * 3 + 1);
  });
});

describe('numbers', () => {
  it.each([
    ['3', 3],
    ['0.5', 0.5],
    ['.5', 0.5],
    ['5.', 5],
    ['1.5e-3', 1.5e-3],
    ['2E+10', 2e10],
    ['1e3', 1000],
    ['007', 7],
  ])('%s reads as %d', (source, value) => {
    expect(parseExpression(source)).toMatchObject({ kind: 'number', value });
  });

  it('reads ** as one power token and skips whitespace', () => {
    expect([...tokenize(' 2 **\t-x\n')].map((t) => [t.kind, t.text, t.position])).toEqual([
      ['number', '2', 1],
      ['^', '**', 3],
      ['-', '-', 6],
      ['name', 'x', 7],
      ['end', '', 9],
    ]);
  });

  it.each([
    ['1e', "malformed number '1e'", 0],
    ['x*1.2.3', "malformed number '1.2.3'", 2],
    ['1e+', "malformed number '1e+'", 0],
    ['2x', "malformed number '2x'", 0],
    ['a + .', "malformed number '.'", 4],
  ])('rejects %s', (source, message, position) => {
    expect(failure(() => parseExpression(source))).toEqual({ message, position });
  });
});

describe('syntax errors', () => {
  it.each([
    ['', 'empty expression', 0],
    ['  \t ', 'empty expression', 0],
    ['a*exp(', "unexpected end of expression, expected a number, a name or '('", 6],
    ['a+', "unexpected end of expression, expected a number, a name or '('", 2],
    ['a^ ', "unexpected end of expression, expected a number, a name or '('", 3],
    ['(a+b', "unbalanced parentheses: this '(' is never closed", 0],
    ['exp((a+b)', "unbalanced parentheses: this '(' is never closed", 3],
    ['a+b)', "unbalanced parentheses: this ')' has no matching '('", 3],
    ['()', "unexpected ')', expected a number, a name or '('", 1],
    ['a*)', "unexpected ')', expected a number, a name or '('", 2],
    ['a b', "unexpected name 'b', expected an operator or the end of the expression", 2],
    ['2 3', "unexpected number '3', expected an operator or the end of the expression", 2],
    ['2(x)', "unexpected '(', expected an operator or the end of the expression", 1],
    ['(a b)', "unexpected name 'b', expected an operator or ')'", 3],
    ['(a, b)', "unexpected ',', expected an operator or ')'", 2],
    ['exp(a b)', "unexpected name 'b', expected an operator, ',' or ')'", 6],
    ['a, b', "unexpected ',' outside a function call", 1],
    ['max(a,)', "unexpected ')', expected a number, a name or '('", 6],
    ['a * * b', "unexpected '*', expected a number, a name or '('", 4],
    ['x#2', "unexpected character '#'", 1],
    ['a = b', "unexpected character '=' (use '==' to compare)", 2],
    ['x & z', "unexpected character '&' (use '&&' for logical and)", 2],
    ['x | z', "unexpected character '|' (use '||' for logical or)", 2],
    ['a²', "unexpected character '²'", 1],
    ['foo(x)', "unknown function 'foo'", 0],
    ['a + Exp(x)', "unknown function 'Exp'", 4],
  ])('%j: %s at %d', (source, message, position) => {
    expect(failure(() => parseExpression(source))).toEqual({ message, position });
  });

  it('reports the first error in reading order, lexical or not', () => {
    expect(failure(() => parseExpression('a b #')).position).toBe(2);
    expect(failure(() => parseExpression('a # b c')).position).toBe(2);
  });

  it('refuses nesting deeper than kMaxNesting instead of overflowing the stack', () => {
    const deep = `${'('.repeat(300)}x${')'.repeat(300)}`;
    expect(failure(() => parseExpression(deep))).toEqual({ message: 'expression is nested too deeply (more than 256 levels)', position: 256 });
    expect(failure(() => parseExpression(`${'-'.repeat(300)}x`)).message).toMatch(/nested too deeply/);
    expect(show(parseExpression(`${'('.repeat(100)}x${')'.repeat(100)}`))).toBe('x');
  });
});

describe('function arity', () => {
  it.each([
    ['exp()', "function 'exp' takes 1 argument but was given 0"],
    ['sqrt(a, b)', "function 'sqrt' takes 1 argument but was given 2"],
    ['atan2(x)', "function 'atan2' takes 2 arguments but was given 1"],
    ['pow(x, a, b)', "function 'pow' takes 2 arguments but was given 3"],
    ['min(x)', "function 'min' takes at least 2 arguments but was given 1"],
    ['max()', "function 'max' takes at least 2 arguments but was given 0"],
  ])('%s', (source, message) => {
    expect(failure(() => parseExpression(`a + ${source}`))).toEqual({ message, position: 4 });
  });
});
