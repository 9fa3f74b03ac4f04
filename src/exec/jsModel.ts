/**
 * The block loop of a model given as a JavaScript function
 * (src/model/moduleSpec.ts). There is one loop for every thread that runs such
 * a model: the calling thread (inline passes, predict, band, export) and the
 * pool's workers alike.
 *
 * Rows. For each block of the fixed layout the loop writes the rows the
 * kernel's own evaluator would (program.hpp, evalBlock): kBlockSize x (p+1),
 * column major, [w J | w (f - y)] with w = 1/sigma (1 without sigma), and
 * hands a batch of blocks to the addon's reduceBlocks, which runs the native
 * pass on them: the data audit, the robust loss, the block QR and the fixed
 * tree (native/kernel/rowblocks.hpp). The blocks are the global ones and the
 * rows of a block depend only on the parameters and that block's data, so
 * any split of a pass among threads, tasks or chunks gives the same bits.
 *
 * Derivatives. With model.jacobian they are the user's. Otherwise finite
 * differences with a step relative to the parameter, MINPACK lmdif's rule:
 *   '2-point'  h_j = sqrt(eps) |theta_j|, forward, away from 0: truncation
 *              O(h) and rounding O(eps/h) balance at h ~ sqrt(eps) |theta_j|.
 *   '3-point'  h_j = eps^(1/3) |theta_j|, central: truncation O(h^2) and
 *              rounding O(eps/h) balance at eps^(1/3).
 * A parameter that is exactly 0 takes the bare factor (sqrt(eps) or
 * eps^(1/3)) as its step. scipy's default step, rel_step max(1, |theta_j|),
 * is absolute below 1, and small parameters are common: NIST Hahn1's b7 is
 * -1.23e-7 and multiplies x^3 (up to 6.2e8), so that forward step of 1.5e-8
 * moves b7 by 12% and the model's denominator by 9 (of 94): the quotient is
 * a secant across a large stretch of the model, not its derivative
 * (least_squares with jac='2-point' ends with 2 correct digits on Hahn1
 * from either start; MINPACK's leastsq, with relative steps, with 7). The
 * scale on which a coefficient changes the model is its own magnitude.
 * Steps are made exact (h = (theta + h) - theta) and kept inside bounds: a
 * forward step that would leave the box goes the other way; a central one
 * becomes the one-sided 3-point formula (4 f(t+h) - 3 f(t) - f(t+2h)) / 2h
 * (as scipy does) on the side that has room.
 * An inexact Jacobian moves the point the fit converges to, by
 * (J'J)^-1 dJ' r to first order: on Hahn1 (condition number 1.5e9) about
 * 1e-6 relative with forward differences and 1e-9 with central ones; an
 * analytic Jacobian removes it.
 */
import { describeValue, invalidInput, modelFunctionFailed, closestName } from '../errors.js';
import type { ModuleModel } from '../model/moduleSpec.js';
import { loadAddon } from '../native.js';
import { cancelProbe } from './cancel.js';
import type { LossSpec } from './evaluator.js';
import { kBlockSize } from './layout.js';

/** What a thread needs to run a JavaScript model; structured-cloneable, so it travels with every pool task. */
export interface JsModelPlan {
  /** The module (file: URL). */
  url: string;
  exportName: string;
  jacobianName: string | null;
  kind: 'point' | 'block';
  diff: '2-point' | '3-point';
  /** The data columns the function reads, in the order of its `vars` (for messages). */
  variables: string[];
  /** Every parameter the function takes, fixed ones at their values; the fitted ones are set per pass. */
  baseParams: Float64Array;
  /** Position in baseParams of each fitted parameter, in the fit's order. */
  free: Int32Array;
  /** Bounds of the fitted parameters (the difference steps stay inside), or null. */
  lower: Float64Array | null;
  upper: Float64Array | null;
}

