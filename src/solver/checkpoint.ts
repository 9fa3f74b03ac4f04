/**
 * Checkpoints: the solver saved to a file as a fit goes, so a fit that is
 * aborted, runs out of its batch allocation or is killed can continue where
 * it was and end with the same bits as if it had never stopped.
 *
 * The file is one buffer, little-endian:
 *
 *   offset 0   8 bytes  magic "NLFITCKP"
 *          8   u32      container version (kFormatVersion)
 *         12   u32      header length H
 *         16   u32      solver state length B
 *         20   u32      FNV-1a 32 of the H + B bytes that follow
 *         24   H bytes  header, UTF-8 JSON (below)
 *     24 + H   B bytes  the solver state (LevenbergMarquardt::serialize,
 *                       with its own version and checksum: lm.cpp)
 *
 * The header says what the state belongs to: { format, formatVersion,
 * nlfitVersion, created, data, options, iteration, nfev, solverBytes }.
 * `data` is the data identity (nPoints, the columns the fit reads and a hash
 * of their values) and `options` the options identity (every option that can
 * change a result bit, as text). Resuming checks both and refuses a file
 * written for other data or options, naming the difference.
 *
 * Identity rules. The data hash covers the float64 values the fit reads (y,
 * sigma, the model's variables, after transform, where and nanPolicy), column
 * by column, block by block (each block of 512 rows digested, then the
 * digests hashed in order, so the ranks of a distributed fit, each holding a
 * range of blocks, compute it together): so the same numbers give the same identity whatever the
 * file format, strategy, threads or chunking, and any changed value changes
 * it. It is computed once per fit, only when first needed (before resuming,
 * or at the first write), so a fit that converges before its first
 * checkpoint pays nothing. In memory it hashes the columns on the calling
 * thread: 19 ms for x and y at 1e7 points (the fit itself: 400 ms, 16
 * passes, on 2 cores). Data that stays in its source is read through once
 * more: 30-40 ms for the same points from two .bin files in the page cache,
 * about 1.5 passes of a streamed fit. A write (about 2 KB, with both
 * flushes) takes 1-2 ms on ext4. The options identity holds the model (its text and the
 * compiled program, which includes fixed values and expr definitions; a
 * JavaScript model's module, export and file hash), the parameter names, p0,
 * bounds, xScale, loss and fScale, ftol, xtol, gtol, maxFev, stepFactor,
 * absoluteSigma, whether sigma is given, transform, where and nanPolicy. It
 * leaves out what never changes the bits (threads, chunkSize, strategy,
 * workflow and goal beyond the tolerances they set, memory options) and the
 * run's own limits (maxIterations, maxTimeMs), so a resumed fit may be given
 * more time.
 *
 * Writes are atomic: the file is written to `<path>.tmp-<pid>`, flushed to
 * disk, renamed over `path`, and the directory is flushed, so a kill at any
 * moment leaves the previous checkpoint intact.
 */
import { open, readFile, rename, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkpointRefused } from '../errors.js';
import type { ColumnSource } from '../data/source.js';
import { loadAddon, type NativeSolver } from '../native.js';
import type { MemoryColumns, NormalizedCheckpoint, NormalizedFit, ProgressEvent } from '../options.js';
import { blockCount, kBlockSize } from '../exec/layout.js';

const kMagic = 'NLFITCKP';
/** 2: the data hash is taken block by block (so that MPI ranks can compute it together). */
export const kFormatVersion = 2;
const kPrefixBytes = 24;
/** Rows read at a time when hashing data that stays in its source. */
const kHashRows = 1 << 18;

/** What fit() reports about checkpoints (FitResult.checkpoint). */
export interface CheckpointReport {
  path: string;
  /** Checkpoints this fit wrote. */
  written: number;
  /** The iteration the fit resumed from, or null when it started fresh. */
  resumedFrom: number | null;
}

/** The data a checkpoint belongs to. */
export interface DataIdentity {
  nPoints: number;
  /** The fit's columns, in hashing order: y, sigma (if given), the model's variables. */
  columns: string[];
  /** 128-bit hash of their values (ValueHash), as hex. */
  hash: string;
}

/** Every option that can change a result bit, as text, in a fixed order. */
export type OptionsIdentity = Record<string, string>;

