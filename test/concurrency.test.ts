// Many fits on one engine: the bounded queue (maxQueue, maxConcurrentFits,
// the memory budget), FIFO admission, aborting and closing with fits queued,
// the task scheduler's round robin and slices, and the same bits for fits run
// at once as for fits run one by one.
import { describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { configureDefaultEngine, fit } from '../dist/fit.js';
import { SeededRandom, synthetic } from '../dist/data/synthetic.js';
import { TaskScheduler } from '../dist/exec/scheduler.js';

const model = 'a*exp(-b*x)+c';
const p0 = [1, 1, 0];

function data(n: number, seed: number): { x: Float64Array; y: Float64Array } {
  return synthetic(n, (v) => 2 * Math.exp(-1.3 * v) + 0.5, { x1: 4, noise: 0.01, seed });
}

/** Columns as plain arrays: a fit copies them, so they count against the engine's memory budget. */
function plain(n: number, seed: number): { x: number[]; y: number[] } {
  const { x, y } = data(n, seed);
  return { x: Array.from(x), y: Array.from(y) };
}

function bits(values: Float64Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex');
}

const small = data(1000, 1);

describe('the fit queue', () => {
  it('refuses exactly the calls beyond maxConcurrentFits + maxQueue, at once, with QueueFullError', async () => {
    const engine = new Engine({ threads: 1, maxConcurrentFits: 2, maxQueue: 5 });
    try {
      const calls = Array.from({ length: 20 }, () => engine.fit({ model, data: small, p0 }));
      expect(engine.running).toBe(2);
      expect(engine.queued).toBe(5);
      const outcomes = await Promise.allSettled(calls);
      const refused = outcomes.filter((o) => o.status === 'rejected');
      expect(refused).toHaveLength(13);
      for (const o of refused) {
        const error = (o as PromiseRejectedResult).reason as Error & { code?: string };
        expect(error.name).toBe('QueueFullError');
        expect(error.code).toBe('ERR_NLFIT_QUEUE_FULL');
        expect(error.message).toMatch(/queue is full \(maxQueue 5 fits waiting, 2 running\)/);
      }
      // The refused calls are the last ones made.
      expect(outcomes.slice(0, 7).every((o) => o.status === 'fulfilled' && o.value.success)).toBe(true);
      expect(engine.running).toBe(0);
      expect(engine.queued).toBe(0);
    } finally {
      await engine.close();
    }
  });

  it('maxQueue 0 refuses every call that cannot start at once', async () => {
    const engine = new Engine({ threads: 1, maxConcurrentFits: 1, maxQueue: 0 });
    try {
      const [first, second] = await Promise.allSettled([engine.fit({ model, data: small, p0 }), engine.fit({ model, data: small, p0 })]);
      expect(first.status).toBe('fulfilled');
      expect(second.status === 'rejected' && (second.reason as { code?: string }).code).toBe('ERR_NLFIT_QUEUE_FULL');
    } finally {
      await engine.close();
    }
  });

  it('admits in call order (FIFO), whatever the sizes', async () => {
    const engine = new Engine({ threads: 2, maxConcurrentFits: 1 });
    try {
      const sizes = [200_000, 100_000, 1000, 70_000, 500, 5000];
      const finished: number[] = [];
      await Promise.all(
        sizes.map((n, i) => engine.fit({ model, data: data(n, i + 2), p0 }).then(() => finished.push(i))),
      );
      expect(finished).toEqual([0, 1, 2, 3, 4, 5]);
    } finally {
      await engine.close();
    }
  });

  it('holds a fit that would exceed the memory budget, and the fits behind it, until memory frees', async () => {
    // 2 MiB: the first fit's copies (60,000 points x 2 columns x 8 bytes = 0.96 MB) leave no room for the second's (1.2 MB).
    const engine = new Engine({ threads: 1, maxConcurrentFits: 4, memoryLimitMb: 2 });
    try {
      const first = engine.fit({ model, data: plain(60_000, 7), p0 });
      const second = engine.fit({ model, data: plain(75_000, 8), p0 });
      // The third would fit beside the first, but does not overtake the second.
      const third = engine.fit({ model, data: plain(1000, 9), p0 });
      expect([engine.running, engine.queued]).toEqual([1, 2]);
      const afterFirst = first.then(() => [engine.running, engine.queued]);
      expect(await afterFirst).toEqual([2, 0]);
      expect((await second).success && (await third).success).toBe(true);
    } finally {
      await engine.close();
    }
  });

  it('a queued fit whose signal fires leaves the queue and rejects with an AbortError', async () => {
    const engine = new Engine({ threads: 1, maxConcurrentFits: 1 });
    try {
      const controller = new AbortController();
      const running = engine.fit({ model, data: small, p0 });
      const aborted = engine.fit({ model, data: small, p0, signal: controller.signal });
      const behind = engine.fit({ model, data: small, p0 });
      expect(engine.queued).toBe(2);
      controller.abort(new Error('client went away'));
      expect(engine.queued).toBe(1);
      await expect(aborted).rejects.toMatchObject({ name: 'AbortError', message: 'nlfit: the fit was aborted' });
      expect((await running).success).toBe(true);
      expect((await behind).success).toBe(true);
      // An already aborted signal never enters the queue.
      const before = new AbortController();
      before.abort();
      const late = engine.fit({ model, data: small, p0, signal: before.signal });
      expect(engine.queued).toBe(0);
      await expect(late).rejects.toMatchObject({ name: 'AbortError' });
    } finally {
      await engine.close();
    }
  });

  it('closing the engine rejects the queued fits with a clear error and ends the running ones', async () => {
    const engine = new Engine({ threads: 2, maxConcurrentFits: 1 });
    await engine.warmup();
    const running = Promise.allSettled([engine.fit({ model, data: data(2_000_000, 11), p0, strategy: 'chunked' })]);
    const queued = Promise.allSettled([engine.fit({ model, data: small, p0 }), engine.fitMany({ model: 'a*x', x: [1, 2, 3], y: [2, 4, 6], n: 3, p0: { a: 1 } })]);
    expect(engine.queued).toBe(2);
    // Close once the running fit is on the pool.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await engine.close();
    for (const outcome of await queued) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_NLFIT_ENGINE_CLOSED', message: 'nlfit: this engine has been closed while the fit waited in its queue' });
    }
    // The running fit lost its pool: it settles, it does not hang.
    await running;
    await expect(engine.fit({ model, data: small, p0 })).rejects.toMatchObject({ code: 'ERR_NLFIT_ENGINE_CLOSED', message: 'nlfit: this engine has been closed' });
    expect(engine.queued).toBe(0);
  }, 30_000);
  it('a pooled fit progresses while a caller runs calling-thread fits back to back', async () => {
    // Each such fit is a chain of resolved promises; before every fit started on
    // a fresh turn of the event loop, the workers' results never got in.
    const engine = new Engine({ threads: 2 });
    try {
      await engine.warmup();
      let done = false;
      const pooled = engine.fit({ model, data: data(300_000, 12), p0, strategy: 'chunked' }).finally(() => (done = true));
      let smallFits = 0;
      while (!done && smallFits < 5000) {
        await engine.fit({ model, data: small, p0 });
        smallFits++;
      }
      expect(done).toBe(true);
      expect((await pooled).success).toBe(true);
    } finally {
      await engine.close();
    }
  }, 60_000);
});

