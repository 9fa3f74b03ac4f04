/**
 * Parses a model expression into a syntax tree whose nodes keep their source
 * positions, and checks what the language alone decides: syntax, function
 * names and arities. Names are resolved later, by the compiler.
 *
 * Grammar (lowest precedence first; `^` and `**` are the same operator):
 *   expr       = and { "||" and }
 *   and        = comparison { "&&" comparison }
 *   comparison = sum [ ("<" | "<=" | ">" | ">=" | "==" | "!=") sum ]
 *                non-associative: a < b < c is an error (write a < b && b < c)
 *   sum        = product { ("+" | "-") product }
 *   product    = unary { ("*" | "/") unary }
 *   unary      = ("+" | "-" | "!") unary | power
 *   power      = primary [ "^" exponent ]      right-associative: 2^3^2 = 2^9
 *   exponent   = ("+" | "-" | "!") exponent | power    so 2^-x = 2^(-x), -x^2 = -(x^2)
 *   primary    = number | name | name "(" expr { "," expr } ")" | "(" expr ")"
 *
 * `!` binds like a sign, as in C: `!a && b` is `(!a) && b`. Because `!x < 1`
 * would then read as `(!x) < 1`, which is rarely what was meant, a `!`
 * directly followed by a comparison is an error that shows both readings.
 */
import { ModelError } from '../errors.js';
import { Op, type BinaryOp, type UnaryOp } from './bytecode.js';
import { isComparison, quoted, tokenize, type ComparisonToken, type Token } from './lexer.js';

/** A syntax tree node. `start`/`end` delimit its source text (end exclusive). */
export type Expr = NumberExpr | NameExpr | UnaryExpr | BinaryExpr | CallExpr;

interface Span {
  readonly start: number;
  readonly end: number;
}
export interface NumberExpr extends Span {
  readonly kind: 'number';
  readonly value: number;
}
export interface NameExpr extends Span {
  readonly kind: 'name';
  readonly name: string;
}
export interface UnaryExpr extends Span {
  readonly kind: 'unary';
  readonly op: '+' | '-' | '!';
  readonly operand: Expr;
}
export interface BinaryExpr extends Span {
  readonly kind: 'binary';
  readonly op: '+' | '-' | '*' | '/' | '^' | ComparisonToken | '&&' | '||';
  /** Offset of the operator token. */
  readonly position: number;
  readonly left: Expr;
  readonly right: Expr;
}
export interface CallExpr extends Span {
  readonly kind: 'call';
  /** A key of kFunctions; the name starts at `start`. */
  readonly name: string;
  readonly args: readonly Expr[];
}

/** A built-in function: its opcode and how many arguments it takes. */
export interface BuiltinFunction {
  readonly op: BinaryOp | UnaryOp;
  readonly minArgs: number;
  /** Infinity for min and max, which fold any number of arguments into nested binary calls. */
  readonly maxArgs: number;
}

const unary = (op: UnaryOp): BuiltinFunction => ({ op, minArgs: 1, maxArgs: 1 });

/** The functions of the language. */
export const kFunctions: ReadonlyMap<string, BuiltinFunction> = new Map<string, BuiltinFunction>([
  ['exp', unary(Op.Exp)],
  ['log', unary(Op.Log)],
  ['log10', unary(Op.Log10)],
  ['sqrt', unary(Op.Sqrt)],
  ['abs', unary(Op.Abs)],
  ['sin', unary(Op.Sin)],
  ['cos', unary(Op.Cos)],
  ['tan', unary(Op.Tan)],
  ['asin', unary(Op.Asin)],
  ['acos', unary(Op.Acos)],
  ['atan', unary(Op.Atan)],
  ['sinh', unary(Op.Sinh)],
  ['cosh', unary(Op.Cosh)],
  ['tanh', unary(Op.Tanh)],
  ['atan2', { op: Op.Atan2, minArgs: 2, maxArgs: 2 }],
  ['pow', { op: Op.Pow, minArgs: 2, maxArgs: 2 }],
  ['min', { op: Op.Min, minArgs: 2, maxArgs: Infinity }],
  ['max', { op: Op.Max, minArgs: 2, maxArgs: Infinity }],
]);