/** The plan for a fit: the fitted parameters by name, the fixed ones at their values. */
export function planJsModel(
  model: ModuleModel,
  paramNames: readonly string[],
  p0: Float64Array,
  fixed: ReadonlyArray<{ name: string; value: number }>,
  bounds: { lower?: Float64Array; upper?: Float64Array },
): JsModelPlan {
  const baseParams = new Float64Array(model.params.length);
  for (const { name, value } of fixed) baseParams[model.params.indexOf(name)] = value;
  const free = Int32Array.from(paramNames, (name) => model.params.indexOf(name));
  free.forEach((j, k) => (baseParams[j] = p0[k]!));
  return {
    url: model.url,
    exportName: model.exportName,
    jacobianName: model.jacobianName,
    kind: model.kind,
    diff: model.diff,
    variables: model.variables,
    baseParams,
    free,
    lower: bounds.lower ?? null,
    upper: bounds.upper ?? null,
  };
}

export function isJsModelPlan(model: object): model is JsModelPlan {
  return 'url' in model && 'exportName' in model;
}

/** The user's functions (untyped: they are called with the signatures of ModuleModelSpec). */
export interface JsModelFunctions {
  value: (...args: unknown[]) => unknown;
  jacobian: ((...args: unknown[]) => unknown) | null;
}

/** Functions loaded on this thread, by module URL and export; a few fits' worth. */
const kMaxCachedModels = 16;
const loaded = new Map<string, JsModelFunctions>();

function cacheKey(plan: JsModelPlan): string {
  return `${plan.url}\n${plan.exportName}\n${plan.jacobianName ?? ''}`;
}

/** The plan's functions if this thread has loaded them already. */
export function cachedJsModel(plan: JsModelPlan): JsModelFunctions | undefined {
  return loaded.get(cacheKey(plan));
}

/** Imports the module (once per thread) and checks that the exports are functions. */
export async function loadJsModel(plan: JsModelPlan): Promise<JsModelFunctions> {
  const key = cacheKey(plan);
  const hit = loaded.get(key);
  if (hit) return hit;
  let namespace: Record<string, unknown>;
  try {
    namespace = (await import(plan.url)) as Record<string, unknown>;
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw invalidInput('model.module', `cannot import ${plan.url}: ${detail}`, error);
  }
  const functions: JsModelFunctions = {
    value: exportedFunction(namespace, plan.exportName, 'model.export', plan.url),
    jacobian: plan.jacobianName === null ? null : exportedFunction(namespace, plan.jacobianName, 'model.jacobian', plan.url),
  };
  loaded.set(key, functions);
  if (loaded.size > kMaxCachedModels) loaded.delete(loaded.keys().next().value as string);
  return functions;
}

function exportedFunction(namespace: Record<string, unknown>, name: string, field: string, url: string): (...args: unknown[]) => unknown {
  const value = namespace[name];
  if (typeof value === 'function') return value as (...args: unknown[]) => unknown;
  const exports = Object.keys(namespace);
  const close = closestName(name, exports.filter((e) => typeof namespace[e] === 'function'));
  const what = value === undefined ? 'exports nothing by that name' : `exports ${describeValue(value)} by that name`;
  throw invalidInput(
    field,
    `'${name}' is not a function: ${url} ${what} (its exports: ${exports.length > 0 ? exports.join(', ') : 'none'})${close ? `; did you mean '${close}'?` : ''}`,
  );
}

const kSqrtEps = Math.sqrt(Number.EPSILON);
const kCbrtEps = Math.cbrt(Number.EPSILON);

const kForward = 0;
const kCentral = 1;
const kOneSided3 = 2;

/**
 * Where each fitted parameter is evaluated besides theta, and how the
 * differences combine: forward (f1 - f0) / span, span = at1 - theta; central
 * (f1 - f2) / span, span = at1 - at2; one-sided 3-point
 * (4 f1 - 3 f0 - f2) / span, span = 2 (at1 - theta).
 */
interface DifferenceSteps {
  scheme: Uint8Array;
  at1: Float64Array;
  at2: Float64Array;
  span: Float64Array;
}

