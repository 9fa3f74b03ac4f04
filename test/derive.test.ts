// The derive stage (src/data/derive.ts): transforms and filters evaluated by
// the native kernel, against JavaScript references; chunked application
// equal to whole-table application bit for bit; error messages.
import { describe, expect, it } from 'vitest';
import { compileDerive, type DeriveStage } from '../dist/data/derive.js';
import { ModelError } from '../dist/errors.js';
import { failure } from './model/helpers.js';

const f64 = (values: number[]) => Float64Array.from(values);

/** Whether two arrays hold the same bits (NaN payloads included). */
function sameBits(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.every((v, i) => v === y[i]);
}

/** A ModelError's message including the field prefix, without the caret display, and its position. */
function modelFailure(run: () => unknown): { message: string; position: number } {
  return failure(run);
}

describe('transforms', () => {
  const t = f64([0, 250, 1000, 4000.5]);
  const counts = f64([1, 10, 1e6, 0.5]);

  it('compute new columns from the source columns', () => {
    const stage = compileDerive({ transform: { y: 'log(counts)', x: 't*1e-3' } }, ['t', 'counts']);
    expect(stage.inputColumns).toEqual(['t', 'counts']);
    expect(stage.outputColumns).toEqual(['t', 'counts', 'y', 'x']);
    const { columns, count, dropped } = stage.apply({ t, counts }, 4);
    expect([count, dropped]).toEqual([4, 0]);
    expect(sameBits(columns['x']!, t.map((v) => v * 1e-3))).toBe(true);
    columns['y']!.forEach((v, i) => expect(v).toBeCloseTo(Math.log(counts[i]!), 14));
    expect(sameBits(columns['t']!, t)).toBe(true);
    expect(sameBits(columns['counts']!, counts)).toBe(true);
  });

  it('replace a source column of the same name, in place in the column order', () => {
    const stage = compileDerive({ transform: { t: 't/2', w: '1' } }, ['t', 'counts']);
    expect(stage.outputColumns).toEqual(['t', 'counts', 'w']);
    const { columns } = stage.apply({ t, counts }, 4);
    expect([...columns['t']!]).toEqual([0, 125, 500, 2000.25]);
    expect([...columns['w']!]).toEqual([1, 1, 1, 1]);
  });

  it('see the source columns, never each other\'s outputs', () => {
    const stage = compileDerive({ transform: { t: 't*2', u: 't + 1' } }, ['t']);
    const { columns } = stage.apply({ t }, 4);
    expect([...columns['t']!]).toEqual([0, 500, 2000, 8001]);
    expect([...columns['u']!]).toEqual([1, 251, 1001, 4001.5]);
  });

  it('use the whole expression language: functions, constants, conditions', () => {
    const stage = compileDerive(
      { transform: { s: 'sqrt(t) * (counts >= 10) + pi*(counts < 10)', m: 'max(t, counts) - min(t, counts)', e2: 'e^2 + 0*t' } },
      ['t', 'counts'],
    );
    const { columns } = stage.apply({ t, counts }, 4);
    for (let i = 0; i < 4; i++) {
      const [tv, cv] = [t[i]!, counts[i]!];
      expect(columns['s']![i]).toBe(cv >= 10 ? Math.sqrt(tv) : Math.PI);
      expect(columns['m']![i]).toBe(Math.max(tv, cv) - Math.min(tv, cv));
    }
    expect(columns['e2']![0]).toBeCloseTo(Math.E ** 2, 14);
  });

  it('leave the chunk unmodified and return columns exactly count long', () => {
    const long = f64([1, 2, 3, 4, 5, 6]);
    const copy = long.slice();
    const stage = compileDerive({ transform: { y: 'x*x' }, where: 'y > 4' }, ['x']);
    const { columns, count, dropped } = stage.apply({ x: long }, 4);
    expect([count, dropped]).toEqual([2, 2]);
    expect([...columns['x']!]).toEqual([3, 4]);
    expect([...columns['y']!]).toEqual([9, 16]);
    expect(sameBits(long, copy)).toBe(true);
  });
});

