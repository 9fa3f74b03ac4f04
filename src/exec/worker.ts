/**
 * Piscina worker entry: reduces one range of blocks, synchronously (a worker
 * thread is already off the event loop). A compiled model runs on the native
 * kernel; kernels are cached per fit so a pass does not re-verify the program
 * or reallocate scratch, and the cache is small and evicts the oldest fit. A
 * JavaScript model runs the block loop of src/exec/jsModel.ts; its module is
 * imported once per worker (the first task of a fit waits for it).
 *
 * A task whose fit is cancelled (its cancel buffer, src/exec/cancel.ts)
 * stops between blocks and resolves with null roots (a fitMany shard: with
 * complete false); the caller drops the pass. A task rejects with
 * its own error when its code throws (a model's error, a module that does not
 * import), and the pool rejects it with "worker exited with code: N" when the
 * thread dies under it (src/exec/poolTask.ts runs it again then). An
 * exception nobody catches (thrown from a callback a model scheduled, say)
 * ends the thread the same way, with exit code kUncaughtExitCode, so that it
 * counts as the thread dying and not as the task's own error.
 */
import { writeSync } from 'node:fs';
import { isMainThread, threadId } from 'node:worker_threads';
import { isBatchTask, runBatchTask, type BatchPart, type BatchTask } from '../batch/task.js';
import { loadAddon } from '../native.js';
import type { PassModel } from './evaluator.js';
import { cachedJsModel, isJsModelPlan, loadJsModel, reduceJsRange, type JsModelFunctions, type JsModelPlan } from './jsModel.js';
import { cachedKernel } from './kernels.js';

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
  /** The fit's cancel buffer (src/exec/cancel.ts); the range stops between blocks once it says so. */
  cancel?: Int32Array | null;
}

export interface PassPart {
  /** The range's packed subtree roots; null when the fit's cancel buffer stopped the range. */
  roots: Float64Array | null;
  kernelMs: number;
}

/** Exit code of a worker thread that ended on an uncaught exception (EX_SOFTWARE). */
export const kUncaughtExitCode = 70;

if (!isMainThread) {
  process.on('uncaughtException', (error) => {
    const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
    writeSync(2, `nlfit: worker thread ${threadId} ends on an uncaught exception: ${detail}\n`);
    process.exit(kUncaughtExitCode);
  });
}

/** Loads the addon so the first real pass does not pay for it. */
export interface WarmupTask {
  warmup: true;
}

export default function runTask(task: PassTask | WarmupTask | BatchTask): PassPart | BatchPart | null | Promise<PassPart> {
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
  const roots = cachedKernel(model.code, model.consts).evalRange(
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
      cancel: task.cancel ?? null,
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
    { moments: task.moments, loss: task.loss ?? null, costs: task.costs ?? null, cancel: task.cancel ?? null },
  );
  return { roots, kernelMs: performance.now() - started };
}
