// Diagnostics of a result: t quantiles, confidence intervals, bands, predict,
// the condition number, warnings and the lmfit-style report.
import { describe, expect, it } from 'vitest';
import { compileModel, fit, FitResult } from '../dist/index.js';
import { conditionNumber, singularValues } from '../dist/solver/diagnostics.js';
import { normalQuantile, regularizedBeta, studentTCritical, studentTQuantile } from '../dist/solver/distributions.js';

/*
 * Reference values, computed once with scipy 1.17.1 and numpy 2.4.6:
 *
 *   import numpy as np
 *   from scipy import stats, special
 *   levels = [0.5, 0.9, 0.95, 0.99, 0.999]
 *   dofs = [1, 2, 3, 5, 10, 30, 100, 1e4, 1e6, 1e9]
 *   print([[stats.t.ppf((1 + L) / 2, d) for L in levels] for d in dofs])
 *   print([stats.norm.ppf((1 + L) / 2) for L in levels])
 *   print([special.betainc(a, b, x) for a, b, x in [(2, 3, 0.4), (0.5, 5000, 1e-4), (50, 0.5, 0.9), (1.5, 2.5, 0.999)]])
 *   x = np.arange(20) / 2.0
 *   y = 1.5 + 0.8 * x + 0.3 * np.sin(3.7 * np.arange(20))
 *   X = np.column_stack([x, np.ones_like(x)])          # model 'a*x+b'
 *   beta, *_ = np.linalg.lstsq(X, y, rcond=None)
 *   n, p = X.shape
 *   s2 = np.sum((y - X @ beta) ** 2) / (n - p)
 *   C = s2 * np.linalg.inv(X.T @ X)
 *   se = np.sqrt(np.diag(C))
 *   print(beta, se, np.linalg.cond(X))
 *   for L in (0.95, 0.99):
 *       t = stats.t.ppf((1 + L) / 2, n - p)
 *       print([[b - t * e, b + t * e] for b, e in zip(beta, se)])
 *   x0 = np.array([-2.0, 0.0, 3.3, 9.5, 25.0])
 *   X0 = np.column_stack([x0, np.ones_like(x0)])
 *   sf = np.sqrt(np.einsum('ij,jk,ik->i', X0, C, X0))
 *   t = stats.t.ppf(0.975, n - p)
 *   print(X0 @ beta, t * sf, t * np.sqrt(sf ** 2 + s2))
 *   for A in ([[4, 1, -2], [0, 3, 0.5], [0, 0, 1e-3]], [[1, 1, 0], [0, 1e-9, 1], [0, 0, 2]]):
 *       print(np.linalg.svd(np.array(A, float), compute_uv=False), np.linalg.cond(np.array(A, float)))
 */
const kLevels = [0.5, 0.9, 0.95, 0.99, 0.999];
const kDofs = [1, 2, 3, 5, 10, 30, 100, 1e4, 1e6, 1e9];
const kTwoSidedT = [
  [1.0000000000000002, 6.313751514675037, 12.706204736174694, 63.656741162871526, 636.6192487687897],
  [0.8164965809277261, 2.9199855803537242, 4.302652729749462, 9.924843200918287, 31.599054576445365],
  [0.7648923284043444, 2.3533634348018233, 3.1824463052837078, 5.840909309733355, 12.923978636687961],
  [0.7266868438004226, 2.0150483733330233, 2.5705818356363146, 4.032142983555228, 6.868826625881276],
  [0.6998120613124317, 1.8124611228116756, 2.228138851986274, 3.16927267261695, 4.586893858702708],
  [0.6827556933212927, 1.697260886593957, 2.0422724563012378, 2.7499956535672254, 3.6459586350420627],
  [0.6769510430114717, 1.6602343260853392, 1.9839715185235518, 2.6258905214380173, 3.390491311164263],
  [0.6745142844835927, 1.645006018069243, 1.960201239890626, 2.5763210466685282, 3.2914999659416355],
  [0.6744899955310875, 1.6448551507220404, 1.959966356814107, 2.5758342201053344, 3.2905364612487222],
  [0.6744897504414163, 1.6448536284752415, 1.959963986912325, 2.5758293084654484, 3.2905267412216563],
];
const kTwoSidedNormal = [0.6744897501960817, 1.6448536269514722, 1.959963984540054, 2.5758293035489004, 3.2905267314919255];
const kBetainc: [number, number, number, number][] = [
  [2, 3, 0.4, 0.5247999999999999],
  [0.5, 5000, 1e-4, 0.6826894927420731],
  [50, 0.5, 0.9, 0.001204149832559813],
  [1.5, 2.5, 0.999, 0.9999999356016206],
];

