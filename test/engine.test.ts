// Engine lifecycle: the default engine lets the process exit, close() releases
// the workers, and the addon works in many threads at once.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';

const dist = new URL('../dist/', import.meta.url);

describe('engine lifecycle', () => {
  it('a script exits by itself after a pooled fit, without close()', () => {
    const script = `
      import { fit } from ${JSON.stringify(new URL('index.js', dist).href)};
      import { synthetic } from ${JSON.stringify(new URL('data/synthetic.js', dist).href)};
      const { x, y } = synthetic(200000, (v) => 2 * Math.exp(-v) + 1, { x1: 4, noise: 0.01, seed: 3 });
      const r = await fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: [1, 2, 0], strategy: 'chunked' });
      console.log(r.strategy, r.success);
    `;
    const started = Date.now();
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('chunked true');
    expect(run.status).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 40_000);

  it('keeps the event loop free during a pooled fit', async () => {
    const engine = new Engine({ threads: 2 });
    await engine.warmup();
    const n = 2_000_000;
    const x = new Float64Array(n).map((_, i) => (i / n) * 5);
    const y = x.map((v) => 3 * Math.exp(-1.1 * v) + 0.4 + 0.01 * Math.sin(1000 * v));
    let ticks = 0;
    let longestGapMs = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      longestGapMs = Math.max(longestGapMs, now - last);
      last = now;
      ticks++;
    }, 1);
    const r = await engine.fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: [1, 2, 0], strategy: 'chunked' });
    clearInterval(timer);
    await engine.close();
    expect(r.success).toBe(true);
    expect(ticks).toBeGreaterThan(r.nfev);
    // Passes run on the workers; the main thread only merges factors.
    expect(longestGapMs).toBeLessThan(250);
  }, 60_000);

  it('a closed engine refuses to fit', async () => {
    const engine = new Engine({ threads: 2 });
    await engine.warmup();
    await engine.close();
    await expect(
      engine.fit({ model: 'a*x', data: { x: [1, 2, 3], y: [2, 4, 6] }, p0: { a: 1 }, strategy: 'chunked' }),
    ).rejects.toThrow(/closed/);
  });

  it('releaseMemory() asks glibc to return freed memory (and says so), and a large allocation freed then released lowers RSS', async () => {
    const glibc = Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime);
    const engine = new Engine({ threads: 1 });
    try {
      expect(engine.releaseMemory()).toBe(glibc);
      if (!glibc) return;
      // Many small buffers (under the mmap threshold) freed together stay resident until trimmed.
      const script = `
        import { Engine } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
        import { readFileSync } from 'node:fs';
        const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
        let keep = [];
        for (let i = 0; i < 4000; i++) keep.push(Buffer.allocUnsafeSlow(64 * 1024).fill(1));
        keep = null;
        globalThis.gc();
        const before = rss();
        new Engine({ threads: 1 }).releaseMemory();
        process.stdout.write(JSON.stringify({ before, after: rss() }));`;
      const run = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '1048576' } });
      expect(run.status, run.stderr).toBe(0);
      const { before, after } = JSON.parse(run.stdout) as { before: number; after: number };
      expect(before - after).toBeGreaterThan(100);
    } finally {
      await engine.close();
    }
  });

  it('rejects bad engine options', () => {
    expect(() => new Engine({ threads: 0 })).toThrow(/Expected integer from 1 to 1024 for threads but received 0/);
    expect(() => new Engine({ threads: 2.5 })).toThrow(RangeError);
    expect(() => new Engine({ thread: 2 } as never)).toThrow(/Unknown engine option 'thread'/);
  });
});

describe('the addon in worker threads', () => {
  it('loads in several workers at once, evaluates, and unloads cleanly', async () => {
    const addonModule = fileURLToPath(new URL('native.js', dist));
    const source = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(${JSON.stringify(addonModule)}).then(({ loadAddon }) => {
        const addon = loadAddon();
        // y = p0 * x: one instruction each for p0 and x, then mul.
        const code = new Int32Array([0x4E4C4631, 2, 3, 1, 1, 0, 1, 0, 0, 2, 0, 0, 5, 0, 1]);
        const kernel = new addon.Kernel(code, new Float64Array(0));
        const x = new Float64Array(1000).map((_, i) => i);
        const y = x.map((v) => 3 * v + workerData);
        const roots = kernel.evalRange(new Float64Array([2]), [x], y, null, 1000, 0, 2);
        const R = addon.finishTree([roots], 2, 2);
        parentPort.postMessage(Array.from(R));
      });
    `;
    const results = await Promise.all(
      [0, 1, 2, 3, 4, 5].map(
        (offset) =>
          new Promise<number[]>((resolve, reject) => {
            const worker = new Worker(source, { eval: true, workerData: offset });
            worker.once('message', (value: number[]) => {
              void worker.terminate().then(() => resolve(value));
            });
            worker.once('error', reject);
          }),
      ),
    );
    // R^T R = [J r]^T [J r] with J = x, r = 2x - (3x + offset).
    results.forEach((R, offset) => {
      let jj = 0;
      let rr = 0;
      for (let i = 0; i < 1000; i++) {
        jj += i * i;
        rr += (-i - offset) ** 2;
      }
      expect(R[0]! ** 2).toBeCloseTo(jj, -2);
      expect(R[1]! ** 2 + R[3]! ** 2).toBeCloseTo(rr, -2);
    });
  }, 30_000);
});
