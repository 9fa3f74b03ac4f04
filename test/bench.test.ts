// The benchmark harness must keep working (it is how the README's numbers are
// made). This runs one tiny trial and checks the report's shape, never its
// timings: speed is judged by `npm run bench`, not by tests.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const run = fileURLToPath(new URL('../bench/run.js', import.meta.url));

describe('benchmark harness', () => {
  it('runs a filtered trial and prints its report', () => {
    const result = spawnSync(process.execPath, [run, '--quick', '--filter', 'exp3/1e4/nlfit-1t', '--runs', '1'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^# nlfit benchmark/);
    expect(result.stdout).toMatch(/seed 7/);
    expect(result.stdout).toMatch(/\| 1e4 \| nlfit, 1 thread \(pool\) \|/);
    expect(result.stdout).toMatch(/## Targets/);
  }, 70_000);

  it('rejects an unknown option with exit code 2', () => {
    const result = spawnSync(process.execPath, [run, '--bogus'], { encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/unknown option '--bogus'/);
  });
});
