/**
 * Compiles a model expression to bytecode (bytecode.ts).
 *
 * The tree is lowered into a hash-consed graph: a node is looked up by
 * (op, operands) before it is created, so structurally identical subtrees
 * become one node (common subexpressions are computed once and every load
 * is emitted once). Nodes whose operands are all constants are folded when
 * created, with the evaluator's own semantics, so a subtree without
 * parameters or variables becomes one constant. The only rewrites are those
 * exact in IEEE arithmetic, plus the one the language defines: `--x` is `x`,
 * and `x^n` (also `pow(x, n)`) with an exponent that folds to an integer in
 * [-kMaxPowi, kMaxPowi] is kPowi. Comparisons and logical operators fold
 * like any other opcode (applyBinary has the kernel's NaN rules) and are
 * never short-circuited: `0 && x` is an instruction, not the constant 0.
 *
 * A node's operands always exist before it, so node ids are a topological
 * order; emission keeps the nodes the output reaches, in id order, which puts
 * the output last and drops dead nodes (operands of folded subtrees).
 */
import { invalidInput, invalidRange, invalidType, ModelError } from '../errors.js';
import {
  applyBinary,
  applyUnary,
  evaluateProgram,
  isBinaryOp,
  isPiecewiseConstant,
  isUnaryOp,
  kHeaderWords,
  kMagic,
  kMaxInstr,
  kMaxParams,
  kMaxPowi,
  kMaxVars,
  kVersion,
  Op,
  powC,
  type BinaryOp,
  type UnaryOp,
} from './bytecode.js';
import { isIdentifier, kNameCharacters, quoted, reservedNameProblem } from './lexer.js';
import { kConstants, kFunctions, kMaxNesting, parseExpression, reduceExpr, type Expr, type NameExpr } from './parser.js';

export interface CompiledModel {
  source: string;
  /** Header and instructions, per bytecode.ts. */
  code: Int32Array;
  consts: Float64Array;
  /** Index i is parameter index i in the bytecode: the order of `options.params`. */
  paramNames: string[];
  /** Index v is variable index v in the bytecode: only the columns the expression uses, in order of first appearance. */
  variableNames: string[];
  /** Per parameter: whether the model (after folding) depends on it. */
  usesParam: boolean[];
  /**
   * Per parameter: whether the model's derivative in it can be nonzero. False
   * for an unused parameter and for one that appears only inside conditions
   * (comparisons, &&, ||, !), whose derivative is exactly 0: `b` in
   * `a*(x > b)`. The kernel's dependency masks follow the same rule.
   */
  hasDerivative: boolean[];
}

export interface CompileOptions {
  /** Parameter names, in bytecode order (the keys of p0). */
  params: readonly string[];
  /** Data column names; those the expression uses become variables. */
  columns: readonly string[];
  /**
   * Columns that may not appear in the model: reserved[0] is the response
   * column, reserved[1] the weight column (the caller passes ['y', 'sigma']).
   */
  reserved?: readonly string[];
  /** Names that stand for fixed numbers (fixed parameters): folded in as constants. */
  constants?: Readonly<Record<string, number>>;
  /**
   * Names defined by an expression over parameters, columns and other
   * definitions (lmfit's `expr`): `{ b3: '2*b2' }`. Each is compiled in place
   * wherever the name appears; a cycle is an error. Errors in a definition are
   * reported against its own text, under the field `expr.<name>`.
   */
  definitions?: Readonly<Record<string, string>>;
}

/**
 * Compiles a model expression. Names resolve in order: a parameter, a data
 * column, the constant `pi` or `e`; anything else is a ModelError pointing at
 * the name. Parameters the expression does not use are allowed (see usesParam).
 * @example
 * const model = compileModel('a*exp(-b*x)+c', { params: ['a', 'b', 'c'], columns: ['x', 'y'], reserved: ['y'] });
 * model.variableNames // ['x']
 * evaluateCompiled(model, [2, 0.5, 1], [[0, 1, 2]], 1) // 2*exp(-0.5)+1
 */
