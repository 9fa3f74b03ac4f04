// Run under mpirun (test/mpi.test.ts does): `mpirun -n 3 node test/mpi/allgather.mjs`.
// Exercises the MPI transport's allgather (dist/distributed/mpi.js, so run
// `npx tsc -p tsconfig.json` first): 200 rounds of contributions of varying
// length per rank, 0 bytes included (and a round where every rank sends 0),
// two 16 MiB contributions, calls queued behind one another with their input
// arrays overwritten right after the call, every byte from every rank checked
// on every rank. The ranks agree on the verdict with a last allgather, so
// they all exit non-zero if any rank saw a mismatch. One line per rank:
//   allgather rank <r>/<n> ok: <rounds> rounds, <bytes> bytes, <ms> ms (<library>)
// Env: ROUNDS (200), BIG_BYTES (16 MiB); NLFIT_MPI_ROUND_BYTES is read by the
// transport itself (caps one MPI_Iallgatherv: multi-round exchanges).
import { mpiAvailable, mpiCommunicator } from '../../dist/distributed/mpi.js';

const rounds = Number(process.env.ROUNDS || 200);
const bigBytes = Number(process.env.BIG_BYTES || 16 * 1024 * 1024);

const availability = mpiAvailable();
if (!availability.available) {
  console.error(`allgather: MPI transport unavailable: ${availability.reason}`);
  process.exit(2);
}
const comm = mpiCommunicator();
if (comm !== mpiCommunicator()) throw new Error('mpiCommunicator() is not a singleton');
const { rank, size } = comm;

function lengthOf(round, r) {
  if (round === 5) return 0; // everyone sends nothing
  if (round === 10 && r === size - 1) return bigBytes;
  if (round === 150 && r === 0) return bigBytes;
  if (r === round % size) return 0;
  return (round * 131 + r * 977) % 5000;
}

function fill(out, round, r) {
  const salt = (round * 7 + r * 13) & 255;
  for (let j = 0; j < out.length; j++) out[j] = (j * 31 + (j >>> 8) + salt) & 255;
  return out;
}

function contribution(round, r) {
  return fill(new Uint8Array(lengthOf(round, r)), round, r);
}

const problems = [];
function check(round, got) {
  if (!Array.isArray(got) || got.length !== size) {
    problems.push(`round ${round}: expected ${size} arrays, got ${Array.isArray(got) ? got.length : typeof got}`);
    return 0;
  }
  let bytes = 0;
  const buffers = new Set();
  for (let r = 0; r < size; r++) {
    const part = got[r];
    const expected = contribution(round, r);
    if (!(part instanceof Uint8Array) || part.length !== expected.length) {
      problems.push(`round ${round} from rank ${r}: expected ${expected.length} bytes, got ${part?.length}`);
      continue;
    }
    if (part.byteOffset !== 0 || part.buffer.byteLength !== part.length || buffers.has(part.buffer)) {
      problems.push(`round ${round} from rank ${r}: not an array of its own`);
    }
    buffers.add(part.buffer);
    for (let j = 0; j < part.length; j++) {
      if (part[j] !== expected[j]) {
        problems.push(`round ${round} from rank ${r}: byte ${j} is ${part[j]}, expected ${expected[j]}`);
        break;
      }
    }
    bytes += part.length;
  }
  return bytes;
}

const start = Date.now();
let received = 0;

// A wrong argument is refused locally (no collective starts).
try {
  await comm.allgather([1, 2, 3]);
  problems.push('allgather accepted a plain array');
} catch (error) {
  if (!(error instanceof TypeError)) problems.push(`allgather([1,2,3]) threw ${error}`);
}

for (let round = 0; round < rounds; ) {
  if (round % 10 === 9 && round + 1 < rounds) {
    // Two calls at once: they run in call order, and each input may be
    // overwritten as soon as the call returns.
    const a = contribution(round, rank);
    const b = contribution(round + 1, rank);
    const first = comm.allgather(a);
    const second = comm.allgather(b);
    a.fill(0xee);
    b.fill(0xdd);
    const [ga, gb] = await Promise.all([first, second]);
    received += check(round, ga) + check(round + 1, gb);
    round += 2;
  } else {
    received += check(round, await comm.allgather(contribution(round, rank)));
    round += 1;
  }
}

// The verdict, agreed by all ranks.
const verdicts = await comm.allgather(new Uint8Array([problems.length === 0 ? 1 : 0]));
const failed = verdicts.map((v, r) => (v[0] === 1 ? -1 : r)).filter((r) => r >= 0);
const ms = Date.now() - start;
if (problems.length > 0) {
  console.log(`allgather rank ${rank}/${size} FAILED: ${problems.slice(0, 5).join('; ')}`);
  process.exitCode = 1;
} else if (failed.length > 0) {
  console.log(`allgather rank ${rank}/${size} FAILED: ranks ${failed.join(', ')} saw mismatches`);
  process.exitCode = 1;
} else {
  console.log(
    `allgather rank ${rank}/${size} ok: ${rounds} rounds, ${received} bytes, ${ms} ms (${comm.library.split(',')[0]}, ${comm.threadLevel})`,
  );
}
