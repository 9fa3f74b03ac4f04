/**
 * Native kernels by program content, one cache per thread (each worker's, and
 * the main thread's for inline passes): fits of the same model reuse one
 * kernel (its scratch is rebuilt by setParams every pass), so a thread does
 * not verify the program and allocate tens of kilobytes of native scratch per
 * fit and leave them to a garbage collector that sees only the small wrappers
 * (the soak measured 135 KB of RSS per pooled fit on 2 workers when kernels
 * were keyed by fit). Least recently used kernels are evicted past
 * kMaxCachedKernels; an evicted kernel is freed when its thread's event loop
 * turns (Node runs the finalizers of native objects from it), which is why
 * the pool waits for tasks with atomics 'async' (src/exec/engine.ts).
 *
 * Sharing a kernel between fits that interleave on one thread is safe:
 * evalRange runs a whole range in one synchronous call (setParams, then every
 * block), so no two passes use its scratch at once.
 */
import { loadAddon, type NativeKernel } from '../native.js';

const kMaxCachedKernels = 8;
const kernels = new Map<string, { code: Int32Array; consts: Float64Array; kernel: NativeKernel }>();

/** Lengths and an FNV-1a hash of the code words and the constants' bits (a collision is caught by sameProgram). */
function programKey(code: Int32Array, consts: Float64Array): string {
  let h = 0x811c9dc5;
  const mix = (word: number): void => {
    h = Math.imul(h ^ word, 0x01000193) >>> 0;
  };
  for (let i = 0; i < code.length; i++) mix(code[i]!);
  const bits = new Int32Array(consts.buffer, consts.byteOffset, consts.length * 2);
  for (let i = 0; i < bits.length; i++) mix(bits[i]!);
  return `${code.length}:${consts.length}:${h.toString(16)}`;
}

function sameProgram(a: { code: Int32Array; consts: Float64Array }, code: Int32Array, consts: Float64Array): boolean {
  if (a.code.length !== code.length || a.consts.length !== consts.length) return false;
  for (let i = 0; i < code.length; i++) if (a.code[i] !== code[i]) return false;
  for (let i = 0; i < consts.length; i++) if (!Object.is(a.consts[i], consts[i])) return false;
  return true;
}

/** This thread's kernel for a program. */
export function cachedKernel(code: Int32Array, consts: Float64Array): NativeKernel {
  const key = programKey(code, consts);
  const cached = kernels.get(key);
  if (cached && sameProgram(cached, code, consts)) {
    // Most recently used last, so eviction drops the least recently used.
    kernels.delete(key);
    kernels.set(key, cached);
    return cached.kernel;
  }
  const kernel = new (loadAddon().Kernel)(code, consts);
  kernels.delete(key);
  kernels.set(key, { code: Int32Array.from(code), consts: Float64Array.from(consts), kernel });
  if (kernels.size > kMaxCachedKernels) kernels.delete(kernels.keys().next().value as string);
  return kernel;
}

/** Kernels cached on this thread (for tests). */
export function cachedKernelCount(): number {
  return kernels.size;
}