describe('filters', () => {
  it('drop the rows where the condition is not 1, compacting every column in order', () => {
    const x = f64([-2, -1, 0, 1, 2, 3, 4]);
    const y = f64([10, 20, 30, 40, 50, 60, 70]);
    const stage = compileDerive({ where: 'x > 0 && y < 65' }, ['x', 'y']);
    const { columns, count, dropped } = stage.apply({ x, y }, 7);
    expect([count, dropped]).toEqual([3, 4]);
    expect([...columns['x']!]).toEqual([1, 2, 3]);
    expect([...columns['y']!]).toEqual([40, 50, 60]);
  });

  it('see the transformed columns', () => {
    const counts = f64([0.5, 2, -1, 3, 0]);
    const stage = compileDerive({ transform: { y: 'log(counts)' }, where: 'y > 0' }, ['counts']);
    expect(stage.inputColumns).toEqual(['counts']);
    const { columns, count, dropped } = stage.apply({ counts }, 5);
    // log(0.5) < 0, log(-1) is NaN (dropped: a comparison with NaN is false), log(0) = -inf.
    expect([count, dropped]).toEqual([2, 3]);
    expect([...columns['counts']!]).toEqual([2, 3]);
    expect(columns['y']![0]).toBeCloseTo(Math.log(2), 15);
    expect(columns['y']![1]).toBeCloseTo(Math.log(3), 15);
  });

  it('treat NaN as false and follow IEEE comparisons', () => {
    const x = f64([NaN, 1, 2, NaN, 0]);
    const kept = (where: string) => {
      const { columns } = compileDerive({ where }, ['x']).apply({ x }, 5);
      return [...columns['x']!];
    };
    expect(kept('x == x')).toEqual([1, 2, 0]);
    expect(kept('x && 1')).toEqual([1, 2]);
    expect(kept('x >= 0 || x < 0')).toEqual([1, 2, 0]);
    // != is true for NaN, and so is the negation of a false comparison.
    expect(kept('x != 1')).toEqual([NaN, 2, NaN, 0]);
    expect(kept('!(x < 1)')).toEqual([NaN, 1, 2, NaN]);
    // Only exactly 1 keeps a row: a bare value of 2 does not.
    expect(kept('x')).toEqual([1]);
  });

  it('may drop every row, or none', () => {
    const x = f64([1, 2, 3]);
    expect(compileDerive({ where: 'x > 5' }, ['x']).apply({ x }, 3)).toMatchObject({ count: 0, dropped: 3 });
    expect(compileDerive({ where: 'x > 5' }, ['x']).apply({ x }, 3).columns['x']!.length).toBe(0);
    expect(compileDerive({ where: 'x > 0' }, ['x']).apply({ x }, 3)).toMatchObject({ count: 3, dropped: 0 });
  });

  it('handle an empty chunk', () => {
    const stage = compileDerive({ transform: { y: 'log(x)' }, where: 'y > 0' }, ['x']);
    const { columns, count, dropped } = stage.apply({ x: new Float64Array(0) }, 0);
    expect([count, dropped, columns['x']!.length, columns['y']!.length]).toEqual([0, 0, 0, 0]);
  });
});

describe('stage shape', () => {
  it('with no options passes the source through as views', () => {
    const x = f64([1, 2, 3, 4]);
    const stage = compileDerive({}, ['x', 'y']);
    expect(stage.inputColumns).toEqual(['x', 'y']);
    expect(stage.outputColumns).toEqual(['x', 'y']);
    const { columns } = stage.apply({ x, y: x }, 3);
    expect(columns['x']!.buffer).toBe(x.buffer);
    expect([...columns['x']!]).toEqual([1, 2, 3]);
  });

  it('ignores other fit options in the object', () => {
    const stage = compileDerive({ where: 'x > 0', model: 'a*x', p0: [1] } as never, ['x']);
    expect(stage.outputColumns).toEqual(['x']);
  });

  it('reads and returns only the needed columns, and what the filter reads', () => {
    const source = ['t', 'counts', 'quality', 'junk'];
    const stage = compileDerive({ transform: { y: 'log(counts)', x: 't*1e-3', unused: 'junk*2' }, where: 'quality > 0' }, source, ['x', 'y']);
    expect(stage.inputColumns).toEqual(['t', 'counts', 'quality']);
    expect(stage.outputColumns).toEqual(['y', 'x']);
    const { columns, count } = stage.apply({ t: f64([1000, 2000]), counts: f64([1, Math.E]), quality: f64([1, 0]) }, 2);
    expect(count).toBe(1);
    expect(Object.keys(columns)).toEqual(['y', 'x']);
    expect([columns['x']![0], columns['y']![0]]).toEqual([1, 0]);
  });

  it('still checks a transform whose output is not needed', () => {
    expect(() => compileDerive({ transform: { unused: 'nope*2' } }, ['x'], ['x'])).toThrow(ModelError);
  });
});

