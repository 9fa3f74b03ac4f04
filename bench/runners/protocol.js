/**
 * What every Node runner shares: the job it is given (one JSON argument), the
 * columns it reads, and the lines it prints. A runner prints
 * `{"phase":"fit-start"}` when its data is loaded (the parent starts the
 * timeout clock there) and, last, one JSON result line:
 * { ok, timedOut, error, wallMs, passes, params, maxRssKiB, ... }.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';

/**
 * @typedef {object} Job
 * @property {string} model model id (bench/trials.js)
 * @property {string} xPath little-endian float64 column
 * @property {string} yPath
 * @property {number} n points
 * @property {number[]} p0
 * @property {number} [threads]
 * @property {'chunked'|'standard'} [strategy]
 * @property {number} [runs] timed fits (nlfit)
 * @property {number} [timeoutS] the peer's own time cap (ml-lm)
 */

/** @returns {Job} */
export function readJob() {
  return JSON.parse(process.argv[2]);
}

/**
 * Reads a float64 column straight into a SharedArrayBuffer (the buffer nlfit
 * uses without a copy): the Buffer is a view of that memory.
 * @param {string} path
 * @param {number} n expected number of values
 */
export function readColumn(path, n) {
  const bytes = n * Float64Array.BYTES_PER_ELEMENT;
  const shared = new SharedArrayBuffer(bytes);
  const view = Buffer.from(shared);
  const fd = openSync(path, 'r');
  try {
    if (fstatSync(fd).size !== bytes) throw new Error(`${path} holds ${fstatSync(fd).size} bytes, expected ${bytes}`);
    // readSync moves at most 2 GiB per call.
    for (let done = 0; done < bytes; ) {
      const read = readSync(fd, view, done, Math.min(bytes - done, 1 << 30), done);
      if (read === 0) throw new Error(`${path} ended after ${done} bytes`);
      done += read;
    }
  } finally {
    closeSync(fd);
  }
  return new Float64Array(shared);
}

export function announceFitStart() {
  process.stdout.write(`${JSON.stringify({ phase: 'fit-start' })}\n`);
}

/**
 * Peak RSS of this process in KiB: VmHWM from /proc on Linux. Not getrusage's
 * ru_maxrss: on Linux that survives fork and exec, so a child reports at
 * least what its parent (which holds the generated data) had when it
 * spawned it. Elsewhere ru_maxrss is the best there is.
 */
export function peakRssKiB() {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (match) return Number(match[1]);
  } catch {
    // no /proc: fall through
  }
  return process.resourceUsage().maxRSS;
}

/** Prints the result line, with this process's peak RSS. */
export function report(result) {
  process.stdout.write(`${JSON.stringify({ ok: true, timedOut: false, error: null, ...result, maxRssKiB: peakRssKiB() })}\n`);
}

/** Prints a failure as a result line (the parent shows the message). */
export function reportError(error, extra = {}) {
  const maxRssKiB = peakRssKiB();
  const message = error instanceof Error ? error.message : String(error);
  process.stdout.write(`${JSON.stringify({ ok: false, timedOut: false, error: message, ...extra, maxRssKiB })}\n`);
}

/** Median of numbers (the lower middle for an even count). */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}
