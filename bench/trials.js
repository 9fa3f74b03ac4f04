/**
 * The benchmark as data: the models, the sizes and the engines, and expand(),
 * which crosses them into trial records and applies --quick, --large and
 * --filter. A trial id reads `model/size/engine`, e.g. `exp3/1e6/nlfit-2t`;
 * the cold start is `coldstart/1e3/nlfit`.
 *
 * Each model lives here with its nlfit expression, truth, starting point and
 * data range, and with a JavaScript value and gradient for
 * ml-levenberg-marquardt. The Python (runners/scipy_fit.py) and C++
 * (roofline/roofline.cpp) versions are kept in those files, under the same
 * id, where their own tools can check them; each runner refuses an id it does
 * not know.
 */
import { availableParallelism } from 'node:os';

/** One seed for every data set (the generator is dist/data/synthetic.js). */
export const kSeed = 7;

/**
 * @typedef {object} Model
 * @property {string} id short name used in trial ids
 * @property {string} title what the table heading shows
 * @property {string} expression the model as nlfit parses it
 * @property {string[]} params parameter names, in the order of truth and p0
 * @property {number[]} truth parameters that generate the data
 * @property {number[]} p0 starting point: the truth perturbed by 10-30%
 * @property {[number, number]} x range of the evenly spaced x
 * @property {number} noise standard deviation of the Gaussian noise on y
 * @property {(p: number[]) => (x: number) => number} value the model, for ml-levenberg-marquardt
 * @property {(p: number[]) => (x: number) => number[]} gradient its exact derivatives by parameter
 */

/**
 * ml-levenberg-marquardt has no relative stopping rule: `errorTolerance` is an
 * absolute bound on the sum of squares (noisy data never get below it) and
 * `improvementThreshold` only steers the damping, so it always runs
 * `maxIterations` iterations. A user cannot know in advance how many suffice,
 * so the row the target is judged on runs its default, 100. A second row runs
 * 5, the fewest after which its parameters stop moving (by 1e-6 relative) on
 * every model here at 1e4-1e6 points, measured when this table was made: a
 * setting tuned with knowledge of the answer, shown for transparency.
 */
export const mllmDefaultIterations = 100;
export const mllmTunedIterations = 5;

/** @type {Model[]} */
export const models = [
  {
    id: 'exp3',
    title: 'a*exp(-b*x)+c (3 parameters)',
    expression: 'a*exp(-b*x)+c',
    params: ['a', 'b', 'c'],
    truth: [5, 1.3, 0.7],
    p0: [4, 1.6, 0.56],
    x: [0, 5],
    noise: 0.05,
    value: ([a, b, c]) => (x) => a * Math.exp(-b * x) + c,
    gradient: ([a, b]) => (x) => {
      const e = Math.exp(-b * x);
      return [e, -a * x * e, 1];
    },
  },
  {
    id: 'dexp5',
    title: 'a1*exp(-b1*x)+a2*exp(-b2*x)+c (5 parameters)',
    expression: 'a1*exp(-b1*x)+a2*exp(-b2*x)+c',
    params: ['a1', 'b1', 'a2', 'b2', 'c'],
    truth: [3, 2.5, 1.5, 0.3, 0.5],
    p0: [3.6, 2, 1.2, 0.36, 0.4],
    x: [0, 10],
    noise: 0.02,
    value: ([a1, b1, a2, b2, c]) => (x) => a1 * Math.exp(-b1 * x) + a2 * Math.exp(-b2 * x) + c,
    gradient: ([a1, b1, a2, b2]) => (x) => {
      const e1 = Math.exp(-b1 * x);
      const e2 = Math.exp(-b2 * x);
      return [e1, -a1 * x * e1, e2, -a2 * x * e2, 1];
    },
  },
  {
    id: 'gauss5',
    title: 'a*exp(-(x-mu)^2/(2*s^2))+c0+c1*x (gaussian + linear background, 5 parameters)',
    expression: 'a*exp(-(x-mu)^2/(2*s^2))+c0+c1*x',
    params: ['a', 'mu', 's', 'c0', 'c1'],
    truth: [2, 5, 0.8, 0.5, 0.1],
    p0: [2.4, 5.5, 1, 0.4, 0.12],
    x: [0, 10],
    noise: 0.05,
    value: ([a, mu, s, c0, c1]) => (x) => a * Math.exp(-((x - mu) ** 2) / (2 * s * s)) + c0 + c1 * x,
    gradient: ([a, mu, s]) => (x) => {
      const u = x - mu;
      const g = Math.exp(-(u * u) / (2 * s * s));
      return [g, (a * g * u) / (s * s), (a * g * u * u) / (s * s * s), 1, x];
    },
  },
  {
    id: 'gauss10',
    title: 'three gaussians + offset (10 parameters)',
    expression:
      'a1*exp(-(x-m1)^2/(2*s1^2))+a2*exp(-(x-m2)^2/(2*s2^2))+a3*exp(-(x-m3)^2/(2*s3^2))+c',
    params: ['a1', 'm1', 's1', 'a2', 'm2', 's2', 'a3', 'm3', 's3', 'c'],
    truth: [3, 2, 0.5, 2, 5, 0.8, 1.5, 8, 0.6, 0.3],
    p0: [2.5, 2.2, 0.6, 2.4, 4.6, 0.7, 1.2, 8.4, 0.72, 0.36],
    x: [0, 10],
    noise: 0.05,
    value: (p) => (x) => {
      let f = p[9];
      for (let k = 0; k < 9; k += 3) {
        const u = x - p[k + 1];
        f += p[k] * Math.exp(-(u * u) / (2 * p[k + 2] * p[k + 2]));
      }
      return f;
    },
    gradient: (p) => (x) => {
      const d = new Array(10);
      for (let k = 0; k < 9; k += 3) {
        const [a, s] = [p[k], p[k + 2]];
        const u = x - p[k + 1];
        const g = Math.exp(-(u * u) / (2 * s * s));
        d[k] = g;
        d[k + 1] = (a * g * u) / (s * s);
        d[k + 2] = (a * g * u * u) / (s * s * s);
      }
      d[9] = 1;
      return d;
    },
  },
];

