/**
 * How many fits share one engine: which fits run, and whose task a free
 * worker takes next.
 *
 * FitQueue admits fits (fit() and fitMany() calls). At most
 * maxConcurrentFits run at once, and together they reserve at most the
 * engine's memory budget (a fit reserves the copies it makes of its
 * in-memory columns; a fit alone is always admitted). Later fits wait in
 * arrival order, up to maxQueue of them; one more is refused at once with a
 * QueueFullError, so a server under load sheds work instead of holding a
 * backlog that only grows. A waiting fit whose signal fires leaves the queue.
 *
 * TaskScheduler orders the running fits' tasks on the worker pool. It hands
 * Piscina exactly as many tasks as there are workers (Piscina's own FIFO
 * stays empty) and keeps the rest in one lane per fit. A free worker goes to
 * the lane with the fewest tasks running, ties to the lane served least
 * recently (round robin), so a small fit gets a worker when the next one
 * frees rather than after every task queued before it.
 *
 * Workers free often only if tasks are short, so a pass task over blocks
 * [blockStart, blockEnd) runs as consecutive slices, sized from the fit's
 * measured kernel time per block: about kBusySliceMs while other fits use
 * the pool; while the fit is alone, long enough that the round trips cost
 * under kQuietOverhead of its time (and at least kQuietSliceMs), which
 * bounds the wait of a fit that arrives. Slicing cannot change the answer:
 * a range's subtree roots and those of its parts finish to the same
 * factor, bit for bit (the canonical tree of native/kernel/tsqr.hpp), and
 * the slices' roots are handed back concatenated as one part.
 *
 * Measured with bench/load.js (README, Engines and threads): a
 * 100,000-point pooled fit beside a 10,000,000-point one on a one-thread
 * engine, p50 2 to 4 ms alone, went from p50 159 to 286 ms with Piscina's
 * FIFO to 12 to 13 ms.
 */
import { fitAborted } from '../errors.js';
import type { PassPart, PassTask } from './worker.js';

/**
 * Slice length while other fits use the pool: their next task waits about
 * this long for a worker. The round trip it adds (30 to 50 us on an idle
 * machine) is the price of that.
 */
const kBusySliceMs = 1;
/** Share of its time a fit alone on the pool pays in round trips: it is sliced only to bound the wait of a fit that arrives. */
const kQuietOverhead = 0.01;
/** Shortest slice while the fit is alone. */
const kQuietSliceMs = 10;
/** A fit counts as using the pool this long after its last task: between passes its solver steps on the calling thread. */
const kActiveWindowMs = 100;
/** Blocks in a fit's first slice, before its speed is known (256 blocks: 0.3 ms for a 3-parameter expression). */
const kProbeBlocks = 256;
/** No slice is shorter. */
const kMinSliceBlocks = 64;
/** Round trip assumed until one is measured (Piscina on an idle machine: 30 to 50 us). */
const kDefaultRoundTripMs = 0.05;
/** Weight of the newest measurement in the smoothed time per block and round trip. */
const kSmoothing = 0.5;

export type QueueErrorCode = 'ERR_NLFIT_QUEUE_FULL' | 'ERR_NLFIT_ENGINE_CLOSED';

/** A fit refused because maxQueue fits already wait: name 'QueueFullError', code 'ERR_NLFIT_QUEUE_FULL'. */
export function queueFull(maxQueue: number, running: number): Error & { code: QueueErrorCode } {
  const error = new Error(
    `nlfit: the engine's queue is full (maxQueue ${maxQueue} fits waiting, ${running} running); retry later or create the engine with a larger maxQueue`,
  );
  error.name = 'QueueFullError';
  return Object.assign(error, { code: 'ERR_NLFIT_QUEUE_FULL' as const });
}

/** A fit refused, or dropped from the queue, because the engine is closed: code 'ERR_NLFIT_ENGINE_CLOSED'. */
export function engineClosed(what: string): Error & { code: QueueErrorCode } {
  return Object.assign(new Error(`nlfit: this engine has been closed${what}`), { code: 'ERR_NLFIT_ENGINE_CLOSED' as const });
}

