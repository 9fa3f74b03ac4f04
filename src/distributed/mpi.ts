/**
 * The MPI transport: a Communicator over the optional second addon,
 * build/Release/nlfit_mpi.node (native/mpi/transport.cpp).
 *
 * Design (decided):
 * - MPI lives in its own addon, built by both build paths (binding.gyp and
 *   CMakeLists.txt) only when MPI is found (native/build-flags.cjs; env
 *   NLFIT_MPI=0 never, =1 required). The main addon never links libmpi:
 *   worker threads load it and must never load MPI, and a machine without
 *   MPI loads it all the same.
 * - This module loads the MPI addon lazily, on the main thread only, when
 *   mpiAvailable() or mpiCommunicator() is called: importing nlfit never loads
 *   libmpi.
 * - MPI runs at MPI_THREAD_FUNNELED: only the main thread calls it. The
 *   all-gather is non-blocking (MPI_Iallgather of the lengths, then
 *   MPI_Iallgatherv of the bytes) and is polled from the event loop: a few
 *   setImmediate polls, then setTimeout with a backoff to 2 ms, so the main
 *   thread stays free and an idle rank does not burn a core.
 * - MPI is finalised at process exit when the exit is clean (code 0) and no
 *   all-gather is in flight or failed midway. Otherwise MPI_Finalize could
 *   wait for ranks that will never come (Open MPI's waits for every rank), so
 *   it is skipped and mpirun, seeing a rank end without it, ends the job.
 *
 * NLFIT_MPI_ADDON=/path/to/nlfit_mpi.node overrides where the addon is looked
 * for (like NLFIT_ADDON for the main addon). NLFIT_MPI_ROUND_BYTES (tests) caps
 * the bytes one MPI_Iallgatherv moves, to exercise the rounds that carry
 * totals over MPI's 2 GiB int counts.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { invalidType, withCode } from '../errors.js';
import type { Communicator } from './communicator.js';

/** What init() reports (native/mpi/transport.cpp). */
export interface MpiInfo {
  rank: number;
  size: number;
  /** MPI_Get_library_version, trimmed: "Open MPI v4.1.4, ...", "MPICH Version: ...". */
  library: string;
  /** The thread level MPI provides: 'MPI_THREAD_FUNNELED' or higher. */
  threadLevel: string;
  /** The libmpi made global before MPI_Init (or why it was not). */
  libmpi: string;
}

interface NativeExchange {
  /** Starts the all-gather of `bytes` (copied); roundBytes caps one MPI_Iallgatherv (tests). */
  start(bytes: Uint8Array, roundBytes?: number): void;
  /** null while in flight; then every rank's bytes, indexed by rank (copies). */
  test(): Uint8Array[] | null;
  readonly pending: boolean;
}

interface NativeMpi {
  /** MPI_Init_thread(FUNNELED) on first call; idempotent. */
  init(): MpiInfo;
  /** MPI_Finalize; false (and not finalised) while an exchange is in flight or after one failed. */
  finalize(): boolean;
  /** MPI_Abort(MPI_COMM_WORLD, code). */
  abort(code: number): never;
  Exchange: new () => NativeExchange;
}

/** The MPI transport, with what MPI said about itself. */
export interface MpiCommunicator extends Communicator {
  readonly kind: 'mpi';
  /** MPI_Get_library_version. */
  readonly library: string;
  readonly threadLevel: string;
}

export type MpiAvailability = { available: true } | { available: false; reason: string };

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const enableHint =
  'To enable it, install Open MPI or MPICH with its development files (e.g. `apt install libopenmpi-dev openmpi-bin`), ' +
  'then run `npm rebuild nlfit` or `NLFIT_MPI=1 npm run build:native` (with cmake-js: `npm run build:cmake`).';

/** Where the MPI addon is looked for, in order (NLFIT_MPI_ADDON overrides). */
export function mpiAddonCandidates(): string[] {
  const fromEnv = process.env.NLFIT_MPI_ADDON;
  if (fromEnv) return [fromEnv];
  return [join(packageRoot, 'build', 'Release', 'nlfit_mpi.node'), join(packageRoot, 'build', 'Debug', 'nlfit_mpi.node')];
}

let nativeMpi: NativeMpi | undefined;

/** The MPI addon, loaded on first use, or why it cannot be. */
function loadNative(): { addon: NativeMpi } | { reason: string } {
  if (nativeMpi) return { addon: nativeMpi };
  if (!isMainThread) {
    return {
      reason:
        'the MPI transport can only be used on the main thread (MPI runs at MPI_THREAD_FUNNELED; worker threads never load MPI)',
    };
  }
  const candidates = mpiAddonCandidates();
  const path = candidates.find((candidate) => existsSync(candidate));
  if (!path) {
    return { reason: `the MPI transport (nlfit_mpi.node) is not built (not found at ${candidates.join(' or ')}). ${enableHint}` };
  }
  try {
    nativeMpi = createRequire(import.meta.url)(path) as NativeMpi;
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    return {
      reason: `the MPI transport (${path}) failed to load: ${detail}. Rebuild it against the MPI installed here: \`npm rebuild nlfit\` or \`NLFIT_MPI=1 npm run build:native\`.`,
    };
  }
  return { addon: nativeMpi };
}

