/**
 * The distributed evaluator: this rank reduces its range of blocks on its own
 * pool (a pooled or streaming evaluator over its slice), the ranks exchange
 * what they hold, and every rank finishes the same canonical tree.
 *
 * What a rank sends per pass: the packed roots of the maximal aligned
 * subtrees inside its range (O(log n) small triangles, with their global
 * level and index), and, with a robust loss, its blocks' costs (one double
 * per block: the total is a sum in block order, so it cannot be split without
 * changing bits); on the first pass also its blocks' moments (3 doubles per
 * block, merged in block order for R^2). Every rank then holds the same
 * inputs and runs the same code: the same factor, the same cost, and so the
 * same LM step on every rank, bit for bit equal to a single process's.
 *
 * Rank 0's clock decides maxTimeMs: each pass carries whether rank 0's
 * deadline has passed, so all ranks stop after the same pass.
 */
import type { BlockRange, DataAudit, Evaluator, PassResult, PassStats, RangeEvaluator } from '../exec/evaluator.js';
import { sumCosts } from '../exec/evaluator.js';
import { withCode } from '../errors.js';
import { loadAddon } from '../native.js';
import { evenPart } from './partition.js';
import { asFloat64, float64Bytes, type RankSession } from './session.js';

/** Header doubles of a pass payload: blockStart, blockEnd, root doubles, has costs, has moments, stop. */
const kHeader = 6;

/** The blocks rank `rank` of `size` holds (src/distributed/partition.ts). */
export function rankRange(rank: number, size: number, nBlocks: number): BlockRange {
  const [blockStart, blockEnd] = evenPart(rank, size, nBlocks);
  return { blockStart, blockEnd };
}

export interface DistributedStats extends PassStats {
  /** Time in the exchanges of passes (ms), included in evaluateMs. */
  exchangeMs: number;
  /** Bytes this rank sent in passes. */
  bytesSent: number;
}

export class DistributedEvaluator implements Evaluator {
  readonly kind: 'pooled' | 'streaming';
  audit: DataAudit | null = null;
  private readonly own: DistributedStats = { passes: 0, evaluateMs: 0, kernelMs: 0, exchangeMs: 0, bytesSent: 0 };
  /** Whether rank 0 said at the last pass that its maxTimeMs deadline had passed. */
  stopAgreed = false;

  constructor(
    private readonly inner: RangeEvaluator,
    private readonly session: RankSession,
    private readonly nBlocks: number,
    /** Rank 0 only: has the fit's deadline passed (maxTimeMs)? */
    private readonly deadlinePassed: () => boolean = () => false,
  ) {
    this.kind = inner.kind;
  }

  get stats(): DistributedStats {
    return { ...this.own, kernelMs: this.inner.stats.kernelMs };
  }

  get range(): BlockRange {
    return this.inner.range;
  }

  set onBlocks(callback: ((done: number, total: number) => void) | undefined) {
    this.inner.onBlocks = callback;
  }

  get onBlocks(): ((done: number, total: number) => void) | undefined {
    return this.inner.onBlocks;
  }

  async evaluate(params: Float64Array): Promise<PassResult> {
    const started = performance.now();
    let part;
    try {
      part = await this.inner.evaluatePart(params);
    } catch (error) {
      await this.session.fail(error);
      throw error;
    }
    const { blockStart, blockEnd } = this.inner.range;
    const rootDoubles = part.parts.reduce((sum, p) => sum + p.length, 0);
    const blocks = blockEnd - blockStart;
    const costDoubles = part.costs ? blocks : 0;
    const momentDoubles = part.moments ? 3 * blocks : 0;
    const payload = new Float64Array(kHeader + rootDoubles + costDoubles + momentDoubles);
    payload.set([blockStart, blockEnd, rootDoubles, part.costs ? 1 : 0, part.moments ? 1 : 0, this.session.rank === 0 && this.deadlinePassed() ? 1 : 0]);
    let at = kHeader;
    for (const p of part.parts) {
      payload.set(p, at);
      at += p.length;
    }
    if (part.costs) {
      payload.set(part.costs.subarray(blockStart, blockEnd), at);
      at += costDoubles;
    }
    if (part.moments) payload.set(part.moments.subarray(3 * blockStart, 3 * blockEnd), at);
    const exchangeStarted = performance.now();
    const all = (await this.session.exchange(float64Bytes(payload))).map(asFloat64);
    this.own.exchangeMs += performance.now() - exchangeStarted;
    this.own.bytesSent += payload.byteLength;

    // Every rank's contribution, checked: the ranges must tile [0, nBlocks) in rank order.
    const roots: Float64Array[] = [];
    const costs = part.costs ? new Float64Array(this.nBlocks) : null;
    const moments = part.moments ? new Float64Array(3 * this.nBlocks) : null;
    let expectStart = 0;
    all.forEach((values, rank) => {
      const [start, end, nRoots, hasCosts, hasMoments] = values;
      const n = (end! - start!) | 0;
      const size = kHeader + nRoots! + (hasCosts ? n : 0) + (hasMoments ? 3 * n : 0);
      if (start !== expectStart || !(end! >= start!) || values.length !== size || Boolean(hasCosts) !== Boolean(costs) || Boolean(hasMoments) !== Boolean(moments)) {
        throw withCode(new Error(`nlfit: rank ${rank} of ${all.length} sent a pass for other blocks or options (blocks ${start} to ${end}); the ranks are not running the same fit`), 'ERR_NLFIT_DISTRIBUTED');
      }
      expectStart = end!;
      let offset = kHeader;
      roots.push(values.subarray(offset, offset + nRoots!));
      offset += nRoots!;
      if (costs) {
        costs.set(values.subarray(offset, offset + n), start!);
        offset += n;
      }
      if (moments) moments.set(values.subarray(offset, offset + 3 * n), 3 * start!);
    });
    if (expectStart !== this.nBlocks) {
      throw withCode(new Error(`nlfit: the ranks' blocks end at ${expectStart}, but the data has ${this.nBlocks} blocks; the ranks are not reading the same data`), 'ERR_NLFIT_DISTRIBUTED');
    }
    this.stopAgreed = all[0]![5] === 1;
    const addon = loadAddon();
    const factor = addon.finishTree(roots, this.nBlocks, params.length + 1);
    if (moments) this.audit = addon.mergeMoments(moments, this.nBlocks);
    this.own.passes += 1;
    this.own.evaluateMs += performance.now() - started;
    return { factor, cost: costs ? sumCosts(costs, this.nBlocks) : null };
  }
}
