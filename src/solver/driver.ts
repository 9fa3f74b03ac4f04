/**
 * Pumps the native Levenberg-Marquardt state machine: every ask() becomes one
 * pass of the evaluator over the data. The driver does not know whether the
 * pass ran inline or on the pool.
 *
 * Cancellation and checkpoints act between passes, where the machine is
 * waiting for the factor at ask(): a checkpoint taken there (or after a pass
 * an abort or a timeout cut short, whose partial work is dropped) restores to
 * a machine that asks for the same point, so a resumed fit repeats exactly
 * the passes the interrupted one had not finished.
 */
import type { FitCancel } from '../exec/cancel.js';
import { loadAddon, type NativeSolver, type NativeSolverState, type SolverOptions } from '../native.js';
import type { Evaluator } from '../exec/evaluator.js';

export interface SolverRun {
  state: NativeSolverState;
  /** Set when a limit of SolverLimits stopped the solver (its state then says 'aborted'). */
  limit: 'max_iterations' | 'max_time' | null;
  /** Time in the state machine itself (steps, tests), ms. */
  solverMs: number;
}

/** Saves the solver (src/solver/checkpoint.ts). */
export interface SolverCheckpoint {
  /** Accepted iterations between saves. */
  everyIterations: number;
  save(solver: NativeSolver): Promise<void>;
}

export interface SolverHooks {
  /**
   * Called once the first pass has completed and before the solver sees it
   * (the evaluator's data audit is ready then); if it throws or rejects, the
   * fit stops with its error.
   */
  afterFirstPass?: () => void | Promise<void>;
  /** Called after every pass has been told, with the passes so far and the accepted iterations. */
  onPass?: (pass: number, iterations: number, cost: number, damping: number) => void;
  /** Stop after this many accepted steps. */
  maxIterations?: number | null;
  /** Stop when performance.now() passes this (checked between passes). */
  deadline?: number | null;
  /**
   * Instead of `deadline` where the clock must be agreed on (a distributed
   * fit: rank 0's, carried by each pass): true once the time limit has passed.
   */
  timeUp?: (() => boolean) | null;
  /**
   * The fit's cancellation (its AbortSignal and timeoutMs): checked between
   * passes, while the evaluator stops a pass between blocks; the run then
   * rejects with its error (an AbortError or a TimeoutError).
   */
  cancel?: FitCancel | null;
  /** A serialised solver to continue instead of starting a new one at x0 (x0 and options are then unused). */
  resumeFrom?: Uint8Array | null;
  /**
   * Saves every `everyIterations` accepted iterations, and when the fit is
   * aborted, times out or is stopped by a limit (a resumed fit then
   * continues past it).
   */
  checkpoint?: SolverCheckpoint | null;
}

/** Runs the solver to its end. */
export async function runSolver(
  evaluator: Evaluator,
  x0: Float64Array,
  options: SolverOptions,
  hooks: SolverHooks = {},
): Promise<SolverRun> {
  const { Solver } = loadAddon();
  const solver = hooks.resumeFrom ? Solver.restore(hooks.resumeFrom) : new Solver(x0, options);
  const cancel = hooks.cancel ?? null;
  const checkpoint = hooks.checkpoint ?? null;
  const stopCancelled = async (): Promise<never> => {
    await checkpoint?.save(solver);
    throw cancel!.error();
  };
  let solverMs = 0;
  let first = true;
  let passes = 0;
  let iterations = solver.state().iterations;
  let limit: SolverRun['limit'] = null;
  for (;;) {
    const trialParams = solver.ask();
    if (trialParams === null) break;
    if (cancel?.requested) await stopCancelled();
    // Limits are checked between passes; the solver keeps the best point so far.
    if (passes > 0 && ((hooks.deadline != null && performance.now() >= hooks.deadline) || hooks.timeUp?.())) limit = 'max_time';
    else if (hooks.maxIterations != null && iterations >= hooks.maxIterations) limit = 'max_iterations';
    if (limit !== null) {
      await checkpoint?.save(solver);
      solver.abort();
      break;
    }
    let pass: Awaited<ReturnType<Evaluator['evaluate']>>;
    try {
      pass = await evaluator.evaluate(trialParams);
    } catch (error) {
      // A pass the cancellation cut short is dropped: the solver still waits for this point.
      if (cancel?.requested) await stopCancelled();
      throw error;
    }
    passes += 1;
    if (first) {
      first = false;
      await hooks.afterFirstPass?.();
    }
    const started = performance.now();
    // With a robust loss the solver measures progress by the cost, not the rescaled residual norm.
    if (pass.cost === null) solver.tell(pass.factor);
    else solver.tell(pass.factor, Math.sqrt(2 * pass.cost));
    solverMs += performance.now() - started;
    const now = solver.state();
    const accepted = now.iterations;
    if (accepted > iterations) {
      iterations = accepted;
      if (checkpoint && iterations % checkpoint.everyIterations === 0 && solver.ask() !== null) await checkpoint.save(solver);
    }
    // The cost at the best point so far (0.5 |r|^2, or the robust cost).
    hooks.onPass?.(passes, iterations, 0.5 * now.fnorm * now.fnorm, now.damping);
  }
  return { state: solver.state(), solverMs, limit };
}
