// The memory layer: container limits, the cost estimate, the strategy decision
// and the pressure monitor. Every machine reading is injected, so the answers
// do not depend on the machine running the tests.
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import {
  applyPressure,
  availableMemory,
  decide,
  estimateMemory,
  formatBytes,
  kMinChunkPoints,
  PressureMonitor,
  readCgroupLimit,
  type PressureReading,
} from '../dist/memory/index.js';

const MB = 2 ** 20;
const GB = 2 ** 30;
/** A roomy machine with no container: only memoryLimitMb or free memory can bind. */
const roomy = { cgroup: null, constrainedMemory: 0, freeBytes: 64 * GB, rssBytes: 50 * MB };
const exp3 = { nParams: 3, nVariables: 1, threads: 2 };

function fixture(name: string, membership = 'proc-self-cgroup'): { root: string; procSelfCgroup: string } {
  const dir = fileURLToPath(new URL(`./fixtures/cgroup/${name}/`, import.meta.url));
  return { root: `${dir}sys`, procSelfCgroup: `${dir}${membership}` };
}

describe('formatBytes', () => {
  it('uses B, KB, MB, GB with one decimal (powers of 1024)', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(160 * MB)).toBe('160.0 MB');
    expect(formatBytes(1.6e9)).toBe('1.5 GB');
    expect(formatBytes(MB - 1)).toBe('1.0 MB');
  });
});

describe('readCgroupLimit', () => {
  it('reads a cgroup v2 limit and usage', () => {
    expect(readCgroupLimit(fixture('v2-limited'))).toEqual({ limitBytes: 512 * MB, usageBytes: 100 * MB, version: 'v2' });
  });
  it("reads 'max' as no limit", () => {
    expect(readCgroupLimit(fixture('v2-max'))).toBeNull();
  });
  it('walks up to a limit set on a parent directory', () => {
    expect(readCgroupLimit(fixture('v2-nested'))).toEqual({ limitBytes: 256 * MB, usageBytes: 150 * MB, version: 'v2' });
  });
  it('reads the mount root inside a cgroup namespace', () => {
    expect(readCgroupLimit(fixture('v2-root'))).toEqual({ limitBytes: GB, usageBytes: 10 * MB, version: 'v2' });
  });
  it('reads cgroup v1 when v2 has no memory controller (hybrid layout)', () => {
    expect(readCgroupLimit(fixture('v1-limited'))).toEqual({ limitBytes: 300 * MB, usageBytes: 50 * MB, version: 'v1' });
  });
  it('reads a page-rounded LONG_MAX v1 limit as no limit', () => {
    expect(readCgroupLimit(fixture('v1-unlimited'))).toBeNull();
  });
  it('returns null, never throws, for malformed or missing files', () => {
    expect(readCgroupLimit(fixture('malformed'))).toBeNull();
    expect(readCgroupLimit(fixture('malformed', 'proc-self-cgroup-v2'))).toBeNull();
    expect(readCgroupLimit(fixture('does-not-exist'))).toBeNull();
    expect(readCgroupLimit({ root: '/nonexistent', procSelfCgroup: fixture('v2-limited').procSelfCgroup })).toBeNull();
  });
});

