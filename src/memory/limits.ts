/**
 * How much memory a fit may use, honouring the container it runs in.
 *
 * A process in a container sees the host's free memory in os.freemem(), not
 * its own limit; the kernel's out-of-memory killer acts on the cgroup's. So the
 * cgroup is read first-hand: cgroup v2 (one `0::/path` line in
 * /proc/self/cgroup; memory.max and memory.current in that directory) or v1
 * (the `memory` controller's line; memory.limit_in_bytes and
 * memory.usage_in_bytes under the memory mount). A limit set on a parent
 * directory binds the children too, so every level from the process's cgroup
 * up to the mount root is read and the one with the least headroom wins.
 *
 *   const { availableBytes, source, detail } = availableMemory({ memoryLimitMb: 512 });
 */
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { join, posix } from 'node:path';
import { invalidRange, invalidType } from '../errors.js';
import { formatBytes, kMiB } from './format.js';

export interface CgroupReading {
  /** The binding limit, bytes. */
  limitBytes: number;
  /** What the cgroup with that limit uses now, bytes (this process and everything else in it). */
  usageBytes: number;
  version: 'v2' | 'v1';
}

export interface CgroupPaths {
  /** Where the cgroup file systems are mounted. Default '/sys/fs/cgroup'. */
  root?: string;
  /** The process's cgroup membership file. Default '/proc/self/cgroup'. */
  procSelfCgroup?: string;
}

/**
 * Limits at or above 2^60 bytes mean "no limit": cgroup v1 writes LONG_MAX
 * rounded down to a page (9223372036854771712), and process.constrainedMemory()
 * reports 2^64 when nothing constrains the process.
 */
const kUnlimitedBytes = 2 ** 60;

function readNumberFile(path: string): number | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
  if (!/^\d+$/.test(text)) return null;
  return Number(text);
}

/** Directories from `root/relative` up to `root` itself, deepest first. */
function ancestry(root: string, relative: string): string[] {
  // The path comes from the kernel; normalise it so it can never leave the mount.
  const parts = posix.normalize(`/${relative}`).split('/').filter((part) => part !== '' && part !== '..');
  const dirs: string[] = [];
  for (let depth = parts.length; depth >= 0; depth--) dirs.push(join(root, ...parts.slice(0, depth)));
  return dirs;
}

/**
 * The level with the least headroom among `dirs`. A level counts only when
 * both its limit and its usage parse and the limit is finite: missing files
 * (a level outside the container's view), 'max' and malformed values do not.
 */
function tightest(dirs: string[], limitFile: string, usageFile: string, version: 'v2' | 'v1'): CgroupReading | null {
  let best: CgroupReading | null = null;
  for (const dir of dirs) {
    const limitBytes = readNumberFile(join(dir, limitFile));
    if (limitBytes === null || limitBytes >= kUnlimitedBytes) continue;
    const usageBytes = readNumberFile(join(dir, usageFile));
    if (usageBytes === null) continue;
    if (best === null || limitBytes - usageBytes < best.limitBytes - best.usageBytes) {
      best = { limitBytes, usageBytes, version };
    }
  }
  return best;
}

/**
 * The memory limit of this process's cgroup, or null when there is none (or
 * it cannot be read). Never throws: files that are missing, unreadable or
 * malformed read as "no limit". A v2 limit wins over a v1 one when both
 * hierarchies are mounted (hybrid systems keep the memory controller on one).
 */
export function readCgroupLimit({ root = '/sys/fs/cgroup', procSelfCgroup = '/proc/self/cgroup' }: CgroupPaths = {}): CgroupReading | null {
  let membership: string;
  try {
    membership = readFileSync(procSelfCgroup, 'utf8');
  } catch {
    return null;
  }
  let v2Path: string | null = null;
  let v1Path: string | null = null;
  for (const line of membership.split('\n')) {
    // hierarchy-ID:controller-list:cgroup-path (the path may itself hold ':').
    const match = /^(\d+):([^:]*):(\/.*)$/.exec(line.trim());
    if (!match) continue;
    const controllers = match[2]!;
    if (match[1] === '0' && controllers === '') v2Path = match[3]!;
    else if (controllers.split(',').includes('memory')) v1Path = match[3]!;
  }
  if (v2Path !== null) {
    const reading = tightest(ancestry(root, v2Path), 'memory.max', 'memory.current', 'v2');
    if (reading) return reading;
  }
  if (v1Path !== null) {
    return tightest(ancestry(join(root, 'memory'), v1Path), 'memory.limit_in_bytes', 'memory.usage_in_bytes', 'v1');
  }
  return null;
}