export function compileModel(source: string, options: CompileOptions): CompiledModel {
  validateOptions(source, options);
  const tree = parseExpression(source);
  const graph = new ExpressionGraph();
  const names = new NameResolver(source, options, graph);
  const root = names.lowerTree(tree);
  for (const name of options.params) {
    if (options.columns.includes(name)) throw invalidInput('p0', ambiguousName(name));
  }
  const program = graph.emit(root);
  if (program.instrCount > kMaxInstr) {
    throw new ModelError(`expression is too large: ${program.instrCount} instructions, more than the limit of ${kMaxInstr}`, source, 0);
  }
  const header = [kMagic, kVersion, program.instrCount, options.params.length, names.variableNames.length, program.consts.length];
  const code = new Int32Array(kHeaderWords + program.instructions.length);
  code.set(header);
  code.set(program.instructions, kHeaderWords);
  return {
    source,
    code,
    consts: Float64Array.from(program.consts),
    paramNames: [...options.params],
    variableNames: names.variableNames,
    usesParam: options.params.map((_, p) => program.params.has(p)),
    hasDerivative: options.params.map((_, p) => ((program.outputMask >> BigInt(p)) & 1n) === 1n),
  };
}

/**
 * The names of a p0 object, refused before any per-name work when there are
 * more than a model can take: kMaxParams fitted parameters (the kernel's
 * limit) plus `fixedCount` held at their values (the fixed option). Listing
 * the keys is the only pass over them: a p0 of a million names is refused in
 * the time that takes, not after seconds of checking each name.
 */
export function p0Names(p0: object, fixedCount: number): string[] {
  const names = Object.keys(p0);
  if (names.length > kMaxParams + fixedCount) {
    const fixed = fixedCount > 0 ? ` and the ${fixedCount} that fixed holds` : '';
    throw invalidInput('p0', `${names.length} names, more than the ${kMaxParams} parameters a model can fit${fixed}`);
  }
  return names;
}

/**
 * The identifiers an expression uses that are neither functions nor the
 * constants pi and e, in order of first appearance: the parameter order when
 * p0 is an array. Throws ModelError for a syntax error.
 * @example
 * freeIdentifiers('b1*(1-exp(-b2*x)) + pi') // ['b1', 'b2', 'x']
 */
export function freeIdentifiers(source: string): string[] {
  if (typeof source !== 'string') throw invalidType('model', 'a string', source);
  const found = new Set<string>();
  reduceExpr<void>(parseExpression(source), (expr) => {
    if (expr.kind === 'name' && !kConstants.has(expr.name) && !kFunctions.has(expr.name)) found.add(expr.name);
  });
  return [...found];
}

/**
 * Interprets a compiled model at data point i (values only): the reference
 * the kernel and tests compare against. `vars[v]` is the column
 * `model.variableNames[v]`.
 * @example
 * evaluateCompiled(compileModel('b1*x^b2', { params: ['b1', 'b2'], columns: ['x'] }), [2, 3], [[1, 2]], 1) // 16
 */
export function evaluateCompiled(model: CompiledModel, params: ArrayLike<number>, vars: ArrayLike<number>[], i: number): number {
  return evaluateProgram(model.code, model.consts, params, vars, i);
}

function validateOptions(source: unknown, options: CompileOptions): void {
  if (typeof source !== 'string') throw invalidType('model', 'a string', source);
  if (typeof options !== 'object' || options === null) throw invalidType('options', 'an object', options);
  validateNames('params', options.params);
  validateNames('columns', options.columns);
  if (options.reserved !== undefined) validateNames('reserved', options.reserved);
  if (options.params.length > kMaxParams) throw invalidRange('p0', `at most ${kMaxParams} parameters`, options.params);
  const seen = new Set<string>();
  for (const name of options.params) {
    const reserved = reservedNameProblem(name);
    if (reserved !== undefined) throw invalidInput('p0', reserved);
    if (!isIdentifier(name)) {
      const shown = name.length > 40 ? `${name.slice(0, 37)}...` : name;
      if (/[^\x00-\x7f]/.test(name)) throw invalidInput('p0', `'${shown}' is not a valid parameter name: names may use only ${kNameCharacters}`);
      throw invalidInput('p0', `'${shown}' is not a valid parameter name (letters, digits and '_', not starting with a digit)`);
    }
    if (kFunctions.has(name)) throw invalidInput('p0', `'${name}' is a function name and cannot be a parameter`);
    if (seen.has(name)) throw invalidInput('p0', `'${name}' is listed twice`);
    seen.add(name);
  }
  // Fixed parameters and definitions are names too, even when the expression does not use them.
  for (const [field, names] of [['p0', options.constants], ['expr', options.definitions]] as const) {
    for (const name of Object.keys(names ?? {})) {
      const reserved = reservedNameProblem(name);
      if (reserved !== undefined) throw invalidInput(field, reserved);
    }
  }
}