describe('availableMemory', () => {
  const cgroup = { limitBytes: 512 * MB, usageBytes: 100 * MB, version: 'v2' as const };

  it('takes the smallest source and names it', () => {
    expect(availableMemory({ ...roomy, cgroup })).toMatchObject({ availableBytes: 412 * MB, source: 'cgroup-v2' });
    expect(availableMemory({ ...roomy, cgroup: { ...cgroup, version: 'v1' } }).source).toBe('cgroup-v1');
    expect(availableMemory({ ...roomy, cgroup, memoryLimitMb: 160 })).toMatchObject({ availableBytes: 160 * MB, source: 'memoryLimitMb' });
    // memoryLimitMb is capped by what the container still has.
    expect(availableMemory({ ...roomy, cgroup, memoryLimitMb: 4096 })).toMatchObject({ availableBytes: 412 * MB, source: 'cgroup-v2' });
    expect(availableMemory({ ...roomy, constrainedMemory: 300 * MB })).toMatchObject({ availableBytes: 250 * MB, source: 'constrainedMemory' });
    expect(availableMemory({ ...roomy, freeBytes: 64 * MB, cgroup })).toMatchObject({ availableBytes: 64 * MB, source: 'free' });
    expect(availableMemory(roomy)).toMatchObject({ availableBytes: 64 * GB, source: 'free' });
  });
  it('ignores an unset or huge process.constrainedMemory()', () => {
    expect(availableMemory({ ...roomy, constrainedMemory: 2 ** 64 }).source).toBe('free');
    expect(availableMemory({ ...roomy, constrainedMemory: 0 }).source).toBe('free');
  });
  it('explains the number in detail', () => {
    expect(availableMemory({ ...roomy, cgroup }).detail).toBe('cgroup v2 limit 512.0 MB, 100.0 MB in use: 412.0 MB headroom');
  });
  it('rejects a memoryLimitMb that is not a positive number', () => {
    expect(() => availableMemory({ ...roomy, memoryLimitMb: 0 })).toThrow('Expected finite number > 0 for memoryLimitMb but received 0 of type number');
    expect(() => availableMemory({ ...roomy, memoryLimitMb: '512' as unknown as number })).toThrow(TypeError);
  });
  it('reads the real machine without throwing', () => {
    const available = availableMemory();
    expect(available.availableBytes).toBeGreaterThanOrEqual(0);
  });
});

describe('estimateMemory', () => {
  it('counts the data columns exactly, weighted or not', () => {
    const base = { nPoints: 1_000_000, ...exp3, environment: roomy };
    expect(estimateMemory(base).dataBytes).toBe(1_000_000 * 2 * 8);
    expect(estimateMemory({ ...base, weighted: true }).dataBytes).toBe(1_000_000 * 3 * 8);
    expect(estimateMemory({ ...base, nVariables: 3, weighted: true }).dataBytes).toBe(1_000_000 * 5 * 8);
  });
  it('peakBytes is the sum of its breakdown; workingBytes is all but the data', () => {
    for (const strategy of ['standard', 'chunked', 'streaming'] as const) {
      const budget = estimateMemory({ nPoints: 1e7, ...exp3, strategy, environment: roomy });
      expect(budget.peakBytes).toBe(budget.breakdown.reduce((sum, term) => sum + term.bytes, 0));
      expect(budget.workingBytes).toBe(strategy === 'streaming' ? budget.peakBytes : budget.peakBytes - budget.dataBytes);
    }
  });
  it("'standard' starts no workers; the pool adds about 10 MB per thread; streaming holds a ring, not the data", () => {
    const at = (strategy: 'standard' | 'chunked' | 'streaming', threads: number): number =>
      estimateMemory({ nPoints: 1e7, nParams: 3, nVariables: 1, threads, strategy, environment: roomy }).peakBytes;
    expect(at('chunked', 2) - at('chunked', 1)).toBeGreaterThan(9 * MB);
    expect(at('chunked', 1) - at('standard', 1)).toBeGreaterThan(9 * MB);
    const ring = estimateMemory({ nPoints: 1e7, ...exp3, strategy: 'streaming', chunkSize: 65536, chunksInFlight: 4, environment: roomy });
    expect(ring.breakdown.find((term) => term.label.startsWith('streaming ring'))!.bytes).toBe(4 * 65536 * 2 * 8);
    expect(ring.peakBytes).toBeLessThan(ring.dataBytes);
  });
  it('fitsInMemory and dataFits flip at the threshold', () => {
    const nPoints = 1e7;
    const probe = estimateMemory({ nPoints, ...exp3, strategy: 'chunked', environment: roomy });
    const { peakBytes, dataBytes } = probe;
    const withAvailable = (bytes: number) =>
      estimateMemory({ nPoints, ...exp3, strategy: 'chunked', environment: { ...roomy, freeBytes: bytes } });
    // threshold = 0.75 x available
    expect(withAvailable(peakBytes / 0.75)).toMatchObject({ fitsInMemory: true, dataFits: true, thresholdBytes: peakBytes });
    expect(withAvailable(peakBytes / 0.75 - 8)).toMatchObject({ fitsInMemory: false, dataFits: true });
    expect(withAvailable(dataBytes / 0.75)).toMatchObject({ fitsInMemory: false, dataFits: true });
    expect(withAvailable(dataBytes / 0.75 - 8)).toMatchObject({ fitsInMemory: false, dataFits: false });
    const lenient = estimateMemory({ nPoints, ...exp3, strategy: 'chunked', safetyFactor: 1, environment: { ...roomy, freeBytes: peakBytes } });
    expect(lenient).toMatchObject({ fitsInMemory: true, safetyFactor: 1, source: 'free' });
  });
  it('rejects invalid sizes with a message naming the field', () => {
    expect(() => estimateMemory({ nPoints: 1.5, ...exp3 })).toThrow('Expected positive integer for nPoints but received 1.5 of type number');
    expect(() => estimateMemory({ nPoints: 10, ...exp3, safetyFactor: 1.5 })).toThrow(RangeError);
  });
});

