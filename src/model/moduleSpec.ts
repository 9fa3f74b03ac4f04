/**
 * Models the expression language cannot express: a JavaScript function in a
 * module. Worker threads load the module themselves (functions cannot be sent
 * to them), so the model names a module and an export rather than passing a
 * function:
 *
 *   // decay.mjs
 *   export function decay(vars, params) { return params[0] * Math.exp(-params[1] * vars[0]) + params[2]; }
 *
 *   await fit({
 *     model: { module: '/abs/path/decay.mjs', export: 'decay', params: ['a', 'b', 'c'], variables: ['x'] },
 *     data: { x, y },
 *     p0: { a: 1, b: 1, c: 0 },
 *   });
 *
 * This file checks the spec and the starting values; src/exec/jsModel.ts
 * loads the functions and runs them.
 */
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { closestName, invalidInput, invalidRange, invalidType } from '../errors.js';

/** A model given as a JavaScript function in a module. */
export interface ModuleModelSpec {
  /** The module: an absolute path or a file: URL (every worker thread imports it). */
  module: string | URL;
  /** The export holding the model function. Default 'default'. */
  export?: string;
  /**
   * How the function is called. 'point' (default): `f(vars: number[], params: Float64Array) => number`,
   * once per point. 'block': `f(vars: Float64Array[], params: Float64Array, out: Float64Array) => void`,
   * once per block of up to 512 points (vars are views of the block's rows; out has as many).
   * The arguments are the library's: read them, do not keep them.
   */
  kind?: 'point' | 'block';
  /** Parameter names, in the order of `params` the function receives. */
  params: string[];
  /** The data columns the function reads, in the order of `vars`. */
  variables: string[];
  /**
   * Export of the analytic Jacobian. 'point': `(vars, params, grad: Float64Array) => void`, grad[j] =
   * df/dparams[j]. 'block': `(vars, params, jac: Float64Array[]) => void`, jac[j][i] = df(point i)/dparams[j].
   * Without it the derivatives are finite differences (see `diff`).
   */
  jacobian?: string;
  /**
   * Finite differences without a jacobian, with steps relative to each parameter (src/exec/jsModel.ts):
   * '2-point' (default; forward, p + 1 calls per point) or '3-point' (central, 2p + 1 calls, accurate to
   * eps^(2/3) instead of sqrt(eps): prefer it, or a jacobian, for ill-conditioned problems).
   */
  diff?: '2-point' | '3-point';
}

/** A checked ModuleModelSpec. */
export interface ModuleModel {
  /** The module's URL (file:), as every thread imports it. */
  url: string;
  exportName: string;
  kind: 'point' | 'block';
  params: string[];
  variables: string[];
  jacobianName: string | null;
  diff: '2-point' | '3-point';
  /** How results name the model: `decay (file:///…/decay.mjs)`. */
  source: string;
}

const kModuleKeys = ['module', 'export', 'kind', 'params', 'variables', 'jacobian', 'diff'] as const;
const kName = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** The kernel's limit (native/kernel/bytecode.hpp, kMaxParams). */
const kMaxParams = 64;
const kReserved = ['y', 'sigma'];

/**
 * Whether a model option is a module spec (an object with an own `module`
 * field). Specs and p0 are read through their own properties only: a field
 * inherited from a prototype (`Object.create({ module })`, or a polluted
 * Object.prototype) is not the caller's option and would name a module to import.
 */
export function isModuleModelSpec(spec: unknown): spec is ModuleModelSpec {
  return spec !== null && typeof spec === 'object' && !Array.isArray(spec) && Object.hasOwn(spec, 'module');
}

/** A name as an error message shows it: a long one cut (a key may be any string). */
function shortName(name: string): string {
  return name.length > 40 ? `${name.slice(0, 37)}...` : name;
}

/** An own property of an options object, else undefined (never an inherited one). */
function own(object: object, key: string): unknown {
  return Object.hasOwn(object, key) ? (object as Record<string, unknown>)[key] : undefined;
}

function hint(name: string, known: readonly string[]): string {
  const close = closestName(name, known);
  return close === undefined ? '' : ` (did you mean '${close}'?)`;
}

function moduleUrl(value: unknown): string {
  if (value instanceof URL) {
    if (value.protocol !== 'file:') throw invalidInput('model.module', `${value.href} is not a file: URL`);
    return value.href;
  }
  if (typeof value !== 'string' || value === '') throw invalidType('model.module', 'absolute path or file: URL of a JavaScript module', value);
  if (value.startsWith('file:')) {
    try {
      return new URL(value).href;
    } catch (error) {
      throw invalidInput('model.module', `${JSON.stringify(value)} is not a valid URL`, error);
    }
  }
  if (isAbsolute(value)) return pathToFileURL(value).href;
  throw invalidInput(
    'model.module',
    `${JSON.stringify(value)} is relative; give an absolute path or a file: URL (worker threads import the module by name, not from the caller's directory)`,
  );
}

