// Module (JavaScript function) model specs are read through their own
// properties only: a field inherited from a prototype, whether the spec's own
// (Object.create) or a polluted Object.prototype, is not the caller's option.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fit } from '../../dist/index.js';
import { isModuleModelSpec, moduleStartingValues, normalizeModuleModel } from '../../dist/model/moduleSpec.js';

const dir = mkdtempSync(join(tmpdir(), 'nlfit-modulespec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const modelsPath = join(dir, 'models.mjs');
writeFileSync(
  modelsPath,
  `export function line(vars, params) { return params[0] * vars[0] + params[1]; }
export function evil() { throw new Error('the inherited export was called'); }
`,
);

const x = Array.from({ length: 20 }, (_, i) => i / 2);
const y = x.map((v) => 2 * v + 1);
const data = { x, y };
const line = { module: modelsPath, export: 'line', params: ['a', 'b'], variables: ['x'] };

/** Runs `body` with `key` set on Object.prototype, and always removes it. */
function withPollutedPrototype<T>(key: string, value: unknown, body: () => T): T {
  Object.defineProperty(Object.prototype, key, { value, configurable: true, enumerable: false, writable: true });
  try {
    return body();
  } finally {
    delete (Object.prototype as Record<string, unknown>)[key];
  }
}

describe('a module spec is recognised by an own module field only', () => {
  it('an object inheriting module is not a module spec', () => {
    expect(isModuleModelSpec(line)).toBe(true);
    expect(isModuleModelSpec(Object.create(line))).toBe(false);
    expect(isModuleModelSpec(Object.create({ module: modelsPath }))).toBe(false);
  });

  it('fit() refuses a spec whose fields are all inherited, instead of importing its module', async () => {
    await expect(fit({ model: Object.create(line), data, p0: { a: 1, b: 0 } })).rejects.toThrow(/for model but received an object/);
  });

  it('a polluted Object.prototype.module does not turn a catalog spec into a module model', async () => {
    const result = await withPollutedPrototype('module', modelsPath, () => fit({ model: { name: 'linear' }, data }));
    expect(result.params.a).toBeCloseTo(2, 10);
    expect(result.params.b).toBeCloseTo(1, 10);
  });
});

describe('the fields of a module spec are its own', () => {
  it('inherited export, kind, jacobian and diff are ignored', () => {
    const spec = Object.assign(Object.create({ export: 'evil', kind: 'block', jacobian: 'evil', diff: 'nonsense' }), {
      module: modelsPath,
      params: ['a', 'b'],
      variables: ['x'],
    });
    const model = normalizeModuleModel(spec);
    expect(model.exportName).toBe('default');
    expect(model.kind).toBe('point');
    expect(model.jacobianName).toBeNull();
    expect(model.diff).toBe('2-point');
  });

  it('inherited params or variables are missing ones', () => {
    const noParams = Object.assign(Object.create({ params: ['a'] }), { module: modelsPath, variables: ['x'] });
    expect(() => normalizeModuleModel(noParams)).toThrow(/for model\.params but received undefined/);
    const noVariables = Object.assign(Object.create({ variables: ['x'] }), { module: modelsPath, params: ['a'] });
    expect(() => normalizeModuleModel(noVariables)).toThrow(/for model\.variables but received undefined/);
  });

  it('a polluted Object.prototype.jacobian is not taken as the spec’s jacobian', async () => {
    const result = await withPollutedPrototype('jacobian', 'evil', () => fit({ model: { ...line }, data, p0: { a: 1, b: 0 } }));
    expect(result.params.a).toBeCloseTo(2, 8);
  });
});

describe('p0 of a module model: own values only', () => {
  const model = normalizeModuleModel(line);

  it('a starting value inherited from p0’s prototype is missing', () => {
    const p0 = Object.assign(Object.create({ b: 5 }), { a: 1 });
    expect(() => moduleStartingValues(model, p0)).toThrow("Invalid p0: no starting value for 'b' (model.params: a, b)");
    expect(moduleStartingValues(model, { a: 1, b: 5 })).toEqual({ names: ['a', 'b'], values: [1, 5] });
  });

  it('a polluted Object.prototype does not supply a missing starting value', async () => {
    const run = withPollutedPrototype('b', 0, () => fit({ model: line, data, p0: { a: 1 } }));
    await expect(run).rejects.toThrow("no starting value for 'b'");
  });
});

describe('name lists are checked in linear time', () => {
  it('a million params are refused before each is checked', () => {
    const params = Array.from({ length: 1_000_000 }, (_, i) => `p${i}`);
    const started = performance.now();
    expect(() => normalizeModuleModel({ ...line, params })).toThrow('Expected at most 64 parameters for model.params but received an array of length 1000000');
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('100,000 variables with a duplicate at the end: found without a quadratic scan', () => {
    const variables = Array.from({ length: 100_000 }, (_, i) => `v${i}`);
    variables.push('v0');
    const started = performance.now();
    expect(() => normalizeModuleModel({ ...line, variables })).toThrow("Invalid model.variables[100000]: 'v0' is listed twice");
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('a p0 key that is not a parameter is refused at the first one, and a long one is shown cut', () => {
    const key = `k${'x'.repeat(100_000)}`;
    expect(() => moduleStartingValues(normalizeModuleModel(line), { [key]: 1 })).toThrow(/^Invalid p0: 'kxxxxxxxxx.*\.\.\.' is not in model\.params \(a, b\)$/);
  });
});
