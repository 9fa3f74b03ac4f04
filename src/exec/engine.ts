/**
 * An Engine owns a Piscina pool of kernel workers. One default engine, sized
 * to the machine, serves every fit() call; create your own for control:
 *
 *   const engine = new Engine({ threads: 4 });
 *   const r = await engine.fit({ model, data, p0 });
 *   await engine.close();
 *
 * Workers start on the first fit that needs them (or on warmup()). Idle
 * workers do not keep the process alive, so a script may exit without close().
 */
import { Piscina } from 'piscina';
import { normalizeEngineOptions, type EngineOptions } from '../options.js';

const kIdleTimeoutMs = 60_000;

export class EnginePool {
  readonly threads: number;
  private pool: Piscina | undefined;
  private closed = false;

  constructor(options: EngineOptions = {}) {
    this.threads = normalizeEngineOptions(options).threads;
  }

  /** The worker pool, created on first use. */
  workers(): Piscina {
    if (this.closed) throw new Error('nlfit: this engine has been closed');
    if (!this.pool) {
      this.pool = new Piscina({
        filename: new URL('./worker.js', import.meta.url).href,
        minThreads: this.threads,
        maxThreads: this.threads,
        idleTimeout: kIdleTimeoutMs,
        concurrentTasksPerWorker: 1,
      });
    }
    return this.pool;
  }

  async close(): Promise<void> {
    this.closed = true;
    const pool = this.pool;
    this.pool = undefined;
    if (pool) await pool.close({ force: true });
  }
}
