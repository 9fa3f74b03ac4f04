#!/usr/bin/env node
/**
 * Issue 9 acceptance: one fit across MPI ranks against the same fit in one
 * process, on a generated .npy pair (x, y; float64), each run its own mpirun.
 *
 *   npm run bench:mpi                                  # 5e7 points (800 MB), 1 thread per rank, -n 2 and -n 3
 *   node bench/mpi.js --points 1e7 --ranks 2,3,4 --threads 1 --kill
 *
 * Prints markdown: per run the wall time, every rank's bits (equal to the
 * single process's or not), each rank's peak RSS next to its share of the
 * data bytes. With --kill it also SIGKILLs rank 1 of a 3-rank run mid-fit
 * (after its first checkpoint) from outside, times how long mpirun takes to
 * end the job and shows its message, then resumes from the checkpoint on 2
 * ranks and compares the bits. Exit code 1 when any comparison fails.
 * Needs mpirun and the MPI addon (build/Release/nlfit_mpi.node; docs/hpc.md).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeNpyFile } from '../dist/cli/npy.js';
import { synthetic } from '../dist/data/synthetic.js';
import { mpiAvailable } from '../dist/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const script = join(root, 'test', 'mpi', 'fit.mjs');

function parse(argv) {
  const options = { points: 5e7, ranks: [2, 3], threads: 1, kill: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--points') options.points = Number(value), i++;
    else if (flag === '--ranks') options.ranks = value.split(',').map(Number), i++;
    else if (flag === '--threads') options.threads = Number(value), i++;
    else if (flag === '--kill') options.kill = true;
    else {
      console.error('Usage: node bench/mpi.js [--points 5e7] [--ranks 2,3] [--threads 1] [--kill]');
      process.exit(2);
    }
  }
  if (!(Number.isInteger(options.points) && options.points > 0)) throw new Error('--points: a positive integer');
  return options;
}

const mpiEnv = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_rmaps_base_oversubscribe: '1' };
const openMpi = /Open MPI/i.test(spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).stdout ?? '');

function mpirunArgs(n, spec) {
  return ['-n', String(n), ...(openMpi ? ['--oversubscribe', '--bind-to', 'none'] : []), process.execPath, script, JSON.stringify(spec)];
}

function lines(stdout) {
  return stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).sort((a, b) => a.rank - b.rank);
}

function runSync(n, spec) {
  const started = performance.now();
  const child = n === 0
    ? spawnSync(process.execPath, [script, JSON.stringify({ ...spec, single: true })], { encoding: 'utf8', maxBuffer: 1 << 24 })
    : spawnSync('mpirun', mpirunArgs(n, spec), { encoding: 'utf8', env: mpiEnv, maxBuffer: 1 << 24 });
  return { status: child.status, ranks: lines(child.stdout), stderr: child.stderr, wallMs: performance.now() - started };
}

const mb = (bytes) => (bytes / 2 ** 20).toFixed(0);

async function main() {
  const options = parse(process.argv.slice(2));
  const available = mpiAvailable();
  if (!available.available) {
    console.error(`bench/mpi.js: ${available.reason}`);
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), 'nlfit-bench-mpi-'));
  let failed = false;
  try {
    const n = options.points;
    const started = performance.now();
    const { x, y } = synthetic(n, (t) => 3 * Math.exp(-0.7 * t) + 0.5, { x0: 0, x1: 10, noise: 0.02, seed: 42 });
    const files = { x: join(dir, 'x.npy'), y: join(dir, 'y.npy') };
    await writeNpyFile(files.x, x, [n]);
    await writeNpyFile(files.y, y, [n]);
    const dataBytes = statSync(files.x).size + statSync(files.y).size;
    console.log(`# nlfit across MPI ranks: ${n.toExponential(1)} points of a*exp(-b*x)+c, x and y as .npy (${mb(dataBytes)} MiB)\n`);
    console.log(`Generated in ${((performance.now() - started) / 1000).toFixed(1)} s; ${options.threads} thread(s) per rank; mpirun: ${spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]}\n`);
    const spec = { ...files, threads: options.threads };
    const single = runSync(0, spec);
    if (single.status !== 0) throw new Error(`the single-process fit failed: ${single.stderr}`);
    const reference = single.ranks[0];
    console.log('| run | wall | fit (rank 0) | exchanges (rank 0) | bits equal | nfev | peak RSS per rank | data bytes per rank |');
    console.log('|---|---:|---:|---:|---|---:|---|---|');
    console.log(`| 1 process | ${(single.wallMs / 1000).toFixed(2)} s | ${(reference.totalMs / 1000).toFixed(2)} s | - | (reference) | ${reference.nfev} | ${reference.peakRssMb.toFixed(0)} MiB | ${mb(dataBytes)} MiB |`);
    for (const ranks of options.ranks) {
      const run = runSync(ranks, spec);
      const equal = run.status === 0 && run.ranks.length === ranks && run.ranks.every((r) => r.bits === reference.bits && r.nfev === reference.nfev);
      failed ||= !equal;
      const rss = run.ranks.map((r) => r.peakRssMb.toFixed(0)).join(' / ');
      const share = run.ranks.map((r) => mb(((r.blocks[1] - r.blocks[0]) * 512 * 16))).join(' / ');
      console.log(`| mpirun -n ${ranks} | ${(run.wallMs / 1000).toFixed(2)} s | ${run.ranks[0] ? (run.ranks[0].totalMs / 1000).toFixed(2) : '-'} s | ${run.ranks[0] ? run.ranks[0].exchangeMs.toFixed(0) : '-'} ms | ${equal ? 'yes, every rank' : `NO (exit ${run.status}) ${run.stderr.slice(0, 300)}`} | ${run.ranks[0]?.nfev ?? '-'} | ${rss} MiB | ${share} MiB |`);
    }
    console.log(`\nParameters: ${JSON.stringify(reference.params)} (bits ${reference.bits})`);

    if (options.kill) {
      console.log('\n## Killing rank 1 of 3 mid-fit, then resuming on 2 ranks\n');
      const checkpoint = join(dir, 'fit.ckpt');
      const child = spawn('mpirun', mpirunArgs(3, { ...spec, checkpoint: { path: checkpoint, everyIterations: 1 } }), { env: mpiEnv });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      child.stdout.resume();
      const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, at: performance.now() })));
      // Wait for the first checkpoint, then kill rank 1 (found by its environment) from outside.
      const deadline = performance.now() + 600_000;
      while (!existsSync(checkpoint) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const pids = spawnSync('pgrep', ['-f', 'test/mpi/fit.mjs'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
      const rank1 = pids.find((pid) => {
        try {
          return /(^|\0)OMPI_COMM_WORLD_RANK=1(\0|$)/.test(readEnviron(pid));
        } catch {
          return false;
        }
      });
      if (rank1 === undefined) throw new Error('could not find rank 1 to kill');
      const killedAt = performance.now();
      process.kill(rank1, 'SIGKILL');
      const end = await exited;
      const seconds = (end.at - killedAt) / 1000;
      failed ||= !(seconds < 10) || end.code === 0;
      console.log(`SIGKILL to rank 1 (pid ${rank1}); mpirun exited with code ${end.code} after ${seconds.toFixed(2)} s${seconds < 10 ? '' : ' (over 10 s: FAIL)'}. Its message:\n`);
      console.log('```\n' + stderr.trim().split('\n').filter((l) => !/^-+$/.test(l)).join('\n') + '\n```\n');
      const resumed = runSync(2, { ...spec, checkpoint: { path: checkpoint, resume: true } });
      const equal = resumed.status === 0 && resumed.ranks.every((r) => r.bits === reference.bits && r.nfev === reference.nfev);
      failed ||= !equal;
      console.log(`Resumed on 2 ranks from iteration ${resumed.ranks[0]?.resumedFrom}: bits ${equal ? 'equal to the uninterrupted single process on every rank' : `DIFFERENT (exit ${resumed.status}) ${resumed.stderr.slice(0, 300)}`}, nfev ${resumed.ranks[0]?.nfev}.`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\n${failed ? 'FAIL' : 'PASS'}`);
  process.exit(failed ? 1 : 0);
}

function readEnviron(pid) {
  return spawnSync('cat', [`/proc/${pid}/environ`], { encoding: 'latin1' }).stdout;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