function differenceSteps(plan: JsModelPlan, theta: Float64Array): DifferenceSteps {
  const p = theta.length;
  const steps: DifferenceSteps = { scheme: new Uint8Array(p), at1: new Float64Array(p), at2: new Float64Array(p), span: new Float64Array(p) };
  const relative = plan.diff === '2-point' ? kSqrtEps : kCbrtEps;
  for (let k = 0; k < p; k++) {
    const t = theta[k]!;
    const lower = plan.lower ? plan.lower[k]! : -Infinity;
    const upper = plan.upper ? plan.upper[k]! : Infinity;
    let h = relative * Math.abs(t);
    if (t + h === t) h = relative;
    if (plan.diff === '2-point') {
      let at = t >= 0 ? t + h : t - h;
      if (at > upper || at < lower) at = t >= 0 ? t - h : t + h;
      steps.scheme[k] = kForward;
      steps.at1[k] = at;
      steps.span[k] = at - t;
      continue;
    }
    h = t + h - t;
    if (t - h >= lower && t + h <= upper) {
      steps.scheme[k] = kCentral;
      steps.at1[k] = t + h;
      steps.at2[k] = t - h;
      steps.span[k] = steps.at1[k]! - steps.at2[k]!;
    } else {
      const direction = t + 2 * h <= upper ? 1 : -1;
      steps.scheme[k] = kOneSided3;
      steps.at1[k] = t + direction * h;
      steps.at2[k] = t + direction * 2 * h;
      steps.span[k] = 2 * (steps.at1[k]! - t);
    }
  }
  return steps;
}

/** Views of the data a range reads: element 0 of every column is global row rowOffset. */
export interface JsRangeColumns {
  vars: Float64Array[];
  y: Float64Array;
  sigma: Float64Array | null;
  nPoints: number;
  rowOffset: number;
}

/** What a pass asks of a range besides its roots: the first pass's audit and a robust loss's costs (global block index). */
export interface JsRangeExtras {
  moments: Float64Array | null;
  loss: LossSpec | null;
  costs: Float64Array | null;
  /** The fit's cancel buffer (src/exec/cancel.ts): asked before every block, as the kernel does. */
  cancel?: Int32Array | null;
}

/** Blocks per reduceBlocks call: about 1 MiB of rows (the batching never changes the result). */
const kBatchDoubles = 1 << 17;

/** Reduces blocks [blockStart, blockEnd) at `params` (the fitted ones) to packed subtree roots; null when cancelled. */
export function reduceJsRange(
  functions: JsModelFunctions,
  plan: JsModelPlan,
  params: Float64Array,
  columns: JsRangeColumns,
  blockStart: number,
  blockEnd: number,
  extras: JsRangeExtras,
): Float64Array | null {
  const addon = loadAddon();
  const stopped = cancelProbe(extras.cancel);
  const rows = new BlockRows(functions, plan, params, true);
  const q = params.length + 1;
  const blockDoubles = kBlockSize * q;
  const batch = Math.max(1, Math.min(blockEnd - blockStart, Math.floor(kBatchDoubles / blockDoubles)));
  const buffer = new Float64Array(batch * blockDoubles);
  const parts: Float64Array[] = [];
  for (let start = blockStart; start < blockEnd; start += batch) {
    const count = Math.min(batch, blockEnd - start);
    for (let k = 0; k < count; k++) {
      if (stopped()) return null;
      const first = (start + k) * kBlockSize;
      rows.fill(columns, first, Math.min(kBlockSize, columns.nPoints - first), buffer.subarray(k * blockDoubles, (k + 1) * blockDoubles));
    }
    const part = addon.reduceBlocks(buffer, q, columns.nPoints, start, count, {
      rowOffset: columns.rowOffset,
      cancel: extras.cancel ?? null,
      ...(extras.moments ? { moments: extras.moments, vars: columns.vars, y: columns.y, sigma: columns.sigma } : {}),
      ...(extras.loss ? { loss: extras.loss.code, fScale: extras.loss.fScale, costs: extras.costs } : {}),
    });
    if (part === null) return null;
    parts.push(part);
  }
  if (parts.length === 1) return parts[0]!;
  // Packed roots are self-describing ([level, index, R...] each): concatenated, they still cover the range once.
  const roots = new Float64Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    roots.set(part, at);
    at += part.length;
  }
  return roots;
}

