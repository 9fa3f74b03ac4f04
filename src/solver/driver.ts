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

export async function runSolver(evaluator: Evaluator, x0: Float64Array, options: SolverOptions): Promise<SolverRun> {
  const solver = new (loadAddon().Solver)(x0, options);
  let solverMs = 0;
  for (;;) {
    const trialParams = solver.ask();
    if (trialParams === null) break;
    const factor = await evaluator.evaluate(trialParams);
    const started = performance.now();
    solver.tell(factor);
    solverMs += performance.now() - started;
  }
  return { state: solver.state(), solverMs };
}
