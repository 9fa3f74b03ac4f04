/**
 * The streaming evaluator: data that stays in its source (a file, a spilled
 * stream) is read chunk by chunk on every pass into a bounded ring of
 * SharedArrayBuffer slots shared with the pool. Reading the next chunk overlaps
 * the workers' computing the previous ones; at most `chunksInFlight` chunks
 * exist at once, so memory is bounded whatever the data size.
 *
 * Chunks are whole 512-point blocks and the kernel numbers blocks globally
 * (evalRange's rowOffset), so the reduction tree, and every bit of the result,
 * is the in-memory fit's: chunk size and ring size never change the answer,
 * which is what lets memory pressure shrink them mid-fit.
 *
 * Cancellation: the chunks being computed stop between blocks (every task
 * carries the fit's cancel buffer), no further chunk is read, and the pass
 * rejects with the cancellation's error; a read already under way finishes
 * first. A chunk whose worker dies is computed again on a replacement
 * (src/exec/poolTask.ts), from the same slot.
 */
import type { Piscina } from 'piscina';
import { sharedFloat64 } from '../data/columns.js';
import type { ColumnSource } from '../data/source.js';
import { withCancel, type FitCancel } from './cancel.js';
import { evaluateWhole, type BlockRange, type DataAudit, type Evaluator, type LossSpec, type PartialPass, type PassModel, type PassResult, type PassStats, type RangeEvaluator } from './evaluator.js';
import { blockCount, kBlockSize } from './layout.js';
import { runPoolTask } from './poolTask.js';
import type { PassPart, PassTask } from './worker.js';

/** Chunking of a streamed pass; may change between chunks (memory pressure). */
export interface StreamShape {
  /** Blocks of 512 points per chunk. */
  chunkBlocks: number;
  /** Chunk buffers that may exist at once (one being read, the rest computing). */
  chunksInFlight: number;
}

export interface StreamingOptions extends StreamShape {
  /** A robust loss, or null/undefined for least squares. */
  loss?: LossSpec | null;
  /**
   * Called before each chunk is read; returns the shape to use from then on
   * (the memory monitor halves chunks or shrinks the ring here).
   */
  reshape?: (current: StreamShape) => StreamShape;
  /**
   * The fit's cancellation: once requested, the chunks in flight stop
   * between blocks, no further chunk is read, and the pass rejects with its
   * error (an AbortError or a TimeoutError).
   */
  cancel?: FitCancel | null;
  /** Without `cancel`: an AbortSignal, for which each pass makes its own cancel buffer. */
  signal?: AbortSignal | null;
  /** The blocks this evaluator reads (default: all): a distributed fit's rank reads only its range. */
  range?: BlockRange | null;
}

/** Which source columns a pass reads. */
export interface StreamColumns {
  vars: string[];
  y: string;
  sigma: string | null;
}

export interface StreamStats extends PassStats {
  /** Wall time the pass loop waited on reads (ms). */
  readMs: number;
  /** Largest chunk buffer memory held at once (bytes). */
  peakBufferBytes: number;
}

interface Slot {
  capacityRows: number;
  arrays: Record<string, Float64Array>;
}

let streamCounter = 0;

export class StreamingEvaluator implements Evaluator, RangeEvaluator {
  readonly kind = 'streaming' as const;
  readonly stats: StreamStats = { passes: 0, evaluateMs: 0, kernelMs: 0, readMs: 0, peakBufferBytes: 0 };
  audit: DataAudit | null = null;
  onBlocks: ((done: number, total: number) => void) | undefined = undefined;
  private readonly key = `${process.pid}:stream:${++streamCounter}:${Date.now()}`;
  private readonly names: string[];
  private shape: StreamShape;
  private readonly free: Slot[] = [];
  private slotsAlive = 0;
  private bufferBytes = 0;
  private waiters: Array<() => void> = [];
  readonly range: BlockRange;
  /** Set once a pass has audited the data (the first pass computes the per-block moments). */
  private audited = false;

  constructor(
    private readonly pool: Piscina,
    private readonly model: PassModel,
    private readonly source: ColumnSource,
    private readonly columns: StreamColumns,
    private readonly nPoints: number,
    private readonly options: StreamingOptions,
  ) {
    this.names = [...columns.vars, columns.y, ...(columns.sigma ? [columns.sigma] : [])];
    this.shape = checkShape({ chunkBlocks: options.chunkBlocks, chunksInFlight: options.chunksInFlight });
    this.range = options.range ?? { blockStart: 0, blockEnd: blockCount(nPoints) };
  }

  /** The current chunking (after any reshaping; a chunk is never larger than the data). */
  get currentShape(): StreamShape {
    return { ...this.shape, chunkBlocks: Math.min(this.shape.chunkBlocks, this.rangeBlocks) };
  }

  private get rangeBlocks(): number {
    return this.range.blockEnd - this.range.blockStart;
  }

  evaluate(params: Float64Array): Promise<PassResult> {
    return evaluateWhole(this, this.nPoints, params);
  }

  evaluatePart(params: Float64Array): Promise<PartialPass> {
    return withCancel(this.options.cancel, this.options.signal, (cancel) => this.pass(params, cancel));
  }

