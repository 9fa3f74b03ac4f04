/**
 * One distributed fit's conversation between ranks, on the Communicator's one
 * collective. Every exchange is framed with a status, so a failure on any
 * rank reaches every rank at the next exchange and the job ends everywhere
 * with the same error naming the rank, instead of the others waiting forever:
 *
 * - a rank whose own step fails (a bad slice of the file, a model error, an
 *   abort) calls fail(error): that sends the error in place of the data in
 *   the one all-gather that the other ranks are waiting in, whichever step
 *   it is (every exchange is the same operation), and then ends;
 * - the ranks that receive it throw a DistributedError with the failed rank,
 *   its message and its code (ERR_NLFIT_DATA stays a data error, so the CLI's
 *   exit code is the same on every rank).
 *
 * After close() (the fit's last exchange) no failure is announced: a rank's
 * error past that point is its own (nothing is left to wait for it).
 *
 * A rank that dies outright (killed, out of memory) cannot announce
 * anything; the launcher ends the job then (mpirun does by default; srun with
 * --kill-on-bad-exit=1; docs/hpc.md).
 */
import { withCode, type NlfitErrorCode } from '../errors.js';
import type { Communicator } from './communicator.js';

/** Frame header: 8 bytes, so a Float64Array payload behind it stays aligned. */
const kHeaderBytes = 8;
const kOk = 0;
const kFailed = 1;

/** Another rank failed: its rank, message and code. */
export class DistributedError extends Error {
  readonly rank: number;
  readonly code: NlfitErrorCode | string;
  constructor(rank: number, size: number, remote: { message: string; name?: string; code?: string }) {
    super(`nlfit: rank ${rank} of ${size} failed: ${remote.message.replace(/^nlfit: /, '')}`);
    this.name = 'DistributedError';
    this.rank = rank;
    this.code = remote.code ?? 'ERR_NLFIT_DISTRIBUTED';
  }
}

export class RankSession {
  /** Set once the collectives of this fit are over (closed, or a failure was exchanged). */
  private ended = false;
  /** Exchanges done (for messages). */
  exchanges = 0;
  /** Time spent in exchanges (ms). */
  exchangeMs = 0;

  constructor(readonly comm: Communicator) {}

  get rank(): number {
    return this.comm.rank;
  }

  get size(): number {
    return this.comm.size;
  }

  /**
   * Sends this rank's payload and resolves to every rank's, by rank; throws a
   * DistributedError when a rank reported a failure instead.
   */
  async exchange(payload: Uint8Array): Promise<Uint8Array[]> {
    if (this.ended) throw new Error('nlfit: this distributed fit has ended; no further exchange is possible');
    const frame = new Uint8Array(kHeaderBytes + payload.byteLength);
    frame[0] = kOk;
    frame.set(payload, kHeaderBytes);
    const frames = await this.gather(frame);
    const failed = frames.findIndex((f) => f[0] === kFailed);
    if (failed >= 0) {
      this.ended = true;
      throw this.remoteError(failed, frames[failed]!);
    }
    return frames.map((f) => f.subarray(kHeaderBytes));
  }

  /**
   * Tells the other ranks this rank failed (once; nothing after the fit's
   * collectives ended), then resolves: the caller rethrows its own error.
   */
  async fail(error: unknown): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    const e = error as { message?: unknown; name?: unknown; code?: unknown } | null;
    const report = {
      message: typeof e?.message === 'string' ? e.message : String(error),
      name: typeof e?.name === 'string' ? e.name : 'Error',
      ...(typeof e?.code === 'string' ? { code: e.code } : {}),
    };
    const body = new TextEncoder().encode(JSON.stringify(report));
    const frame = new Uint8Array(kHeaderBytes + body.byteLength);
    frame[0] = kFailed;
    frame.set(body, kHeaderBytes);
    try {
      await this.gather(frame);
    } catch {
      // The transport itself failed: the caller's error is still the one to report.
    }
  }

  /** The fit's last exchange has happened: later errors stay on their rank. */
  close(): void {
    this.ended = true;
  }

  get closed(): boolean {
    return this.ended;
  }

  private async gather(frame: Uint8Array): Promise<Uint8Array[]> {
    const started = performance.now();
    let frames: Uint8Array[];
    try {
      frames = await this.comm.allgather(frame);
    } catch (error) {
      this.ended = true;
      throw withCode(new Error(`nlfit: the ${this.comm.kind} transport failed on rank ${this.rank} of ${this.size}: ${(error as Error).message}`, { cause: error }), 'ERR_NLFIT_DISTRIBUTED');
    }
    this.exchanges += 1;
    this.exchangeMs += performance.now() - started;
    if (frames.length !== this.size || frames.some((f) => !(f instanceof Uint8Array) || f.byteLength < kHeaderBytes)) {
      this.ended = true;
      throw withCode(new Error(`nlfit: the ${this.comm.kind} transport returned a malformed exchange on rank ${this.rank}`), 'ERR_NLFIT_DISTRIBUTED');
    }
    return frames;
  }

  private remoteError(rank: number, frame: Uint8Array): Error {
    let remote: { message: string; name?: string; code?: string };
    try {
      remote = JSON.parse(new TextDecoder().decode(frame.subarray(kHeaderBytes))) as typeof remote;
      if (typeof remote.message !== 'string') throw new Error('no message');
    } catch {
      remote = { message: 'an error it could not describe' };
    }
    return new DistributedError(rank, this.size, remote);
  }
}

/** The bytes of a Float64Array (a view, no copy). */
export function float64Bytes(values: Float64Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** Bytes as float64 values: a view when aligned, else a copy. */
export function asFloat64(bytes: Uint8Array): Float64Array {
  if (bytes.byteLength % 8 !== 0) throw withCode(new Error('nlfit: a distributed exchange carried a payload that is not whole float64 values'), 'ERR_NLFIT_DISTRIBUTED');
  if (bytes.byteOffset % 8 === 0) return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
  return new Float64Array(bytes.slice().buffer);
}

/** A JSON value every rank sends; resolves to all of them. */
export async function exchangeJson<T>(session: RankSession, value: T): Promise<T[]> {
  const all = await session.exchange(new TextEncoder().encode(JSON.stringify(value)));
  return all.map((bytes) => JSON.parse(new TextDecoder().decode(bytes)) as T);
}