const lineX = Array.from({ length: 20 }, (_, i) => i / 2);
const lineY = lineX.map((v, i) => 1.5 + 0.8 * v + 0.3 * Math.sin(3.7 * i));
const line = { model: 'a*x+b', data: { x: lineX, y: lineY }, p0: [1, 0] };
const ols = {
  params: [0.8058878810299619, 1.477640194798914],
  stderr: [0.01697331722425271, 0.09431270719393614],
  cond: 10.964448251736107,
  ci95: [
    [0.7702282647775265, 0.8415474972823973],
    [1.279496549580374, 1.6757838400174538],
  ],
  ci99: [
    [0.7570311977750416, 0.8547445642848822],
    [1.2061666813183425, 1.7491137082794854],
  ],
  bandX: [-2, 0, 3.3, 9.5, 25],
  fitted: [-0.13413556726100984, 1.477640194798914, 4.137070202197788, 9.133575064583551, 21.62483722054796],
  confidenceHalf: [0.26174012581131406, 0.19814364521853997, 0.11508170892321234, 0.19814364521853997, 0.7293895349934659],
  predictionHalf: [0.5290678235429918, 0.5006653299253768, 0.47397116808671264, 0.5006653299253768, 0.8622145685424136],
};

const expX = Array.from({ length: 40 }, (_, i) => i / 4);
const expY = expX.map((v) => 3 * Math.exp(-0.8 * v) + 0.5 + 0.01 * Math.sin(7 * v));
const decay = { model: 'a*exp(-b*x)+c', data: { x: expX, y: expY }, p0: { a: 1, b: 1, c: 0 } };

function expectRelative(actual: number, expected: number, tolerance: number): void {
  const error = Math.abs(actual - expected) / Math.max(Math.abs(expected), Number.MIN_VALUE);
  if (!(error <= tolerance)) throw new Error(`expected ${actual} to be within ${tolerance} (relative) of ${expected}: off by ${error}`);
}

type ResultInit = ConstructorParameters<typeof FitResult>[0];

/** The same result built directly, with extra init fields (bounds, fixed and derived parameters) or other statistics. */
function rebuilt(r: FitResult, columns: string[], extra: Partial<ResultInit> = {}, statistics: Partial<ResultInit['statistics']> = {}): FitResult {
  return new FitResult({
    model: r.model,
    paramNames: r.paramNames,
    values: r.values,
    p0: Float64Array.from(r.paramNames, (name) => r.initialParams[name]!),
    statistics: {
      rss: r.rss,
      cost: r.cost,
      chi2: r.chi2,
      reducedChi2: r.reducedChi2,
      rSquared: r.rSquared,
      rmse: r.rmse,
      aic: r.aic,
      bic: r.bic,
      dof: r.dof,
      nPoints: r.nPoints,
      rank: r.rank,
      conditionNumber: r.conditionNumber,
      covariance: r.covariance,
      stderr: r.paramNames.map((name) => r.stderr[name]!),
      correlation: r.correlation,
      ...statistics,
    },
    success: r.success,
    status: r.status,
    message: r.message,
    iterations: r.iterations,
    nfev: r.nfev,
    njev: r.njev,
    threads: r.threads,
    absoluteSigma: r.absoluteSigma,
    weighted: false,
    timing: r.timing,
    execution: r.execution,
    exported: r.exported,
    program: compileModel(r.model, { params: r.paramNames, columns }),
    ...extra,
  });
}

describe('Student t and normal quantiles', () => {
  it('match scipy.stats.t.ppf to 1e-10 over degrees of freedom and levels', () => {
    kDofs.forEach((dof, d) => {
      kLevels.forEach((level, l) => {
        const expected = kTwoSidedT[d]![l]!;
        expectRelative(studentTQuantile((1 + level) / 2, dof), expected, 1e-10);
        expectRelative(studentTQuantile((1 - level) / 2, dof), -expected, 1e-10);
        expectRelative(studentTCritical(level, dof), expected, 1e-10);
      });
    });
  });

  it('Infinity degrees of freedom give the normal quantile (scipy.stats.norm.ppf)', () => {
    kLevels.forEach((level, l) => {
      expectRelative(normalQuantile((1 + level) / 2), kTwoSidedNormal[l]!, 1e-12);
      expectRelative(studentTQuantile((1 + level) / 2, Infinity), kTwoSidedNormal[l]!, 1e-12);
    });
  });

  it('the regularized incomplete beta function matches scipy.special.betainc', () => {
    for (const [a, b, x, expected] of kBetainc) expectRelative(regularizedBeta(a, b, x), expected, 1e-13);
  });

  it('the median, the ends and invalid arguments', () => {
    expect(studentTQuantile(0.5, 7)).toBe(0);
    expect(studentTQuantile(0, 7)).toBe(-Infinity);
    expect(studentTQuantile(1, 7)).toBe(Infinity);
    expectRelative(studentTQuantile(0.75, 1), 1, 1e-14);
    expect(() => studentTQuantile(1.5, 3)).toThrow(RangeError);
    expect(() => studentTQuantile(0.9, 0)).toThrow(/dof/);
    expect(() => studentTCritical(1, 3)).toThrow(/level/);
  });
});

