/**
 * What the numbers were measured on: CPU, cores, memory, Node, Python, scipy,
 * numpy, ml-levenberg-marquardt, the compiler, and the commit of the tree.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';

const root = new URL('../', import.meta.url);

/**
 * @returns {{ cpu: string, vector: string|null, cores: number, memoryGiB: number, node: string, python: string|null,
 *   scipy: string|null, numpy: string|null, scipyError: string|null, mllm: string, compiler: string|null, commit: string|null }}
 */
export function describeMachine() {
  const probe = spawnSync('python3', ['-c', 'import sys, scipy, numpy; print(sys.version.split()[0], scipy.__version__, numpy.__version__)'], {
    encoding: 'utf8',
  });
  const [python, scipy, numpy] = probe.status === 0 ? probe.stdout.trim().split(' ') : [null, null, null];
  const scipyError = probe.status === 0 ? null : (probe.error?.message ?? probe.stderr.trim().split('\n').pop() ?? 'python3 failed');
  return {
    cpu: cpus()[0]?.model?.trim() ?? 'unknown CPU',
    vector: vectorExtension(),
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    python,
    scipy,
    numpy,
    scipyError,
    mllm: JSON.parse(readFileSync(new URL('node_modules/ml-levenberg-marquardt/package.json', root), 'utf8')).version,
    compiler: firstLine('g++', ['--version']),
    commit: commitDescription(),
  };
}

/** The widest x86 vector extension /proc/cpuinfo lists (what libmvec's exp runs on). */
function vectorExtension() {
  try {
    const flags = /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1].split(' ') ?? [];
    if (flags.includes('avx512f')) return 'AVX-512';
    if (flags.includes('avx2')) return 'AVX2';
    return null;
  } catch {
    return null;
  }
}

function firstLine(command, args) {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0].trim();
  } catch {
    return null;
  }
}

/** HEAD, marked dirty when the tree has changes (read-only git queries). */
function commitDescription() {
  const cwd = new URL('.', root);
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return dirty ? `${head} + uncommitted changes` : head;
  } catch {
    return null;
  }
}