describe('engine options', () => {
  it('validates threads, maxConcurrentFits, maxQueue and memoryLimitMb, naming the option', () => {
    expect(() => new Engine({ maxQueue: -1 })).toThrow(/^Expected integer >= 0 for maxQueue but received -1 of type number$/);
    expect(() => new Engine({ maxQueue: 1.5 })).toThrow(RangeError);
    expect(() => new Engine({ maxQueue: '3' as never })).toThrow(/Expected integer >= 0 for maxQueue but received "3" of type string/);
    expect(() => new Engine({ maxQueue: Infinity })).toThrow(RangeError);
    expect(() => new Engine({ maxConcurrentFits: 0 })).toThrow(/Expected positive integer for maxConcurrentFits but received 0/);
    expect(() => new Engine({ maxConcurrentFits: null as never })).toThrow(TypeError);
    expect(() => new Engine({ memoryLimitMb: 0.5 })).toThrow(/Expected number of megabytes >= 1 for memoryLimitMb but received 0.5/);
    expect(() => new Engine({ threads: 0 })).toThrow(/Expected integer from 1 to 1024 for threads but received 0/);
    expect(() => new Engine({ maxQueu: 1 } as never)).toThrow(/^Unknown engine option 'maxQueu' \(did you mean 'maxQueue'\?\)$/);
    expect(() => new Engine({ queue: 1 } as never)).toThrow(/^Unknown engine option 'queue' \(known: threads, maxConcurrentFits, maxQueue, memoryLimitMb\)$/);
    expect(() => new Engine(null as never)).toThrow(TypeError);
  });

  it('defaults: maxConcurrentFits is 2 x threads and maxQueue 256', async () => {
    const engine = new Engine({ threads: 2 });
    try {
      const calls = Array.from({ length: 300 }, () => engine.fit({ model, data: small, p0 }));
      expect([engine.running, engine.queued]).toEqual([4, 256]);
      const outcomes = await Promise.allSettled(calls);
      expect(outcomes.filter((o) => o.status === 'rejected')).toHaveLength(40);
    } finally {
      await engine.close();
    }
  });

});

