/**
 * An Engine owns a Piscina pool of kernel workers and the queue of fits that
 * share it. One default engine, sized to the machine, serves every fit()
 * call; create your own for control:
 *
 *   const engine = new Engine({ threads: 4, maxQueue: 100 });
 *   const r = await engine.fit({ model, data, p0 });
 *   await engine.close();
 *
 * Workers start on the first fit that needs them (or on warmup()). Idle
 * workers do not keep the process alive, so a script may exit without close().
 * Fits are admitted and their tasks ordered by ./scheduler.ts.
 */
import { Piscina } from 'piscina';
import { availableMemory } from '../memory/limits.js';
import { kDefaultSafetyFactor } from '../memory/estimate.js';
import { kMiB } from '../memory/format.js';
import { normalizeEngineOptions, type EngineOptions } from '../options.js';
import { FitQueue, TaskScheduler, engineClosed, type TaskRunOptions } from './scheduler.js';
import { loadAddon } from '../native.js';

/** Asks the C library to return freed heap memory to the system: true where it could be asked (glibc). */
export function releaseFreeMemory(): boolean {
  try {
    return loadAddon().releaseFreeMemory();
  } catch {
    // An addon built before it had releaseFreeMemory, or none at all: nothing to release.
    return false;
  }
}

const kIdleTimeoutMs = 60_000;
/**
 * After the engine's last running fit ends, wait this long (another fit
 * starting cancels it) and ask the C library to return freed memory to the
 * system (addon releaseFreeMemory: glibc's malloc_trim). glibc keeps the
 * freed transient buffers of large fits and batches resident (the soak saw
 * 45-80 MB of free memory held in the main arena between marks); returning
 * it when idle keeps a long-running server's RSS at what it uses.
 */
const kReleaseAfterIdleMs = 1000;
/** The worker threads' young generation cap (V8 resourceLimits; its default is 48 MB on 64-bit). */
const kWorkerYoungGenerationMb = 16;

type PoolOptions = NonNullable<ConstructorParameters<typeof Piscina>[0]>;
type RunOptions = Parameters<Piscina['run']>[1];

/**
 * The engine's Piscina pool, whose run() goes through the scheduler: the
 * evaluators call run() as on any pool, and only the scheduler's dispatch
 * reaches Piscina, never more tasks at once than there are workers.
 */
class ScheduledPool extends Piscina {
  readonly scheduler: TaskScheduler;

  constructor(options: PoolOptions, threads: number) {
    super(options);
    this.scheduler = new TaskScheduler(threads, (task, runOptions) => super.run(task, runOptions as RunOptions));
  }

  override run(task: object, options?: RunOptions): Promise<unknown> {
    return this.scheduler.submit(task, options as TaskRunOptions | undefined);
  }
}

export class EnginePool {
  readonly threads: number;
  readonly maxConcurrentFits: number;
  readonly maxQueue: number;
  private readonly fits: FitQueue;
  private pool: ScheduledPool | undefined;
  private closed = false;

  constructor(options: EngineOptions = {}) {
    const engine = normalizeEngineOptions(options);
    this.threads = engine.threads;
    this.maxConcurrentFits = engine.maxConcurrentFits;
    this.maxQueue = engine.maxQueue;
    this.fits = new FitQueue({
      maxConcurrentFits: engine.maxConcurrentFits,
      maxQueue: engine.maxQueue,
      budgetBytes: () =>
        engine.memoryLimitMb !== null ? engine.memoryLimitMb * kMiB : Math.floor(availableMemory().availableBytes * kDefaultSafetyFactor),
    });
  }

  /** Fits running now. */
  get runningFits(): number {
    return this.fits.runningFits;
  }

  /** Fits waiting to start. */
  get queuedFits(): number {
    return this.fits.queuedFits;
  }

  /**
   * Waits for the fit's turn (see FitQueue.admit): resolves with the function
   * that ends its turn, or rejects (queue full, engine closed, signal fired).
   */
  async admit(reservedBytes: number, signal: AbortSignal | null): Promise<() => void> {
    const release = await this.fits.admit(reservedBytes, signal);
    this.cancelIdleRelease();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
      if (this.fits.runningFits === 0 && !this.closed) this.scheduleIdleRelease();
    };
  }

  private idleRelease: NodeJS.Timeout | null = null;

  private scheduleIdleRelease(): void {
    this.cancelIdleRelease();
    this.idleRelease = setTimeout(() => {
      this.idleRelease = null;
      if (this.fits.runningFits === 0) releaseFreeMemory();
    }, kReleaseAfterIdleMs);
    this.idleRelease.unref();
  }

  private cancelIdleRelease(): void {
    if (this.idleRelease !== null) clearTimeout(this.idleRelease);
    this.idleRelease = null;
  }

  /** The last error a worker raised outside any task (for diagnostics). */
  lastWorkerError: unknown = null;

  /** The worker pool, created on first use. */
  workers(): Piscina {
    if (this.closed) throw engineClosed('');
    if (!this.pool) {
      this.pool = new ScheduledPool(
        {
          filename: new URL('./worker.js', import.meta.url).href,
          minThreads: this.threads,
          maxThreads: this.threads,
          idleTimeout: kIdleTimeoutMs,
          concurrentTasksPerWorker: 1,
          // Piscina's timing histograms kept memory alive per engine created
          // and closed (bench/leak.js).
          recordTiming: false,
          // A worker waits for its next task with Atomics.waitAsync, so its
          // event loop turns between tasks. Under Piscina's default ('sync') it
          // waits in Atomics.wait and runs the next task from there, never
          // returning to its event loop, so what Node defers to that loop never
          // ran: the finalizers of native objects (a Kernel's native scratch is
          // freed in a SetImmediate after a GC) and FinalizationRegistry
          // callbacks. Every kernel a worker dropped from its cache stayed
          // allocated: 36 MB of RSS per 1000 pooled fits cycling 12 models
          // (bench/soak.js --kinds medium; test/soak-worker-finalizers.test.ts).
          atomics: 'async',
          // V8 grows a heap's young generation, in doublings, up to 48 MB when
          // objects keep surviving its scavenges. A worker's JavaScript is
          // small (task messages, a model's block loop), but over thousands
          // of fits each worker still reached that size: the soak's RSS rose
          // in 8 and 16 MB steps, 2 workers, up to +50 MB over 20,000 fits,
          // with the live heap flat at 9.5 MB. Capping it bounds what a worker
          // can hold at a size its work never needs.
          resourceLimits: { maxYoungGenerationSizeMb: kWorkerYoungGenerationMb },
        },
        this.threads,
      );
      // A worker that dies with no task running (out of memory, say) is replaced
      // by Piscina; its 'error' event must not crash the process. A death during
      // a task reaches that task's caller (src/exec/poolTask.ts retries it).
      this.pool.on('error', (error: unknown) => {
        this.lastWorkerError = error;
      });
    }
    return this.pool;
  }

  /** Refuses queued and later fits, drops tasks not yet on a worker, and stops the workers. */
  async close(): Promise<void> {
    this.closed = true;
    this.cancelIdleRelease();
    this.fits.close();
    const pool = this.pool;
    this.pool = undefined;
    if (pool) {
      pool.scheduler.close();
      await pool.close({ force: true });
    }
  }
}
