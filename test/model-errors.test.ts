// ModelError: a machine-readable code, and a message of bounded size however
// long the expression (it quotes a window around the error, with a caret, and
// says the expression's length).
import { describe, expect, it } from 'vitest';
import { fit, fitMany, ModelError } from '../dist/index.js';
import { compileModel, parseExpression } from '../dist/model/index.js';

const x = Array.from({ length: 40 }, (_, i) => i / 4);
const y = x.map((v) => 3 * Math.exp(-0.8 * v) + 0.5);
const data = { x, y };

function thrown(run: () => unknown): ModelError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ModelError);
    return error as ModelError;
  }
  throw new Error('expected a ModelError');
}

async function rejected(run: () => Promise<unknown>): Promise<ModelError> {
  try {
    await run();
  } catch (error) {
    expect(error).toBeInstanceOf(ModelError);
    return error as ModelError;
  }
  throw new Error('expected a ModelError');
}

/** The column of the caret in the message's third line, in the quoted text of its second. */
function caretTarget(error: ModelError): string {
  const [, shown, caret] = error.message.split('\n');
  return shown![caret!.indexOf('^')]!;
}

describe('ModelError has code ERR_NLFIT_OPTION', () => {
  it.each([
    ['a syntax error', 'a*exp('],
    ['an unknown identifier', 'a*x + q'],
    ['an unknown function', 'a*foo(x)'],
    ['a number too large', 'a*x + 1e999'],
  ])('%s', async (_, model) => {
    const error = await rejected(() => fit({ model, data, p0: { a: 1 } }));
    expect(error.code).toBe('ERR_NLFIT_OPTION');
    expect(error.name).toBe('ModelError');
    expect(error).toBeInstanceOf(SyntaxError);
  });

  it('in transform, where, expr and fitMany too', async () => {
    const transform = await rejected(() => fit({ model: 'a*x', data, transform: { x: 'x*' }, p0: { a: 1 } }));
    expect(transform.code).toBe('ERR_NLFIT_OPTION');
    expect(transform.message).toMatch(/^transform\.x: unexpected end of expression/);
    const where = await rejected(() => fit({ model: 'a*x', data, where: 'x >', p0: { a: 1 } }));
    expect(where.code).toBe('ERR_NLFIT_OPTION');
    const expr = await rejected(() => fit({ model: 'a*x + b', data, expr: { b: 'a*q' }, p0: { a: 1 } }));
    expect(expr.code).toBe('ERR_NLFIT_OPTION');
    expect(expr.message).toMatch(/^expr\.b: unknown identifier 'q'/);
    expect(expr.reason).toBe(expr.message.split(' at position ')[0]);
    const batch = await rejected(() => fitMany({ model: 'a*x+', x: [1, 2, 3], y: [2, 4, 6], p0: { a: 1 } }));
    expect(batch.code).toBe('ERR_NLFIT_OPTION');
  });
});

describe('the message quotes a short expression whole and a long one as a window', () => {
  it('a short expression: all of it, the caret under the error', () => {
    const error = thrown(() => compileModel('a*exp(-b*x)+q', { params: ['a', 'b'], columns: ['x'] }));
    expect(error.message).toBe("unknown identifier 'q' (not a parameter in p0 and not a data column) at position 12\n  a*exp(-b*x)+q\n              ^");
    expect(error.reason).toBe("unknown identifier 'q' (not a parameter in p0 and not a data column)");
  });

  it('a 1 MiB expression with an error at its end: a window of the end, the caret on the error, the length said', async () => {
    // Mostly spaces: a 1 MiB expression under the token limit, so the error is the '#' at its end.
    const model = `a*x + ${' '.repeat((1 << 20) - 16)}a*x + #`;
    expect(model.length).toBeLessThanOrEqual(1 << 20);
    const error = await rejected(() => fit({ model, data, p0: { a: 1 } }));
    expect(error.position).toBe(model.length - 1);
    expect(error.message.length).toBeLessThan(400);
    expect(error.message).toContain(`at position ${model.length - 1}\n`);
    expect(caretTarget(error)).toBe('#');
    expect(error.message).toContain(`of an expression of ${model.length})`);
    expect(error.source).toBe(model);
    expect(error.stack!.length).toBeLessThan(2000);
  });

  it('an error in the middle: cut on both sides, the caret still on the error', () => {
    const half = ' '.repeat(400_000);
    const source = `a*x${half}+ b*x + ) + c${half}`;
    const error = thrown(() => parseExpression(source));
    expect(error.message.length).toBeLessThan(400);
    const [, shown] = error.message.split('\n');
    expect(shown).toMatch(/^ {2}\.\.\..*\.\.\.$/);
    expect(caretTarget(error)).toBe(')');
    expect(error.message).toMatch(new RegExp(`\\(characters \\d+ to \\d+ of an expression of ${source.length}\\)$`));
  });

  it('an error near the start of a long expression: no leading cut', () => {
    const source = `a*x + )${'+a'.repeat(1000)}`;
    const error = thrown(() => parseExpression(source));
    const [, shown] = error.message.split('\n');
    expect(shown!.startsWith('  a*x + )')).toBe(true);
    expect(shown!.endsWith('...')).toBe(true);
    expect(caretTarget(error)).toBe(')');
  });

  it('line breaks and tabs in the window show as spaces, so the caret stays under its character', () => {
    const source = `a*x +\n\tb *\n\t${'c + '.repeat(30)}) + d`;
    const error = thrown(() => parseExpression(source));
    expect(error.message.split('\n')).toHaveLength(4);
    expect(caretTarget(error)).toBe(')');
  });

  it('a window never splits a character outside the Basic Multilingual Plane', () => {
    const source = `${'𝑎'.repeat(100)}`;
    const error = thrown(() => parseExpression(`a*x + ${'b'.repeat(10)} ${source}`));
    // The lexer stops at the first 𝑎; whatever the window, it holds whole characters.
    expect(error.message).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/);
  });

  it('a name of a million characters is quoted by its ends and length', async () => {
    const name = `q${'z'.repeat(1_000_000)}`;
    const error = await rejected(() => fit({ model: `a*x + ${name}`, data, p0: { a: 1 } }));
    expect(error.message.length).toBeLessThan(600);
    expect(error.reason).toMatch(/^unknown identifier 'qzzz.*zzz' \(1000001 characters\)/);
    expect(caretTarget(error)).toBe('q');
  });

  it('an expression over the length limit: refused at position 0, its start quoted', async () => {
    const model = `a*x${'+a'.repeat(600_000)}`;
    const error = await rejected(() => fit({ model, data, p0: { a: 1 } }));
    expect(error.position).toBe(0);
    expect(error.message.length).toBeLessThan(400);
    expect(error.message.split('\n')[1]).toMatch(/^ {2}a\*x\+a\+a.*\.\.\.$/);
    expect(error.message).toContain(`(characters 0 to 59 of an expression of ${model.length})`);
  });
});
