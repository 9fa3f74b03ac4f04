/**
 * A group of ranks inside one process: `localGroup(n)` returns n
 * Communicators whose allgather meets the others' calls of the same round.
 * Each rank runs its own fit() (on one engine or several) exactly as it would
 * under MPI, so the distributed code paths, the partition, the exchange of
 * subtree roots and the error protocol, run in a plain test process, and the
 * bits can be compared with a single-process fit without MPI installed.
 */
import type { Communicator } from './communicator.js';

interface Round {
  bytes: Array<Uint8Array | undefined>;
  arrived: number;
  waiters: Array<(all: Uint8Array[]) => void>;
}

export function localGroup(size: number): Communicator[] {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`nlfit: a local group needs a positive integer size, got ${String(size)}`);
  const rounds = new Map<number, Round>();
  const calls = new Array<number>(size).fill(0);
  let aborted: number | null = null;
  const member = (rank: number): Communicator => ({
    rank,
    size,
    kind: 'local',
    allgather(bytes: Uint8Array): Promise<Uint8Array[]> {
      if (aborted !== null) return Promise.reject(new Error(`nlfit: the local group was aborted (exit code ${aborted})`));
      const index = calls[rank]!++;
      let round = rounds.get(index);
      if (!round) {
        round = { bytes: new Array<Uint8Array | undefined>(size), arrived: 0, waiters: [] };
        rounds.set(index, round);
      }
      round.bytes[rank] = bytes.slice();
      round.arrived += 1;
      const done = round;
      const promise = new Promise<Uint8Array[]>((resolve) => done.waiters.push(resolve));
      if (done.arrived === size) {
        rounds.delete(index);
        // Every rank gets its own copies, as from a real transport. Resolved
        // on a later turn, so no rank runs ahead inside another's call.
        setImmediate(() => done.waiters.forEach((wake) => wake(done.bytes.map((b) => b!.slice()))));
      }
      return promise;
    },
    abort(exitCode: number): never {
      aborted = exitCode;
      throw new Error(`nlfit: rank ${rank} of a local group aborted the group (exit code ${exitCode})`);
    },
  });
  return Array.from({ length: size }, (_, rank) => member(rank));
}
