/**
 * Pumps the native Levenberg-Marquardt state machine: every ask() becomes one
 * pass of the evaluator over the data. The driver does not know whether the
 * pass ran inline or on the pool.
 */
import { loadAddon, type NativeSolverState, type SolverOptions } from '../native.js';
import type { Evaluator } from '../exec/evaluator.js';

export interface SolverRun {
  state: NativeSolverState;
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
  for (;;) {
    const trialParams = solver.ask();
    if (trialParams === null) break;
    const factor = await evaluator.evaluate(trialParams);
    passes += 1;
    if (first) {
      first = false;
      await hooks.afterFirstPass?.();
    }
    hooks.onPass?.(passes);
    const started = performance.now();
    solver.tell(factor);
    solverMs += performance.now() - started;
  }
  return { state: solver.state(), solverMs };
}