describe('decide', () => {
  const file = { ...exp3, dataLocation: 'file' as const, environment: roomy };

  it('a large file that fits is loaded and fitted on the pool', () => {
    const d = decide({ nPoints: 1e7, ...file, memoryLimitMb: 16000 });
    expect(d.strategy).toBe('chunked');
    expect(d.memoryPressure).toBeLessThanOrEqual(1);
    expect(d.budget.source).toBe('memoryLimitMb');
    expect(d.reason).toContain('data (152.6 MB)');
    expect(d.reason).toContain('15.6 GB limit (memoryLimitMb)');
  });
  it('a file larger than the budget is streamed, in block-multiple chunks whose ring fits the threshold', () => {
    const d = decide({ nPoints: 1e8, ...file, memoryLimitMb: 160 });
    expect(d.strategy).toBe('streaming');
    expect(d.chunkSize % 512).toBe(0);
    expect(d.chunkSize).toBeGreaterThanOrEqual(kMinChunkPoints);
    expect(d.chunksInFlight).toBe(exp3.threads + 2);
    const ring = d.chunksInFlight * d.chunkSize * 2 * 8;
    expect(ring).toBeLessThanOrEqual(d.config.thresholdBytes / 2);
    expect(d.budget.peakBytes).toBeLessThanOrEqual(d.config.thresholdBytes);
    expect(d.memoryPressure).toBeLessThanOrEqual(1);
    expect(d.config).toMatchObject({ threads: 2, chunkSize: d.chunkSize, chunksInFlight: d.chunksInFlight, safetyFactor: 0.75 });
    expect(d.reason).toMatch(/^data \(1\.5 GB\) exceeds 75% of the 160\.0 MB limit \(memoryLimitMb\): streaming from the file in \d+\.\d MB chunks, 4 in flight$/);
  });
  it('the ring of a big budget is capped at 64 MB per chunk buffer', () => {
    const d = decide({ nPoints: 1e10, ...file, memoryLimitMb: 20000 });
    expect(d.strategy).toBe('streaming');
    expect(d.chunkSize * 2 * 8).toBeLessThanOrEqual(64 * MB);
    expect(d.chunkSize).toBe(Math.floor((64 * MB) / 16 / 512) * 512);
  });
  it('streams at the smallest chunk, and says so, when even that does not fit', () => {
    const d = decide({ nPoints: 1e7, ...file, memoryLimitMb: 20 });
    expect(d.strategy).toBe('streaming');
    expect(d.chunkSize).toBe(kMinChunkPoints);
    expect(d.memoryPressure).toBeGreaterThan(1);
    expect(d.reason).toContain('below what the engine needs');
  });
  it('small data runs on the calling thread', () => {
    for (const dataLocation of ['memory', 'file', 'stream'] as const) {
      const d = decide({ nPoints: 1000, ...exp3, dataLocation, environment: roomy });
      expect(d).toMatchObject({ strategy: 'standard', chunkSize: 1024, chunksInFlight: 1 });
      expect(d.config.threads).toBe(1);
    }
    expect(decide({ nPoints: 65536, ...file }).strategy).toBe('standard');
    expect(decide({ nPoints: 65537, ...file }).strategy).toBe('chunked');
  });
  it("data already in memory is never streamed by 'auto', and the reason says it is resident", () => {
    for (const memoryLimitMb of [1, 160, 16000]) {
      const d = decide({ nPoints: 1e7, ...exp3, dataLocation: 'memory', memoryLimitMb, environment: roomy });
      expect(d.strategy).toBe('chunked');
      expect(d.reason).toContain('already in memory');
    }
    const tight = decide({ nPoints: 1e7, ...exp3, dataLocation: 'memory', memoryLimitMb: 1, environment: roomy });
    expect(tight.reason).toContain('expect memory pressure');
  });
  it("'hpc' uses the pool at any size", () => {
    for (const nPoints of [100, 1000, 65536, 1e6]) {
      for (const dataLocation of ['memory', 'file'] as const) {
        expect(decide({ nPoints, ...exp3, workflow: 'hpc', dataLocation, environment: roomy }).strategy).not.toBe('standard');
      }
    }
    expect(decide({ nPoints: 1e8, ...file, workflow: 'hpc', memoryLimitMb: 160 }).strategy).toBe('streaming');
    expect(decide({ nPoints: 1000, ...file, workflow: 'hpc_distributed' }).strategy).toBe('chunked');
  });
  it('every other workflow decides by memory like auto', () => {
    for (const workflow of ['auto_global', 'quality', 'fast', 'large_robust'] as const) {
      expect(decide({ nPoints: 1000, ...file, workflow }).strategy).toBe('standard');
      expect(decide({ nPoints: 1e7, ...file, workflow, memoryLimitMb: 16000 }).strategy).toBe('chunked');
      expect(decide({ nPoints: 1e8, ...file, workflow, memoryLimitMb: 160 }).strategy).toBe('streaming');
    }
  });
  it('forced workflows get their strategy, with a warning when the data does not fit', () => {
    expect(decide({ nPoints: 1e7, ...file, workflow: 'standard' }).strategy).toBe('standard');
    expect(decide({ nPoints: 1000, ...file, workflow: 'chunked' }).strategy).toBe('chunked');
    const streamed = decide({ nPoints: 1000, ...exp3, workflow: 'streaming', environment: roomy });
    expect(streamed).toMatchObject({ strategy: 'streaming', chunkSize: 1024 });
    expect(streamed.reason).toMatch(/^forced 'streaming': streaming from the in-memory columns/);
    const forced = decide({ nPoints: 1e8, ...file, workflow: 'chunked', memoryLimitMb: 160 });
    expect(forced.strategy).toBe('chunked');
    expect(forced.memoryPressure).toBeGreaterThan(1);
    expect(forced.reason).toBe(
      "forced 'chunked': data (1.5 GB) exceeds 75% of the 160.0 MB limit (memoryLimitMb); expect swapping or an out-of-memory kill",
    );
  });
  it('chunk sizes are whole blocks of 512, at least 32768 unless the data is smaller', () => {
    for (const nPoints of [1, 511, 513, 40000, 65537, 100001, 1e6 + 7, 1e7, 3e8]) {
      for (const memoryLimitMb of [40, 400, 40000]) {
        const d = decide({ nPoints, ...file, memoryLimitMb });
        expect(d.chunkSize % 512).toBe(0);
        expect(d.chunkSize).toBeGreaterThanOrEqual(Math.min(kMinChunkPoints, nPoints));
        expect(d.chunksInFlight).toBeGreaterThanOrEqual(1);
      }
    }
  });
  it('the container binds when it is tighter than memoryLimitMb, and the reason names it', () => {
    const environment = { ...roomy, cgroup: { limitBytes: 512 * MB, usageBytes: 412 * MB, version: 'v1' as const } };
    const d = decide({ nPoints: 1e7, ...exp3, dataLocation: 'file', memoryLimitMb: 16000, environment });
    expect(d).toMatchObject({ strategy: 'streaming', config: { source: 'cgroup-v1', availableBytes: 100 * MB } });
    expect(d.reason).toContain('the 100.0 MB container headroom (cgroup v1)');
  });
  it('rejects unknown workflows and data locations', () => {
    expect(() => decide({ nPoints: 10, ...exp3, workflow: 'turbo' as never })).toThrow(/for workflow but received "turbo"/);
    expect(() => decide({ nPoints: 10, ...exp3, dataLocation: 'disk' as never })).toThrow(RangeError);
  });
});

