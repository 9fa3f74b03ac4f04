/**
 * Pumps the native Levenberg-Marquardt state machine: every ask() becomes one
 * pass of the evaluator over the data. The driver does not know whether the
 * pass ran inline or on the pool.
 */
import { loadAddon, type NativeSolverState, type SolverOptions } from '../native.js';
import type { Evaluator } from '../exec/evaluator.js';

export interface SolverRun {
  state: NativeSolverState;
  /** Set when a limit of SolverLimits stopped the solver (its state then says 'aborted'). */
  limit: 'max_iterations' | 'max_time' | null;
  /** Time in the state machine itself (steps, tests), ms. */
  solverMs: number;
}

export interface SolverHooks {
  /**
   * Called once the first pass has completed and before the solver sees it
   * (the evaluator's data audit is ready then); if it throws or rejects, the
   * fit stops with its error.
   */
  afterFirstPass?: () => void | Promise<void>;
  /** Called after every pass with the number of passes so far. */
  onPass?: (pass: number) => void;
  /** Stop after this many accepted steps. */
  maxIterations?: number | null;
  /** Stop when performance.now() passes this (checked between passes). */
  deadline?: number | null;
}

/** Runs the solver to its end. */
export async function runSolver(
  evaluator: Evaluator,
  x0: Float64Array,
  options: SolverOptions,
  hooks: SolverHooks = {},
): Promise<SolverRun> {
  const solver = new (loadAddon().Solver)(x0, options);
  let solverMs = 0;
  let first = true;
  let passes = 0;
  let limit: SolverRun['limit'] = null;
  for (;;) {
    const trialParams = solver.ask();
    if (trialParams === null) break;
    // Limits are checked between passes; the solver keeps the best point so far.
    if (hooks.deadline != null && passes > 0 && performance.now() >= hooks.deadline) limit = 'max_time';
    else if (hooks.maxIterations != null && solver.state().iterations >= hooks.maxIterations) limit = 'max_iterations';
    if (limit !== null) {
      solver.abort();
      break;
    }
    const { factor, cost } = await evaluator.evaluate(trialParams);
    passes += 1;
    if (first) {
      first = false;
      await hooks.afterFirstPass?.();
    }
    hooks.onPass?.(passes);
    const started = performance.now();
    // With a robust loss the solver measures progress by the cost, not the rescaled residual norm.
    if (cost === null) solver.tell(factor);
    else solver.tell(factor, Math.sqrt(2 * cost));
    solverMs += performance.now() - started;
  }
  return { state: solver.state(), solverMs, limit };
}