/** The named constants of the language (used when no parameter or column has the name). */
export const kConstants: ReadonlyMap<string, number> = new Map([
  ['pi', Math.PI],
  ['e', Math.E],
]);

/** Deeper nesting of parentheses, calls and signs is refused (it would exhaust the stack). */
export const kMaxNesting = 256;

/**
 * Longer expressions are refused before a character is read: parsing costs
 * time and memory in proportion to the length, and the compiler refuses
 * programs of more than kMaxInstr (65536) instructions anyway, which real
 * expressions reach well under this length.
 */
export const kMaxSourceLength = 1 << 20;

/**
 * More tokens than this are refused as they are read, bounding the tree and
 * the compiler's graph (about 350 bytes per token): each token adds at most one
 * node, so this is 4 * kMaxInstr, room for common subexpressions and constant
 * folding to bring a long generated expression under the instruction limit.
 */
export const kMaxTokens = 1 << 18;

const kOperandExpected = "expected a number, a name or '('";

/**
 * Parses `source` into a syntax tree. Throws ModelError, positioned at the
 * offending token, for any syntax error, unknown function or wrong arity, and
 * for an expression longer than kMaxSourceLength characters (its message
 * quotes only the expression's start, as every ModelError quotes only a window
 * of a long expression).
 * @example
 * parseExpression('-x^2') // unary '-' of binary '^' (x, 2)
 */
export function parseExpression(source: string): Expr {
  if (source.length > kMaxSourceLength) {
    throw new ModelError(`expression is too long: ${source.length} characters, more than the limit of ${kMaxSourceLength}`, source, 0);
  }
  return new Parser(source).parse();
}

/** The direct subexpressions of `expr`, left to right. */
export function children(expr: Expr): readonly Expr[] {
  switch (expr.kind) {
    case 'number':
    case 'name':
      return [];
    case 'unary':
      return [expr.operand];
    case 'binary':
      return [expr.left, expr.right];
    case 'call':
      return expr.args;
  }
}

/**
 * Folds a tree bottom-up, children left to right before their parent, with an
 * explicit stack: long operator chains are deep trees, and must not overflow
 * the call stack.
 * @example
 * reduceExpr(tree, (e, kids) => 1 + kids.reduce((a, b) => a + b, 0)) // node count
 */
export function reduceExpr<T>(root: Expr, visit: (expr: Expr, childValues: T[]) => T): T {
  const pending: { expr: Expr; kids: readonly Expr[]; next: number }[] = [];
  const results: T[] = [];
  pending.push({ expr: root, kids: children(root), next: 0 });
  while (pending.length > 0) {
    const top = pending[pending.length - 1]!;
    if (top.next < top.kids.length) {
      const kid = top.kids[top.next++]!;
      pending.push({ expr: kid, kids: children(kid), next: 0 });
    } else {
      pending.pop();
      const childValues = results.splice(results.length - top.kids.length, top.kids.length);
      results.push(visit(top.expr, childValues));
    }
  }
  return results[0]!;
}

class Parser {
  private readonly tokens: Generator<Token, void, undefined>;
  private token: Token;
  /** Positions of the '(' not yet closed, innermost last. */
  private readonly open: number[] = [];
  private depth = 0;
  private tokenCount = 0;

  constructor(private readonly source: string) {
    this.tokens = tokenize(source);
    this.token = this.pull();
  }