describe('chunked application', () => {
  const n = 5000;
  let seed = 12345;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const t = Float64Array.from({ length: n }, () => random() * 100 - 10);
  const counts = Float64Array.from({ length: n }, (_, i) => (i % 211 === 0 ? NaN : random() * 1e4 - 100));
  const options = {
    transform: { y: 'log(counts)', x: 't*1e-3', w: 'exp(-t/20) * (t > 0) + sqrt(abs(t))', t: 'sin(t)' },
    where: 'x > 0 && y < 8.5 || w > 3',
  };

  function run(stage: DeriveStage, chunkSizes: number[]): { columns: Record<string, Float64Array>; dropped: number } {
    const parts: Record<string, Float64Array[]> = {};
    let start = 0;
    let dropped = 0;
    for (const size of chunkSizes) {
      // Chunk buffers longer than the rows they hold, as a reused buffer would be.
      const chunk = Object.fromEntries(
        stage.inputColumns.map((name) => {
          const buffer = new Float64Array(size + 7).fill(-999);
          buffer.set((name === 't' ? t : counts).subarray(start, start + size));
          return [name, buffer];
        }),
      );
      const out = stage.apply(chunk, size);
      dropped += out.dropped;
      for (const name of stage.outputColumns) (parts[name] ??= []).push(out.columns[name]!.slice());
      start += size;
    }
    const columns: Record<string, Float64Array> = {};
    for (const name of stage.outputColumns) {
      const pieces = parts[name] ?? [];
      const joined = new Float64Array(pieces.reduce((s, p) => s + p.length, 0));
      let at = 0;
      for (const p of pieces) joined.set(p, (at += p.length) - p.length);
      columns[name] = joined;
    }
    return { columns, dropped };
  }

  it('gives the same bits as one application to the whole table', () => {
    const stage = compileDerive(options, ['t', 'counts']);
    const whole = run(stage, [n]);
    expect(whole.dropped).toBeGreaterThan(100);
    expect(whole.dropped).toBeLessThan(n - 100);
    for (const sizes of [
      [1, 511, 512, 513, 1000, 2463],
      Array.from({ length: 50 }, () => 100),
      [4999, 1],
      [0, 2500, 0, 2500],
    ]) {
      const chunked = run(stage, sizes);
      expect(chunked.dropped).toBe(whole.dropped);
      for (const name of stage.outputColumns) expect(sameBits(chunked.columns[name]!, whole.columns[name]!), `${name} in chunks ${sizes.length}`).toBe(true);
    }
  });

  it('matches a JavaScript reference row by row', () => {
    const stage = compileDerive(options, ['t', 'counts']);
    const { columns, dropped } = run(stage, [700, 4300]);
    const expected: number[][] = [];
    for (let i = 0; i < n; i++) {
      const [tv, cv] = [t[i]!, counts[i]!];
      const y = Math.log(cv);
      const x = tv * 1e-3;
      const w = Math.exp(-tv / 20) * (tv > 0 ? 1 : 0) + Math.sqrt(Math.abs(tv));
      if ((x > 0 && y < 8.5) || w > 3) expected.push([Math.sin(tv), cv, y, x, w]);
    }
    expect(stage.outputColumns).toEqual(['t', 'counts', 'y', 'x', 'w']);
    expect(dropped).toBe(n - expected.length);
    expected.forEach((row, k) => {
      stage.outputColumns.forEach((name, c) => {
        const [got, want] = [columns[name]![k]!, row[c]!];
        if (Number.isNaN(want)) expect(got, `${name}[${k}]`).toBeNaN();
        else expect(Math.abs(got - want), `${name}[${k}]`).toBeLessThanOrEqual(4 * Number.EPSILON * Math.abs(want));
      });
    });
  });
});

