/**
 * One task on the pool, run to its end even when its worker thread dies.
 *
 * A task's promise settles in one of four ways (src/exec/worker.ts):
 *   resolves with its part        done (a part that says the fit's
 *                                 cancellation stopped it included);
 *   rejects, the fit cancelled    its worker died while the fit was being
 *                                 cancelled: the fit's own error, an
 *                                 AbortError or a TimeoutError, is thrown;
 *   rejects "worker exited ..."   the pool lost the thread under the task: a
 *                                 model that calls process.exit(), an
 *                                 uncaught exception (the worker turns it
 *                                 into an exit), the thread terminated.
 *                                 Piscina starts a replacement, and the task
 *                                 runs again there;
 *   rejects otherwise             the task's own code threw (a JavaScript
 *                                 model's error, a module that does not
 *                                 import): rethrown at once, never retried,
 *                                 since it would throw again.
 * A pass task computes the roots of a fixed range of blocks and writes only
 * that range's slots of the shared audit and cost arrays (a fitMany shard:
 * its curves' rows of the output), so running it again gives the same bits
 * and the fit's result does not change. After kMaxTaskFailures deaths under
 * the same task the fit gives up with workerLost, naming the task and the
 * last cause.
 */
import { workerLost } from '../errors.js';
import type { FitCancel } from './cancel.js';

/** Deaths of its worker after which a task is abandoned. */
export const kMaxTaskFailures = 3;

/** How Piscina rejects the tasks of a worker thread that exited (piscina/dist/index.js, onWorkerExit). */
const kWorkerExited = /^worker exited with code: /;

/** The pool as a task sees it: Piscina, or anything that runs tasks like it. */
export interface TaskPool {
  run(task: object): Promise<unknown>;
}

export interface PoolTaskContext {
  /** Names the task for the error when its worker keeps dying: "blocks 0 to 97 of a pass". */
  what: () => string;
  /** The fit's cancellation, or null. */
  cancel: FitCancel | null;
  /** True once the task's pass or batch has failed otherwise: a dead worker's task is then not run again. */
  abandoned: () => boolean;
}

/** Runs `task` on `pool` and resolves with its part. */
export async function runPoolTask<Part>(pool: TaskPool, task: object, context: PoolTaskContext): Promise<Part> {
  for (let failures = 1; ; failures++) {
    try {
      return (await pool.run(task)) as Part;
    } catch (error) {
      if (context.cancel?.requested) throw context.cancel.error();
      if (!(error instanceof Error && kWorkerExited.test(error.message)) || context.abandoned()) throw error;
      if (failures >= kMaxTaskFailures) throw workerLost(context.what(), failures, error);
    }
  }
}
