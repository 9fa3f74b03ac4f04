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

/**
 * Runs the solver to its end. `afterFirstPass`, if given, is called once the
 * first pass has completed and before the solver sees it (the evaluator's data
 * audit is ready then); if it throws, the fit stops with its error.
 */
export async function runSolver(
  evaluator: Evaluator,
  x0: Float64Array,
  options: SolverOptions,
  afterFirstPass?: () => void,
): Promise<SolverRun> {
  const solver = new (loadAddon().Solver)(x0, options);
  let solverMs = 0;
  let first = true;
  for (;;) {
    const trialParams = solver.ask();
    if (trialParams === null) break;
    const factor = await evaluator.evaluate(trialParams);
    if (first) {
      first = false;
      afterFirstPass?.();
    }
    const started = performance.now();
    solver.tell(factor);
    solverMs += performance.now() - started;
  }
  return { state: solver.state(), solverMs };
}