function validateNames(field: string, names: unknown): void {
  if (!Array.isArray(names)) throw invalidType(field, 'an array of strings', names);
  names.forEach((name: unknown, k) => {
    if (typeof name !== 'string') throw invalidType(`${field}[${k}]`, 'a string', name);
  });
}

function ambiguousName(name: string): string {
  return `${quoted(name)} is both a parameter (p0) and a data column`;
}

/** The graph node for one tree node, given the nodes of its children. */
function lower(expr: Expr, kids: number[], graph: ExpressionGraph, names: { resolve(expr: NameExpr): number }): number {
  switch (expr.kind) {
    case 'number':
      return graph.constant(expr.value);
    case 'name':
      return names.resolve(expr);
    case 'unary':
      if (expr.op === '!') return graph.unary(Op.Not, kids[0]!);
      return expr.op === '-' ? graph.unary(Op.Neg, kids[0]!) : kids[0]!;
    case 'binary':
      if (expr.op === '^') return graph.power(kids[0]!, kids[1]!);
      return graph.binary(kBinaryOps[expr.op], kids[0]!, kids[1]!);
    case 'call': {
      const { op } = kFunctions.get(expr.name)!;
      if (op === Op.Pow) return graph.power(kids[0]!, kids[1]!);
      if (isBinaryOp(op)) return kids.reduce((left, right) => graph.binary(op, left, right));
      return graph.unary(op, kids[0]!);
    }
  }
}

/** Names users write for non-finite numbers, which an expression cannot contain. */
const kNonFiniteNames: ReadonlySet<string> = new Set(['NaN', 'nan', 'Infinity', 'inf', 'Inf', 'infinity']);

const kBinaryOps = {
  '+': Op.Add,
  '-': Op.Sub,
  '*': Op.Mul,
  '/': Op.Div,
  '<': Op.Lt,
  '<=': Op.Le,
  '>': Op.Gt,
  '>=': Op.Ge,
  '==': Op.Eq,
  '!=': Op.Ne,
  '&&': Op.And,
  '||': Op.Or,
} as const;

/** Resolves names to parameter, variable and constant nodes, numbering variables by first use. */
class NameResolver {
  readonly variableNames: string[] = [];
  private readonly paramIndex: Map<string, number>;
  private readonly columns: Set<string>;
  private readonly roles: Map<string, string>;

  private readonly constants: Map<string, number>;
  private readonly definitions: Map<string, string>;
  /** Definitions being compiled (cycle detection) and the node of each one compiled. */
  private readonly expanding: string[] = [];
  private readonly defined = new Map<string, number>();

  constructor(
    private readonly source: string,
    options: CompileOptions,
    private readonly graph: ExpressionGraph,
  ) {
    this.constants = new Map(Object.entries(options.constants ?? {}));
    this.definitions = new Map(Object.entries(options.definitions ?? {}));
    this.paramIndex = new Map(options.params.map((name, p) => [name, p]));
    this.columns = new Set(options.columns);
    const reserved = options.reserved ?? [];
    this.roles = new Map(reserved.map((name, k) => [name, k === 0 ? 'the response column' : k === 1 ? 'the weight column' : 'a reserved column']));
  }

  /** Lowers a parsed expression into the graph, resolving its names. */
  lowerTree(tree: Expr): number {
    return reduceExpr<number>(tree, (expr, kids) => lower(expr, kids, this.graph, this));
  }

