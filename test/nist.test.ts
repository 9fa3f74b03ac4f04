import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { fit } from '../dist/index.js';

/**
 * NIST StRD nonlinear regression problems (test/fixtures/nist), each fitted
 * from both official starting points with default options. Accuracy is the
 * log relative error against the certified values:
 *   LRE = -log10(|estimate - certified| / |certified|), capped at 11,
 * the number of correct significant digits. A fit passes with LRE >= 6 for
 * every parameter and for the residual sum of squares, and LRE >= 4 for every
 * standard error (the certified errors are themselves derived from the
 * certified solution, so a good solver matches them to fewer digits).
 */

interface NistProblem {
  name: string;
  difficulty: string;
  model: string;
  /** 'y', or 'log(y)' (Nelson): the residual is response - model. */
  response: 'y' | 'log(y)';
  variables: string[];
  params: string[];
  start1: number[];
  start2: number[];
  certified_values: number[];
  certified_std_errors: number[];
  certified_rss: number;
  degrees_of_freedom: number;
  data: Record<string, number[]>;
}

const kMaxLre = 11;
const kParamLre = 6;
const kStdErrorLre = 4;
const kRssLre = 6;

function lre(estimate: number, certified: number): number {
  if (estimate === certified) return kMaxLre;
  if (!Number.isFinite(estimate)) return 0;
  const relative = Math.abs(estimate - certified) / Math.abs(certified);
  return Math.min(kMaxLre, Math.max(0, -Math.log10(relative)));
}

const fixtures = new URL('./fixtures/nist/', import.meta.url);
const problems: NistProblem[] = readdirSync(fixtures)
  .filter((file) => file.endsWith('.json'))
  .sort()
  .map((file) => JSON.parse(readFileSync(new URL(file, fixtures), 'utf8')) as NistProblem);

interface Row {
  problem: string;
  start: string;
  params: number;
  stderr: number;
  rss: number;
  iterations: number;
  nfev: number;
  status: string;
}

const rows: Row[] = [];

describe('NIST StRD nonlinear regression, default options', () => {
  it('has the fixtures', () => {
    expect(problems.map((p) => p.name)).toContain('Misra1a');
    expect(problems.length).toBeGreaterThanOrEqual(17);
  });

  for (const problem of problems) {
    for (const start of ['start1', 'start2'] as const) {
      it(`${problem.name} (${problem.difficulty}) from ${start}`, async () => {
        const y = problem.response === 'log(y)' ? problem.data.y!.map(Math.log) : problem.data.y!;
        const data: Record<string, number[]> = { y };
        for (const variable of problem.variables) data[variable] = problem.data[variable]!;
        const p0 = Object.fromEntries(problem.params.map((name, i) => [name, problem[start][i]!]));

        const r = await fit({ model: problem.model, data, p0 });

        const paramLre = problem.params.map((name, i) => lre(r.params[name]!, problem.certified_values[i]!));
        const stderrLre = problem.params.map((name, i) => lre(r.stderr[name]!, problem.certified_std_errors[i]!));
        const rssLre = lre(r.rss, problem.certified_rss);
        rows.push({
          problem: problem.name,
          start,
          params: Math.min(...paramLre),
          stderr: Math.min(...stderrLre),
          rss: rssLre,
          iterations: r.iterations,
          nfev: r.nfev,
          status: r.status,
        });

        const failures: string[] = [];
        problem.params.forEach((name, i) => {
          if (!(paramLre[i]! >= kParamLre)) {
            failures.push(`${name} = ${r.params[name]} (certified ${problem.certified_values[i]}): LRE ${paramLre[i]!.toFixed(1)}`);
          }
          if (!(stderrLre[i]! >= kStdErrorLre)) {
            failures.push(
              `stderr ${name} = ${r.stderr[name]} (certified ${problem.certified_std_errors[i]}): LRE ${stderrLre[i]!.toFixed(1)}`,
            );
          }
        });
        if (!(rssLre >= kRssLre)) failures.push(`rss = ${r.rss} (certified ${problem.certified_rss}): LRE ${rssLre.toFixed(1)}`);
        const context = `${problem.name} from ${start}: ${r.status} after ${r.iterations} iterations, ${r.nfev} evaluations (${r.message})`;
        expect(failures, context).toEqual([]);
        expect(r.success, context).toBe(true);
        expect(r.nPoints).toBe(problem.data.y!.length);
        expect(r.dof).toBe(problem.degrees_of_freedom);
      }, 20_000);
    }
  }

  afterAll(() => {
    if (rows.length === 0) return;
    const order = new Map(problems.map((p, i) => [p.name, i]));
    rows.sort((a, b) => order.get(a.problem)! - order.get(b.problem)! || a.start.localeCompare(b.start));
    const header = 'problem    start   LRE params  LRE stderr  LRE rss  iter  nfev  status';
    const lines = rows.map(
      (row) =>
        `${row.problem.padEnd(10)} ${row.start.padEnd(7)} ${row.params.toFixed(1).padStart(10)} ${row.stderr.toFixed(1).padStart(11)} ` +
        `${row.rss.toFixed(1).padStart(8)} ${String(row.iterations).padStart(5)} ${String(row.nfev).padStart(5)}  ${row.status}`,
    );
    console.log(`NIST StRD (minimum LRE over parameters; ${kMaxLre} = exact)\n${header}\n${lines.join('\n')}`);
  });
});
