/**
 * The pooled evaluator: a pass splits the blocks into ranges, runs them on the
 * engine's Piscina pool with at most `threads` in flight, and completes the
 * reduction tree on the calling thread. The data stays in SharedArrayBuffers:
 * a task carries views, never copies.
 *
 * Cancellation: every task carries the fit's cancel buffer, so on an abort or
 * a timeout the running tasks stop between blocks and no further task starts;
 * the partial pass is dropped. A task whose worker dies runs again on a
 * replacement (src/exec/poolTask.ts).
 */
import type { Piscina } from 'piscina';
import { sharedFloat64 } from '../data/columns.js';
import { evaluateWhole, type BlockRange, type DataAudit, type Evaluator, type LossSpec, type PartialPass, type PassColumns, type PassModel, type PassResult, type PassStats, type RangeEvaluator } from './evaluator.js';
import { withCancel, type FitCancel } from './cancel.js';
import { blockCount } from './layout.js';
import { runPoolTask } from './poolTask.js';
import type { PassPart, PassTask } from './worker.js';

export interface PooledOptions {
  /** Ranges in flight at once. */
  threads: number;
  /** Blocks per task. */
  chunkBlocks: number;
  /** A robust loss, or null/undefined for least squares. */
  loss?: LossSpec | null;
  /**
   * Called before each pass; returns the blocks per task and the tasks in
   * flight from then on (memory pressure halves the one and lowers the other).
   */
  reshape?: (shape: { chunkBlocks: number; inFlight: number }) => { chunkBlocks: number; inFlight: number };
  /**
   * The fit's cancellation: once requested, no further task of the pass
   * starts, the running ones stop between blocks, and the pass rejects with
   * its error (an AbortError or a TimeoutError).
   */
  cancel?: FitCancel | null;
  /** Without `cancel`: an AbortSignal, for which each pass makes its own cancel buffer. */
  signal?: AbortSignal | null;
  /**
   * The blocks this evaluator holds (default: all): a distributed fit's rank
   * holds a range, and its columns hold that range's rows (columns.rowOffset).
   */
  range?: BlockRange | null;
}

let fitCounter = 0;

export class PooledEvaluator implements Evaluator, RangeEvaluator {
  readonly kind = 'pooled' as const;
  readonly stats: PassStats = { passes: 0, evaluateMs: 0, kernelMs: 0 };
  private readonly key = `${process.pid}:${++fitCounter}:${Date.now()}`;
  private ranges: Array<[number, number]> = [];
  private chunkBlocks = 0;
  private inFlight: number;
  audit: DataAudit | null = null;
  onBlocks: ((done: number, total: number) => void) | undefined = undefined;
  readonly range: BlockRange;
  /** Set once a pass has audited the data (the first pass computes the per-block moments). */
  private audited = false;

  constructor(
    private readonly pool: Piscina,
    private readonly model: PassModel,
    private readonly columns: PassColumns,
    private readonly options: PooledOptions,
  ) {
    this.inFlight = options.threads;
    this.range = options.range ?? { blockStart: 0, blockEnd: blockCount(columns.nPoints) };
    this.split(options.chunkBlocks);
  }

  /** Blocks per task in the last pass. */
  get currentChunkBlocks(): number {
    return this.chunkBlocks;
  }

  private split(chunkBlocks: number): void {
    if (!Number.isInteger(chunkBlocks) || chunkBlocks < 1) throw new RangeError(`nlfit: ${chunkBlocks} blocks per task`);
    if (chunkBlocks === this.chunkBlocks) return;
    this.chunkBlocks = chunkBlocks;
    const { blockStart, blockEnd } = this.range;
    this.ranges = [];
    for (let start = blockStart; start < blockEnd; start += chunkBlocks) {
      this.ranges.push([start, Math.min(blockEnd, start + chunkBlocks)]);
    }
  }

  evaluate(params: Float64Array): Promise<PassResult> {
    return evaluateWhole(this, this.columns.nPoints, params);
  }

  evaluatePart(params: Float64Array): Promise<PartialPass> {
    return withCancel(this.options.cancel, this.options.signal, (cancel) => this.pass(params, cancel));
  }

  private async pass(params: Float64Array, cancel: FitCancel | null): Promise<PartialPass> {
    const started = performance.now();
    if (this.options.reshape) {
      const shape = this.options.reshape({ chunkBlocks: this.chunkBlocks, inFlight: this.inFlight });
      this.inFlight = Math.max(1, Math.min(this.options.threads, shape.inFlight));
      this.split(shape.chunkBlocks);
    }
    const nBlocks = blockCount(this.columns.nPoints);
    const rangeBlocks = this.range.blockEnd - this.range.blockStart;
    // The first pass audits the data as it reads it (blocks not reached stay NaN: invalid).
    const moments = this.audited ? null : sharedFloat64(3 * nBlocks).fill(NaN);
    const loss = this.options.loss ?? null;
    const costs = loss ? sharedFloat64(nBlocks) : null;
    let doneBlocks = 0;
    const parts: Float64Array[] = new Array(this.ranges.length);
    let next = 0;
    let failed = false;
    let stopped = false;
    const runner = async (): Promise<void> => {
      // After a failed task, or once the fit is cancelled, the runners stop taking new ranges.
      while (next < this.ranges.length && !failed && !stopped && !cancel?.requested) {
        const index = next++;
        const [blockStart, blockEnd] = this.ranges[index]!;
        const task: PassTask = {
          key: this.key,
          model: this.model,
          params,
          vars: this.columns.vars,
          y: this.columns.y,
          sigma: this.columns.sigma,
          nPoints: this.columns.nPoints,
          blockStart,
          blockEnd,
          moments,
          rowOffset: this.columns.rowOffset ?? 0,
          loss,
          costs,
          cancel: cancel?.words ?? null,
        };
        let part: PassPart;
        try {
          part = await runPoolTask<PassPart>(this.pool, task, {
            what: () => `blocks ${blockStart} to ${blockEnd - 1} of a pass`,
            cancel,
            abandoned: () => failed,
          });
        } catch (error) {
          failed = true;
          throw error;
        }
        if (part.roots === null) {
          stopped = true;
          return;
        }
        parts[index] = part.roots;
        this.stats.kernelMs += part.kernelMs;
        if (this.onBlocks) {
          doneBlocks += blockEnd - blockStart;
          this.onBlocks(doneBlocks, rangeBlocks);
        }
      }
    };
    const runners = Math.min(this.inFlight, this.ranges.length);
    await Promise.all(Array.from({ length: runners }, runner));
    if (stopped || next < this.ranges.length) throw cancel!.error();
    this.audited = true;
    this.stats.passes += 1;
    this.stats.evaluateMs += performance.now() - started;
    return { parts, costs, moments };
  }
}