/** Model values at `params` (the fitted ones) for `count` points whose variable columns are given, into out. */
export type JsModelValues = (params: Float64Array, vars: Float64Array[], count: number, out: Float64Array) => void;

/** The model's values on this thread (predict, band, export, the non-finite start check). */
export function jsModelValues(functions: JsModelFunctions, plan: JsModelPlan): JsModelValues {
  return (params, vars, count, out) => new BlockRows(functions, plan, params, false).values(vars, count, out);
}

/** The rows of one pass's blocks: the parameters the function sees, the difference steps and scratch. */
class BlockRows {
  private readonly full: Float64Array;
  private readonly p: number;
  private readonly steps: DifferenceSteps | null;
  private readonly point: number[];
  private readonly grad: Float64Array;
  /** Block kind: model values at theta and at the two steps, weights, Jacobian columns (one per function parameter). */
  private readonly out0: Float64Array;
  private readonly out1: Float64Array;
  private readonly out2: Float64Array;
  private readonly weights: Float64Array;
  private readonly jacobian: Float64Array[];

  constructor(
    private readonly functions: JsModelFunctions,
    private readonly plan: JsModelPlan,
    params: Float64Array,
    derivatives: boolean,
  ) {
    this.p = params.length;
    this.full = Float64Array.from(plan.baseParams);
    plan.free.forEach((j, k) => (this.full[j] = params[k]!));
    this.steps = derivatives && functions.jacobian === null ? differenceSteps(plan, params) : null;
    this.point = [];
    this.grad = new Float64Array(plan.baseParams.length);
    const block = plan.kind === 'block';
    this.out0 = new Float64Array(block ? kBlockSize : 0);
    this.out1 = new Float64Array(block ? kBlockSize : 0);
    this.out2 = new Float64Array(block && plan.diff === '3-point' ? kBlockSize : 0);
    this.weights = new Float64Array(block ? kBlockSize : 0);
    this.jacobian = block && derivatives && functions.jacobian !== null ? Array.from(plan.baseParams, () => new Float64Array(kBlockSize)) : [];
  }

  /** Writes the rows of global points [first, first + rows) into `target` (kBlockSize x (p+1), column major; rows past `rows` untouched). */
  fill(columns: JsRangeColumns, first: number, rows: number, target: Float64Array): void {
    if (this.plan.kind === 'point') this.fillPoints(columns, first, rows, target);
    else this.fillBlock(columns, first, rows, target);
  }

  private fillPoints(columns: JsRangeColumns, first: number, rows: number, target: Float64Array): void {
    const { vars, y, sigma } = columns;
    const { full, point, grad, steps, p } = this;
    const { value, jacobian } = this.functions;
    const free = this.plan.free;
    const local = first - columns.rowOffset;
    const residual = p * kBlockSize;
    let field = 'model.export';
    let i = 0;
    try {
      for (; i < rows; i++) {
        const r = local + i;
        for (let v = 0; v < vars.length; v++) point[v] = vars[v]![r]!;
        const w = sigma === null ? 1 : 1 / sigma[r]!;
        field = 'model.export';
        const f0 = Number(value(point, full));
        target[residual + i] = w * (f0 - y[r]!);
        if (steps === null) {
          field = 'model.jacobian';
          grad.fill(NaN);
          jacobian!(point, full, grad);
          for (let k = 0; k < p; k++) target[k * kBlockSize + i] = w * grad[free[k]!]!;
          continue;
        }
        for (let k = 0; k < p; k++) {
          const j = free[k]!;
          const t = full[j]!;
          full[j] = steps.at1[k]!;
          const f1 = Number(value(point, full));
          let derivative: number;
          if (steps.scheme[k] === kForward) {
            derivative = (f1 - f0) / steps.span[k]!;
          } else {
            full[j] = steps.at2[k]!;
            const f2 = Number(value(point, full));
            derivative = steps.scheme[k] === kCentral ? (f1 - f2) / steps.span[k]! : (4 * f1 - 3 * f0 - f2) / steps.span[k]!;
          }
          full[j] = t;
          target[k * kBlockSize + i] = w * derivative;
        }
      }
    } catch (error) {
      throw this.failed(field, `at point ${first + i}${describePoint(this.plan, point)}`, error);
    }
  }

