import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fit } from '../dist/index.js';

/**
 * Agreement with scipy.optimize.curve_fit(method='lm') on weighted and
 * unweighted problems (test/fixtures/scipy, made by generate.py there).
 *
 * Both sides run with ftol = xtol = 1e-14. Parameters must agree to 1e-9
 * relative, with one allowance: near the optimum the sum of squares is flat
 * to rounding within a few 1e-7 standard errors, so two correct solvers may
 * stop anywhere in that region; a difference below 1e-6 standard errors is
 * agreement too. The covariance must agree element-wise to 1e-6 relative to
 * the diagonal scale, |C_ij - S_ij| <= 1e-6 sqrt(|S_ii S_jj|), for relative
 * and absolute sigma.
 */

interface ScipyCase {
  name: string;
  weighted: boolean;
  absolute_sigma: boolean;
  popt: number[];
  pcov: number[][];
  perr: number[];
  /** The exact stationary point (Gauss-Newton from popt), for diagnostics. */
  popt_stationary: number[];
  chi2: number;
  rss: number;
}

interface ScipyFixture {
  name: string;
  description: string;
  model: string;
  params: string[];
  p0: number[];
  variables: string[];
  versions: { scipy: string; numpy: string };
  data: Record<string, number[]>;
  cases: ScipyCase[];
  default_tolerances?: { jac: string; absolute_sigma: boolean; popt: number[]; pcov: number[][] }[];
}

const kParamRelative = 1e-9;
const kParamStandardErrors = 1e-6;
const kCovarianceRelative = 1e-6;
const kChi2Relative = 1e-10;

const fixtures = new URL('./fixtures/scipy/', import.meta.url);
const problems: ScipyFixture[] = readdirSync(fixtures)
  .filter((file) => file.endsWith('.json'))
  .sort()
  .map((file) => JSON.parse(readFileSync(new URL(file, fixtures), 'utf8')) as ScipyFixture);

function columns(problem: ScipyFixture, weighted: boolean): Record<string, Float64Array> {
  const data: Record<string, Float64Array> = { y: Float64Array.from(problem.data.y!) };
  for (const variable of problem.variables) data[variable] = Float64Array.from(problem.data[variable]!);
  if (weighted) data.sigma = Float64Array.from(problem.data.sigma!);
  return data;
}

function startingPoint(problem: ScipyFixture): Record<string, number> {
  return Object.fromEntries(problem.params.map((name, i) => [name, problem.p0[i]!]));
}

/** Mismatches of a fitted covariance (in the result's parameter order) against scipy's pcov. */
function covarianceMismatches(
  params: string[],
  paramNames: string[],
  covariance: number[][],
  reference: number[][],
  relative: number,
): string[] {
  const mismatches: string[] = [];
  params.forEach((pi, i) => {
    params.forEach((pj, j) => {
      const got = covariance[paramNames.indexOf(pi)]?.[paramNames.indexOf(pj)];
      const want = reference[i]![j]!;
      const scale = Math.sqrt(Math.abs(reference[i]![i]! * reference[j]![j]!));
      if (got === undefined || !(Math.abs(got - want) <= relative * scale)) {
        mismatches.push(`cov[${pi},${pj}] = ${got} vs scipy ${want} (allowed ${relative * scale})`);
      }
    });
  });
  return mismatches;
}

describe('agreement with scipy curve_fit (lm)', () => {
  it('has the fixtures', () => {
    expect(problems.map((p) => p.name)).toEqual(['exp_decay_weighted', 'two_variables']);
  });

  for (const problem of problems) {
    for (const reference of problem.cases) {
      it(`${problem.name}: ${reference.name} (scipy ${problem.versions.scipy})`, async () => {
        const r = await fit({
          model: problem.model,
          data: columns(problem, reference.weighted),
          p0: startingPoint(problem),
          absoluteSigma: reference.absolute_sigma,
          ftol: 1e-14,
          xtol: 1e-14,
        });
        const context = `${r.status} after ${r.iterations} iterations (${r.message})`;
        expect(r.success, context).toBe(true);
        expect(r.nPoints).toBe(problem.data.y!.length);
        expect(r.dof).toBe(problem.data.y!.length - problem.params.length);

        const mismatches: string[] = [];
        problem.params.forEach((name, i) => {
          const got = r.params[name]!;
          const want = reference.popt[i]!;
          const allowed = Math.max(kParamRelative * Math.abs(want), kParamStandardErrors * reference.perr[i]!);
          if (!(Math.abs(got - want) <= allowed)) {
            const fromOptimum = (got - reference.popt_stationary[i]!) / reference.perr[i]!;
            mismatches.push(
              `${name} = ${got} vs scipy ${want} (allowed ${allowed}; ${fromOptimum.toExponential(2)} standard errors from the exact optimum)`,
            );
          }
          const se = r.stderr[name]!;
          if (!(Math.abs(se - reference.perr[i]!) <= kCovarianceRelative * reference.perr[i]!)) {
            mismatches.push(`stderr ${name} = ${se} vs scipy ${reference.perr[i]}`);
          }
        });
        mismatches.push(...covarianceMismatches(problem.params, r.paramNames, r.covariance, reference.pcov, kCovarianceRelative));
        if (!(Math.abs(r.chi2 - reference.chi2) <= kChi2Relative * reference.chi2)) {
          mismatches.push(`chi2 = ${r.chi2} vs ${reference.chi2}`);
        }
        if (!reference.weighted && !(Math.abs(r.rss - reference.rss) <= kChi2Relative * reference.rss)) {
          mismatches.push(`rss = ${r.rss} vs ${reference.rss}`);
        }
        expect(mismatches, context).toEqual([]);
      }, 20_000);
    }
  }

  it('takes p0 as an array in order of appearance, with the same result', async () => {
    const problem = problems.find((p) => p.name === 'exp_decay_weighted')!;
    const options = { model: problem.model, data: columns(problem, true), ftol: 1e-14, xtol: 1e-14 };
    const byName = await fit({ ...options, p0: startingPoint(problem) });
    const byOrder = await fit({ ...options, p0: problem.p0 });
    expect(byOrder.paramNames).toEqual(problem.params);
    expect(Array.from(byOrder.values)).toEqual(Array.from(byName.values));
    expect(byOrder.covariance).toEqual(byName.covariance);
  }, 20_000);

  it('with default tolerances, lands within 1e-3 standard errors of the tight optimum', async () => {
    const problem = problems.find((p) => p.name === 'exp_decay_weighted')!;
    const reference = problem.cases.find((c) => c.weighted && !c.absolute_sigma)!;
    const r = await fit({ model: problem.model, data: columns(problem, true), p0: startingPoint(problem) });
    expect(r.success, r.message).toBe(true);
    const offsets = problem.params.map((name, i) => (r.params[name]! - reference.popt[i]!) / reference.perr[i]!);
    for (const offset of offsets) expect(Math.abs(offset), `offsets in standard errors: ${offsets.join(', ')}`).toBeLessThan(1e-3);
    expect(covarianceMismatches(problem.params, r.paramNames, r.covariance, reference.pcov, 1e-3)).toEqual([]);
  }, 20_000);
});
