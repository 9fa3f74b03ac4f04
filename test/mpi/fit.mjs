// One rank of a distributed fit, for test/mpi-fit.test.ts and bench/mpi.js:
//   mpirun -n 3 node test/mpi/fit.mjs '<json>'
// json: { x, y: .npy paths, model, p0, threads?, checkpoint?: {path, everyIterations, resume},
//         dieAfterPass?: { rank, pass }, strategy?, memoryLimitMb?, single?: true (no MPI) }
// Prints one JSON line per rank on stdout: rank, the parameters' bits (hex),
// nfev, status, peak RSS, and the rank's block range.
import { fit } from '../../dist/index.js';

const spec = JSON.parse(process.argv[2] ?? '{}');
let passes = 0;
const options = {
  model: spec.model ?? 'a*exp(-b*x)+c',
  data: { x: spec.x, y: spec.y },
  p0: spec.p0 ?? { a: 1, b: 0.1, c: 0 },
  threads: spec.threads ?? 1,
  ...(spec.strategy ? { strategy: spec.strategy } : {}),
  ...(spec.memoryLimitMb ? { memoryLimitMb: spec.memoryLimitMb } : {}),
  ...(spec.checkpoint ? { checkpoint: spec.checkpoint } : {}),
  ...(spec.single ? {} : { distributed: 'mpi' }),
  onProgress: (event) => {
    if (event.type !== 'pass') return;
    passes += 1;
    // A rank that dies mid-fit, as if killed: no exception, no cleanup.
    const die = spec.dieAfterPass;
    if (die && passes === die.pass && Number(process.env.OMPI_COMM_WORLD_RANK ?? process.env.PMI_RANK ?? -1) === die.rank) process.kill(process.pid, 'SIGKILL');
  },
};
try {
  const r = await fit(options);
  const d = r.execution.distributed;
  process.stdout.write(
    JSON.stringify({
      rank: d?.rank ?? 0,
      ranks: d?.ranks ?? 1,
      bits: Buffer.from(r.values.buffer, r.values.byteOffset, r.values.byteLength).toString('hex'),
      params: r.params,
      nfev: r.nfev,
      status: r.status,
      strategy: r.execution.strategy,
      blocks: d ? [d.blockStart, d.blockEnd] : null,
      exchangeMs: d?.exchangeMs ?? 0,
      totalMs: r.timing.totalMs,
      resumedFrom: r.checkpoint?.resumedFrom ?? null,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
    }) + '\n',
  );
  process.exit(0);
} catch (error) {
  process.stderr.write(`fit.mjs rank ${process.env.OMPI_COMM_WORLD_RANK ?? process.env.PMI_RANK ?? '?'}: ${error.message}\n`);
  process.exit(1);
}