function names(value: unknown, field: string, what: string, limit = Infinity): string[] {
  if (!Array.isArray(value)) throw invalidType(field, `array of ${what} names`, value);
  // Before any per-name work: a hostile array of a million names is refused at once.
  if (value.length > limit) throw invalidRange(field, `at most ${limit} ${what}s`, value);
  const seen = new Set<string>();
  for (let i = 0; i < value.length; i++) {
    const name: unknown = value[i];
    if (typeof name !== 'string' || !kName.test(name)) throw invalidType(`${field}[${i}]`, 'identifier (letters, digits, _)', name);
    if (seen.has(name)) throw invalidInput(`${field}[${i}]`, `'${name}' is listed twice`);
    seen.add(name);
  }
  return [...(value as string[])];
}

function exportName(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') throw invalidType(field, 'name of a function the module exports', value);
  return value;
}

/** Checks a module model spec; throws TypeError/RangeError naming the field (`model.params[2]`). */
export function normalizeModuleModel(spec: ModuleModelSpec): ModuleModel {
  for (const key of Object.keys(spec)) {
    if (!(kModuleKeys as readonly string[]).includes(key)) {
      throw new TypeError(`Unknown model option '${key}'${hint(key, kModuleKeys)} (a module model has: ${kModuleKeys.join(', ')})`);
    }
  }
  const field = (key: (typeof kModuleKeys)[number]): unknown => own(spec, key);
  const url = moduleUrl(field('module'));
  const exported = field('export') === undefined ? 'default' : exportName(field('export'), 'model.export');
  const kind = field('kind') ?? 'point';
  if (kind !== 'point' && kind !== 'block') throw invalidRange('model.kind', "'point' or 'block'", kind);
  const params = names(field('params'), 'model.params', 'parameter', kMaxParams);
  if (params.length === 0) throw invalidInput('model.params', 'the model needs at least one parameter');
  const variables = names(field('variables'), 'model.variables', 'data column');
  variables.forEach((name, i) => {
    if (kReserved.includes(name)) throw invalidInput(`model.variables[${i}]`, `'${name}' is the ${name === 'y' ? 'response' : 'weight'} column, not a variable`);
    if (params.includes(name)) throw invalidInput(`model.variables[${i}]`, `'${name}' is also in model.params`);
  });
  const jacobianName = field('jacobian') === undefined ? null : exportName(field('jacobian'), 'model.jacobian');
  const diff = field('diff');
  if (diff !== undefined && diff !== '2-point' && diff !== '3-point') {
    throw invalidRange('model.diff', "'2-point' or '3-point'", diff);
  }
  if (diff !== undefined && jacobianName !== null) {
    throw invalidInput('model.diff', 'chooses finite differences, and model.jacobian gives the derivatives: give one or the other');
  }
  return {
    url,
    exportName: exported,
    kind,
    params,
    variables,
    jacobianName,
    diff: diff ?? '2-point',
    source: `${exported} (${url})`,
  };
}

/** The model's variables must be data columns (`columns`: the data's, without y and sigma). */
export function checkModuleVariables(model: ModuleModel, columns: readonly string[]): void {
  model.variables.forEach((name, i) => {
    if (!columns.includes(name)) {
      throw invalidInput(`model.variables[${i}]`, `'${name}' is not a data column (columns: ${columns.join(', ') || 'none'})${hint(name, columns)}`);
    }
  });
}

function finite(value: unknown, field: string): number {
  if (typeof value !== 'number') throw invalidType(field, 'finite number', value);
  if (!Number.isFinite(value)) throw invalidRange(field, 'finite number', value);
  return value;
}

/** Starting values for every parameter of a module model: p0 by name or in model.params order (required: nothing is guessed). */
export function moduleStartingValues(model: ModuleModel, p0: unknown): { names: string[]; values: number[] } {
  const { params } = model;
  if (p0 === undefined) throw invalidInput('p0', 'starting values are required for a JavaScript model (only catalog models guess them)');
  if (Array.isArray(p0) || (ArrayBuffer.isView(p0) && !(p0 instanceof DataView))) {
    const values = p0 as ArrayLike<unknown>;
    if (values.length !== params.length) throw invalidRange('p0', `${params.length} values in model.params order (${params.join(', ')})`, p0);
    return { names: params, values: params.map((name, i) => finite(values[i], `p0[${i}] (${name})`)) };
  }
  if (p0 === null || typeof p0 !== 'object') throw invalidType('p0', 'object of parameter values or array', p0);
  // The first key that is not a parameter is refused; a p0 of a million keys fails on its first.
  for (const key of Object.keys(p0)) {
    if (!params.includes(key)) throw invalidInput('p0', `'${shortName(key)}' is not in model.params (${params.join(', ')})${hint(key, params)}`);
  }
  // Own values only: a value inherited from a prototype is not a starting value the caller gave.
  const missing = params.filter((name) => own(p0, name) === undefined);
  if (missing.length > 0) throw invalidInput('p0', `no starting value for ${missing.map((n) => `'${n}'`).join(', ')} (model.params: ${params.join(', ')})`);
  return { names: params, values: params.map((name) => finite(own(p0, name), `p0.${name}`)) };
}
