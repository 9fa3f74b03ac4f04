/**
 * The model language: expression strings compiled to the kernel's bytecode.
 * @example
 * import { compileModel, evaluateCompiled } from './model/index.js';
 * const model = compileModel('a*exp(-b*x)+c', { params: ['a', 'b', 'c'], columns: ['x', 'y'], reserved: ['y'] });
 * evaluateCompiled(model, [2, 0.5, 1], [[0, 1, 2]], 0); // 3
 */
export { compileModel, evaluateCompiled, freeIdentifiers, type CompiledModel, type CompileOptions } from './compile.js';
export { parseExpression, reduceExpr, children, kFunctions, kConstants, kMaxNesting, kMaxSourceLength, kMaxTokens } from './parser.js';
export type { Expr, NumberExpr, NameExpr, UnaryExpr, BinaryExpr, CallExpr, BuiltinFunction } from './parser.js';
export { tokenize, isIdentifier, type Token, type TokenKind } from './lexer.js';
export * from './bytecode.js';