/** Point counts of the regular run; --large adds 1e8. */
export const sizes = [1e4, 1e5, 1e6, 1e7];
export const largeSize = 1e8;
/** Points of the cold-start fit. */
export const coldStartPoints = 1000;

/** All threads of this machine, and the thread counts nlfit and the roofline run with. */
export const allThreads = availableParallelism();
const threadCounts = [...new Set([1, 2, allThreads])].filter((t) => t <= allThreads);

/**
 * @typedef {object} EngineSpec
 * @property {string} id
 * @property {'nlfit'|'mllm'|'scipy'|'roofline'} runner
 * @property {string} label what the table shows
 * @property {boolean} peer a slow peer: one run, capped by --timeout, skipped at larger sizes once it timed out
 * @property {number} [threads]
 * @property {'chunked'|'standard'} [strategy]
 * @property {'lm'|'trf'} [method]
 * @property {number} [iterations] ml-levenberg-marquardt's maxIterations
 * @property {(params: number) => number} [bytesPerPoint] a peer's peak memory per data point (measured at 1e7
 *   points, rounded up): the run skips a trial that would not fit in the free memory rather than risk the OOM killer
 */

/** @type {EngineSpec[]} in the order rows are printed */
export const engines = [
  ...threadCounts.map((t) => ({ id: `roofline-${t}t`, runner: 'roofline', label: `roofline, ${t} thread${t === 1 ? '' : 's'}`, peer: false, threads: t })),
  ...threadCounts.map((t) => ({ id: `nlfit-${t}t`, runner: 'nlfit', label: `nlfit, ${t} thread${t === 1 ? '' : 's'} (pool)`, peer: false, threads: t, strategy: 'chunked' })),
  { id: 'nlfit-inline', runner: 'nlfit', label: 'nlfit, calling thread (standard)', peer: false, threads: 1, strategy: 'standard' },
  { id: 'mllm', runner: 'mllm', label: 'ml-levenberg-marquardt (default 100 iterations)', peer: true, iterations: mllmDefaultIterations, bytesPerPoint: () => 400 },
  { id: 'mllm-tuned', runner: 'mllm', label: 'ml-levenberg-marquardt (5 iterations, tuned to the answer)', peer: true, iterations: mllmTunedIterations, bytesPerPoint: () => 400 },
  { id: 'scipy-lm', runner: 'scipy', label: "scipy curve_fit 'lm'", peer: true, method: 'lm', bytesPerPoint: (p) => 40 * (p + 1) },
  { id: 'scipy-trf', runner: 'scipy', label: "scipy curve_fit 'trf'", peer: true, method: 'trf', bytesPerPoint: (p) => 75 * (p + 1) },
];

/** The engine whose time every other row is compared with. */
export const referenceEngine = `nlfit-${allThreads}t`;

/** What --quick runs: the 3-parameter model (every target is about it or holds for it), ml-lm up to 1e6. */
const quick = { models: ['exp3'], maxSize: 1e7, maxSizeByEngine: { mllm: 1e6, 'mllm-tuned': 1e6 } };

/** `1e6` for 1000000. */
export function sizeLabel(n) {
  return `1e${Math.round(Math.log10(n))}`;
}

export function modelById(id) {
  const model = models.find((m) => m.id === id);
  if (!model) throw new Error(`unknown model '${id}' (known: ${models.map((m) => m.id).join(', ')})`);
  return model;
}

/**
 * @typedef {object} Trial
 * @property {string} id
 * @property {'fit'|'coldstart'} kind
 * @property {Model} [model]
 * @property {number} n points
 * @property {EngineSpec} [engine]
 */

/**
 * The trials to run, grouped by model and size (so one data set exists at a time).
 * @param {{ quick: boolean, large: boolean, filters: string[] }} options
 * @returns {Trial[]}
 */
export function expand({ quick: isQuick, large, filters }) {
  const matchers = filters.map(matcher);
  const keep = (id) => matchers.length === 0 || matchers.some((m) => m(id));
  const trials = [];
  const runSizes = large ? [...sizes, largeSize] : sizes;
  for (const model of models) {
    if (isQuick && !quick.models.includes(model.id)) continue;
    for (const n of runSizes) {
      if (isQuick && n > quick.maxSize) continue;
      for (const engine of engines) {
        if (isQuick && n > (quick.maxSizeByEngine[engine.id] ?? Infinity)) continue;
        const id = `${model.id}/${sizeLabel(n)}/${engine.id}`;
        if (keep(id)) trials.push({ id, kind: 'fit', model, n, engine });
      }
    }
  }
  const coldId = `coldstart/${sizeLabel(coldStartPoints)}/nlfit`;
  if (keep(coldId)) trials.push({ id: coldId, kind: 'coldstart', n: coldStartPoints });
  return trials;
}

/** A filter matches as a substring, or as a regular expression when it is one. */
function matcher(filter) {
  let pattern = null;
  try {
    pattern = new RegExp(filter);
  } catch {
    // not a regular expression: substring only
  }
  return (id) => id.includes(filter) || (pattern !== null && pattern.test(id));
}