  parse(): Expr {
    if (this.source.trim() === '') throw this.error('empty expression', 0);
    const expr = this.parseExpr();
    if (this.token.kind === ')') throw this.error("unbalanced parentheses: this ')' has no matching '('");
    if (this.token.kind === ',') throw this.error("unexpected ',' outside a function call");
    if (this.token.kind !== 'end') throw this.unexpected('expected an operator or the end of the expression');
    return expr;
  }

  private parseExpr(): Expr {
    let left = this.parseAnd();
    while (this.token.kind === '||') {
      const position = this.advance().position;
      const right = this.parseAnd();
      left = { kind: 'binary', op: '||', position, left, right, start: left.start, end: right.end };
    }
    return left;
  }

  private parseAnd(): Expr {
    let left = this.parseComparison();
    while (this.token.kind === '&&') {
      const position = this.advance().position;
      const right = this.parseComparison();
      left = { kind: 'binary', op: '&&', position, left, right, start: left.start, end: right.end };
    }
    return left;
  }

  private parseComparison(): Expr {
    const left = this.parseSum();
    const opToken = this.token;
    if (!isComparison(opToken.kind)) return left;
    const op = opToken.kind;
    const bareNot = left.kind === 'unary' && left.op === '!' && this.source[left.start] === '!';
    this.advance();
    if (bareNot) throw this.ambiguousNot(left, op);
    const right = this.parseSum();
    if (isComparison(this.token.kind)) throw this.chainedComparison(left, op, right);
    return { kind: 'binary', op, position: opToken.position, left, right, start: left.start, end: right.end };
  }

  /** The error for `!x < 1`, showing both readings (with `...` if the right operand does not parse). */
  private ambiguousNot(not: UnaryExpr, op: ComparisonToken): ModelError {
    const operand = this.text(not.operand);
    const right = this.tryOperand() ?? '...';
    return this.error(
      `'!${operand} ${op} ${right}' is ambiguous: write '!(${operand} ${op} ${right})' to negate the comparison or '(!${operand}) ${op} ${right}' to compare the negation`,
      not.start,
    );
  }

  /**
   * The error for `a < b < c`, which some languages read as a chain and C as
   * `(a < b) < c`: neither is assumed. The message spells out the chain with
   * the actual operands when the third one parses.
   */
  private chainedComparison(left: Expr, op: ComparisonToken, middle: Expr): ModelError {
    const second = this.advance();
    const third = this.tryOperand();
    const [a, b] = [this.text(left), this.text(middle)];
    const suggestion = third === undefined ? 'a < b && b < c' : `${a} ${op} ${b} && ${b} ${second.kind} ${third}`;
    return this.error(`comparisons cannot be chained: write '${suggestion}'`, second.position);
  }

  /**
   * The source text of the next operand of a comparison, or undefined if it
   * does not parse; only for error messages, so the earlier error is the one
   * reported.
   */
  private tryOperand(): string | undefined {
    try {
      return this.text(this.parseSum());
    } catch (error) {
      if (error instanceof ModelError) return undefined;
      throw error;
    }
  }

  private text(expr: Expr): string {
    return this.source.slice(expr.start, expr.end);
  }

  private parseSum(): Expr {
    let left = this.parseProduct();
    while (this.token.kind === '+' || this.token.kind === '-') {
      const op = this.token.kind;
      const position = this.advance().position;
      const right = this.parseProduct();
      left = { kind: 'binary', op, position, left, right, start: left.start, end: right.end };
    }
    return left;
  }

  private parseProduct(): Expr {
    let left = this.parseUnary();
    while (this.token.kind === '*' || this.token.kind === '/') {
      const op = this.token.kind;
      const position = this.advance().position;
      const right = this.parseUnary();
      left = { kind: 'binary', op, position, left, right, start: left.start, end: right.end };
    }
    return left;
  }

  /** Signs and '!' bind looser than '^', so their operand is a power; this also parses exponents. */
  private parseUnary(): Expr {
    if (this.token.kind !== '+' && this.token.kind !== '-' && this.token.kind !== '!') return this.parsePower();
    const op = this.token.kind;
    const start = this.enter().position;
    const operand = this.parseUnary();
    this.depth--;
    return { kind: 'unary', op, operand, start, end: operand.end };
  }