describe('fits at once give the bits of fits one by one', () => {
  it('pooled (sliced while shared), streamed, inline and fitMany fits, three of each at once', async () => {
    const m = 600;
    const random = new SeededRandom(5);
    const bx = Float64Array.from({ length: 20 }, (_, i) => i / 4);
    const by = Float64Array.from({ length: m * 20 }, (_, k) => 3 * Math.exp(-0.7 * bx[k % 20]!) + 0.2 + 0.01 * (random.next() - 0.5));
    const jobs: Array<(engine: Engine) => Promise<string>> = [
      // 2,000,000 points: tasks of 1953 blocks, cut into slices.
      async (engine) => bits((await engine.fit({ model, data: data(2_000_000, 21), p0, strategy: 'chunked' })).values),
      async (engine) => bits((await engine.fit({ model, data: data(200_000, 22), p0, strategy: 'chunked' })).values),
      async (engine) => bits((await engine.fit({ model, data: data(600_000, 23), p0, strategy: 'streaming', chunkSize: 400_000 })).values),
      async (engine) => bits((await engine.fit({ model, data: data(5000, 24), p0 })).values),
      async (engine) => bits((await engine.fitMany({ model, x: bx, y: by, n: 20, p0: { a: 1, b: 1, c: 0 }, shardSize: 50 })).params),
    ];
    const alone = new Engine({ threads: 2 });
    const reference: string[] = [];
    try {
      for (const job of jobs) reference.push(await job(alone));
    } finally {
      await alone.close();
    }
    const shared = new Engine({ threads: 2, maxConcurrentFits: 15 });
    try {
      const together = await Promise.all([0, 1, 2].flatMap(() => jobs.map((job) => job(shared))));
      together.forEach((value, k) => expect(value).toBe(reference[k % jobs.length]));
    } finally {
      await shared.close();
    }
  }, 120_000);
});