/**
 * Whether the MPI transport can be used in this process: its addon was built
 * (MPI was found when nlfit was installed) and loads. Does not start MPI.
 */
export function mpiAvailable(): MpiAvailability {
  const native = loadNative();
  return 'addon' in native ? { available: true } : { available: false, reason: native.reason };
}

// Polling an in-flight all-gather: this many setImmediate turns first (a
// small exchange between ranks on one node completes within a few), then
// setTimeout with the delay growing to kMaxPollDelayMs.
const kImmediatePolls = 16;
const kMaxPollDelayMs = 2;

function roundBytesFromEnv(): number | undefined {
  const raw = process.env.NLFIT_MPI_ROUND_BYTES;
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw invalidType('NLFIT_MPI_ROUND_BYTES', 'positive integer', raw);
  return value;
}

class Mpi implements MpiCommunicator {
  readonly kind = 'mpi' as const;
  readonly rank: number;
  readonly size: number;
  readonly library: string;
  readonly threadLevel: string;
  private readonly exchange: NativeExchange;
  private tail: Promise<unknown> = Promise.resolve();
  /** allgather calls made and not yet settled. */
  private outstanding = 0;
  private failure: Error | undefined;

  constructor(
    private readonly native: NativeMpi,
    info: MpiInfo,
    private readonly roundBytes: number | undefined,
  ) {
    this.rank = info.rank;
    this.size = info.size;
    this.library = info.library;
    this.threadLevel = info.threadLevel;
    this.exchange = new native.Exchange();
  }

  allgather(bytes: Uint8Array): Promise<Uint8Array[]> {
    if (!(bytes instanceof Uint8Array)) return Promise.reject(invalidType('bytes', 'Uint8Array', bytes));
    // Calls run one after another, in call order (the collective order every
    // rank follows). A call with none before it starts now (the addon copies
    // the bytes); one made while another is in flight keeps a copy until its
    // turn. Either way the caller may reuse its array at once.
    let run: Promise<Uint8Array[]>;
    if (this.outstanding === 0) run = this.gather(bytes);
    else {
      const own = bytes.slice();
      run = this.tail.then(() => this.gather(own));
    }
    this.outstanding++;
    const settled = () => {
      this.outstanding--;
    };
    this.tail = run.then(settled, settled);
    return run;
  }

  abort(exitCode: number): never {
    this.native.abort(Number.isInteger(exitCode) ? exitCode : 1);
    throw new Error('unreachable: MPI_Abort returned');
  }

  private gather(bytes: Uint8Array): Promise<Uint8Array[]> {
    return new Promise<Uint8Array[]>((resolve, reject) => {
      if (this.failure) {
        reject(new Error(`nlfit: the MPI transport failed earlier and cannot be used again: ${this.failure.message}`, { cause: this.failure }));
        return;
      }
      let polls = 0;
      const done = (error: unknown, result?: Uint8Array[]) => {
        if (error !== undefined) {
          // The ranks no longer agree on where they are: the others may wait
          // for this rank for ever. The caller should end the job
          // (communicator.abort) if it cannot tell them.
          this.failure = error instanceof Error ? error : new Error(String(error));
          reject(error);
        } else resolve(result!);
      };
      const poll = () => {
        let result: Uint8Array[] | null;
        try {
          result = this.exchange.test();
        } catch (error) {
          done(error);
          return;
        }
        if (result !== null) {
          done(undefined, result);
          return;
        }
        polls++;
        if (polls < kImmediatePolls) setImmediate(poll);
        else setTimeout(poll, Math.min(kMaxPollDelayMs, 1 + Math.floor((polls - kImmediatePolls) / 32)));
      };
      try {
        this.exchange.start(bytes, this.roundBytes);
      } catch (error) {
        done(error);
        return;
      }
      poll();
    });
  }
}

let singleton: Mpi | undefined;

/**
 * The MPI transport for this process (one per process): the first call
 * initialises MPI (MPI_Init_thread, MPI_THREAD_FUNNELED) and arranges for
 * MPI_Finalize at exit. Run the program under mpirun (or srun). Throws an
 * Error with code ERR_NLFIT_OPTION, saying how to enable it, when the MPI
 * addon was not built or cannot load, or when called on a worker thread.
 */
export function mpiCommunicator(): MpiCommunicator {
  if (singleton) return singleton;
  const native = loadNative();
  if (!('addon' in native)) throw withCode(new Error(`nlfit: ${native.reason}`), 'ERR_NLFIT_OPTION');
  const roundBytes = roundBytesFromEnv();
  const info = native.addon.init();
  const addon = native.addon;
  process.once('exit', (code) => {
    // Only a clean exit finalises: Open MPI's MPI_Finalize waits for every
    // rank (a fence), so a rank failing while the others wait in an
    // allgather would hang there for ever. Exiting without MPI_Finalize with
    // a non-zero code makes mpirun end the whole job instead.
    if (code !== 0) return;
    try {
      if (!addon.finalize()) {
        process.stderr.write(
          'nlfit: exiting with an MPI all-gather in flight or failed: MPI is not finalized, so mpirun ends the job\n',
        );
      }
    } catch (error) {
      process.stderr.write(`nlfit: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  });
  singleton = new Mpi(addon, info, roundBytes);
  return singleton;
}