describe('PressureMonitor', () => {
  const usage = (rss: number): NodeJS.MemoryUsage => ({ rss, heapTotal: 0, heapUsed: 10 * MB, external: MB, arrayBuffers: MB });

  it('goes ok -> elevated (halve_chunk) -> critical (reduce_in_flight) as rss rises, emitting only when not ok', () => {
    const rss = [100, 150, 179, 180, 185, 190, 250, 120].map((mb) => mb * MB);
    let k = 0;
    const sample = vi.fn(() => usage(rss[k++]!));
    const monitor = new PressureMonitor({ budgetBytes: 100 * MB, baselineRss: 100 * MB, sample });
    const events: PressureReading[] = [];
    monitor.on('pressure', (reading) => events.push(reading));
    const readings = rss.map(() => monitor.check());
    expect(readings.map((r) => r.level)).toEqual(['ok', 'ok', 'ok', 'elevated', 'elevated', 'critical', 'critical', 'ok']);
    expect(readings.map((r) => r.action)).toEqual([
      'none', 'none', 'none', 'halve_chunk', 'halve_chunk', 'reduce_in_flight', 'reduce_in_flight', 'none',
    ]);
    expect(readings[3]!.fraction).toBeCloseTo(0.8);
    expect(readings[3]!.sample).toEqual({ rss: 180 * MB, heapUsed: 10 * MB, external: MB, arrayBuffers: MB });
    expect(events).toEqual(readings.filter((r) => r.level !== 'ok'));
    expect(sample).toHaveBeenCalledTimes(rss.length);
  });
  it('measures from the rss at creation by default and honours custom levels', () => {
    let rss = 500 * MB;
    const monitor = new PressureMonitor({ budgetBytes: 10 * MB, sample: () => usage(rss), elevated: 0.5, critical: 0.7 });
    expect(monitor.baselineRss).toBe(500 * MB);
    rss = 505 * MB;
    expect(monitor.check().level).toBe('elevated');
    rss = 507 * MB;
    expect(monitor.check().level).toBe('critical');
    expect(() => new PressureMonitor({ budgetBytes: 0 })).toThrow(RangeError);
    expect(() => new PressureMonitor({ budgetBytes: 1, elevated: 0.9, critical: 0.8 })).toThrow(RangeError);
  });
});

