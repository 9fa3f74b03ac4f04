// plotFit(): the two-panel SVG of a fit, streamed in chunks, bounded in size, deterministic.
import { beforeAll, describe, expect, it } from 'vitest';
import { fit, type FitResult } from '../dist/index.js';
import { plotFit, type PlotInput } from '../dist/cli/plot.js';
import { synthetic } from '../dist/data/synthetic.js';

const kModel = 'a*exp(-b*x)+c';

interface FittedData {
  x: Float64Array;
  y: Float64Array;
  result: FitResult;
}

async function fittedDecay(n: number, seed: number): Promise<FittedData> {
  const { x, y } = synthetic(n, (v) => 5 * Math.exp(-1.3 * v) + 0.7, { x0: 0, x1: 5, noise: 0.05, seed });
  const result = await fit({ model: kModel, data: { x, y }, p0: { a: 1, b: 0.5, c: 0 } });
  return { x, y, result };
}

/** A PlotInput over in-memory columns that records every readRows request. */
function plotInput(data: { x: Float64Array; y: Float64Array; sigma?: Float64Array; result: FitResult }) {
  const requests: { start: number; count: number }[] = [];
  const input: PlotInput = {
    nPoints: data.x.length,
    readRows: async (start, count) => {
      requests.push({ start, count });
      const rows = (column: Float64Array) => column.slice(start, start + count);
      return { x: rows(data.x), y: rows(data.y), ...(data.sigma ? { sigma: rows(data.sigma) } : {}) };
    },
    predict: (x) => data.result.predict({ x }),
    xName: 'x',
    yName: 'y',
    title: `${kModel}\na = ${data.result.params.a!.toPrecision(5)}, n = ${data.x.length}`,
  };
  return { input, requests };
}

/** The contents of the mark group Vega writes for the mark of this name. */
function markGroup(svg: string, name: string): string {
  const match = new RegExp(`<g class="mark-\\w+ role-mark ${name}"[^>]*?(?:/>|>(.*?)</g>)`).exec(svg);
  if (match === null) throw new Error(`no mark named ${name} in the SVG`);
  return match[1] ?? '';
}

const count = (text: string, element: string): number => text.split(`<${element} `).length - 1;

/** Every opened element is closed in order: XML-ish enough for a browser and an image tool. */
function expectBalanced(svg: string): void {
  expect(svg.startsWith('<svg')).toBe(true);
  expect(svg.endsWith('</svg>')).toBe(true);
  const open: string[] = [];
  for (const [, closing, name, selfClosing] of svg.matchAll(/<(\/?)([A-Za-z][\w:-]*)(?:\s[^>]*?)?(\/?)>/g)) {
    if (selfClosing) continue;
    if (closing) expect(open.pop()).toBe(name);
    else open.push(name!);
  }
  expect(open).toEqual([]);
}

function expectTwoPanels(svg: string): void {
  expect(svg).toContain('mark-group role-scope dataPanel');
  expect(svg).toContain('mark-group role-scope residualPanel');
  expect(svg).toMatch(/role-axis-title[^>]*><text[^>]*>y<\/text>/);
  expect(svg).toMatch(/role-axis-title[^>]*><text[^>]*>x<\/text>/);
  expect(svg).toContain('>residual (y − fit)</text>');
  expect(count(markGroup(svg, 'zeroLine'), 'line')).toBe(1);
  expect(markGroup(svg, 'fitCurve')).toMatch(/<path d="M[^"]{1000,}"/);
  expect(svg).toContain(`>${kModel}</text>`);
  expect(svg).not.toContain('NaN');
}