  private fillBlock(columns: JsRangeColumns, first: number, rows: number, target: Float64Array): void {
    const { y, sigma } = columns;
    const { full, steps, p, weights } = this;
    const { value, jacobian } = this.functions;
    const free = this.plan.free;
    const local = first - columns.rowOffset;
    const residual = p * kBlockSize;
    const vars = columns.vars.map((column) => column.subarray(local, local + rows));
    const out0 = this.out0.subarray(0, rows);
    let field = 'model.export';
    try {
      for (let i = 0; i < rows; i++) weights[i] = sigma === null ? 1 : 1 / sigma[local + i]!;
      out0.fill(NaN);
      value(vars, full, out0);
      for (let i = 0; i < rows; i++) target[residual + i] = weights[i]! * (out0[i]! - y[local + i]!);
      if (steps === null) {
        field = 'model.jacobian';
        const columnsOut = this.jacobian.map((column) => column.subarray(0, rows).fill(NaN));
        jacobian!(vars, full, columnsOut);
        for (let k = 0; k < p; k++) {
          const derivative = columnsOut[free[k]!]!;
          const at = k * kBlockSize;
          for (let i = 0; i < rows; i++) target[at + i] = weights[i]! * derivative[i]!;
        }
        return;
      }
      const out1 = this.out1.subarray(0, rows);
      const out2 = this.out2.subarray(0, rows);
      for (let k = 0; k < p; k++) {
        const j = free[k]!;
        const t = full[j]!;
        const span = steps.span[k]!;
        const at = k * kBlockSize;
        full[j] = steps.at1[k]!;
        out1.fill(NaN);
        value(vars, full, out1);
        if (steps.scheme[k] === kForward) {
          full[j] = t;
          for (let i = 0; i < rows; i++) target[at + i] = weights[i]! * ((out1[i]! - out0[i]!) / span);
          continue;
        }
        full[j] = steps.at2[k]!;
        out2.fill(NaN);
        value(vars, full, out2);
        full[j] = t;
        if (steps.scheme[k] === kCentral) {
          for (let i = 0; i < rows; i++) target[at + i] = weights[i]! * ((out1[i]! - out2[i]!) / span);
        } else {
          for (let i = 0; i < rows; i++) target[at + i] = weights[i]! * ((4 * out1[i]! - 3 * out0[i]! - out2[i]!) / span);
        }
      }
    } catch (error) {
      throw this.failed(field, `on the block of points ${first} to ${first + rows - 1}`, error);
    }
  }

  /** Model values only, `count` points from element 0 of `vars`. */
  values(vars: Float64Array[], count: number, out: Float64Array): void {
    const { value } = this.functions;
    const { full, point } = this;
    if (this.plan.kind === 'point') {
      let i = 0;
      try {
        for (; i < count; i++) {
          for (let v = 0; v < vars.length; v++) point[v] = vars[v]![i]!;
          out[i] = Number(value(point, full));
        }
      } catch (error) {
        throw this.failed('model.export', `at the point${describePoint(this.plan, point)}`, error);
      }
      return;
    }
    // A block function that leaves values unwritten leaves NaN, never stale numbers.
    out.subarray(0, count).fill(NaN);
    for (let start = 0; start < count; start += kBlockSize) {
      const end = Math.min(count, start + kBlockSize);
      try {
        value(
          vars.map((column) => column.subarray(start, end)),
          full,
          out.subarray(start, end),
        );
      } catch (error) {
        throw this.failed('model.export', `on a block of ${end - start} points`, error);
      }
    }
  }

  private failed(field: string, where: string, error: unknown): Error {
    return modelFunctionFailed(field, field === 'model.export' ? this.plan.exportName : this.plan.jacobianName!, where, error);
  }
}

/** ` (x = 0.5, t = 2)`: a point's variables, for messages. */
function describePoint(plan: JsModelPlan, point: number[]): string {
  return point.length === 0 ? '' : ` (${plan.variables.map((name, v) => `${name} = ${point[v]}`).join(', ')})`;
}
