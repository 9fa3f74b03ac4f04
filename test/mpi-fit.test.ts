// A fit across MPI ranks (issue 9) under a real mpirun: 2 and 3 ranks give
// the single process's bits; a rank killed mid-fit ends the job with a
// message naming it; the checkpoint then resumes with another rank count to
// the same bits. Skipped, saying why, where MPI or the MPI addon is missing
// (test/mpi/run.sh installs Open MPI in CI and rebuilds the addon first).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { mpiAvailable } from '../dist/index.js';
import { synthetic } from '../dist/data/synthetic.js';
import { writeNpyFile } from '../dist/cli/npy.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const script = join(root, 'test', 'mpi', 'fit.mjs');
const mpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
const availability = mpiAvailable();
const skip = mpirun.status !== 0 ? 'mpirun is not installed' : !availability.available ? availability.reason : null;
if (skip && process.env.NLFIT_MPI_TESTS_REQUIRED === '1') throw new Error(`test/mpi-fit.test.ts: MPI is required here (NLFIT_MPI_TESTS_REQUIRED=1) but ${skip}`);
if (skip) console.warn(`test/mpi-fit.test.ts skipped: ${skip}`);
const openMpi = /Open MPI/i.test(mpirun.stdout ?? '');

const dir = mkdtempSync(join(tmpdir(), 'nlfit-mpi-fit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A float64 .npy file in the test folder (the CLI's writer). */
async function npy(name: string, values: Float64Array, shape: number[] = [values.length]): Promise<string> {
  const path = join(dir, name);
  await writeNpyFile(path, values, shape);
  return path;
}

interface RankLine {
  rank: number;
  ranks: number;
  bits: string;
  nfev: number;
  status: string;
  blocks: [number, number] | null;
  resumedFrom: number | null;
}

/** Runs fit.mjs on n ranks (or alone with n = 0): exit status, the ranks' lines by rank, stderr, wall time. */
function run(n: number, spec: Record<string, unknown>): { status: number | null; lines: RankLine[]; stderr: string; ms: number } {
  const args = n === 0 ? [script, JSON.stringify({ ...spec, single: true })] : ['-n', String(n), ...(openMpi ? ['--oversubscribe'] : []), process.execPath, script, JSON.stringify(spec)];
  const started = performance.now();
  const child = spawnSync(n === 0 ? process.execPath : 'mpirun', args, {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_rmaps_base_oversubscribe: '1' },
  });
  const lines = child.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as RankLine)
    .sort((a, b) => a.rank - b.rank);
  return { status: child.status, lines, stderr: child.stderr, ms: performance.now() - started };
}

const data = synthetic(300_000, (x) => 2.5 * Math.exp(-0.4 * x) + 0.3, { x0: 0, x1: 12, noise: 0.01, seed: 5 });
const files = skip ? null : { x: await npy('x.npy', data.x), y: await npy('y.npy', data.y) };

