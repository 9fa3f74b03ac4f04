/**
 * Piscina worker entry: reduces one range of blocks with the native kernel,
 * synchronously (a worker thread is already off the event loop). Kernels are
 * cached per fit so a pass does not re-verify the program or reallocate
 * scratch; the cache is small and evicts the oldest fit.
 */
import { loadAddon, type NativeKernel } from '../native.js';

export interface PassTask {
  /** Identifies the fit (its program and data); kernels are cached by it. */
  key: string;
  code: Int32Array;
  consts: Float64Array;
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

function kernelFor(task: PassTask): NativeKernel {
  let kernel = kernels.get(task.key);
  if (!kernel) {
    kernel = new (loadAddon().Kernel)(task.code, task.consts);
    kernels.set(task.key, kernel);
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

export default function reduceRange(task: PassTask | WarmupTask): PassPart | null {
  if ('warmup' in task) {
    loadAddon();
    return null;
  }
  const started = performance.now();
  const roots = kernelFor(task).evalRange(
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
