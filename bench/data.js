/**
 * The benchmark's data: for each (model, size) the seeded generator of the
 * library (dist/data/synthetic.js) makes y = f(x; truth) + noise once, and
 * the columns are written as raw little-endian float64 (x.bin, y.bin) into a
 * temporary directory that every runner reads. One data set exists at a time;
 * the directory goes when the run ends, also on error or Ctrl-C.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { endianness, tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthetic } from '../dist/data/synthetic.js';
import { kSeed, sizeLabel } from './trials.js';

export const generatorDescription =
  `dist/data/synthetic.js synthetic(): x evenly spaced, y = f(x; truth) + sd * N(0, 1) ` +
  `(mulberry32 uniform, Box-Muller normal), seed ${kSeed}; float64 little-endian columns`;

export class Workspace {
  constructor() {
    if (endianness() !== 'LE') throw new Error('the benchmark writes little-endian columns and needs a little-endian machine');
    /** Temporary directory for the data and the roofline executable. */
    this.dir = mkdtempSync(join(tmpdir(), 'nlfit-bench-'));
    this.current = null;
  }

  /**
   * The files of one data set, generating them (and dropping the previous set) if needed.
   * @param {import('./trials.js').Model} model
   * @param {number} n
   * @returns {{ key: string, xPath: string, yPath: string, generateMs: number }}
   */
  dataset(model, n) {
    const key = `${model.id}-${sizeLabel(n)}`;
    if (this.current?.key === key) return this.current;
    this.dropDataset();
    const started = performance.now();
    const { x, y } = synthetic(n, model.value(model.truth), { x0: model.x[0], x1: model.x[1], noise: model.noise, seed: kSeed });
    const xPath = join(this.dir, `${key}-x.bin`);
    const yPath = join(this.dir, `${key}-y.bin`);
    writeColumn(xPath, x);
    writeColumn(yPath, y);
    this.current = { key, xPath, yPath, generateMs: performance.now() - started };
    return this.current;
  }

  dropDataset() {
    if (this.current === null) return;
    rmSync(this.current.xPath, { force: true });
    rmSync(this.current.yPath, { force: true });
    this.current = null;
  }

  /** Removes everything; safe to call more than once. */
  remove() {
    rmSync(this.dir, { recursive: true, force: true });
    this.current = null;
  }
}

function writeColumn(path, values) {
  const bytes = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
  } finally {
    closeSync(fd);
  }
}
