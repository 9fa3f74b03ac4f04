/**
 * Seeded synthetic data for the demo, benchmarks and tests: the same seed
 * gives the same numbers on every machine (integer PRNG, no Math.random).
 */
import { sharedFloat64 } from './columns.js';

/** mulberry32: a small, fast 32-bit generator; the same seed gives the same sequence everywhere. */
export class SeededRandom {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    let u = this.next();
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}

export interface SyntheticData {
  x: Float64Array;
  y: Float64Array;
}

/**
 * y = f(x) + noise * N(0, 1) for x evenly spaced on [x0, x1], in shared memory.
 */
export function synthetic(
  n: number,
  f: (x: number) => number,
  options: { x0?: number; x1?: number; noise?: number; seed?: number } = {},
): SyntheticData {
  const { x0 = 0, x1 = 1, noise = 0, seed = 1 } = options;
  const random = new SeededRandom(seed);
  const x = sharedFloat64(n);
  const y = sharedFloat64(n);
  const step = n > 1 ? (x1 - x0) / (n - 1) : 0;
  for (let i = 0; i < n; i++) {
    const xi = x0 + i * step;
    x[i] = xi;
    y[i] = f(xi) + (noise === 0 ? 0 : noise * random.normal());
  }
  return { x, y };
}