describe('confidence intervals', () => {
  it('equal the analytic OLS intervals for a straight line', async () => {
    const r = await fit(line);
    expectRelative(r.params.a!, ols.params[0]!, 1e-10);
    expectRelative(r.params.b!, ols.params[1]!, 1e-10);
    for (const [level, expected] of [
      [0.95, ols.ci95],
      [0.99, ols.ci99],
    ] as const) {
      const ci = r.confidenceIntervals(level);
      expect(Object.keys(ci)).toEqual(['a', 'b']);
      ['a', 'b'].forEach((name, i) => {
        expectRelative(ci[name]![0], expected[i]![0]!, 1e-9);
        expectRelative(ci[name]![1], expected[i]![1]!, 1e-9);
      });
    }
    expect(r.confidenceIntervals()).toEqual(r.confidenceIntervals(0.95));
  });

  it('a level outside (0, 1) is a RangeError naming level', async () => {
    const r = await fit(line);
    for (const level of [0, 1, -0.5, 1.5, NaN]) {
      expect(() => r.confidenceIntervals(level)).toThrow(RangeError);
      expect(() => r.confidenceIntervals(level)).toThrow(/for level/);
    }
    expect(() => r.confidenceIntervals('0.95' as unknown as number)).toThrow(/Expected number in \(0, 1\) for level but received "0.95"/);
  });

  it('are infinite where the standard error is (rank-deficient, no degrees of freedom)', async () => {
    const deficient = await fit({ model: 'a*b*x', data: { x: lineX, y: lineY }, p0: [1, 1] });
    expect(deficient.confidenceIntervals().a).toEqual([-Infinity, Infinity]);
    const exact = await fit({ model: 'a*x+b', data: { x: [0, 1], y: [1, 3] }, p0: [1, 0] });
    expect(exact.dof).toBe(0);
    expect(exact.confidenceIntervals().b).toEqual([-Infinity, Infinity]);
  });
});

