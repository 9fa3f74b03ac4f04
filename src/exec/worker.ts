/**
 * Piscina worker entry: reduces one range of blocks, synchronously (a worker
 * thread is already off the event loop). A compiled model runs on the native
 * kernel; kernels are cached per fit so a pass does not re-verify the program
 * or reallocate scratch, and the cache is small and evicts the oldest fit. A
 * JavaScript model runs the block loop of src/exec/jsModel.ts; its module is
 * imported once per worker (the first task of a fit waits for it).
 */
import { isBatchTask, runBatchTask, type BatchPart, type BatchTask } from '../batch/task.js';
import { loadAddon, type NativeKernel } from '../native.js';
import type { PassModel } from './evaluator.js';
import { cachedJsModel, isJsModelPlan, loadJsModel, reduceJsRange, type JsModelFunctions, type JsModelPlan } from './jsModel.js';

export interface PassTask {
  /** Identifies the fit (its program and data); kernels are cached by it. */
  key: string;
  model: PassModel;
  params: Float64Array;
  vars: Float64Array[];
  y: Float64Array;
  sigma: Float64Array | null;
  nPoints: number;
  blockStart: number;
  blockEnd: number;
  /** On a fit's first pass: shared per-block moments the range writes into (columns.hpp). */
  moments: Float64Array | null;
  /** Global row of the columns' element 0 (a streamed chunk holds only its rows); default 0. */
  rowOffset?: number;
  /** A robust loss and the shared per-block costs it writes (global block index). */
  loss?: { code: number; fScale: number } | null;
  costs?: Float64Array | null;
}

export interface PassPart {
  roots: Float64Array;
  kernelMs: number;
}

const kMaxCachedKernels = 8;
const kernels = new Map<string, NativeKernel>();

function kernelFor(key: string, code: Int32Array, consts: Float64Array): NativeKernel {
  let kernel = kernels.get(key);
  if (!kernel) {
    kernel = new (loadAddon().Kernel)(code, consts);
    kernels.set(key, kernel);
    if (kernels.size > kMaxCachedKernels) {
      const oldest = kernels.keys().next().value as string;
      kernels.delete(oldest);
    }
  }
  return kernel;
}

/** Loads the addon so the first real pass does not pay for it. */
export interface WarmupTask {
  warmup: true;
}

export default function reduceRange(task: PassTask | WarmupTask | BatchTask): PassPart | BatchPart | null | Promise<PassPart> {
  if ('warmup' in task) {
    loadAddon();
    return null;
  }
  if (isBatchTask(task)) return runBatchTask(task);
  const model = task.model;
  if (isJsModelPlan(model)) {
    const functions = cachedJsModel(model);
    if (functions) return reduceWithJs(task, model, functions);
    return loadJsModel(model).then((loaded) => reduceWithJs(task, model, loaded));
  }
  const started = performance.now();
  const roots = kernelFor(task.key, model.code, model.consts).evalRange(
    task.params,
    task.vars,
    task.y,
    task.sigma,
    task.nPoints,
    task.blockStart,
    task.blockEnd,
    {
      moments: task.moments,
      rowOffset: task.rowOffset ?? 0,
      ...(task.loss ? { loss: task.loss.code, fScale: task.loss.fScale, costs: task.costs } : {}),
    },
  );
  return { roots, kernelMs: performance.now() - started };
}

function reduceWithJs(task: PassTask, plan: JsModelPlan, functions: JsModelFunctions): PassPart {
  const started = performance.now();
  const roots = reduceJsRange(
    functions,
    plan,
    task.params,
    { vars: task.vars, y: task.y, sigma: task.sigma, nPoints: task.nPoints, rowOffset: task.rowOffset ?? 0 },
    task.blockStart,
    task.blockEnd,
    { moments: task.moments, loss: task.loss ?? null, costs: task.costs ?? null },
  );
  return { roots, kernelMs: performance.now() - started };
}