export interface CheckpointHeader {
  format: 'nlfit-checkpoint';
  formatVersion: number;
  nlfitVersion: string;
  created: string;
  data: DataIdentity;
  options: OptionsIdentity;
  iteration: number;
  nfev: number;
  solverBytes: number;
}

const kPrime = 0x01000193;
const kSeeds = [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344];

/**
 * A 128-bit hash of 32-bit words: four lanes, word i into lane i mod 4, each
 * step lane = rotl(lane ^ word, 15) * kPrime (mod 2^32). For a fixed word a
 * step is a bijection of the lane, and for a fixed lane it is injective in
 * the word, so changing any one word always changes the hash; the rotation
 * carries a change in the high bits (a sign, an exponent) into the low ones,
 * where the multiplication spreads it, so later changes do not cancel it.
 * It detects changed data; it is not meant to resist forgery. Words are read
 * in the host's byte order (little-endian on every platform Node supports
 * for this addon).
 */
export class ValueHash {
  private readonly lanes = Int32Array.from(kSeeds);
  private count = 0;

  update(values: Float64Array | Int32Array): void {
    const words = values instanceof Float64Array ? new Int32Array(values.buffer, values.byteOffset, values.length * 2) : values;
    const lanes = this.lanes;
    let i = 0;
    const n = words.length;
    // Single words until word `count + i` belongs to lane 0.
    for (; i < n && ((this.count + i) & 3) !== 0; i++) step(lanes, (this.count + i) & 3, words[i]!);
    let a = lanes[0]!;
    let b = lanes[1]!;
    let c = lanes[2]!;
    let d = lanes[3]!;
    for (; i + 4 <= n; i += 4) {
      a ^= words[i]!;
      b ^= words[i + 1]!;
      c ^= words[i + 2]!;
      d ^= words[i + 3]!;
      a = Math.imul((a << 15) | (a >>> 17), kPrime);
      b = Math.imul((b << 15) | (b >>> 17), kPrime);
      c = Math.imul((c << 15) | (c >>> 17), kPrime);
      d = Math.imul((d << 15) | (d >>> 17), kPrime);
    }
    lanes[0] = a;
    lanes[1] = b;
    lanes[2] = c;
    lanes[3] = d;
    for (; i < n; i++) step(lanes, (this.count + i) & 3, words[i]!);
    this.count += n;
  }

  /** The four final lanes: each mixed with the word count and its neighbour, and avalanched. */
  final(): Int32Array {
    const out = new Int32Array(4);
    const count = (this.count >>> 0) ^ Math.floor(this.count / 2 ** 32);
    for (let k = 0; k < 4; k++) {
      const next = this.lanes[(k + 1) & 3]!;
      let h = (this.lanes[k]! ^ count ^ kSeeds[k]!) + Math.imul((next << 7) | (next >>> 25), kPrime);
      h ^= h >>> 16;
      h = Math.imul(h, 0x7feb352d);
      h ^= h >>> 15;
      h = Math.imul(h, 0x846ca68b);
      h ^= h >>> 16;
      out[k] = h;
    }
    return out;
  }

  hex(): string {
    return Array.from(this.final(), (h) => (h >>> 0).toString(16).padStart(8, '0')).join('');
  }
}

function step(lanes: Int32Array, lane: number, word: number): void {
  const h = lanes[lane]! ^ word;
  lanes[lane] = Math.imul((h << 15) | (h >>> 17), kPrime);
}

/** The fit's columns in hashing order, as the evaluators name them. */
function columnNames(job: NormalizedFit): string[] {
  return ['y', ...(job.weighted ? ['sigma'] : []), ...job.varNames];
}

/**
 * The identity of the data a fit reads: from the columns in memory, or by
 * reading the source through once (kHashRows rows at a time).
 */
export async function dataIdentity(job: NormalizedFit, memory: MemoryColumns | null, source: ColumnSource | null): Promise<DataIdentity> {
  const digests = await rangeDigests(job, memory, 0, source, 0, blockCount(job.nPoints));
  return identityFromDigests(job, digests);
}

/**
 * Per-block digests of the fit's columns over blocks [blockStart, blockEnd):
 * one Int32Array per column (hashing order), 4 words (ValueHash.final) per
 * block. `memory` holds rows from global row `rowOffset` (a rank's slice), or
 * is null to read the rows from `source`.
 */
