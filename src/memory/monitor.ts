/**
 * Memory pressure during a fit. The evaluators call check() between chunks;
 * the monitor takes one sample of process.memoryUsage(), compares what the
 * process has grown by since the fit began (rss - baselineRss) with the fit's
 * budget, and says what to do:
 *
 *   below 80% of the budget   'ok'        'none'
 *   from 80%                  'elevated'  'halve_chunk'       (smaller chunk buffers)
 *   from 90%                  'critical'  'reduce_in_flight'  (fewer buffers at once)
 *
 * Blocks are fixed, so reshaping chunks mid-fit never changes the answer. The
 * monitor runs no timers: it costs nothing between calls.
 *
 *   const monitor = new PressureMonitor({ budgetBytes: decision.budget.thresholdBytes });
 *   monitor.on('pressure', (reading) => log(reading.level, reading.fraction));
 *   shape = applyPressure(shape, monitor.check().action, kMinChunkPoints);
 */
import { EventEmitter } from 'node:events';
import { invalidRange, invalidType } from '../errors.js';
import { kBlockSize } from '../exec/layout.js';

export type PressureLevel = 'ok' | 'elevated' | 'critical';
export type PressureAction = 'none' | 'halve_chunk' | 'reduce_in_flight';

export interface PressureSample {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export interface PressureReading {
  level: PressureLevel;
  /** (rss - baselineRss) / budgetBytes; 0 when the process has not grown. */
  fraction: number;
  sample: PressureSample;
  action: PressureAction;
}

export interface PressureMonitorOptions {
  /** Bytes the fit may add to the process. */
  budgetBytes: number;
  /** The rss the budget is measured from. Default: the rss when the monitor is created. */
  baselineRss?: number;
  /** Where samples come from. Default process.memoryUsage. */
  sample?: () => NodeJS.MemoryUsage;
  /** Fraction of the budget from which the level is 'elevated'. Default 0.8. */
  elevated?: number;
  /** Fraction of the budget from which the level is 'critical'. Default 0.9. */
  critical?: number;
}

function positiveNumber(value: unknown, field: string): number {
  if (typeof value !== 'number') throw invalidType(field, 'finite number > 0', value);
  if (!Number.isFinite(value) || value <= 0) throw invalidRange(field, 'finite number > 0', value);
  return value;
}

export class PressureMonitor extends EventEmitter<{ pressure: [PressureReading] }> {
  readonly budgetBytes: number;
  readonly baselineRss: number;
  readonly elevated: number;
  readonly critical: number;
  private readonly sampler: () => NodeJS.MemoryUsage;

  constructor(options: PressureMonitorOptions) {
    super();
    if (options === null || typeof options !== 'object') throw invalidType('monitor options', 'object', options);
    this.budgetBytes = positiveNumber(options.budgetBytes, 'budgetBytes');
    this.elevated = positiveNumber(options.elevated ?? 0.8, 'elevated');
    this.critical = positiveNumber(options.critical ?? 0.9, 'critical');
    if (this.critical < this.elevated) throw invalidRange('critical', `number >= elevated (${this.elevated})`, this.critical);
    this.sampler = options.sample ?? (() => process.memoryUsage());
    this.baselineRss = options.baselineRss ?? this.sampler().rss;
  }

  /** Takes one sample and judges it; emits 'pressure' with the reading unless the level is 'ok'. */
  check(): PressureReading {
    const { rss, heapUsed, external, arrayBuffers } = this.sampler();
    const fraction = Math.max(0, rss - this.baselineRss) / this.budgetBytes;
    const level: PressureLevel = fraction >= this.critical ? 'critical' : fraction >= this.elevated ? 'elevated' : 'ok';
    const action: PressureAction = level === 'critical' ? 'reduce_in_flight' : level === 'elevated' ? 'halve_chunk' : 'none';
    const reading: PressureReading = { level, fraction, sample: { rss, heapUsed, external, arrayBuffers }, action };
    if (level !== 'ok') this.emit('pressure', reading);
    return reading;
  }
}

/**
 * The chunking after a pressure action, as a new object: 'halve_chunk' halves
 * chunkSize, rounded down to whole 512-point blocks and never below
 * minChunkSize (itself rounded up to whole blocks); 'reduce_in_flight' keeps
 * one chunk fewer in flight, at least 1; 'none' changes nothing.
 */
export function applyPressure<T extends { chunkSize: number; chunksInFlight: number }>(
  config: T,
  action: PressureAction,
  minChunkSize = kBlockSize,
): T {
  if (action === 'halve_chunk') {
    const floor = Math.max(kBlockSize, Math.ceil(minChunkSize / kBlockSize) * kBlockSize);
    const halved = Math.floor(config.chunkSize / 2 / kBlockSize) * kBlockSize;
    return { ...config, chunkSize: Math.max(Math.min(floor, config.chunkSize), halved) };
  }
  if (action === 'reduce_in_flight') return { ...config, chunksInFlight: Math.max(1, config.chunksInFlight - 1) };
  return { ...config };
}
