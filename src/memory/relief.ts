/**
 * Pressure relief: turns the monitor's readings into a smaller chunking for
 * the passes still to come. RSS seldom falls once reached (freed memory stays
 * with the allocator), so a level that has been acted on would read as
 * pressure forever; relief therefore acts once per `step` of growth (as a
 * fraction of the budget) since its last action. Without that, one 1e7-point
 * streaming fit halved its chunks on every read down to a single block.
 */
import type { PressureMonitor, PressureReading } from './monitor.js';
import { applyPressure } from './monitor.js';

/** Chunking a relief may change: points per chunk and chunk buffers at once. */
export interface Chunking {
  chunkSize: number;
  chunksInFlight: number;
}

export interface ReliefOptions {
  /** Growth of usage, as a fraction of the budget, between two actions (default 0.05). */
  step?: number;
  /** Smallest chunk, in points (default 512: one block). */
  minChunkSize?: number;
  /** Called when relief acts, with the reading and the chunking it chose. */
  onAction?: (reading: PressureReading, next: Chunking) => void;
}

/** A function the evaluators call between chunks or passes: the chunking to use from now on. */
export function pressureRelief(monitor: PressureMonitor, options: ReliefOptions = {}): (current: Chunking) => Chunking {
  const step = options.step ?? 0.05;
  const minChunkSize = options.minChunkSize ?? 512;
  let actedAt = 0;
  return (current) => {
    const reading = monitor.check();
    if (reading.action === 'none' || reading.fraction < actedAt + step) return current;
    actedAt = reading.fraction;
    const next = applyPressure({ chunkSize: current.chunkSize, chunksInFlight: current.chunksInFlight }, reading.action, minChunkSize);
    options.onAction?.(reading, next);
    return next;
  };
}
