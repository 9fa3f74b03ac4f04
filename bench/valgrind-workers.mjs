/**
 * Run by bench/valgrind-workers.sh under valgrind memcheck: N worker threads
 * (default 100), one after another, each loading the addon, verifying a model
 * program, evaluating one range and exiting. Leaks per worker (the addon's
 * per-environment data, a kernel's scratch) would show as definitely lost
 * bytes growing with N.
 */
import { Worker } from 'node:worker_threads';
const addon = process.env.NLFIT_ADDON ?? new URL('../build/Release/nlfit.node', import.meta.url).pathname;
const cycles = Number(process.argv[2] ?? 100);
const code = `
  const { createRequire } = require('node:module');
  const addon = createRequire(${JSON.stringify(addon)})(${JSON.stringify(addon)});
  const { parentPort, workerData } = require('node:worker_threads');
  // A verified program and one range evaluated: the addon's per-environment data and a kernel's scratch.
  const k = new addon.Kernel(workerData.code, workerData.consts);
  const n = 1024, x = new Float64Array(n).map((_, i) => i / n), y = x.map((v) => 2 * v + 1);
  const roots = k.evalRange(new Float64Array([1.5, 0.5]), [x], y, null, n, 0, 2);
  parentPort.postMessage(roots.length);
`;
const { compileModel } = await import('../dist/model/index.js');
const m = compileModel('a*x+b', { params: ['a', 'b'], columns: ['x'] });
for (let i = 0; i < cycles; i++) {
  await new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { code: m.code, consts: m.consts } });
    w.once('message', () => {});
    w.once('error', reject);
    w.once('exit', resolve);
  });
}
console.log(`${cycles} workers loaded the addon, evaluated and exited`);