describe('band', () => {
  it('a straight line: the analytic OLS confidence and prediction bands', async () => {
    const r = await fit(line);
    const confidence = r.band({ x: ols.bandX });
    const prediction = r.band({ x: ols.bandX }, { kind: 'prediction', level: 0.95 });
    ols.bandX.forEach((_, i) => {
      expectRelative(confidence.fitted[i]!, ols.fitted[i]!, 1e-10);
      expectRelative(confidence.upper[i]! - confidence.fitted[i]!, ols.confidenceHalf[i]!, 1e-8);
      expectRelative(confidence.fitted[i]! - confidence.lower[i]!, ols.confidenceHalf[i]!, 1e-8);
      expectRelative(prediction.upper[i]! - prediction.fitted[i]!, ols.predictionHalf[i]!, 1e-8);
      expectRelative(prediction.fitted[i]! - prediction.lower[i]!, ols.predictionHalf[i]!, 1e-8);
    });
    const wide = r.band(ols.bandX, { level: 0.99 });
    const ratio = studentTCritical(0.99, r.dof) / studentTCritical(0.95, r.dof);
    expectRelative(wide.upper[2]! - wide.fitted[2]!, ratio * ols.confidenceHalf[2]!, 1e-8);
  });

  it('a result built directly with the program gives the same band', async () => {
    const r = rebuilt(await fit(line), ['x']);
    const band = r.band(Float64Array.from(ols.bandX), { kind: 'prediction' });
    ols.bandX.forEach((_, i) => expectRelative(band.upper[i]! - band.fitted[i]!, ols.predictionHalf[i]!, 1e-8));
  });

  it('a nonlinear model: the delta method with the analytic gradient', async () => {
    const r = await fit(decay);
    const [a, b] = [r.params.a!, r.params.b!];
    const x = [0, 0.7, 2.5, 6, 12];
    const band = r.band({ x });
    const t = studentTCritical(0.95, r.dof);
    x.forEach((v, i) => {
      const g = [Math.exp(-b * v), -a * v * Math.exp(-b * v), 1];
      let variance = 0;
      for (let j = 0; j < 3; j++) for (let k = 0; k < 3; k++) variance += g[j]! * r.covariance[j]![k]! * g[k]!;
      expectRelative(band.upper[i]! - band.fitted[i]!, t * Math.sqrt(variance), 1e-7);
    });
  });

  it('accepts an object of columns, an array and a Float64Array alike, and large inputs in chunks', async () => {
    const r = await fit(decay);
    const x = Array.from({ length: 150_000 }, (_, i) => (i * 12) / 150_000);
    const fromObject = r.band({ x, y: x });
    const fromArray = r.band(x);
    const fromTyped = r.band(Float64Array.from(x));
    expect(Array.from(fromArray.lower)).toEqual(Array.from(fromObject.lower));
    expect(Array.from(fromTyped.upper)).toEqual(Array.from(fromObject.upper));
    for (const i of [0, 65535, 65536, 131072, 149_999]) {
      const single = r.band([x[i]!]);
      expect(fromObject.upper[i]).toBe(single.upper[0]);
      expect(fromObject.fitted[i]).toBe(single.fitted[0]);
    }
  });

  it('prediction bands of weighted fits: sigma at the new points, scaled by the reduced chi-square unless absolute', async () => {
    const sigma = lineX.map((_, i) => 0.2 + 0.01 * i);
    for (const absoluteSigma of [false, true]) {
      const r = await fit({ ...line, data: { ...line.data, sigma }, absoluteSigma });
      const t = studentTCritical(0.95, r.dof);
      const scale = absoluteSigma ? 1 : r.reducedChi2;
      const confidence = r.band([1, 4]);
      const prediction = r.band([1, 4], { kind: 'prediction', sigma: [0.3, 0.5] });
      [0.3, 0.5].forEach((s, i) => {
        const half = (confidence.upper[i]! - confidence.fitted[i]!) / t;
        expectRelative(prediction.upper[i]! - prediction.fitted[i]!, t * Math.sqrt(half * half + scale * s * s), 1e-12);
      });
      const unit = r.band([1], { kind: 'prediction' });
      const half = (confidence.upper[0]! - confidence.fitted[0]!) / t;
      expectRelative(unit.upper[0]! - unit.fitted[0]!, t * Math.sqrt(half * half + scale), 1e-12);
    }
  });

  it('is (-Infinity, Infinity) where the covariance does not exist', async () => {
    const r = await fit({ model: 'a*b*x', data: { x: lineX, y: lineY }, p0: [1, 1] });
    const band = r.band([1, 2]);
    expect(Array.from(band.lower)).toEqual([-Infinity, -Infinity]);
    expect(Array.from(band.upper)).toEqual([Infinity, Infinity]);
    expectRelative(band.fitted[1]!, 2 * r.params.a! * r.params.b!, 1e-14);
  });

  it('rejects bad input with a message naming the problem', async () => {
    const r = await fit(line);
    expect(() => r.band({ t: [1, 2] })).toThrow(/Invalid x: the model's variable 'x' is missing/);
    expect(() => r.band([1], { level: 1 })).toThrow(/for level/);
    expect(() => r.band([1], { kind: 'predictive' as 'prediction' })).toThrow(/'confidence' or 'prediction' for kind/);
    expect(() => r.band([1], { levle: 0.9 } as unknown as { level: number })).toThrow(/unknown option 'levle' \(did you mean 'level'\?\)/);
    expect(() => r.band([1], { sigma: 2 })).toThrow(/sigma/);
    expect(() => r.band([1, 2], { kind: 'prediction', sigma: [1] })).toThrow(/1 values for 2 points/);
    const two = await fit({ model: 'b1 + b2*u*exp(-v)', data: { u: lineX, v: lineX.map((x) => x / 10), y: lineY }, p0: [1, 1] });
    expect(() => two.band([1, 2])).toThrow(/only for a model with one variable.*'u', 'v'/);
    expect(() => two.band({ u: [1, 2], w: [1, 2] })).toThrow(/variable 'v' is missing/);
    expect(() => two.band({ u: [1, 2], v: [1] })).toThrow(/columns differ in length/);
  });
});

describe('predict', () => {
  it('equals the model formula at new points, in every input form', async () => {
    const r = await fit(decay);
    const { a, b, c } = r.params as { a: number; b: number; c: number };
    // More than three chunks of 65536 points.
    const x = Array.from({ length: 200_001 }, (_, i) => i / 10_000);
    for (const input of [{ x }, x, Float64Array.from(x)]) {
      const values = r.predict(input);
      expect(values).toBeInstanceOf(Float64Array);
      expect(values.length).toBe(x.length);
      for (const i of [0, 1, 65535, 65536, 131072, 200_000]) expectRelative(values[i]!, a * Math.exp(-b * x[i]!) + c, 1e-14);
    }
    const x32 = Float32Array.from(x);
    expect(Array.from(r.predict({ x: x32 }))).toEqual(Array.from(r.predict(Array.from(x32))));
    expect(Array.from(r.predict(x.slice(0, 5)))).toEqual(Array.from(r.band(x.slice(0, 5)).fitted));
  });

  it('a model of two variables reads them by name', async () => {
    const u = lineX;
    const v = lineX.map((x) => x / 10);
    const r = await fit({ model: 'b1 + b2*u*exp(-v)', data: { u, v, y: lineY }, p0: [1, 1] });
    const values = r.predict({ v: [0, 1], u: [2, 3] });
    expectRelative(values[1]!, r.params.b1! + r.params.b2! * 3 * Math.exp(-1), 1e-14);
  });

  it('needs the compiled model', async () => {
    const r = await fit(line);
    const bare = rebuilt(r, ['x'], { program: undefined });
    expect(() => bare.predict([1])).toThrow(/carries no compiled model/);
    expect(bare.confidenceIntervals().a).toEqual(r.confidenceIntervals().a);
  });
});

describe('condition number', () => {
  it('singular values of known matrices, by Jacobi rotations (numpy.linalg.svd)', () => {
    const a = singularValues(Float64Array.of(4, 1, -2, 0, 3, 0.5, 0, 0, 1e-3), 3);
    [4.6185599445471865, 2.9864534621730634, 0.0008699993132165467].forEach((s, i) => expectRelative(a[i]!, s, 1e-13));
    const b = singularValues(Float64Array.of(1, 1, 0, 0, 1e-9, 1, 0, 0, 2), 3);
    [2.23606797749979, 1.4142135623730951, 6.324555320336759e-10].forEach((s, i) => expectRelative(b[i]!, s, 1e-12));
  });

  it('of J from the (p+1) x (p+1) factor (numpy.linalg.cond)', () => {
    // R_J is the leading 3 x 3 block; the last column (Q^T r) does not enter.
    const factor = Float64Array.of(4, 1, -2, 7, 0, 3, 0.5, -1, 0, 0, 1e-3, 2, 0, 0, 0, 5);
    expectRelative(conditionNumber(factor, 3, 3), 5308.693782149696, 1e-12);
    expect(conditionNumber(factor, 3, 2)).toBe(Infinity);
  });

  it('of a fit: a straight line, and Infinity when rank-deficient', async () => {
    expectRelative((await fit(line)).conditionNumber, ols.cond, 1e-10);
    expect((await fit({ model: 'a*b*x', data: { x: lineX, y: lineY }, p0: [1, 1] })).conditionNumber).toBe(Infinity);
  });
});

describe('warnings', () => {
  it('none for a good fit', async () => {
    expect((await fit(decay)).warnings).toEqual([]);
  });

  it('a highly correlated pair, by name', async () => {
    const x = lineX.map((v) => 20 + v);
    const r = await fit({ model: 'a*x+b', data: { x, y: lineY }, p0: [1, 0] });
    expect(r.correlation[0]![1]!).toBeLessThan(-0.99);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/'a' and 'b' are highly correlated \(-0\.99\d\d\)/);
  });

  it('a rank-deficient Jacobian', async () => {
    const r = await fit({ model: 'a*b*x', data: { x: lineX, y: lineY }, p0: [1, 1] });
    expect(r.warnings).toEqual([expect.stringMatching(/rank-deficient \(rank 1 < 2 parameters\)/)]);
  });

  it('a nearly singular Jacobian', async () => {
    const r = rebuilt(await fit(line), ['x'], {}, { conditionNumber: 3e13 });
    expect(r.warnings).toEqual([expect.stringMatching(/nearly singular \(condition number 3\.00e\+13 > 1\.00e\+12\)/)]);
  });

  it('a fit that did not converge, with its message', async () => {
    const r = await fit({ ...decay, maxFev: 2 });
    expect(r.success).toBe(false);
    expect(r.warnings[0]).toBe(`the fit did not converge: ${r.message}`);
  });

  it('no degrees of freedom', async () => {
    const r = await fit({ model: 'a*x+b', data: { x: [0, 1], y: [1, 3] }, p0: [1, 0] });
    expect(r.warnings).toContainEqual(expect.stringMatching(/^no degrees of freedom \(2 parameters for 2 points\)/));
  });

  it('a parameter at a bound, when the result says which are', async () => {
    const r = rebuilt(await fit(line), ['x'], { activeMask: Uint8Array.of(0, 1) });
    expect(r.warnings).toEqual([`'b' = ${Number(r.params.b!.toPrecision(6))} ended at a bound: its standard error and interval ignore the bound`]);
  });
});

