/**
 * A fit's cancellation, seen by every thread that works for it: the fit's
 * AbortSignal and its timeoutMs deadline meet in one small SharedArrayBuffer
 * (layout in native/kernel/cancel.hpp) that every pass task carries. The
 * kernel reads it between blocks (and fitMany between curves), so a running
 * pass stops within a block's time, not at its end.
 *
 *   word (int32 kCancelFlagIndex)   0 while the fit runs; kAborted when the
 *                                   signal fires, kTimedOut when the timeout
 *                                   passes (the first reason wins).
 *   deadline (float64 at byte kCancelDeadlineByte)
 *                                   on the addon's monotonicMs() clock, one
 *                                   clock for every thread; Infinity for none.
 *
 * The main thread sets the word from the signal's abort event and from a
 * timer. A pass that runs inline holds the main thread, so neither can run
 * until it returns: the kernel then reads the deadline itself, which bounds
 * an inline pass by timeoutMs; an AbortSignal is seen between inline passes
 * (about a millisecond each: 'auto' runs inline at most 65,536 points).
 */
import { fitAborted, fitTimedOut } from '../errors.js';
import { loadAddon } from '../native.js';

/** Int32 index of the cancel word. */
export const kCancelFlagIndex = 0;
/** Byte offset of the float64 deadline. */
export const kCancelDeadlineByte = 8;
/** Size of a cancel buffer. */
export const kCancelBytes = 16;

const kAborted = 1;
const kTimedOut = 2;

/** One fit's cancel buffer and what sets it. Call dispose() when the fit ends. */
export class FitCancel {
  /** The shared buffer, as the kernel takes it (extras.cancel); cloned into tasks, the memory is shared. */
  readonly words: Int32Array;
  private readonly deadline: number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly onAbort: (() => void) | null = null;

  /**
   * signal: the fit's AbortSignal, or null. timeoutMs: the fit's timeout, or
   * null; counted from `startedAt` (performance.now() when the fit began).
   */
  constructor(
    private readonly signal: AbortSignal | null,
    private readonly timeout: { timeoutMs: number; startedAt: number; what: 'fit' | 'fitMany' } | null = null,
  ) {
    const buffer = new SharedArrayBuffer(kCancelBytes);
    this.words = new Int32Array(buffer);
    if (timeout) {
      const remaining = Math.max(0, timeout.timeoutMs - (performance.now() - timeout.startedAt));
      this.deadline = loadAddon().monotonicMs() + remaining;
      this.timer = setTimeout(() => this.trip(kTimedOut), remaining);
    } else {
      this.deadline = Infinity;
    }
    new Float64Array(buffer, kCancelDeadlineByte, 1)[0] = this.deadline;
    if (signal) {
      if (signal.aborted) {
        this.trip(kAborted);
      } else {
        this.onAbort = () => this.trip(kAborted);
        signal.addEventListener('abort', this.onAbort, { once: true });
      }
    }
  }

  /** Whether the fit must stop: the word is set or the deadline has passed. */
  get requested(): boolean {
    if (Atomics.load(this.words, kCancelFlagIndex) !== 0) return true;
    if (this.deadline !== Infinity && loadAddon().monotonicMs() >= this.deadline) {
      // The timer may not have run yet (an inline pass held the thread): tell the workers now.
      this.trip(kTimedOut);
      return true;
    }
    return false;
  }

  /** The error the fit rejects with once requested: an AbortError or a TimeoutError. */
  error(): Error {
    if (!this.requested) throw new Error('nlfit: internal error: a pass stopped for a cancellation nobody requested');
    return Atomics.load(this.words, kCancelFlagIndex) === kTimedOut
      ? fitTimedOut(this.timeout!.what, this.timeout!.timeoutMs)
      : fitAborted(this.signal!);
  }

  /** Throws error() when requested. */
  throwIfRequested(): void {
    if (this.requested) throw this.error();
  }

  /** Stops the timer and detaches from the signal. */
  dispose(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.onAbort) this.signal!.removeEventListener('abort', this.onAbort);
  }

  private trip(reason: number): void {
    Atomics.compareExchange(this.words, kCancelFlagIndex, 0, reason);
  }
}

/**
 * A test of a cancel buffer (as a task carries it) for the block loops that
 * run in JavaScript (a JavaScript model's), which ask it between blocks as
 * the kernel does; null words never stop.
 */
export function cancelProbe(words: Int32Array | null | undefined): () => boolean {
  if (!words) return () => false;
  const deadline = new Float64Array(words.buffer, words.byteOffset + kCancelDeadlineByte, 1)[0]!;
  const clock = loadAddon();
  return () => Atomics.load(words, kCancelFlagIndex) !== 0 || (deadline !== Infinity && clock.monotonicMs() >= deadline);
}

/**
 * Runs a pass with the fit's cancel buffer or, for an evaluator used without
 * one (given only an AbortSignal, or nothing), with a buffer of its own for
 * the signal, disposed when the pass ends.
 */
export async function withCancel<T>(
  cancel: FitCancel | null | undefined,
  signal: AbortSignal | null | undefined,
  run: (cancel: FitCancel | null) => Promise<T>,
): Promise<T> {
  if (cancel) return run(cancel);
  const own = signal ? new FitCancel(signal) : null;
  try {
    return await run(own);
  } finally {
    own?.dispose();
  }
}
