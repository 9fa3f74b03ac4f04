/**
 * fitMany across ranks: the curves are split over the ranks in contiguous
 * ranges (rank order, sizes differing by at most one); every rank fits its
 * range on its own pool, and the ranks exchange their rows of every result
 * array, so each rank returns the whole result, in curve order, with the
 * same bits as one process (each curve is fitted by the same code on the same
 * inputs whichever rank fits it).
 */
import type { FitManyResult } from '../batch/fitMany.js';
import { countStatuses } from '../batch/task.js';
import { withCode } from '../errors.js';
import { evenPart } from './partition.js';
import { float64Bytes, type RankSession } from './session.js';

/**
 * Gathers the ranks' parts: `mine` holds every array at full length (m
 * curves), filled over this rank's range. Resolves to the whole result on
 * every rank; its fitting time runs until the slowest rank's curves are in.
 */
export async function gatherFitMany(session: RankSession, mine: FitManyResult): Promise<FitManyResult> {
  const gatherStarted = performance.now();
  const { m, p } = mine;
  const [start, end] = evenPart(session.rank, session.size, m);
  const count = end - start;
  // Per curve: p params, p stderr, chi2, iterations, nfev, status (as a double).
  const stride = 2 * p + 4;
  const payload = new Float64Array(2 + count * stride);
  payload[0] = start;
  payload[1] = end;
  for (let c = 0; c < count; c++) {
    const at = 2 + c * stride;
    const curve = start + c;
    payload.set(mine.params.subarray(curve * p, (curve + 1) * p), at);
    payload.set(mine.stderr.subarray(curve * p, (curve + 1) * p), at + p);
    payload[at + 2 * p] = mine.chi2[curve]!;
    payload[at + 2 * p + 1] = mine.iterations[curve]!;
    payload[at + 2 * p + 2] = mine.nfev[curve]!;
    payload[at + 2 * p + 3] = mine.status[curve]!;
  }
  const all = await session.exchange(float64Bytes(payload));
  const out: FitManyResult = {
    ...mine,
    params: new Float64Array(m * p),
    stderr: new Float64Array(m * p),
    chi2: new Float64Array(m),
    iterations: new Float64Array(m),
    nfev: new Float64Array(m),
    status: new Uint8Array(m),
  };
  let expect = 0;
  all.forEach((bytes, rank) => {
    const values = new Float64Array(bytes.slice().buffer);
    const [from, to] = [values[0]!, values[1]!];
    if (from !== expect || values.length !== 2 + (to - from) * stride) {
      throw withCode(new Error(`nlfit: rank ${rank} of ${all.length} sent curves ${from} to ${to}, expected from ${expect}; the ranks are not running the same fitMany`), 'ERR_NLFIT_DISTRIBUTED');
    }
    for (let curve = from; curve < to; curve++) {
      const at = 2 + (curve - from) * stride;
      out.params.set(values.subarray(at, at + p), curve * p);
      out.stderr.set(values.subarray(at + p, at + 2 * p), curve * p);
      out.chi2[curve] = values[at + 2 * p]!;
      out.iterations[curve] = values[at + 2 * p + 1]!;
      out.nfev[curve] = values[at + 2 * p + 2]!;
      out.status[curve] = values[at + 2 * p + 3]!;
    }
    expect = to;
  });
  if (expect !== m) throw withCode(new Error(`nlfit: the ranks' curves end at ${expect}, but there are ${m}`), 'ERR_NLFIT_DISTRIBUTED');
  const fitMs = mine.timing.fitMs + (performance.now() - gatherStarted);
  return {
    ...out,
    ...countStatuses(out.status, out.statusNames, 0, m),
    timing: { totalMs: mine.timing.totalMs + (performance.now() - gatherStarted), fitMs, fitsPerSecond: fitMs > 0 ? (m / fitMs) * 1000 : Infinity },
  };
}
