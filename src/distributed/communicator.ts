/**
 * What a distributed fit needs from its transport: who this process is among
 * how many, and one collective, an all-gather of byte strings. Every other
 * exchange (reduction-tree roots, per-block costs and moments, checkpoint
 * state, errors) is built on that one operation, so a transport is small and
 * every exchange matches every other: a rank that fails can always announce
 * it in the next all-gather, whichever step the other ranks are waiting at,
 * and nobody hangs.
 *
 * The MPI transport (src/distributed/mpi.ts) implements it over
 * MPI_Iallgather/MPI_Iallgatherv on the main thread (MPI_THREAD_FUNNELED);
 * localGroup (src/distributed/local.ts) implements it inside one process,
 * for tests and for trying a distributed fit without MPI.
 */
export interface Communicator {
  /** This process's rank, 0 <= rank < size. */
  readonly rank: number;
  /** The number of ranks. */
  readonly size: number;
  /** A short name for messages: 'mpi', 'local'. */
  readonly kind: string;
  /**
   * Collective: every rank calls it, in the same order; resolves on every rank
   * to all ranks' contributions, indexed by rank. Contributions may differ in
   * length (including 0 bytes). The returned arrays are the caller's to keep.
   */
  allgather(bytes: Uint8Array): Promise<Uint8Array[]>;
  /**
   * Ends every rank of the job at once (MPI_Abort): for a failure that cannot
   * be announced through allgather. Never returns.
   */
  abort(exitCode: number): never;
}

/** Is `value` a Communicator (duck-typed: user transports are plain objects)? */
export function isCommunicator(value: unknown): value is Communicator {
  if (value === null || typeof value !== 'object') return false;
  const c = value as Record<string, unknown>;
  return (
    Number.isInteger(c.rank) &&
    Number.isInteger(c.size) &&
    (c.size as number) >= 1 &&
    (c.rank as number) >= 0 &&
    (c.rank as number) < (c.size as number) &&
    typeof c.allgather === 'function'
  );
}
