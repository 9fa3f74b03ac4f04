/**
 * The one way nlfit splits work into parts: part i of n of `total` items is
 * [floor(i * total / n), floor((i + 1) * total / n)): contiguous, in order,
 * sizes differing by at most one. The blocks of a distributed fit's ranks,
 * the curves of a distributed fitMany's ranks and the curves of
 * `nlfit batch --shard i/n` are all split this way, so a batch's MPI ranks
 * fit exactly the curves of the shards of a job array of the same size.
 */
export function evenPart(index: number, count: number, total: number): [number, number] {
  return [Math.floor((index * total) / count), Math.floor(((index + 1) * total) / count)];
}