describe('100 points', () => {
  let small: FittedData;
  beforeAll(async () => {
    small = await fittedDecay(100, 3);
  });

  it('draws both panels and every point in each', async () => {
    const svg = await plotFit(plotInput(small).input);
    expectBalanced(svg);
    expectTwoPanels(svg);
    expect(count(markGroup(svg, 'dataPoints'), 'path')).toBe(100);
    expect(count(markGroup(svg, 'residualPoints'), 'path')).toBe(100);
    expect(markGroup(svg, 'dataEnvelope')).toMatch(/<path d="M/);
    expect(svg).toContain('data (n = 100)');
  });

  it('skips non-finite x and y, and draws sigma as error bars', async () => {
    const x = small.x.slice();
    const y = small.y.slice();
    x[3] = NaN;
    y[10] = NaN;
    y[20] = Infinity;
    x[30] = -Infinity;
    const sigma = new Float64Array(100).fill(0.05);
    sigma[50] = NaN;
    const svg = await plotFit(plotInput({ x, y, sigma, result: small.result }).input);
    expectBalanced(svg);
    expectTwoPanels(svg);
    expect(count(markGroup(svg, 'dataPoints'), 'path')).toBe(96);
    expect(count(markGroup(svg, 'residualPoints'), 'path')).toBe(96);
    expect(count(markGroup(svg, 'errorBars'), 'line')).toBe(95);
    expect(svg).toContain('data (n = 96)');
  });

  it('escapes names and titles', async () => {
    const { input } = plotInput(small);
    const svg = await plotFit({ ...input, xName: 't <s>', yName: 'a & b', title: 'y < "1"' });
    expectBalanced(svg);
    expect(svg).toContain('>t &lt;s&gt;</text>');
    expect(svg).toContain('>residual (a &amp; b − fit)</text>');
  });

  it('rejects unusable input with a message naming it', async () => {
    const { input } = plotInput(small);
    await expect(plotFit({ ...input, nPoints: 0 })).rejects.toThrow('Expected positive integer for nPoints but received 0 of type number');
    await expect(plotFit({ ...input, width: 1.5 })).rejects.toThrow('Expected integer from 240 to 10000 for width but received 1.5');
    await expect(plotFit({ ...input, readRows: async () => ({ x: new Float64Array(1), y: new Float64Array(1) }) })).rejects.toThrow(
      'Invalid readRows: asked for 100 rows (rows 0 to 99), x has 1',
    );
    await expect(plotFit({ ...input, predict: () => new Float64Array(2) })).rejects.toThrow('Invalid predict: expected a Float64Array of 100 values');
    const nothing = { x: new Float64Array(3).fill(NaN), y: new Float64Array(3), result: small.result };
    await expect(plotFit(plotInput(nothing).input)).rejects.toThrow('none of the 3 rows has a finite x and y');
  });
});

describe('1e6 points', () => {
  let large: FittedData;
  beforeAll(async () => {
    large = await fittedDecay(1_000_000, 11);
  }, 120_000);

  it('draws envelopes, not points, in under 300 KB, reading two passes of chunks of at most 65536 rows', async () => {
    const { input, requests } = plotInput(large);
    const svg = await plotFit(input);
    expectBalanced(svg);
    expectTwoPanels(svg);
    expect(svg.length).toBeLessThan(300_000);
    expect(markGroup(svg, 'dataEnvelope')).toMatch(/<path d="M[^"]{10000,}"/);
    expect(markGroup(svg, 'residualEnvelope')).toMatch(/<path d="M[^"]{10000,}"/);
    expect(count(markGroup(svg, 'dataPoints'), 'path')).toBe(0);
    expect(svg).toContain('data (n = 1,000,000), min–max in 1000 x columns');

    expect(Math.max(...requests.map((r) => r.count))).toBeLessThanOrEqual(65536);
    const chunks = Math.ceil(1_000_000 / 65536);
    expect(requests).toHaveLength(2 * chunks);
    for (const pass of [requests.slice(0, chunks), requests.slice(chunks)]) {
      expect(pass.reduce((rows, r) => rows + r.count, 0)).toBe(1_000_000);
      pass.forEach((r, i) => expect(r.start).toBe(i * 65536));
    }
  }, 60_000);
});

describe('determinism', () => {
  it('the same input gives the same bytes', async () => {
    const data = await fittedDecay(10_000, 5);
    const first = await plotFit(plotInput(data).input);
    const second = await plotFit(plotInput(data).input);
    expect(second).toBe(first);
    expect(first.length).toBeLessThan(300_000);
  });
});