/**
 * A task dropped because the engine closed before a worker took it. Named
 * 'AbortError' as Piscina names the tasks a closing pool drops, so the
 * fits' task runners (src/exec/poolTask.ts) do not mistake it for a worker
 * that died and run the task again.
 */
function taskDropped(): Error & { code: QueueErrorCode } {
  const error = engineClosed(' while the task waited for a worker');
  error.name = 'AbortError';
  return error;
}

export interface AdmissionLimits {
  maxConcurrentFits: number;
  maxQueue: number;
  /** Bytes the running fits may reserve together; read once, at the first fit. */
  budgetBytes: () => number;
}

interface WaitingFit {
  bytes: number;
  admit: (release: () => void) => void;
  refuse: (error: Error) => void;
}

export class FitQueue {
  private running = 0;
  private reservedBytes = 0;
  private budget: number | null = null;
  private closed = false;
  private readonly waiting: WaitingFit[] = [];

  constructor(private readonly limits: AdmissionLimits) {}

  /** Fits admitted and not yet released. */
  get runningFits(): number {
    return this.running;
  }

  /** Fits waiting for admission. */
  get queuedFits(): number {
    return this.waiting.length;
  }

  /**
   * Resolves with the fit's release function once it may run; rejects at
   * once when the queue is full or the engine closed, and with an AbortError
   * when `signal` fires while the fit waits. The decision to run, wait or
   * refuse is made synchronously, so calls are served in the order they are made.
   */
  admit(bytes: number, signal: AbortSignal | null): Promise<() => void> {
    if (this.closed) return Promise.reject(engineClosed(''));
    if (signal?.aborted) return Promise.reject(fitAborted(signal));
    if (this.waiting.length === 0 && this.fits(bytes)) return Promise.resolve(this.take(bytes));
    if (this.waiting.length >= this.limits.maxQueue) return Promise.reject(queueFull(this.limits.maxQueue, this.running));
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.waiting.indexOf(entry);
        if (at < 0) return;
        this.waiting.splice(at, 1);
        reject(fitAborted(signal!));
        // The fits behind it may now fit the budget.
        this.drain();
      };
      const entry: WaitingFit = {
        bytes,
        admit: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
        refuse: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      this.waiting.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Refuses every waiting fit and any later one; running fits keep their slots until they end. */
  close(): void {
    this.closed = true;
    for (const entry of this.waiting.splice(0)) entry.refuse(engineClosed(' while the fit waited in its queue'));
  }

  private fits(bytes: number): boolean {
    this.budget ??= this.limits.budgetBytes();
    if (this.running >= this.limits.maxConcurrentFits) return false;
    return this.running === 0 || this.reservedBytes + bytes <= this.budget;
  }

  private take(bytes: number): () => void {
    this.running += 1;
    this.reservedBytes += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running -= 1;
      this.reservedBytes -= bytes;
      this.drain();
    };
  }

  /** Admits waiting fits in order while the head fits: no later fit overtakes it. */
  private drain(): void {
    while (!this.closed && this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) {
      const entry = this.waiting.shift()!;
      entry.admit(this.take(entry.bytes));
    }
  }
}

/** What a task runs with on the pool (Piscina's run options). */
export interface TaskRunOptions {
  signal?: AbortSignal | null;
}

/** Runs one task on the pool itself. */
export type Dispatch = (task: object, options: TaskRunOptions | undefined) => Promise<unknown>;

interface Lane {
  readonly key: unknown;
  /** A lane of one task that is not a fit's (a warmup): dropped when it empties, never counted as a fit using the pool. */
  readonly transient: boolean;
  readonly waiting: Job[];
  running: number;
  /** When the lane last had a task dispatched (the scheduler's count); 0: never. */
  servedAt: number;
  lastActiveMs: number;
  /** The fit's kernel time per block (smoothed), null before its first pass task returns. */
  msPerBlock: number | null;
}

interface Job {
  readonly task: object;
  readonly options: TaskRunOptions | undefined;
  readonly lane: Lane;
  /** The task as a pass over blocks, which may run in slices; null for any other task. */
  readonly pass: PassTask | null;
  nextBlock: number;
  readonly roots: Float64Array[];
  kernelMs: number;
  resolve: (result: unknown) => void;
  reject: (error: unknown) => void;
  onAbort: (() => void) | null;
}