export type MemorySource = 'memoryLimitMb' | 'cgroup-v2' | 'cgroup-v1' | 'constrainedMemory' | 'free';

/**
 * What the machine looks like. Every field defaults to a reading of the real
 * machine; tests pass them so the answer is deterministic.
 */
export interface MemoryEnvironment {
  /** The cgroup reading; null for none. Default readCgroupLimit(). */
  cgroup?: CgroupReading | null;
  /** process.constrainedMemory(): 0 or >= 2^60 mean unconstrained. Default: the real call (0 where Node lacks it). */
  constrainedMemory?: number;
  /** Free memory, bytes. Default os.freemem(). */
  freeBytes?: number;
  /** This process's resident set, bytes. Default process.memoryUsage.rss(). */
  rssBytes?: number;
}

export interface AvailableMemoryOptions extends MemoryEnvironment {
  /** The user's budget: megabytes (2^20 bytes) the fit may use above the process's current footprint. */
  memoryLimitMb?: number;
}

export interface AvailableMemory {
  /** Bytes the fit may add to the process's footprint. */
  availableBytes: number;
  /** The binding source: the smallest of those that apply. */
  source: MemorySource;
  /** How the number was found, for messages and logs. */
  detail: string;
}

/** Checks a memoryLimitMb value: a finite number > 0. */
function checkMemoryLimitMb(value: unknown): number {
  if (typeof value !== 'number') throw invalidType('memoryLimitMb', 'finite number > 0', value);
  if (!Number.isFinite(value) || value <= 0) throw invalidRange('memoryLimitMb', 'finite number > 0', value);
  return value;
}

function processConstrainedMemory(): number {
  const call = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory;
  return typeof call === 'function' ? (call.call(process) ?? 0) : 0;
}

/**
 * Bytes this process may still add, from every source that applies: the
 * user's memoryLimitMb, the cgroup's headroom (limit - usage), the headroom
 * under process.constrainedMemory() (limit - rss) and the machine's free
 * memory. The smallest wins and names the source; on a tie the earlier in that
 * list is named. Throws RangeError/TypeError for a bad memoryLimitMb.
 */
export function availableMemory(options: AvailableMemoryOptions = {}): AvailableMemory {
  const candidates: AvailableMemory[] = [];
  if (options.memoryLimitMb !== undefined) {
    const limitMb = checkMemoryLimitMb(options.memoryLimitMb);
    const bytes = Math.floor(limitMb * kMiB);
    candidates.push({ availableBytes: bytes, source: 'memoryLimitMb', detail: `memoryLimitMb ${limitMb}: ${formatBytes(bytes)} above the current footprint` });
  }
  const cgroup = options.cgroup === undefined ? readCgroupLimit() : options.cgroup;
  if (cgroup) {
    const headroom = Math.max(0, cgroup.limitBytes - cgroup.usageBytes);
    candidates.push({
      availableBytes: headroom,
      source: cgroup.version === 'v2' ? 'cgroup-v2' : 'cgroup-v1',
      detail: `cgroup ${cgroup.version} limit ${formatBytes(cgroup.limitBytes)}, ${formatBytes(cgroup.usageBytes)} in use: ${formatBytes(headroom)} headroom`,
    });
  }
  const constrained = options.constrainedMemory ?? processConstrainedMemory();
  if (Number.isFinite(constrained) && constrained > 0 && constrained < kUnlimitedBytes) {
    const rss = options.rssBytes ?? process.memoryUsage.rss();
    const headroom = Math.max(0, constrained - rss);
    candidates.push({
      availableBytes: headroom,
      source: 'constrainedMemory',
      detail: `process.constrainedMemory() ${formatBytes(constrained)}, rss ${formatBytes(rss)}: ${formatBytes(headroom)} headroom`,
    });
  }
  const free = options.freeBytes ?? freemem();
  candidates.push({ availableBytes: free, source: 'free', detail: `os.freemem() ${formatBytes(free)}` });
  return candidates.reduce((best, next) => (next.availableBytes < best.availableBytes ? next : best));
}