describe.skipIf(skip !== null)('a fit across MPI ranks', () => {
  it('mpirun -n 2 and -n 3 give the bits of one process, on every rank; each rank reads its slice', () => {
    const single = run(0, { ...files });
    expect(single.status, single.stderr).toBe(0);
    const expected = single.lines[0]!;
    for (const n of [2, 3]) {
      const result = run(n, { ...files });
      expect(result.status, result.stderr).toBe(0);
      expect(result.lines.map((l) => l.rank)).toEqual(Array.from({ length: n }, (_, k) => k));
      for (const line of result.lines) {
        expect(line.bits, `rank ${line.rank} of ${n}`).toBe(expected.bits);
        expect(line.nfev).toBe(expected.nfev);
        expect(line.ranks).toBe(n);
      }
      // The ranks' block ranges tile the data in rank order.
      expect(result.lines[0]!.blocks![0]).toBe(0);
      for (let k = 1; k < n; k++) expect(result.lines[k]!.blocks![0]).toBe(result.lines[k - 1]!.blocks![1]);
      expect(result.lines[n - 1]!.blocks![1]).toBe(Math.ceil(300_000 / 512));
    }
  }, 240_000);

  it('a rank killed mid-fit ends the job promptly with a message naming it; the checkpoint resumes on another rank count to the same bits', () => {
    const checkpoint = join(dir, 'killed.ckpt');
    const single = run(0, { ...files });
    const killed = run(3, { ...files, checkpoint: { path: checkpoint, everyIterations: 1 }, dieAfterPass: { rank: 1, pass: 3 } });
    expect(killed.status).not.toBe(0);
    expect(killed.lines).toHaveLength(0);
    if (openMpi) expect(killed.stderr).toMatch(/rank 1 .*(signal 9|Killed)/s);
    expect(existsSync(checkpoint)).toBe(true);
    const resumed = run(2, { ...files, checkpoint: { path: checkpoint, resume: true } });
    expect(resumed.status, resumed.stderr).toBe(0);
    for (const line of resumed.lines) {
      expect(line.resumedFrom).toBeGreaterThanOrEqual(1);
      expect(line.bits).toBe(single.lines[0]!.bits);
      expect(line.nfev).toBe(single.lines[0]!.nfev);
    }
  }, 240_000);

  it('nlfit fit --mpi: rank 0 prints the result, the others print nothing', () => {
    const cli = join(root, 'dist', 'cli', 'main.js');
    const child = spawnSync(
      'mpirun',
      ['-n', '2', ...(openMpi ? ['--oversubscribe'] : []), process.execPath, cli, 'fit', `x=${files!.x}`, `y=${files!.y}`, '--model', 'a*exp(-b*x)+c', '--p0', 'a=1,b=0.1,c=0', '--threads', '1', '--mpi', '--json'],
      { encoding: 'utf8', timeout: 120_000, env: { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' } },
    );
    expect(child.status, child.stderr).toBe(0);
    const json = JSON.parse(child.stdout);
    expect(json.execution.distributed).toMatchObject({ transport: 'mpi', rank: 0, ranks: 2 });
    const single = run(0, { ...files });
    expect(Buffer.from(Float64Array.from(Object.values(json.params) as number[]).buffer).toString('hex')).toBe(single.lines[0]!.bits);
  }, 240_000);

  it('nlfit batch --mpi: the ranks split the curves, rank 0 writes every curve in order, the same bits as one process', async () => {
    const n = 30;
    const m = 2001;
    const x = Float64Array.from({ length: n }, (_, i) => i / 3);
    const y = new Float64Array(m * n);
    for (let c = 0; c < m; c++) for (let i = 0; i < n; i++) y[c * n + i] = (1 + (c % 11)) * Math.exp(-(0.2 + (c % 5) * 0.1) * x[i]!) + 0.01 * Math.cos(7 * c + i);
    const xPath = await npy('bx.npy', x);
    const yPath = await npy('by.npy', y, [m, n]);
    const cli = join(root, 'dist', 'cli', 'main.js');
    const common = ['batch', yPath, '--x', xPath, '--model', 'a*exp(-b*x)', '--p0', 'a=1,b=0.5', '--threads', '1', '--json'];
    const single = spawnSync(process.execPath, [cli, ...common, '--out', join(dir, 'one')], { encoding: 'utf8' });
    expect(single.status, single.stderr).toBe(0);
    const child = spawnSync('mpirun', ['-n', '3', ...(openMpi ? ['--oversubscribe'] : []), process.execPath, cli, ...common, '--out', join(dir, 'many'), '--mpi'], {
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' },
    });
    expect(child.status, child.stderr).toBe(0);
    // One JSON document: rank 0's.
    const summary = JSON.parse(child.stdout);
    expect(summary.curves).toEqual({ total: m, start: 0, end: m, fitted: m });
    expect(summary.mpi).toEqual({ ranks: 3 });
    for (const key of ['params', 'stderr', 'chi2', 'nfev', 'status']) {
      expect(readFileSync(join(dir, `many.${key}.npy`)).equals(readFileSync(join(dir, `one.${key}.npy`))), key).toBe(true);
    }
  }, 240_000);
});
