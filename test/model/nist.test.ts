import { describe, expect, it } from 'vitest';
import { compileModel, evaluateCompiled } from '../../dist/model/index.js';

/**
 * The NIST StRD nonlinear regression models, each with hand-written
 * JavaScript, parameters near the certified values and points across the
 * data range. The compiled program must agree to a few ulps (kPowi rounds
 * integer powers differently from Math.pow).
 */
interface NistCase {
  name: string;
  source: string;
  params: number[];
  columns: string[];
  /** Rows of column values, in the order of `columns`. */
  points: number[][];
  reference: (b: number[], v: number[]) => number;
}

const b = (n: number) => Array.from({ length: n }, (_, i) => `b${i + 1}`);

const cases: NistCase[] = [
  {
    name: 'Chwirut',
    source: 'exp(-b1*x)/(b2+b3*x)',
    params: [0.19027818370, 0.0061314004477, 0.010530908399],
    columns: ['x'],
    points: [[0.5], [1.5], [3], [6]],
    reference: ([b1, b2, b3], [x]) => Math.exp(-b1! * x!) / (b2! + b3! * x!),
  },
  {
    name: 'DanWood',
    source: 'b1*x^b2',
    params: [0.76886226176, 3.8604055871],
    columns: ['x'],
    points: [[1.309], [1.471], [1.79], [1.99]],
    reference: ([b1, b2], [x]) => b1! * Math.pow(x!, b2!),
  },
  {
    name: 'Gauss',
    source: 'b1*exp(-b2*x)+b3*exp(-(x-b4)^2/b5^2)+b6*exp(-(x-b7)^2/b8^2)',
    params: [98.778210871, 0.010497276517, 100.48990633, 67.481111276, 23.129773360, 71.994503004, 178.99805021, 18.389389025],
    columns: ['x'],
    points: [[1], [60], [120], [180], [250]],
    reference: ([b1, b2, b3, b4, b5, b6, b7, b8], [x]) =>
      b1! * Math.exp(-b2! * x!) + b3! * Math.exp(-((x! - b4!) ** 2) / b5! ** 2) + b6! * Math.exp(-((x! - b7!) ** 2) / b8! ** 2),
  },
  {
    name: 'Kirby2',
    source: '(b1+b2*x+b3*x^2)/(1+b4*x+b5*x^2)',
    params: [1.6745063063, -0.13927397867, 0.0025961181191, -0.0017241811870, 0.000021664802578],
    columns: ['x'],
    points: [[9.65], [100], [500], [1000]],
    reference: ([b1, b2, b3, b4, b5], [x]) => (b1! + b2! * x! + b3! * x! * x!) / (1 + b4! * x! + b5! * x! * x!),
  },
  {
    name: 'Lanczos',
    source: 'b1*exp(-b2*x)+b3*exp(-b4*x)+b5*exp(-b6*x)',
    params: [0.0951009, 1.00000, 0.860710, 3.00000, 1.55758, 5.00000],
    columns: ['x'],
    points: [[0], [0.05], [0.6], [1.15]],
    reference: ([b1, b2, b3, b4, b5, b6], [x]) => b1! * Math.exp(-b2! * x!) + b3! * Math.exp(-b4! * x!) + b5! * Math.exp(-b6! * x!),
  },
  {
    name: 'Misra1a',
    source: 'b1*(1-exp(-b2*x))',
    params: [238.94212918, 0.00055015643181],
    columns: ['x'],
    points: [[77.6], [300], [790.9]],
    reference: ([b1, b2], [x]) => b1! * (1 - Math.exp(-b2! * x!)),
  },
  {
    name: 'Misra1b',
    source: 'b1*(1-(1+b2*x/2)^(-2))',
    params: [337.99746163, 0.00039039091287],
    columns: ['x'],
    points: [[77.6], [300], [790.9]],
    reference: ([b1, b2], [x]) => b1! * (1 - Math.pow(1 + (b2! * x!) / 2, -2)),
  },
  {
    name: 'Misra1c',
    source: 'b1*(1-(1+2*b2*x)^(-0.5))',
    params: [636.42725809, 0.00020813627256],
    columns: ['x'],
    points: [[77.6], [300], [790.9]],
    reference: ([b1, b2], [x]) => b1! * (1 - Math.pow(1 + 2 * b2! * x!, -0.5)),
  },
  {
    name: 'Misra1d',
    source: 'b1*b2*x*((1+b2*x)^(-1))',
    params: [437.36970754, 0.00030227324449],
    columns: ['x'],
    points: [[77.6], [300], [790.9]],
    reference: ([b1, b2], [x]) => b1! * b2! * x! * (1 / (1 + b2! * x!)),
  },
  {
    name: 'Nelson',
    source: 'b1-b2*x1*exp(-b3*x2)',
    params: [2.5906836021, 0.0000056177717026, -0.057701013174],
    columns: ['x1', 'x2'],
    points: [[1, 180], [2, 200], [32, 250], [64, 300]],
    reference: ([b1, b2, b3], [x1, x2]) => b1! - b2! * x1! * Math.exp(-b3! * x2!),
  },
  {
    name: 'Rat43',
    source: 'b1/((1+exp(b2-b3*x))^(1/b4))',
    params: [699.64151270, 5.2771253025, 0.75962938329, 1.2792483859],
    columns: ['x'],
    points: [[1], [5], [9], [15]],
    reference: ([b1, b2, b3, b4], [x]) => b1! / Math.pow(1 + Math.exp(b2! - b3! * x!), 1 / b4!),
  },
  {
    name: 'Roszman1',
    source: 'b1-b2*x-atan(b3/(x-b4))/pi',
    params: [0.20196866396, -0.0000061953516256, 1204.4556708, -181.34269537],
    columns: ['x'],
    points: [[-4868.68], [-3375.19], [-1000], [-301.84]],
    reference: ([b1, b2, b3, b4], [x]) => b1! - b2! * x! - Math.atan(b3! / (x! - b4!)) / Math.PI,
  },
  {
    name: 'Thurber',
    source: '(b1+b2*x+b3*x^2+b4*x^3)/(1+b5*x+b6*x^2+b7*x^3)',
    params: [1288.1396800, 1491.0792535, 583.23836877, 75.416644291, 0.96629502864, 0.39797285797, 0.049727297349],
    columns: ['x'],
    points: [[-3.067], [-1.5], [0], [0.5], [2.2]],
    reference: ([b1, b2, b3, b4, b5, b6, b7], [x]) =>
      (b1! + b2! * x! + b3! * x! ** 2 + b4! * x! ** 3) / (1 + b5! * x! + b6! * x! ** 2 + b7! * x! ** 3),
  },
];

describe('NIST StRD models: compiled program against hand-written JavaScript', () => {
  it.each(cases)('$name', ({ source, params, columns, points, reference }) => {
    const model = compileModel(source, { params: b(params.length), columns: [...columns, 'y'], reserved: ['y'] });
    expect(model.variableNames).toEqual(columns);
    expect(model.usesParam.every(Boolean)).toBe(true);
    const vars = columns.map((_, v) => points.map((row) => row[v]!));
    points.forEach((row, i) => {
      const expected = reference(params, row);
      const actual = evaluateCompiled(model, params, vars, i);
      expect(Math.abs(actual - expected), `${source} at ${row.join(', ')}`).toBeLessThanOrEqual(8 * Number.EPSILON * Math.abs(expected));
    });
  });
});
