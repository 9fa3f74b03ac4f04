/**
 * What a batch node gives this process: CPUs and memory. A job scheduler
 * (Slurm, PBS) or a container confines a process in several ways at once, and
 * the machine-wide numbers (os.cpus(), os.totalmem()) describe none of them:
 *
 *   CPUs    the scheduling affinity (taskset, Slurm's cpuset: Node's
 *           os.availableParallelism() reflects it), the CFS quota of the
 *           cgroup (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us, at
 *           every level from the process's cgroup up to the root), and
 *           SLURM_CPUS_PER_TASK. The smallest wins. A fractional quota is
 *           rounded down (at least 1): the passes wait for their slowest
 *           thread, and a thread throttled by the quota is that thread.
 *   memory  Slurm's request (SLURM_MEM_PER_NODE, or SLURM_MEM_PER_CPU times
 *           the task's CPUs, in MB) when the job runs under Slurm, less what
 *           the process already holds; otherwise the library's own detection
 *           (cgroup limit, process.constrainedMemory(), free memory), which
 *           still applies under Slurm and binds when it is tighter.
 *
 * Every input is injectable for tests (file roots, environment, affinity).
 *
 *   const cpus = detectCpus();            // { cpus: 4, source: 'cgroup-v2', detail: 'cpu.max 400000 100000 in /sys/fs/cgroup/...' }
 *   const memory = detectMemory(cpus.cpus); // { memoryLimitMb: 7936, source: 'SLURM_MEM_PER_NODE', detail: ... } or memoryLimitMb null
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, posix } from 'node:path';

export interface ResourceEnvironment {
  /** Where the cgroup file systems are mounted. Default '/sys/fs/cgroup'. */
  cgroupRoot?: string;
  /** The process's cgroup membership file. Default '/proc/self/cgroup'. */
  procSelfCgroup?: string;
  /** Default process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** CPUs the scheduler lets this process run on. Default os.availableParallelism(). */
  affinityCpus?: number;
  /** This process's resident set, bytes. Default process.memoryUsage.rss(). */
  rssBytes?: number;
}

export type CpuSource = 'affinity' | 'cgroup-v2' | 'cgroup-v1' | 'SLURM_CPUS_PER_TASK';