  private async pass(params: Float64Array, cancel: FitCancel | null): Promise<PartialPass> {
    const started = performance.now();
    const nBlocks = blockCount(this.nPoints);
    const { blockStart, blockEnd: rangeEnd } = this.range;
    const moments = this.audited ? null : sharedFloat64(3 * nBlocks).fill(NaN);
    const loss = this.options.loss ?? null;
    const costs = loss ? sharedFloat64(nBlocks) : null;
    let doneBlocks = 0;
    const parts: Float64Array[] = [];
    const running: Array<Promise<void>> = [];
    let failure: { error: unknown } | null = null;
    let stopped = false;
    let block = blockStart;
    const halted = (): boolean => failure !== null || stopped || (cancel?.requested ?? false);
    while (block < rangeEnd && !halted()) {
      if (this.options.reshape) this.shape = checkShape(this.options.reshape({ ...this.shape }));
      const blockEnd = Math.min(rangeEnd, block + this.shape.chunkBlocks);
      const rowStart = block * kBlockSize;
      const rows = Math.min(this.nPoints, blockEnd * kBlockSize) - rowStart;
      const slot = await this.acquire(rows);
      if (halted()) {
        this.release(slot);
        break;
      }
      const readStarted = performance.now();
      try {
        await this.source.read(rowStart, rows, slot.arrays);
      } catch (error) {
        this.release(slot);
        failure = { error };
        break;
      }
      this.stats.readMs += performance.now() - readStarted;
      if (halted()) {
        this.release(slot);
        break;
      }
      const index = parts.length;
      parts.push(new Float64Array(0));
      const task: PassTask = {
        key: this.key,
        model: this.model,
        params,
        vars: this.columns.vars.map((name) => slot.arrays[name]!),
        y: slot.arrays[this.columns.y]!,
        sigma: this.columns.sigma ? slot.arrays[this.columns.sigma]! : null,
        nPoints: this.nPoints,
        blockStart: block,
        blockEnd,
        moments,
        rowOffset: rowStart,
        loss,
        costs,
        cancel: cancel?.words ?? null,
      };
      running.push(
        runPoolTask<PassPart>(this.pool, task, {
          what: () => `blocks ${task.blockStart} to ${blockEnd - 1} of a streamed pass`,
          cancel,
          abandoned: () => failure !== null,
        }).then(
          (part) => {
            if (part.roots === null) {
              stopped = true;
              this.release(slot);
              return;
            }
            parts[index] = part.roots;
            this.stats.kernelMs += part.kernelMs;
            this.release(slot);
            if (this.onBlocks) {
              doneBlocks += blockEnd - task.blockStart;
              this.onBlocks(doneBlocks, this.rangeBlocks);
            }
          },
          (error: unknown) => {
            failure ??= { error };
            this.release(slot);
          },
        ),
      );
      block = blockEnd;
    }
    await Promise.all(running);
    if (failure !== null) throw (failure as { error: unknown }).error;
    if (stopped || block < rangeEnd) throw cancel!.error();
    this.audited = true;
    this.stats.passes += 1;
    this.stats.evaluateMs += performance.now() - started;
    return { parts, costs, moments };
  }

  /** Drops the chunk buffers (the source stays open: the caller owns it). */
  dispose(): void {
    this.free.length = 0;
    this.slotsAlive = 0;
    this.bufferBytes = 0;
  }

  /** A slot that holds `rows` rows: a free one, a new one if the ring has room, else the next released. */
  private async acquire(rows: number): Promise<Slot> {
    for (;;) {
      const index = this.free.findIndex((slot) => slot.capacityRows >= rows);
      if (index >= 0) return this.free.splice(index, 1)[0]!;
      // A free slot too small for this chunk (the last chunk is never larger
      // than the others, so only after the shape grew): drop it and allocate.
      if (this.free.length > 0) this.drop(this.free.pop()!);
      if (this.slotsAlive < this.shape.chunksInFlight) {
        // Never larger than the data: a chunkSize beyond it must not allocate for points that do not exist.
        const capacityRows = Math.min(this.shape.chunkBlocks, this.rangeBlocks) * kBlockSize;
        const arrays: Record<string, Float64Array> = {};
        for (const name of this.names) arrays[name] = sharedFloat64(capacityRows);
        this.slotsAlive += 1;
        this.bufferBytes += capacityRows * 8 * this.names.length;
        this.stats.peakBufferBytes = Math.max(this.stats.peakBufferBytes, this.bufferBytes);
        return { capacityRows, arrays };
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Returns a slot to the ring, or frees it if the ring or the chunks have shrunk since. */
  private release(slot: Slot): void {
    if (this.slotsAlive > this.shape.chunksInFlight || slot.capacityRows > this.shape.chunkBlocks * kBlockSize) {
      this.drop(slot);
    } else {
      this.free.push(slot);
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private drop(slot: Slot): void {
    this.slotsAlive -= 1;
    this.bufferBytes -= slot.capacityRows * 8 * this.names.length;
  }
}

function checkShape(shape: StreamShape): StreamShape {
  if (!Number.isInteger(shape.chunkBlocks) || shape.chunkBlocks < 1) {
    throw new RangeError(`nlfit: chunk of ${shape.chunkBlocks} blocks (expected a positive integer)`);
  }
  if (!Number.isInteger(shape.chunksInFlight) || shape.chunksInFlight < 1) {
    throw new RangeError(`nlfit: ${shape.chunksInFlight} chunks in flight (expected a positive integer)`);
  }
  return shape;
}