export async function rangeDigests(
  job: NormalizedFit,
  memory: MemoryColumns | null,
  rowOffset: number,
  source: ColumnSource | null,
  blockStart: number,
  blockEnd: number,
): Promise<Int32Array[]> {
  const names = columnNames(job);
  const digests = names.map(() => new Int32Array(4 * (blockEnd - blockStart)));
  const digestRows = (arrays: Float64Array[], firstRow: number, count: number): void => {
    // firstRow is a block boundary; every block but the data's last is whole.
    for (let at = 0; at < count; at += kBlockSize) {
      const block = (firstRow + at) / kBlockSize - blockStart;
      const end = Math.min(count, at + kBlockSize);
      arrays.forEach((values, k) => {
        const hash = new ValueHash();
        hash.update(values.subarray(at, end));
        digests[k]!.set(hash.final(), 4 * block);
      });
    }
  };
  const rowStart = blockStart * kBlockSize;
  const rowEnd = Math.min(job.nPoints, blockEnd * kBlockSize);
  if (rowEnd <= rowStart) return digests;
  if (memory) {
    const arrays = [memory.y, ...(memory.sigma ? [memory.sigma] : []), ...memory.vars];
    digestRows(arrays.map((values) => values.subarray(rowStart - rowOffset, rowEnd - rowOffset)), rowStart, rowEnd - rowStart);
  } else {
    const buffers: Record<string, Float64Array> = {};
    for (const name of names) buffers[name] = new Float64Array(Math.min(kHashRows, rowEnd - rowStart));
    for (let start = rowStart; start < rowEnd; start += kHashRows) {
      const count = Math.min(kHashRows, rowEnd - start);
      await source!.read(start, count, buffers);
      digestRows(names.map((name) => buffers[name]!.subarray(0, count)), start, count);
    }
  }
  return digests;
}

/**
 * The identity from every block's digests (all blocks, in order): per column
 * the hash of its block digests, then the hash of the columns'. Block by
 * block, so ranks that each hold a range of blocks compute it together
 * (src/distributed) and get the bits a single process gets.
 */
export function identityFromDigests(job: NormalizedFit, digests: Int32Array[]): DataIdentity {
  const names = columnNames(job);
  const combined = new ValueHash();
  for (const column of digests) {
    const hash = new ValueHash();
    hash.update(column);
    combined.update(hash.final());
  }
  return { nPoints: job.nPoints, columns: names, hash: combined.hex() };
}

/** A number as text that reads back to the same double (-0 and non-finite values included). */
function exact(value: number): string {
  return Object.is(value, -0) ? '-0' : String(value);
}

function list(values: ArrayLike<number> | undefined): string {
  return values === undefined ? 'none' : `[${Array.from(values, exact).join(', ')}]`;
}

/** The options identity of a fit (see the top of this file). */
export function optionsIdentity(job: NormalizedFit): OptionsIdentity {
  const identity: OptionsIdentity = {};
  if (job.model) {
    identity.model = job.model.source;
    const program = new ValueHash();
    program.update(job.model.code);
    program.update(job.model.consts);
    identity.program = program.hex();
  } else {
    const module = job.module!;
    identity.model = module.source;
    identity.module = `${module.kind} ${module.exportName}, params ${module.params.join(', ')}, variables ${module.variables.join(', ')}, ${
      module.jacobianName ? `jacobian ${module.jacobianName}` : `diff ${module.diff}`
    }`;
    identity.moduleFile = moduleFileHash(module.url);
  }
  identity.params = job.paramNames.join(', ');
  identity.p0 = list(job.p0);
  identity.fixed = job.fixed.map(({ name, value }) => `${name} = ${exact(value)}`).join(', ') || 'none';
  identity.expr = Object.entries(job.definitions).map(([name, text]) => `${name} = ${text}`).join(', ') || 'none';
  identity.lower = list(job.solver.lower);
  identity.upper = list(job.solver.upper);
  identity.xScale = job.solver.diag ? list(Array.from(job.solver.diag, (d) => 1 / d)) : 'jac';
  identity.loss = job.loss ? `${job.loss.name}, fScale ${exact(job.loss.fScale)}` : 'linear';
  identity.ftol = exact(job.solver.ftol);
  identity.xtol = exact(job.solver.xtol);
  identity.gtol = exact(job.solver.gtol);
  identity.maxFev = exact(job.solver.maxFev);
  identity.stepFactor = exact(job.solver.factor);
  identity.absoluteSigma = String(job.absoluteSigma);
  identity.weighted = String(job.weighted);
  identity.transform = job.derive.transform ? Object.entries(job.derive.transform).map(([name, text]) => `${name} = ${text}`).join(', ') : 'none';
  identity.where = job.derive.where ?? 'none';
  identity.nanPolicy = job.derive.nanPolicy;
  return identity;
}