/** A pass task's roots; any other outcome of a slice ends its task and goes back to the caller as it came. */
function isPassPart(result: unknown): result is PassPart & { roots: Float64Array } {
  const part = result as Partial<PassPart> | null;
  return part !== null && typeof part === 'object' && part.roots instanceof Float64Array && typeof part.kernelMs === 'number';
}

function isPassTask(task: object): task is PassTask {
  const pass = task as Partial<PassTask>;
  return typeof pass.key === 'string' && Number.isInteger(pass.blockStart) && Number.isInteger(pass.blockEnd);
}

/** A fit's tasks share its key (pass tasks) or its batch (fitMany shards); null for any other task. */
function fitKey(task: object): unknown {
  const tagged = task as { key?: unknown; batch?: unknown };
  if (typeof tagged.key === 'string') return tagged.key;
  if (tagged.batch !== null && typeof tagged.batch === 'object') return tagged.batch;
  return null;
}

export class TaskScheduler {
  private readonly lanes = new Map<unknown, Lane>();
  private inFlight = 0;
  private dispatches = 0;
  /** Wall time of a pass task beyond its kernel time (smoothed): messages, and waiting for the calling thread. */
  private roundTripMs = kDefaultRoundTripMs;
  private closed = false;

  constructor(
    private readonly workers: number,
    private readonly dispatch: Dispatch,
  ) {}