describe('applyPressure', () => {
  it('halves the chunk to whole blocks and stops at the minimum', () => {
    let config = { chunkSize: 100 * 512 + 300, chunksInFlight: 4 };
    const sizes: number[] = [];
    for (let k = 0; k < 10; k++) {
      config = applyPressure(config, 'halve_chunk', 8 * 512);
      sizes.push(config.chunkSize);
    }
    expect(sizes).toEqual([50, 25, 12, 8, 8, 8, 8, 8, 8, 8].map((blocks) => blocks * 512));
    expect(config.chunksInFlight).toBe(4);
    expect(applyPressure({ chunkSize: 1536, chunksInFlight: 2 }, 'halve_chunk').chunkSize).toBe(512);
    expect(applyPressure({ chunkSize: 512, chunksInFlight: 2 }, 'halve_chunk').chunkSize).toBe(512);
  });
  it('drops one chunk in flight, down to one', () => {
    let config = { chunkSize: 65536, chunksInFlight: 3, threads: 2 };
    config = applyPressure(config, 'reduce_in_flight');
    expect(config).toEqual({ chunkSize: 65536, chunksInFlight: 2, threads: 2 });
    config = applyPressure(applyPressure(config, 'reduce_in_flight'), 'reduce_in_flight');
    expect(config.chunksInFlight).toBe(1);
  });
  it("returns a new object and changes nothing for 'none'", () => {
    const config = { chunkSize: 65536, chunksInFlight: 3 };
    const next = applyPressure(config, 'none');
    expect(next).toEqual(config);
    expect(next).not.toBe(config);
  });
});