/** A JavaScript model's file, hashed (its imports are not followed). */
function moduleFileHash(url: string): string {
  if (!url.startsWith('file:')) return 'not a file';
  const bytes = readFileSync(fileURLToPath(url));
  const hash = new ValueHash();
  const words = new Int32Array(Math.ceil(bytes.length / 4));
  new Uint8Array(words.buffer).set(bytes);
  hash.update(words);
  return `${hash.hex()} (${bytes.length} bytes)`;
}

function fnv1a32(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ bytes[i]!, kPrime);
  return hash >>> 0;
}

let packageVersion: string | undefined;

function nlfitVersion(): string {
  if (packageVersion === undefined) {
    const file = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json');
    packageVersion = (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return packageVersion;
}

/** The file's bytes: prefix, header, solver state. */
export function encodeCheckpoint(header: CheckpointHeader, state: Uint8Array): Uint8Array {
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(kPrefixBytes + headerBytes.length + state.length);
  out.set(new TextEncoder().encode(kMagic), 0);
  out.set(headerBytes, kPrefixBytes);
  out.set(state, kPrefixBytes + headerBytes.length);
  const view = new DataView(out.buffer);
  view.setUint32(8, kFormatVersion, true);
  view.setUint32(12, headerBytes.length, true);
  view.setUint32(16, state.length, true);
  view.setUint32(20, fnv1a32(out.subarray(kPrefixBytes)), true);
  return out;
}

/** Splits a checkpoint file; throws checkpointRefused naming what is wrong. */
export function decodeCheckpoint(path: string, bytes: Uint8Array): { header: CheckpointHeader; state: Uint8Array } {
  const refuse = (why: string): never => {
    throw checkpointRefused(path, why);
  };
  if (bytes.length < kPrefixBytes || new TextDecoder().decode(bytes.subarray(0, 8)) !== kMagic) {
    refuse(`is not an nlfit checkpoint (${bytes.length < kPrefixBytes ? `${bytes.length} bytes` : 'no NLFITCKP magic'})`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== kFormatVersion) refuse(`has format version ${version}; this nlfit reads version ${kFormatVersion}`);
  const headerLength = view.getUint32(12, true);
  const stateLength = view.getUint32(16, true);
  const expected = kPrefixBytes + headerLength + stateLength;
  if (bytes.length !== expected) refuse(`is ${bytes.length < expected ? 'truncated' : 'longer than it says'} (${bytes.length} bytes, expected ${expected})`);
  if (view.getUint32(20, true) !== fnv1a32(bytes.subarray(kPrefixBytes))) refuse('is corrupt (checksum mismatch)');
  let header: CheckpointHeader;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(kPrefixBytes, kPrefixBytes + headerLength))) as CheckpointHeader;
  } catch (error) {
    return refuse(`is corrupt (its header is not JSON: ${(error as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || header.format !== 'nlfit-checkpoint' || header.formatVersion !== kFormatVersion) {
    refuse('has a header that is not an nlfit checkpoint header');
  }
  if (!header.data || !header.options || typeof header.iteration !== 'number' || typeof header.nfev !== 'number' || header.solverBytes !== stateLength) {
    refuse('has an incomplete header');
  }
  return { header, state: bytes.slice(kPrefixBytes + headerLength) };
}

/** Why a checkpoint's data identity is not this fit's, or null when it is. */
function dataDifference(saved: DataIdentity, current: DataIdentity): string | null {
  const describe = (d: DataIdentity) => `hash ${d.hash}, ${d.nPoints} points of ${d.columns.join(', ')}`;
  if (saved.hash === current.hash && saved.nPoints === current.nPoints && String(saved.columns) === String(current.columns)) return null;
  return `was written for other data (${describe(saved)}; this fit's data: ${describe(current)})`;
}

/** The first option that differs, as "name saved vs current", or null. */
function optionsDifference(saved: OptionsIdentity, current: OptionsIdentity): string | null {
  for (const key of new Set([...Object.keys(current), ...Object.keys(saved)])) {
    if (saved[key] !== current[key]) {
      return `was written for other options: ${key} ${saved[key] ?? '(absent)'} vs ${current[key] ?? '(absent)'} in this fit`;
    }
  }
  return null;
}

/** Writes bytes to path atomically: a temporary file, flushed, renamed over path, and the directory flushed. */
export async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const temporary = `${path}.tmp-${process.pid}`;
  try {
    const file = await open(temporary, 'w');
    try {
      await file.writeFile(bytes);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new Error(`nlfit: could not write checkpoint ${path}: ${(error as Error).message}`, { cause: error });
  }
  // The rename is durable once the directory is; some platforms cannot open a directory for this.
  let directory;
  try {
    directory = await open(dirname(path), 'r');
    await directory.sync();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EACCES') throw error;
  } finally {
    await directory?.close();
  }
}

/**
 * One fit's checkpoints: loads the file to resume from (validated), and
 * writes the solver with its header.
 */
export class Checkpointer {
  private written = 0;
  private resumedFrom: number | null = null;
  private data: Promise<DataIdentity> | null = null;
  private readonly options: OptionsIdentity;
  private readonly nParams: number;

  constructor(
    private readonly spec: NormalizedCheckpoint,
    job: NormalizedFit,
    /** Computes the data identity (called at most once, when first needed). */
    private readonly identify: () => Promise<DataIdentity>,
    /** Told after every write. */
    private readonly onWritten: ((event: Extract<ProgressEvent, { type: 'checkpoint' }>) => void) | null = null,
    /** False on the ranks of a distributed fit other than 0: they resume from the same state but never write. */
    private readonly writes = true,
  ) {
    this.options = optionsIdentity(job);
    this.nParams = job.paramNames.length;
  }

  get everyIterations(): number {
    return this.spec.everyIterations;
  }

  /**
   * With resume, the solver state to continue from, checked against this
   * fit's data and options; null when resume is off or the file does not exist.
   */
  async load(): Promise<Uint8Array | null> {
    if (!this.spec.resume) return null;
    const path = this.spec.path;
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new Error(`nlfit: could not read checkpoint ${path}: ${(error as Error).message}`, { cause: error });
    }
    const { header, state } = decodeCheckpoint(path, bytes);
    const optionsWhy = optionsDifference(header.options, this.options);
    if (optionsWhy) throw checkpointRefused(path, optionsWhy);
    const dataWhy = dataDifference(header.data, await this.dataIdentity());
    if (dataWhy) throw checkpointRefused(path, dataWhy);
    let solver: NativeSolver;
    try {
      solver = loadAddon().Solver.restore(state);
    } catch (error) {
      throw checkpointRefused(path, `is corrupt (${(error as Error).message.replace(/^nlfit: /, '')})`, error);
    }
    const restored = solver.state();
    if (restored.iterations !== header.iteration || restored.nfev !== header.nfev || restored.x.length !== this.nParams) {
      throw checkpointRefused(path, `is inconsistent (its header says iteration ${header.iteration}, its solver is at iteration ${restored.iterations})`);
    }
    this.resumedFrom = header.iteration;
    return state;
  }

  /** A state another rank loaded and checked (a distributed fit's rank 0): resume from it here too. */
  adopt(state: Uint8Array): void {
    this.resumedFrom = loadAddon().Solver.restore(state).state().iterations;
  }

  /** Writes the solver's state and header (atomically); nothing on a rank that does not write. */
  async save(solver: NativeSolver): Promise<void> {
    if (!this.writes) return;
    const state = solver.serialize();
    const { iterations, nfev } = solver.state();
    const header: CheckpointHeader = {
      format: 'nlfit-checkpoint',
      formatVersion: kFormatVersion,
      nlfitVersion: nlfitVersion(),
      created: new Date().toISOString(),
      data: await this.dataIdentity(),
      options: this.options,
      iteration: iterations,
      nfev,
      solverBytes: state.length,
    };
    await writeAtomically(this.spec.path, encodeCheckpoint(header, state));
    this.written += 1;
    this.onWritten?.({ type: 'checkpoint', path: this.spec.path, iteration: iterations, nfev, written: this.written });
  }

  report(): CheckpointReport {
    return { path: this.spec.path, written: this.written, resumedFrom: this.resumedFrom };
  }

  private dataIdentity(): Promise<DataIdentity> {
    this.data ??= this.identify();
    return this.data;
  }
}
