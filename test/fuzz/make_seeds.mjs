// Writes the seed corpus of the VM fuzzer (test/fuzz/corpus/vm): real models
// compiled by nlfit's own compiler (so the fuzzer starts from programs the
// verifier accepts), each encoded in the harness's compact and raw layouts
// (see test/fuzz/vm_fuzz.cpp) with a few block shapes, plus data values.
//
//   npx tsc -p tsconfig.json && node test/fuzz/make_seeds.mjs
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { catalogModel, catalogNames } from '../../dist/index.js';
import { compileModel, freeIdentifiers, kHeaderWords } from '../../dist/model/index.js';

const corpus = join(dirname(fileURLToPath(import.meta.url)), 'corpus', 'vm');

const poly = (degree) => Array.from({ length: degree + 1 }, (_, i) => (i === 0 ? 'p0' : `p${i}*x^${i}`)).join(' + ');
const models = [
  ...catalogNames()
    .filter((name) => name !== 'polynomial')
    .map((name) => ({ name, source: catalogModel(name).expression, columns: ['x'] })),
  { name: 'poly63', source: poly(63), columns: ['x'] },
  { name: 'misra', source: 'b1*(1-exp(-b2*x))', columns: ['x'] },
  { name: 'gauss2', source: 'b1*exp(-b2*x) + b3*exp(-(x-b4)^2/b5^2) + b6*exp(-(x-b7)^2/b8^2)', columns: ['x'] },
  { name: 'functions', source: 'atan2(a, x) + sqrt(abs(b*x)) + log10(x^2+1)*c + log(x^2+2) - asin(x/(1+abs(x)))', columns: ['x'] },
  { name: 'trig', source: 'a*sin(b*x) + cos(c*x)*tan(x/10) + acos(0.5)*atan(a) + sinh(b/10) - cosh(c/10) + tanh(x)', columns: ['x'] },
  { name: 'powers', source: 'pow(abs(x)+1, a) + x^-3*b + x^0*c + (a*x)^64 - x^-64', columns: ['x'] },
  { name: 'conditions', source: 'a*(x > b) + c*(x <= b) + (x != 0 && !(x < a) || x == c)*a', columns: ['x'] },
  { name: 'minmax', source: 'min(a*x, b, c) + max(x, a*b)', columns: ['x'] },
  { name: 'twovars', source: 'a*x1 + b*x2^2 + c*x1*x2 + exp(-x1/x2)', columns: ['x1', 'x2'] },
  { name: 'constant', source: 'a + 0*x', columns: ['x'] },
  { name: 'scalar', source: 'a*b - exp(c) + pi', columns: [] },
];

/** Block shapes: [control bits without the layout bit, rows byte]. */
const shapes = [
  [0b0000_0000, 7],
  [0b0000_1110, 200],
  [0b0001_0110, 65],
  [0b0011_1010, 255],
];

const dataPool = new Float64Array([0.5, 1.5, -0.25, 2, 3, 0.125, -1, 4, 0.75, 1e-3, 10, -7.5, 0.3, 2.5, 6, -0.01]);

function bytesOf(view) {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** The compact layout, or null when the program does not fit it. */
function compact(model, control, rows) {
  const nInstr = model.code[2];
  const [nParams, nVars, nConsts] = [model.code[3], model.code[4], model.code[5]];
  if (nInstr > 255 || nVars > 9 || nConsts > 16) return null;
  const out = [control, rows, nParams, nVars, nConsts, nInstr];
  const words = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < nInstr; i++) {
    const [op, a, b] = model.code.subarray(kHeaderWords + 3 * i, kHeaderWords + 3 * i + 3);
    if (a < -32768 || a > 32767 || b < -32768 || b > 32767) return null;
    out.push(op);
    for (const v of [a, b]) {
      words.setInt16(0, v, true);
      out.push(words.getUint8(0), words.getUint8(1));
    }
  }
  return Uint8Array.from([...out, ...bytesOf(model.consts), ...bytesOf(dataPool)]);
}

/** The raw layout: every header and instruction word verbatim. */
function raw(model, control, rows) {
  const nInstr = model.code[2];
  if (nInstr > 255 || model.consts.length > 255) return null;
  return Uint8Array.from([control | 1, rows, nInstr, ...bytesOf(model.code), model.consts.length, ...bytesOf(model.consts), ...bytesOf(dataPool)]);
}

mkdirSync(corpus, { recursive: true });
for (const name of readdirSync(corpus)) rmSync(join(corpus, name));
let written = 0;
for (const { name, source, columns } of models) {
  const params = freeIdentifiers(source).filter((id) => !columns.includes(id));
  const model = compileModel(source, { params, columns });
  shapes.forEach(([control, rows], k) => {
    for (const [layout, encode] of [['compact', compact], ['raw', raw]]) {
      const bytes = encode(model, control, rows);
      if (bytes === null) continue;
      writeFileSync(join(corpus, `${name}-${layout}-${k}`), bytes);
      written++;
    }
  });
}
console.log(`wrote ${written} seeds to ${corpus}`);