  /** Runs `task` when its turn comes; resolves with its result (a sliced pass task: the slices' roots, concatenated). */
  submit(task: object, options?: TaskRunOptions): Promise<unknown> {
    if (this.closed) return Promise.reject(taskDropped());
    const signal = options?.signal ?? null;
    if (signal?.aborted) return Promise.reject(fitAborted(signal));
    const lane = this.laneFor(task);
    const pass = isPassTask(task) ? task : null;
    return new Promise((resolve, reject) => {
      const job: Job = { task, options, lane, pass, nextBlock: pass ? pass.blockStart : 0, roots: [], kernelMs: 0, resolve, reject, onAbort: null };
      if (signal) {
        // A slice already on a worker is Piscina's to abort (it has the signal); a waiting job just leaves.
        job.onAbort = () => {
          const at = lane.waiting.indexOf(job);
          if (at < 0) return;
          lane.waiting.splice(at, 1);
          this.forgetIfEmpty(lane);
          reject(fitAborted(signal));
        };
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      lane.waiting.push(job);
      this.pump();
    });
  }

  /** Rejects every waiting task and any later one; tasks on the workers end with the pool. */
  close(): void {
    this.closed = true;
    for (const lane of this.lanes.values()) {
      for (const job of lane.waiting.splice(0)) this.settle(job, null, taskDropped());
    }
  }

  private laneFor(task: object): Lane {
    const now = performance.now();
    const key = fitKey(task);
    let lane = key === null ? undefined : this.lanes.get(key);
    if (!lane) {
      this.forgetIdleLanes(now);
      lane = { key: key ?? task, transient: key === null, waiting: [], running: 0, servedAt: 0, lastActiveMs: now, msPerBlock: null };
      this.lanes.set(lane.key, lane);
    }
    lane.lastActiveMs = now;
    return lane;
  }

  private pump(): void {
    while (this.inFlight < this.workers) {
      const lane = this.nextLane();
      if (!lane) return;
      this.start(lane.waiting.shift()!);
    }
  }

  /** The lane with waiting work and the fewest tasks running; ties to the lane served least recently. */
  private nextLane(): Lane | null {
    let best: Lane | null = null;
    for (const lane of this.lanes.values()) {
      if (lane.waiting.length === 0) continue;
      if (!best || lane.running < best.running || (lane.running === best.running && lane.servedAt < best.servedAt)) best = lane;
    }
    return best;
  }

  private start(job: Job): void {
    let task = job.task;
    let blocks = 0;
    if (job.pass) {
      const from = job.nextBlock;
      const to = from + this.sliceBlocks(job.lane, job.pass.blockEnd - from);
      job.nextBlock = to;
      blocks = to - from;
      if (from !== job.pass.blockStart || to !== job.pass.blockEnd) task = { ...job.pass, blockStart: from, blockEnd: to };
    }
    const lane = job.lane;
    this.inFlight += 1;
    lane.running += 1;
    lane.servedAt = ++this.dispatches;
    const started = performance.now();
    let running: Promise<unknown>;
    try {
      running = this.dispatch(task, job.options);
    } catch (error) {
      running = Promise.reject(error);
    }
    running
      .then(
        (result) => {
          this.finished(lane);
          if (job.pass && isPassPart(result)) this.passed(job, result, blocks, performance.now() - started);
          else this.settle(job, result, null);
        },
        (error: unknown) => {
          this.finished(lane);
          this.settle(job, null, error);
        },
      )
      .finally(() => this.pump());
  }

  /** A slice of a pass task returned its roots: learn from its times, then queue the next slice or settle. */
  private passed(job: Job, part: PassPart & { roots: Float64Array }, blocks: number, wallMs: number): void {
    const pass = job.pass!;
    const lane = job.lane;
    const perBlock = part.kernelMs / blocks;
    lane.msPerBlock = lane.msPerBlock === null ? perBlock : lane.msPerBlock + kSmoothing * (perBlock - lane.msPerBlock);
    this.roundTripMs += kSmoothing * (Math.max(0, wallMs - part.kernelMs) - this.roundTripMs);
    // Run whole: its result as it came.
    if (job.nextBlock === pass.blockEnd && job.roots.length === 0) return this.settle(job, part, null);
    job.roots.push(part.roots);
    job.kernelMs += part.kernelMs;
    if (job.nextBlock === pass.blockEnd) return this.settle(job, { roots: concatenate(job.roots), kernelMs: job.kernelMs } satisfies PassPart, null);
    const signal = job.options?.signal ?? null;
    if (this.closed) this.settle(job, null, taskDropped());
    else if (signal?.aborted) this.settle(job, null, fitAborted(signal));
    else job.lane.waiting.push(job);
  }

  private finished(lane: Lane): void {
    this.inFlight -= 1;
    lane.running -= 1;
    lane.lastActiveMs = performance.now();
  }

  private settle(job: Job, result: unknown, error: unknown): void {
    if (job.onAbort) job.options!.signal!.removeEventListener('abort', job.onAbort);
    this.forgetIfEmpty(job.lane);
    if (error === null) job.resolve(result);
    else job.reject(error);
  }

  /**
   * Blocks in the next slice of a pass task with `remaining` blocks left: the
   * probe until the fit's speed is known, then as many as the target time
   * for the pool's state allows. A tail shorter than a minimal slice goes with this one.
   */
  private sliceBlocks(lane: Lane, remaining: number): number {
    let blocks = kProbeBlocks;
    if (lane.msPerBlock !== null) {
      const targetMs = this.othersActive(lane) ? kBusySliceMs : Math.max(kQuietSliceMs, this.roundTripMs / kQuietOverhead);
      blocks = Math.max(kMinSliceBlocks, Math.floor(targetMs / Math.max(lane.msPerBlock, 1e-9)));
    }
    return remaining - blocks < kMinSliceBlocks ? remaining : blocks;
  }

  /** Whether another fit is using the pool, or did within kActiveWindowMs. */
  private othersActive(self: Lane): boolean {
    const now = performance.now();
    for (const lane of this.lanes.values()) {
      if (lane !== self && !lane.transient && !isIdle(lane, now)) return true;
    }
    return false;
  }

  private forgetIfEmpty(lane: Lane): void {
    if (lane.transient && lane.running === 0 && lane.waiting.length === 0) this.lanes.delete(lane.key);
  }

  /** Drops the lanes of fits that have not used the pool for kActiveWindowMs (they have ended, or will start afresh). */
  private forgetIdleLanes(now: number): void {
    for (const [key, lane] of this.lanes) {
      if (isIdle(lane, now)) this.lanes.delete(key);
    }
  }
}

function isIdle(lane: Lane, now: number): boolean {
  return lane.waiting.length === 0 && lane.running === 0 && now - lane.lastActiveMs > kActiveWindowMs;
}

function concatenate(parts: Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((length, part) => length + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