describe('the task scheduler', () => {
  /** A pool of `workers` whose tasks return after a timer; records what it ran. */
  function fakePool(workers: number) {
    const ran: string[] = [];
    const release: Array<() => void> = [];
    const scheduler = new TaskScheduler(workers, (task) => {
      const t = task as { key?: string; name?: string; blockStart?: number; blockEnd?: number };
      ran.push(t.blockStart === undefined ? t.name! : `${t.key}:${t.blockStart}-${t.blockEnd}`);
      return new Promise((resolve) => {
        release.push(() =>
          resolve(t.blockStart === undefined ? t.name : { roots: Float64Array.of(t.blockStart, t.blockEnd!), kernelMs: 0.001 * (t.blockEnd! - t.blockStart) }),
        );
      });
    });
    /** Lets the oldest task on a worker return. */
    const step = async (): Promise<void> => {
      release.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    };
    return { scheduler, ran, step, running: () => release.length };
  }

  it('gives a free worker to the fit served least recently, not to the oldest task', async () => {
    const pool = fakePool(1);
    const a = [0, 1, 2, 3].map((i) => pool.scheduler.submit({ key: 'a', name: `a${i}` }));
    const b = pool.scheduler.submit({ batch: {}, name: 'b0' });
    while (pool.running() > 0) await pool.step();
    await Promise.all([...a, b]);
    expect(pool.ran).toEqual(['a0', 'b0', 'a1', 'a2', 'a3']);
  });

  it('never hands the pool more tasks than it has workers', async () => {
    const pool = fakePool(2);
    const calls = Array.from({ length: 6 }, (_, i) => pool.scheduler.submit({ key: `f${i % 3}`, name: `t${i}` }));
    expect(pool.running()).toBe(2);
    while (pool.running() > 0) {
      expect(pool.running()).toBeLessThanOrEqual(2);
      await pool.step();
    }
    expect(await Promise.all(calls)).toEqual(['t0', 't1', 't2', 't3', 't4', 't5']);
  });

  it('runs a long pass task in consecutive slices and hands back their roots in order, as one part', async () => {
    const pool = fakePool(1);
    const whole = pool.scheduler.submit({ key: 'big', blockStart: 100, blockEnd: 5100 });
    while (pool.running() > 0) await pool.step();
    const part = (await whole) as { roots: Float64Array; kernelMs: number };
    const edges = Array.from(part.roots);
    expect(edges[0]).toBe(100);
    expect(edges.at(-1)).toBe(5100);
    for (let k = 1; k + 1 < edges.length; k += 2) expect(edges[k]).toBe(edges[k + 1]);
    expect(edges.length).toBeGreaterThan(2);
    expect(part.kernelMs).toBeCloseTo(5, 9);
    // A short one runs whole and comes back as the worker returned it.
    const short = pool.scheduler.submit({ key: 'small', blockStart: 0, blockEnd: 300 });
    await pool.step();
    expect(pool.ran.at(-1)).toBe('small:0-300');
    while (pool.running() > 0) await pool.step();
    expect(Array.from(((await short) as { roots: Float64Array }).roots)).toEqual([0, 300]);
  });

  it('drops a waiting task whose signal fires, and rejects waiting tasks when closed', async () => {
    const pool = fakePool(1);
    const first = pool.scheduler.submit({ key: 'a', name: 'first' });
    const controller = new AbortController();
    const aborted = pool.scheduler.submit({ key: 'b', name: 'aborted' }, { signal: controller.signal });
    const dropped = pool.scheduler.submit({ key: 'c', name: 'dropped' });
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
    pool.scheduler.close();
    await expect(dropped).rejects.toMatchObject({ code: 'ERR_NLFIT_ENGINE_CLOSED', message: 'nlfit: this engine has been closed while the task waited for a worker' });
    await pool.step();
    expect(await first).toBe('first');
    expect(pool.ran).toEqual(['first']);
    await expect(pool.scheduler.submit({ key: 'd', name: 'late' })).rejects.toMatchObject({ code: 'ERR_NLFIT_ENGINE_CLOSED' });
  });
});

// Last: it configures (and closes) this file's default engine.
describe('the default engine', () => {
  it('configureDefaultEngine() sets the default engine once, before its first use', async () => {
    const engine = configureDefaultEngine({ threads: 1, maxConcurrentFits: 1, maxQueue: 0 });
    expect(engine.threads).toBe(1);
    const [first, second] = await Promise.allSettled([fit({ model, data: small, p0 }), fit({ model, data: small, p0 })]);
    expect(first.status).toBe('fulfilled');
    expect(second.status === 'rejected' && (second.reason as Error).name).toBe('QueueFullError');
    expect(() => configureDefaultEngine({ threads: 2 })).toThrow(/must be called before the default engine is first used/);
    await engine.close();
  });
});
