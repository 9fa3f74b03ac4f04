/**
 * The inline evaluator: every pass runs on the calling thread. For small data
 * a worker hop costs more than the pass itself.
 */
import { loadAddon, type NativeKernel } from '../native.js';
import { sumCosts, type DataAudit, type Evaluator, type LossSpec, type PassColumns, type PassResult, type PassStats, type ProgramCode } from './evaluator.js';
import { blockCount } from './layout.js';

export class InlineEvaluator implements Evaluator {
  readonly kind = 'inline' as const;
  readonly stats: PassStats = { passes: 0, evaluateMs: 0, kernelMs: 0 };
  audit: DataAudit | null = null;
  private readonly kernel: NativeKernel;

  constructor(
    program: ProgramCode,
    private readonly columns: PassColumns,
    private readonly loss: LossSpec | null = null,
  ) {
    this.kernel = new (loadAddon().Kernel)(program.code, program.consts);
  }

  async evaluate(params: Float64Array): Promise<PassResult> {
    const started = performance.now();
    const { vars, y, sigma, nPoints } = this.columns;
    const nBlocks = blockCount(nPoints);
    const moments = this.audit === null ? new Float64Array(3 * nBlocks).fill(NaN) : null;
    const costs = this.loss ? new Float64Array(nBlocks) : null;
    const roots = this.kernel.evalRange(params, vars, y, sigma, nPoints, 0, nBlocks, {
      moments,
      ...(this.loss ? { loss: this.loss.code, fScale: this.loss.fScale, costs } : {}),
    });
    if (moments) this.audit = loadAddon().mergeMoments(moments, nBlocks);
    const factor = loadAddon().finishTree([roots], nBlocks, params.length + 1);
    const elapsed = performance.now() - started;
    this.stats.passes += 1;
    this.stats.evaluateMs += elapsed;
    this.stats.kernelMs += elapsed;
    return { factor, cost: costs ? sumCosts(costs, nBlocks) : null };
  }
}