  private parsePower(): Expr {
    const base = this.parsePrimary();
    if (this.token.kind !== '^') return base;
    const position = this.enter().position;
    const exponent = this.parseUnary();
    this.depth--;
    return { kind: 'binary', op: '^', position, left: base, right: exponent, start: base.start, end: exponent.end };
  }

  private parsePrimary(): Expr {
    const token = this.token;
    switch (token.kind) {
      case 'number':
        this.advance();
        return { kind: 'number', value: token.value, start: token.position, end: token.position + token.text.length };
      case 'name':
        this.advance();
        if (this.token.kind === '(') return this.parseCall(token);
        return { kind: 'name', name: token.text, start: token.position, end: token.position + token.text.length };
      case '(': {
        this.enter();
        const inner = this.parseExpr();
        const end = this.close(false).position + 1;
        // The span covers the parentheses so errors about this operand show all of it.
        return { ...inner, start: token.position, end };
      }
      case 'end':
        throw this.error(`unexpected end of expression, ${kOperandExpected}`);
      default:
        throw this.unexpected(kOperandExpected);
    }
  }

  private parseCall(nameToken: Token): CallExpr {
    const name = nameToken.text;
    const fn = kFunctions.get(name);
    if (fn === undefined) throw this.error(`unknown function ${quoted(name)}`, nameToken.position);
    this.enter();
    const args: Expr[] = [];
    if (this.token.kind !== ')') {
      args.push(this.parseExpr());
      while (this.token.kind === ',') {
        this.advance();
        args.push(this.parseExpr());
      }
    }
    const end = this.close(true).position + 1;
    if (args.length < fn.minArgs || args.length > fn.maxArgs) {
      const count = fn.maxArgs === Infinity ? `at least ${fn.minArgs}` : String(fn.minArgs);
      const noun = fn.minArgs === 1 && fn.maxArgs === 1 ? 'argument' : 'arguments';
      throw this.error(`function '${name}' takes ${count} ${noun} but was given ${args.length}`, nameToken.position);
    }
    return { kind: 'call', name, args, start: nameToken.position, end };
  }

  /** Consumes a '(' (or a sign, '!' or '^', which nest the same way), bounding the nesting depth. */
  private enter(): Token {
    if (++this.depth > kMaxNesting) throw this.error(`expression is nested too deeply (more than ${kMaxNesting} levels)`);
    if (this.token.kind === '(') this.open.push(this.token.position);
    return this.advance();
  }

  /** Consumes the ')' that closes the innermost open '('. */
  private close(inCall: boolean): Token {
    const opening = this.open.pop()!;
    if (this.token.kind === 'end') throw this.error("unbalanced parentheses: this '(' is never closed", opening);
    if (this.token.kind !== ')') throw this.unexpected(inCall ? "expected an operator, ',' or ')'" : "expected an operator or ')'");
    this.depth--;
    return this.advance();
  }

  private advance(): Token {
    const token = this.token;
    this.token = this.pull();
    return token;
  }

  private pull(): Token {
    const next = this.tokens.next();
    if (next.done) return this.token;
    if (++this.tokenCount > kMaxTokens) {
      throw this.error(`expression is too large: more than ${kMaxTokens} tokens (numbers, names, operators and brackets)`, next.value.position);
    }
    return next.value;
  }

  private unexpected(expected: string): ModelError {
    const token = this.token;
    const what = token.kind === 'number' ? `number ${quoted(token.text)}` : token.kind === 'name' ? `name ${quoted(token.text)}` : `'${token.text}'`;
    return this.error(`unexpected ${what}, ${expected}`);
  }

  private error(message: string, position = this.token.position): ModelError {
    return new ModelError(message, this.source, position);
  }
}