describe('errors', () => {
  it.each([
    [{ transform: { y: 'log(cnts)' } }, "transform.y: unknown column 'cnts' (did you mean 'counts'?)", 4],
    [{ transform: { y: 'a*t' } }, "transform.y: unknown column 'a' (expressions have no parameters; the source columns are 't', 'counts')", 0],
    [{ transform: { y: 'log(counts)', x: 't*k' } }, "transform.x: unknown column 'k' (expressions have no parameters; the source columns are 't', 'counts')", 2],
    [{ transform: { y: 'log(counts' } }, "transform.y: unbalanced parentheses: this '(' is never closed", 3],
    [{ transform: { y: '' } }, 'transform.y: empty expression', 0],
    [{ transform: { y: 'exp + t' } }, "transform.y: 'exp' is a function and needs arguments, as in exp(x)", 0],
    [{ transform: { y: 'foo(t)' } }, "transform.y: unknown function 'foo'", 0],
    [{ where: 'cnts > 0' }, "where: unknown column 'cnts' (did you mean 'counts'?)", 0],
    [{ where: '0 < t < 1' }, "where: comparisons cannot be chained: write '0 < t && t < 1'", 6],
    [{ where: 't = 1' }, "where: unexpected character '=' (use '==' to compare)", 2],
    [{ transform: { y: 'log(counts)' }, where: 'y > 0 && z < 1' }, "where: unknown column 'z' (expressions have no parameters; the columns after transform are 't', 'counts', 'y')", 9],
    [{ where: 'T > 0' }, "where: unknown column 'T' (did you mean 't'?)", 0],
    [{ where: 'Counts > 0' }, "where: unknown column 'Counts' (did you mean 'counts'?)", 0],
    [{ transform: { y2: 'log(counts)' }, where: 'y2 > 0 && q < 1' }, "where: unknown column 'q' (expressions have no parameters; the columns after transform are 't', 'counts', 'y2')", 10],
  ])('%j: %s', (options, message, position) => {
    expect(modelFailure(() => compileDerive(options, ['t', 'counts']))).toEqual({ message, position });
  });

  it('show the expression with a caret under the problem', () => {
    expect(() => compileDerive({ transform: { y: 'log(cnts)' } }, ['t', 'counts'])).toThrow(
      "transform.y: unknown column 'cnts' (did you mean 'counts'?) at position 4\n  log(cnts)\n      ^",
    );
  });

  it.each([
    [() => compileDerive(null as never, ['x']), TypeError, 'Expected an object for options but received null'],
    [() => compileDerive({ transform: ['x'] } as never, ['x']), TypeError, 'Expected an object mapping column names to expressions for transform but received an array of length 1'],
    [() => compileDerive({ transform: { y: 3 } } as never, ['x']), TypeError, 'Expected a string for transform.y but received 3 of type number'],
    [() => compileDerive({ transform: { 'my y': 'x' } }, ['x']), RangeError, "Invalid transform: 'my y' is not a valid column name (letters, digits and '_', not starting with a digit)"],
    [() => compileDerive({ where: true } as never, ['x']), TypeError, 'Expected a string for where but received true of type boolean'],
    [() => compileDerive({}, 'x' as never), TypeError, 'Expected an array of strings for sourceColumns but received "x" of type string'],
    [() => compileDerive({}, ['x'], ['x', 'q']), RangeError, "Invalid data: no column 'q' (the columns after transform are 'x')"],
  ])('reject malformed options %#', (run, type, message) => {
    expect(run).toThrow(type);
    expect(run).toThrow(message);
  });

  it('reject a chunk missing a column, a short column or a bad count', () => {
    const stage = compileDerive({ transform: { y: 'x*2' } }, ['x', 'z']);
    const x = f64([1, 2, 3]);
    expect(() => stage.apply({ x } as never, 3)).toThrow(expect.objectContaining({ name: 'TypeError', message: 'Expected a Float64Array for chunk.z but received undefined' }));
    expect(() => stage.apply({ x, z: [1, 2, 3] } as never, 3)).toThrow(expect.objectContaining({ name: 'TypeError', message: 'Expected a Float64Array for chunk.z but received an array of length 3' }));
    expect(() => stage.apply({ x, z: f64([1]) }, 3)).toThrow(expect.objectContaining({ name: 'RangeError', message: 'Expected at least 3 values for chunk.z but received a Float64Array of length 1' }));
    expect(() => stage.apply({ x, z: x }, -1)).toThrow(expect.objectContaining({ name: 'RangeError', message: 'Expected a non-negative integer for count but received -1 of type number' }));
    expect(() => stage.apply({ x, z: x }, 1.5)).toThrow(RangeError);
  });
});