describe('summary', () => {
  it("reads like lmfit's fit report", async () => {
    const r = await fit(decay);
    const text = r.summary();
    const headers = ['[[Model]]', '[[Fit Statistics]]', '[[Variables]]', '[[Correlations]]', '[[Execution]]'];
    const positions = headers.map((h) => text.indexOf(h));
    expect(positions.every((at) => at >= 0)).toBe(true);
    expect([...positions].sort((x, y) => x - y)).toEqual(positions);
    expect(text).not.toMatch(/\[\[Warnings\]\]/);
    expect(text).toMatch(/\n {4}# fitting method {3}= Levenberg-Marquardt\n/);
    expect(text).toContain(`\n    # function evals   = ${r.nfev}\n`);
    expect(text).toContain('\n    # data points      = 40\n');
    expect(text).toContain('\n    # variables        = 3\n');
    for (const label of ['chi-square', 'reduced chi-square', 'Akaike info crit', 'Bayesian info crit', 'R-squared']) {
      expect(text).toMatch(new RegExp(`\\n    ${label} +=  ?-?[0-9]`));
    }
    const a = r.params.a!;
    const percent = ((100 * r.stderr.a!) / a).toFixed(2);
    expect(text).toMatch(new RegExp(`\\n    a +=  +3\\.00\\d+ \\+/- 0\\.00\\d+ \\(${percent.replace('.', '\\.')}%\\) \\(init = 1\\)\\n`));
    // Correlations above 0.1, largest first.
    const block = text.slice(text.indexOf('[[Correlations]]'), text.indexOf('[[Execution]]')).split('\n').slice(1, -1);
    const shown = block.map((line) => Math.abs(Number(line.split('=')[1])));
    expect(shown.length).toBeGreaterThan(1);
    expect([...shown].sort((x, y) => y - x)).toEqual(shown);
    expect(shown.every((c) => c > 0.1)).toBe(true);
  });

  it('lists the warnings, fixed and expression-defined parameters', async () => {
    const deficient = await fit({ model: 'a*b*x', data: { x: lineX, y: lineY }, p0: [1, 1] });
    expect(deficient.summary()).toMatch(/\[\[Warnings\]\]\n {4}the Jacobian is rank-deficient[^\n]*\n\[\[Execution\]\]/);

    const r = await fit(line);
    const derived = rebuilt(r, ['x'], { fixed: { c: 0.5 }, expressions: { twice: '2*a + c', onX: 'a*x' } });
    const text = derived.summary();
    expect(text).toMatch(/\n {4}c +=  +0\.5 \(fixed\)\n/);
    const twice = 2 * r.params.a! + 0.5;
    const line2 = text.split('\n').find((l) => l.trimStart().startsWith('twice'))!;
    expect(line2).toMatch(/== '2\*a \+ c'$/);
    expectRelative(Number(line2.split('=')[1]!.trim().split(' ')[0]), twice, 1e-6);
    expectRelative(Number(line2.split('+/-')[1]!.trim().split(' ')[0]), 2 * r.stderr.a!, 1e-6);
    expect(text).toMatch(/\n {4}onX +== 'a\*x'\n/);
  });

  it('toJSON has the diagnostics, 95% intervals included', async () => {
    const r = await fit(line);
    const json = JSON.parse(JSON.stringify(r)) as Record<string, unknown>;
    expect(json.conditionNumber).toBe(r.conditionNumber);
    expect(json.warnings).toEqual([]);
    expect(json.confidenceLevel).toBe(0.95);
    expect(json.confidenceIntervals).toEqual(r.confidenceIntervals(0.95));
    expect(json.params).toEqual(r.params);
  });
});