  resolve(expr: NameExpr): number {
    const { name } = expr;
    const role = this.roles.get(name);
    if (role !== undefined) throw this.error(`${quoted(name)} is ${role} and cannot appear in the model`, expr);
    const fixed = this.constants.get(name);
    if (fixed !== undefined) return this.graph.constant(fixed);
    const definition = this.definitions.get(name);
    if (definition !== undefined) return this.define(name, definition);
    const param = this.paramIndex.get(name);
    if (param !== undefined) {
      if (this.columns.has(name)) throw this.error(ambiguousName(name), expr);
      return this.graph.load(Op.Param, param);
    }
    if (this.columns.has(name)) return this.graph.load(Op.Var, this.variableIndex(expr));
    const constant = kConstants.get(name);
    if (constant !== undefined) return this.graph.constant(constant);
    if (kFunctions.has(name)) throw this.error(`'${name}' is a function and needs arguments, as in ${name}(x)`, expr);
    const hint = kNonFiniteNames.has(name) ? '; the language has no NaN or Infinity, only finite numbers' : '';
    throw this.error(`unknown identifier ${quoted(name)} (not a parameter in p0 and not a data column${hint})`, expr);
  }

  /** Compiles a definition once, in the same graph, with its own source for error positions. */
  private define(name: string, definition: string): number {
    const known = this.defined.get(name);
    if (known !== undefined) return known;
    if (this.expanding.includes(name)) {
      throw invalidInput(`expr.${name}`, `the definitions refer to each other in a cycle: ${[...this.expanding, name].join(' -> ')}`);
    }
    // Each level of definitions using definitions is a level of recursion here.
    if (this.expanding.length === kMaxNesting) {
      throw invalidInput(`expr.${name}`, `definitions refer to definitions more than ${kMaxNesting} levels deep (${this.expanding[0]} -> ... -> ${name})`);
    }
    this.expanding.push(name);
    let node: number;
    try {
      const inner = new NameResolverView(this, name, definition);
      node = reduceExpr<number>(parseDefinition(name, definition), (expr, kids) => lower(expr, kids, this.graph, inner));
    } finally {
      this.expanding.pop();
    }
    this.defined.set(name, node);
    return node;
  }

  /** Resolves a name inside a definition: errors point into the definition's text. */
  resolveIn(expr: NameExpr, definitionSource: string, definitionName: string): number {
    try {
      return this.resolve(expr);
    } catch (error) {
      if (error instanceof ModelError && !this.definitions.has(expr.name)) {
        throw new ModelError(`expr.${definitionName}: ${error.reason}`, definitionSource, expr.start);
      }
      throw error;
    }
  }

  private variableIndex(expr: NameExpr): number {
    const known = this.variableNames.indexOf(expr.name);
    if (known >= 0) return known;
    if (this.variableNames.length === kMaxVars) {
      throw this.error(`too many data columns in the model: ${quoted(expr.name)} would be column ${kMaxVars + 1}, the limit is ${kMaxVars}`, expr);
    }
    return this.variableNames.push(expr.name) - 1;
  }

  private error(message: string, expr: NameExpr): ModelError {
    return new ModelError(message, this.source, expr.start);
  }
}

/** The name resolution of a definition's expression: the same resolver, errors against the definition's text. */
class NameResolverView {
  constructor(
    private readonly resolver: NameResolver,
    private readonly definitionName: string,
    private readonly definitionSource: string,
  ) {}

  resolve(expr: NameExpr): number {
    return this.resolver.resolveIn(expr, this.definitionSource, this.definitionName);
  }
}

function parseDefinition(name: string, definition: string): Expr {
  if (typeof definition !== 'string') throw invalidType(`expr.${name}`, 'expression string', definition);
  try {
    return parseExpression(definition);
  } catch (error) {
    if (error instanceof ModelError) throw new ModelError(`expr.${name}: ${error.reason}`, definition, error.position ?? 0);
    throw error;
  }
}

interface EmittedProgram {
  instrCount: number;
  /** nInstr * kInstrWords words. */
  instructions: number[];
  consts: number[];
  /** Indices of the parameters the output depends on. */
  params: Set<number>;
  /** Bit p: the output's derivative in parameter p can be nonzero (Program::outputMask in the kernel). */
  outputMask: bigint;
}

