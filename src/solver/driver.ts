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
 * Runs the solver to its end. `whileFirstPassRuns`, if given, is called once
 * the first pass has been dispatched (synchronous work the calling thread can
 * do while the workers compute); if it throws, the fit stops with its error.
 */
export async function runSolver(
  evaluator: Evaluator,
  x0: Float64Array,
  options: SolverOptions,
  whileFirstPassRuns?: () => void,
): Promise<SolverRun> {
  const solver = new (loadAddon().Solver)(x0, options);
  let solverMs = 0;
  let first = true;
  for (;;) {
    const trialParams = solver.ask();
    if (trialParams === null) break;
    const pass = evaluator.evaluate(trialParams);
    if (first && whileFirstPassRuns) {
      first = false;
      try {
        whileFirstPassRuns();
      } catch (error) {
        pass.catch(() => undefined);
        throw error;
      }
    }
    const factor = await pass;
    const started = performance.now();
    solver.tell(factor);
    solverMs += performance.now() - started;
  }
  return { state: solver.state(), solverMs };
}
