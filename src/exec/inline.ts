/**
 * The inline evaluator: every pass runs on the calling thread. For small data
 * a worker hop costs more than the pass itself.
 */
import { loadAddon, type NativeKernel } from '../native.js';
import type { DataAudit, Evaluator, PassColumns, PassStats, ProgramCode } from './evaluator.js';
import { blockCount } from './layout.js';

export class InlineEvaluator implements Evaluator {
  readonly kind = 'inline' as const;
  readonly stats: PassStats = { passes: 0, evaluateMs: 0, kernelMs: 0 };
  audit: DataAudit | null = null;
  private readonly kernel: NativeKernel;

  constructor(
    program: ProgramCode,
    private readonly columns: PassColumns,
  ) {
    this.kernel = new (loadAddon().Kernel)(program.code, program.consts);
  }

  async evaluate(params: Float64Array): Promise<Float64Array> {
    const started = performance.now();
    const { vars, y, sigma, nPoints } = this.columns;
    const nBlocks = blockCount(nPoints);
    const moments = this.audit === null ? new Float64Array(3 * nBlocks).fill(NaN) : null;
    const roots = this.kernel.evalRange(params, vars, y, sigma, nPoints, 0, nBlocks, moments);
    if (moments) this.audit = loadAddon().mergeMoments(moments, nBlocks);
    const factor = loadAddon().finishTree([roots], nBlocks, params.length + 1);
    const elapsed = performance.now() - started;
    this.stats.passes += 1;
    this.stats.evaluateMs += elapsed;
    this.stats.kernelMs += elapsed;
    return factor;
  }
}