/** A hash-consed expression graph. Node ids are creation order, operands first. */
class ExpressionGraph {
  private readonly ops: Op[] = [];
  private readonly argA: number[] = [];
  private readonly argB: number[] = [];
  /** The value of each Const node (unused for other nodes). */
  private readonly values: number[] = [];
  private readonly ids = new Map<string, number>();

  constant(value: number): number {
    // String() keeps every double exactly but prints -0 as "0".
    const key = Object.is(value, -0) ? '-0' : String(value);
    return this.node(Op.Const, 0, 0, value, `c${key}`);
  }

  load(op: typeof Op.Param | typeof Op.Var, index: number): number {
    return this.node(op, index, 0);
  }

  unary(op: UnaryOp, a: number): number {
    if (this.isConstant(a)) return this.constant(applyUnary(op, this.values[a]!));
    if (op === Op.Neg && this.ops[a] === Op.Neg) return this.argA[a]!;
    return this.node(op, a, 0);
  }

  binary(op: BinaryOp, a: number, b: number): number {
    if (this.isConstant(a) && this.isConstant(b)) return this.constant(applyBinary(op, this.values[a]!, this.values[b]!));
    return this.node(op, a, b);
  }

  power(base: number, exponent: number): number {
    if (this.isConstant(base) && this.isConstant(exponent)) return this.constant(powC(this.values[base]!, this.values[exponent]!));
    const n = this.isConstant(exponent) ? this.values[exponent]! : NaN;
    if (Number.isInteger(n) && Math.abs(n) <= kMaxPowi) return this.node(Op.Powi, base, n);
    return this.node(Op.Pow, base, exponent);
  }

  /** The program computing node `root`: the nodes it reaches, renumbered in id order. */
  emit(root: number): EmittedProgram {
    const live = new Uint8Array(root + 1);
    live[root] = 1;
    for (let id = root; id >= 0; id--) {
      if (!live[id]) continue;
      const op = this.ops[id]!;
      if (isUnaryOp(op) || op === Op.Powi) live[this.argA[id]!] = 1;
      if (isBinaryOp(op)) live[this.argA[id]!] = live[this.argB[id]!] = 1;
    }
    const program: EmittedProgram = { instrCount: 0, instructions: [], consts: [], params: new Set(), outputMask: 0n };
    const renumbered = new Int32Array(root + 1);
    // Per instruction, the parameters its derivative can depend on: conditions
    // and x^0 cut the dependence.
    const masks: bigint[] = [];
    for (let id = 0; id <= root; id++) {
      if (!live[id]) continue;
      const op = this.ops[id]!;
      let a = this.argA[id]!;
      let b = this.argB[id]!;
      let mask = 0n;
      if (op === Op.Const) a = program.consts.push(this.values[id]!) - 1;
      if (op === Op.Param) {
        program.params.add(a);
        mask = 1n << BigInt(a);
      }
      if (isUnaryOp(op) || isBinaryOp(op) || op === Op.Powi) a = renumbered[a]!;
      if (isBinaryOp(op)) b = renumbered[b]!;
      if (!isPiecewiseConstant(op) && !(op === Op.Powi && b === 0)) {
        if (isUnaryOp(op) || isBinaryOp(op) || op === Op.Powi) mask |= masks[a]!;
        if (isBinaryOp(op)) mask |= masks[b]!;
      }
      program.instructions.push(op, a, b);
      masks.push(mask);
      renumbered[id] = program.instrCount++;
    }
    program.outputMask = masks[masks.length - 1]!;
    return program;
  }

  private isConstant(id: number): boolean {
    return this.ops[id] === Op.Const;
  }

  private node(op: Op, a: number, b: number, value = NaN, key = `${op},${a},${b}`): number {
    const known = this.ids.get(key);
    if (known !== undefined) return known;
    const id = this.ops.push(op) - 1;
    this.argA.push(a);
    this.argB.push(b);
    this.values.push(value);
    this.ids.set(key, id);
    return id;
  }
}
