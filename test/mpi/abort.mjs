// Run under mpirun (test/mpi.test.ts does). The last rank calls
// communicator.abort(3) while the others wait in an allgather it will never
// join: MPI_Abort must end every rank (mpirun exits non-zero) instead of
// leaving them waiting. Prints "abort rank <r>/<n> waiting" per waiting rank.
import { mpiCommunicator } from '../../dist/distributed/mpi.js';

const comm = mpiCommunicator();
await comm.allgather(new Uint8Array([comm.rank]));
if (comm.rank === comm.size - 1) {
  // Let the others reach the allgather first.
  setTimeout(() => comm.abort(3), 200);
} else {
  console.log(`abort rank ${comm.rank}/${comm.size} waiting`);
  await comm.allgather(new Uint8Array(8));
  console.log(`abort rank ${comm.rank}/${comm.size} UNEXPECTED: the allgather completed`);
}
