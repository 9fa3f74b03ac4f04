/**
 * `nlfit demo` (what `npm start` runs): fits a generated 10-million-point
 * exponential decay on every CPU the process may use and prints the report,
 * the time and the throughput.
 */
import { Engine } from '../fit.js';
import { synthetic } from '../data/synthetic.js';

export interface DemoOptions {
  points: number;
  threads: number;
  seed: number;
}

/** Runs the demo; returns whether the fit converged. */
export async function runDemo(options: DemoOptions, print: (line: string) => void): Promise<boolean> {
  const truth = { a: 5, b: 1.3, c: 0.7 };
  const noise = 0.05;
  const generated = performance.now();
  const { x, y } = synthetic(options.points, (xi) => truth.a * Math.exp(-truth.b * xi) + truth.c, {
    x0: 0,
    x1: 5,
    noise,
    seed: options.seed,
  });
  const generateMs = performance.now() - generated;
  const engine = new Engine({ threads: options.threads });
  print(`nlfit demo: y = a*exp(-b*x) + c + N(0, ${noise}^2), ${options.points.toLocaleString('en-US')} points, x in [0, 5], seed ${options.seed}`);
  print(`truth: a = ${truth.a}, b = ${truth.b}, c = ${truth.c}; start: a = 1, b = 0.5, c = 0`);
  print(`generated the data in ${generateMs.toFixed(0)} ms; starting ${engine.threads} worker threads...`);
  await engine.warmup();
  const started = performance.now();
  const r = await engine.fit({
    model: 'a*exp(-b*x)+c',
    data: { x, y },
    p0: { a: 1, b: 0.5, c: 0 },
  });
  const wallMs = performance.now() - started;
  await engine.close();
  print('');
  print(r.summary());
  print('');
  const perPassMs = r.timing.evaluateMs / r.nfev;
  const millions = (points: number, ms: number): string => ((points / ms) * 1e-3).toFixed(0);
  print(
    `fit time: ${wallMs.toFixed(0)} ms wall for ${options.points.toLocaleString('en-US')} points on ${r.threads} thread${r.threads === 1 ? '' : 's'}: ` +
      `${millions(options.points, wallMs)} million points per second of fit; ` +
      `${r.nfev} passes over the data of ${perPassMs.toFixed(1)} ms each (${millions(options.points, perPassMs)} million points per second per pass)`,
  );
  return r.success;
}
