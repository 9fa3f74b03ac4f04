/**
 * The inline evaluator: every pass runs on the calling thread. For small data
 * a worker hop costs more than the pass itself. A compiled model runs on the
 * kernel; a JavaScript model runs the same block loop the workers run
 * (src/exec/jsModel.ts).
 *
 * A pass holds the thread, so an AbortSignal is seen between passes; the
 * kernel itself stops a pass when the fit's timeoutMs deadline passes (it
 * reads the deadline from the cancel buffer, src/exec/cancel.ts).
 *
 * Kernels come from this thread's cache by program content, as in the
 * workers (src/exec/kernels.ts).
 */
import { loadAddon, type NativeKernel } from '../native.js';
import type { FitCancel } from './cancel.js';
import { sumCosts, type DataAudit, type Evaluator, type LossSpec, type PassColumns, type PassModel, type PassResult, type PassStats } from './evaluator.js';
import { cachedJsModel, isJsModelPlan, loadJsModel, reduceJsRange, type JsModelPlan } from './jsModel.js';
import { cachedKernel } from './kernels.js';
import { blockCount } from './layout.js';

export class InlineEvaluator implements Evaluator {
  readonly kind = 'inline' as const;
  readonly stats: PassStats = { passes: 0, evaluateMs: 0, kernelMs: 0 };
  audit: DataAudit | null = null;
  private readonly kernel: NativeKernel | null;
  private readonly plan: JsModelPlan | null;

  constructor(
    model: PassModel,
    private readonly columns: PassColumns,
    private readonly loss: LossSpec | null = null,
    private readonly cancel: FitCancel | null = null,
  ) {
    this.plan = isJsModelPlan(model) ? model : null;
    this.kernel = isJsModelPlan(model) ? null : cachedKernel(model.code, model.consts);
  }

  async evaluate(params: Float64Array): Promise<PassResult> {
    const functions = this.plan ? (cachedJsModel(this.plan) ?? (await loadJsModel(this.plan))) : null;
    const started = performance.now();
    const { vars, y, sigma, nPoints } = this.columns;
    const nBlocks = blockCount(nPoints);
    const moments = this.audit === null ? new Float64Array(3 * nBlocks).fill(NaN) : null;
    const costs = this.loss ? new Float64Array(nBlocks) : null;
    const cancel = this.cancel?.words ?? null;
    const roots = functions
      ? reduceJsRange(functions, this.plan!, params, { vars, y, sigma, nPoints, rowOffset: 0 }, 0, nBlocks, { moments, loss: this.loss, costs, cancel })
      : this.kernel!.evalRange(params, vars, y, sigma, nPoints, 0, nBlocks, {
          moments,
          cancel,
          ...(this.loss ? { loss: this.loss.code, fScale: this.loss.fScale, costs } : {}),
        });
    // The kernel stops only for the cancel buffer (here, its deadline: the thread was never free to see a signal).
    if (roots === null) throw this.cancel!.error();
    if (moments) this.audit = loadAddon().mergeMoments(moments, nBlocks);
    const factor = loadAddon().finishTree([roots], nBlocks, params.length + 1);
    const elapsed = performance.now() - started;
    this.stats.passes += 1;
    this.stats.evaluateMs += elapsed;
    this.stats.kernelMs += elapsed;
    return { factor, cost: costs ? sumCosts(costs, nBlocks) : null };
  }
}