export interface CpuLimit {
  cpus: number;
  source: CpuSource;
  /** How the number was found, for logs and the JSON result. */
  detail: string;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** Directories from root/relative up to root, deepest first; the path never leaves the mount. */
function ancestry(root: string, relative: string): string[] {
  const parts = posix.normalize(`/${relative}`).split('/').filter((part) => part !== '' && part !== '..');
  const dirs: string[] = [];
  for (let depth = parts.length; depth >= 0; depth--) dirs.push(join(root, ...parts.slice(0, depth)));
  return dirs;
}

interface Membership {
  v2: string | null;
  /** v1 hierarchies by controller list ('cpu,cpuacct'), with the path. */
  v1: Array<{ controllers: string[]; path: string }>;
}

function readMembership(file: string): Membership | null {
  const text = readText(file);
  if (text === null) return null;
  const membership: Membership = { v2: null, v1: [] };
  for (const line of text.split('\n')) {
    const match = /^(\d+):([^:]*):(\/.*)$/.exec(line.trim());
    if (!match) continue;
    if (match[1] === '0' && match[2] === '') membership.v2 = match[3]!;
    else membership.v1.push({ controllers: match[2]!.split(','), path: match[3]! });
  }
  return membership;
}

/** CPUs a quota allows: quota / period rounded down, at least 1; null for no quota. */
function quotaCpus(quota: number, period: number): number | null {
  if (!(quota > 0) || !(period > 0)) return null;
  return Math.max(1, Math.floor(quota / period));
}

/** The tightest cgroup CPU quota on the way from the process's cgroup to the root. */
export function readCgroupCpus(env: ResourceEnvironment = {}): CpuLimit | null {
  const root = env.cgroupRoot ?? '/sys/fs/cgroup';
  const membership = readMembership(env.procSelfCgroup ?? '/proc/self/cgroup');
  if (membership === null) return null;
  const tightest = (found: CpuLimit[]): CpuLimit | null =>
    found.reduce<CpuLimit | null>((best, next) => (best === null || next.cpus < best.cpus ? next : best), null);
  const v2: CpuLimit[] = [];
  if (membership.v2 !== null) {
    for (const dir of ancestry(root, membership.v2)) {
      const text = readText(join(dir, 'cpu.max'));
      const match = text === null ? null : /^(max|\d+)\s+(\d+)$/.exec(text);
      const cpus = match && match[1] !== 'max' ? quotaCpus(Number(match[1]), Number(match[2])) : null;
      if (cpus !== null) v2.push({ cpus, source: 'cgroup-v2', detail: `cpu.max '${text}' in ${dir}` });
    }
  }
  if (v2.length > 0) return tightest(v2);
  const cpu = membership.v1.find((h) => h.controllers.includes('cpu'));
  if (!cpu) return null;
  // The hierarchy is mounted under its controller list ('cpu,cpuacct'), usually with a 'cpu' link to it.
  for (const mount of new Set([join(root, cpu.controllers.join(',')), join(root, 'cpu')])) {
    const v1: CpuLimit[] = [];
    for (const dir of ancestry(mount, cpu.path)) {
      const quota = Number(readText(join(dir, 'cpu.cfs_quota_us')) ?? NaN);
      const period = Number(readText(join(dir, 'cpu.cfs_period_us')) ?? NaN);
      const cpus = quotaCpus(quota, period);
      if (cpus !== null) v1.push({ cpus, source: 'cgroup-v1', detail: `cpu.cfs_quota_us ${quota} / cpu.cfs_period_us ${period} in ${dir}` });
    }
    if (v1.length > 0) return tightest(v1);
  }
  return null;
}

/** A positive integer from an environment variable, or null when unset or malformed. */
function envInteger(env: Readonly<Record<string, string | undefined>>, name: string): number | null {
  const text = env[name]?.trim();
  if (text === undefined || !/^\d+$/.test(text)) return null;
  const value = Number(text);
  return value > 0 && Number.isSafeInteger(value) ? value : null;
}

/** CPUs this process may use: the smallest of affinity, cgroup quota and SLURM_CPUS_PER_TASK. */
export function detectCpus(env: ResourceEnvironment = {}): CpuLimit {
  const vars = env.env ?? process.env;
  const affinity = env.affinityCpus ?? availableParallelism();
  let best: CpuLimit = { cpus: affinity, source: 'affinity', detail: `${affinity} CPUs in the scheduling affinity (os.availableParallelism())` };
  const cgroup = readCgroupCpus(env);
  if (cgroup && cgroup.cpus < best.cpus) best = cgroup;
  const slurm = envInteger(vars, 'SLURM_CPUS_PER_TASK');
  if (slurm !== null && slurm < best.cpus) best = { cpus: slurm, source: 'SLURM_CPUS_PER_TASK', detail: `SLURM_CPUS_PER_TASK=${slurm}` };
  return best;
}

export type MemoryDefaultSource = 'SLURM_MEM_PER_NODE' | 'SLURM_MEM_PER_CPU' | 'library';

export interface MemoryDefault {
  /** What to pass as memoryLimitMb; null leaves the budget to the library's detection. */
  memoryLimitMb: number | null;
  source: MemoryDefaultSource;
  detail: string;
}

const kMiB = 2 ** 20;

/**
 * The memory budget under Slurm, as memoryLimitMb (MB above what the process
 * holds now); null outside Slurm, where the library detects the cgroup limit
 * and free memory itself. `cpus` counts for SLURM_MEM_PER_CPU when
 * SLURM_CPUS_PER_TASK is not set.
 */
export function detectMemory(cpus: number, env: ResourceEnvironment = {}): MemoryDefault {
  const vars = env.env ?? process.env;
  const rssMb = (env.rssBytes ?? process.memoryUsage.rss()) / kMiB;
  const perNode = envInteger(vars, 'SLURM_MEM_PER_NODE');
  const perCpu = envInteger(vars, 'SLURM_MEM_PER_CPU');
  const taskCpus = envInteger(vars, 'SLURM_CPUS_PER_TASK') ?? cpus;
  const headroom = (mb: number): number => Math.max(1, Math.floor(mb - rssMb));
  if (perNode !== null) {
    return { memoryLimitMb: headroom(perNode), source: 'SLURM_MEM_PER_NODE', detail: `SLURM_MEM_PER_NODE=${perNode} MB less ${rssMb.toFixed(0)} MB already in use` };
  }
  if (perCpu !== null) {
    return {
      memoryLimitMb: headroom(perCpu * taskCpus),
      source: 'SLURM_MEM_PER_CPU',
      detail: `SLURM_MEM_PER_CPU=${perCpu} MB x ${taskCpus} CPUs less ${rssMb.toFixed(0)} MB already in use`,
    };
  }
  return { memoryLimitMb: null, source: 'library', detail: "the library's detection (cgroup limit, process.constrainedMemory(), free memory)" };
}
