/**
 * `--plot fit.svg`: a picture of a one-variable fit, whatever the number of
 * points. Top panel: the data and the fitted curve; bottom panel: the
 * residuals y - fit around a zero line; the panels share the x axis.
 *
 * The data are never all drawn and never all held. Two streaming passes read
 * them in chunks of kChunkRows:
 *   1. the x range (min and max of finite x) and the count of finite (x, y)
 *      points. A pass is needed because the data need not be sorted in x, and
 *      a reader over a file cannot be asked for its last row cheaply.
 *   2. x splits [xmin, xmax] into equal columns (kColumns, fewer when there
 *      are under kMinRowsPerColumn points a column); each column keeps the
 *      min, max and count of y and of the residual, with the fit from
 *      predict() on the chunk's finite x.
 * Each column becomes a box (min to max) of an envelope drawn as one area
 * path, so the SVG size is bounded: 160 KB at any n above 8000 (measured at
 * 1e4 and 1e6 points, 960x720). Up to kMaxPointsDrawn points are also drawn
 * one by one, over a paler envelope, with sigma as error bars when the reader
 * gives it: 67 KB at 100 points, about 225 KB at 1000, the largest (kept under
 * the 300 KB a plot of any size stays within). The curve is
 * predict() on kCurvePoints evenly spaced x. Non-finite x, y, sigma and
 * fitted values are skipped.
 *
 * Rendering is Vega's headless SVG renderer (no browser, no canvas): text is
 * measured by estimate and clip ids are renumbered, so the same input gives
 * the same bytes.
 */
import * as vega from 'vega';
import { invalidInput, invalidRange, invalidType } from '../errors.js';

/** One chunk of rows from PlotInput.readRows, all arrays of the requested length. */
export interface PlotRows {
  x: Float64Array;
  y: Float64Array;
  sigma?: Float64Array;
}

export interface PlotInput {
  /** Reads rows [start, start + count) of x, y (and sigma if any); called with count ≤ 65536, twice over the data. */
  readRows(start: number, count: number): Promise<PlotRows>;
  nPoints: number;
  /** The fitted model at the given x (finite values only). */
  predict(x: Float64Array): Float64Array;
  xName: string;
  yName: string;
  /** Drawn above the panels; '\n' starts a smaller second line (e.g. the fit's key numbers). */
  title: string;
  /** Pixels; default 960. */
  width?: number;
  /** Pixels; default 720. */
  height?: number;
}

/** Rows asked of readRows at a time. */
export const kChunkRows = 65536;
/** Envelope columns across the x range, at most. */
const kColumns = 1000;
/** Below this many points a column, columns get wider (100 points: 13 columns). */
const kMinRowsPerColumn = 8;
/** Data sets up to this size also show every point. */
const kMaxPointsDrawn = 1000;
/** Evaluations of the fitted curve. */
const kCurvePoints = 1000;
const kMinSize = 240;
const kMaxSize = 10000;

const kDataColor = '#4c78a8';
/** kDataColor at about 40% on white, opaque so that overlapping columns do not darken. */
const kBandColor = '#bac9dc';
const kFitColor = '#e45756';
const kZeroColor = '#555555';
/** Outer margins in pixels: y axis labels and title on the left, x axis title below. */
const kMargin = { left: 76, right: 24, bottom: 46 };
const kPanelGap = 14;
/** Pixels between the outermost data and a panel's edge. */
const kScalePadding = 6;
/** Share of the panels' height for the data panel; the rest is residuals. */
const kDataPanelShare = 0.68;

interface XRange {
  min: number;
  max: number;
  finite: number;
}

/** Per-column min, max and count of one quantity (y or the residual). */
class ColumnEnvelope {
  readonly low: Float64Array;
  readonly high: Float64Array;
  readonly count: Float64Array;

  constructor(columns: number) {
    this.low = new Float64Array(columns).fill(Infinity);
    this.high = new Float64Array(columns).fill(-Infinity);
    this.count = new Float64Array(columns);
  }

  add(column: number, value: number): void {
    if (value < this.low[column]!) this.low[column] = value;
    if (value > this.high[column]!) this.high[column] = value;
    this.count[column]!++;
  }

  /** [min, max] over all columns, or undefined when empty. */
  extent(): [number, number] | undefined {
    let low = Infinity;
    let high = -Infinity;
    for (let i = 0; i < this.count.length; i++) {
      if (this.count[i] === 0) continue;
      low = Math.min(low, this.low[i]!);
      high = Math.max(high, this.high[i]!);
    }
    return low <= high ? [low, high] : undefined;
  }
}

interface DrawnPoint {
  x: number;
  y: number;
  /** y - fit, null where the fit is not finite. */
  residual: number | null;
  /** null without a finite positive sigma. */
  sigma: number | null;
}

/**
 * Renders the two-panel SVG of a fit, reading the data twice in chunks.
 * @example
 * const svg = await plotFit({
 *   nPoints: x.length,
 *   readRows: async (start, count) => ({ x: x.subarray(start, start + count), y: y.subarray(start, start + count) }),
 *   predict: (xs) => result.predict({ x: xs }),
 *   xName: 'x', yName: 'y', title: 'a*exp(-b*x)+c',
 * });
 */
export async function plotFit(input: PlotInput): Promise<string> {
  const { width, height } = checkPlotInput(input);
  const range = await scanXRange(input);
  const { data, residuals, points, columns } = await binRows(input, range);
  const span = range.max - range.min;
  const curveX = new Float64Array(span > 0 ? kCurvePoints : 1);
  curveX.forEach((_, i) => (curveX[i] = range.min + (span * i) / Math.max(1, kCurvePoints - 1)));
  const curveY = predictChecked(input, curveX);
  const xDomain = padDomain(range.min, range.max);
  const spec = plotSpec({
    input,
    width,
    height,
    xDomain,
    columnRows: envelopeRows(data, residuals, xDomain, columns),
    curveRows: Array.from(curveX, (x, i) => ({ x, y: curveY[i]!, drawn: Number.isFinite(curveY[i]!) })),
    points,
    yDomain: dataDomain(data, curveY),
    residualDomain: residualDomain(residuals),
    finite: range.finite,
    columns,
  });
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try {
    return renumberClipIds(await view.toSVG());
  } finally {
    view.finalize();
  }
}

/** The second pass: per-column envelopes of y and of y - fit, and the points themselves for small data. */
async function binRows(input: PlotInput, range: XRange) {
  const span = range.max - range.min;
  const columns = span > 0 ? Math.min(kColumns, Math.ceil(range.finite / kMinRowsPerColumn)) : 1;
  const columnOf = (x: number): number => (span > 0 ? Math.min(columns - 1, Math.floor(((x - range.min) / span) * columns)) : 0);
  const data = new ColumnEnvelope(columns);
  const residuals = new ColumnEnvelope(columns);
  const points: DrawnPoint[] = [];
  const keepPoints = input.nPoints <= kMaxPointsDrawn;
  for (let start = 0; start < input.nPoints; start += kChunkRows) {
    const rows = await readChunk(input, start);
    const fitted = predictChecked(input, rows.x.filter((x, i) => Number.isFinite(x) && Number.isFinite(rows.y[i]!)));
    let k = 0;
    for (let i = 0; i < rows.x.length; i++) {
      const x = rows.x[i]!;
      const y = rows.y[i]!;
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      const column = columnOf(x);
      const residual = y - fitted[k++]!;
      data.add(column, y);
      if (Number.isFinite(residual)) residuals.add(column, residual);
      if (!keepPoints) continue;
      const sigma = rows.sigma?.[i];
      points.push({
        x,
        y,
        residual: Number.isFinite(residual) ? residual : null,
        sigma: sigma !== undefined && Number.isFinite(sigma) && sigma > 0 ? sigma : null,
      });
    }
  }
  return { data, residuals, points, columns };
}

/**
 * Vega names clip paths from a process-wide counter, so a second plot would
 * differ from the first; renamed clip1, clip2, ... in order of definition,
 * the bytes depend on the input alone, even with plots rendered concurrently.
 */
function renumberClipIds(svg: string): string {
  const names = new Map<string, string>();
  for (const [, id] of svg.matchAll(/<clipPath id="(clip\d+)"/g)) names.set(id!, `clip${names.size + 1}`);
  return svg.replace(/(url\(#|<clipPath id=")(clip\d+)(?=[)"])/g, (_, prefix: string, id: string) => prefix + (names.get(id) ?? id));
}

function checkPlotInput(input: PlotInput): { width: number; height: number } {
  if (input === null || typeof input !== 'object') throw invalidType('plot input', 'object', input);
  if (typeof input.readRows !== 'function') throw invalidType('readRows', 'function', input.readRows);
  if (typeof input.predict !== 'function') throw invalidType('predict', 'function', input.predict);
  if (!Number.isSafeInteger(input.nPoints) || input.nPoints < 1) {
    throw invalidRange('nPoints', 'positive integer', input.nPoints);
  }
  for (const field of ['xName', 'yName', 'title'] as const) {
    if (typeof input[field] !== 'string') throw invalidType(field, 'string', input[field]);
  }
  const size = (field: 'width' | 'height', fallback: number): number => {
    const value = input[field] ?? fallback;
    if (!Number.isInteger(value) || value < kMinSize || value > kMaxSize) {
      throw invalidRange(field, `integer from ${kMinSize} to ${kMaxSize}`, value);
    }
    return value;
  };
  return { width: size('width', 960), height: size('height', 720) };
}

async function readChunk(input: PlotInput, start: number): Promise<PlotRows> {
  const count = Math.min(kChunkRows, input.nPoints - start);
  const rows = await input.readRows(start, count);
  const where = `rows ${start} to ${start + count - 1}`;
  for (const column of ['x', 'y', 'sigma'] as const) {
    const values = rows?.[column];
    if (values === undefined && column === 'sigma') continue;
    if (!(values instanceof Float64Array)) throw invalidType(`readRows(${where}).${column}`, 'Float64Array', values);
    if (values.length !== count) {
      throw invalidInput('readRows', `asked for ${count} rows (${where}), ${column} has ${values.length}`);
    }
  }
  return rows;
}

function predictChecked(input: PlotInput, x: Float64Array): Float64Array {
  if (x.length === 0) return x;
  const values = input.predict(x);
  if (!(values instanceof Float64Array) || values.length !== x.length) {
    throw invalidInput('predict', `expected a Float64Array of ${x.length} values but received ${values?.length ?? 'none'}`);
  }
  return values;
}

async function scanXRange(input: PlotInput): Promise<XRange> {
  const range: XRange = { min: Infinity, max: -Infinity, finite: 0 };
  for (let start = 0; start < input.nPoints; start += kChunkRows) {
    const { x, y } = await readChunk(input, start);
    for (let i = 0; i < x.length; i++) {
      const xi = x[i]!;
      if (!Number.isFinite(xi) || !Number.isFinite(y[i]!)) continue;
      if (xi < range.min) range.min = xi;
      if (xi > range.max) range.max = xi;
      range.finite++;
    }
  }
  if (range.finite === 0) throw invalidInput('data', `none of the ${input.nPoints} rows has a finite x and y to plot`);
  return range;
}

/**
 * Two rows per column, at its left and right edges, so the envelope is drawn
 * as one box per column (min to max) and adjacent boxes join by vertical
 * edges; `drawn` false leaves a gap where a column has no value.
 */
function envelopeRows(data: ColumnEnvelope, residuals: ColumnEnvelope, xDomain: [number, number], columns: number) {
  const [left, right] = xDomain;
  const edge = (i: number): number => left + ((right - left) * i) / columns;
  return Array.from({ length: 2 * columns }, (_, k) => {
    const i = k >> 1;
    const hasY = data.count[i]! > 0;
    const hasResidual = residuals.count[i]! > 0;
    return {
      x: edge(i + (k & 1)),
      yLow: hasY ? data.low[i]! : 0,
      yHigh: hasY ? data.high[i]! : 0,
      yDrawn: hasY,
      rLow: hasResidual ? residuals.low[i]! : 0,
      rHigh: hasResidual ? residuals.high[i]! : 0,
      rDrawn: hasResidual,
    };
  });
}

/** Widens an empty interval so that a scale can map it. */
function padDomain(low: number, high: number): [number, number] {
  if (high > low) return [low, high];
  const pad = Math.abs(low) * 0.05 || 0.5;
  return [low - pad, high + pad];
}

/**
 * The data's y range, widened to show the curve but by at most one data span
 * each way, so that a curve which shoots off near a pole does not flatten
 * the data (the marks are clipped to the panel).
 */
function dataDomain(data: ColumnEnvelope, curveY: Float64Array): [number, number] {
  const [low, high] = data.extent()!;
  const reach = high - low || Math.abs(high) || 1;
  let curveLow = Infinity;
  let curveHigh = -Infinity;
  for (const y of curveY) {
    if (!Number.isFinite(y)) continue;
    curveLow = Math.min(curveLow, y);
    curveHigh = Math.max(curveHigh, y);
  }
  return padDomain(Math.min(low, Math.max(curveLow, low - reach)), Math.max(high, Math.min(curveHigh, high + reach)));
}

/** Symmetric about zero so that the zero line sits in the middle. */
function residualDomain(residuals: ColumnEnvelope): [number, number] {
  const extent = residuals.extent();
  const reach = extent === undefined ? 0 : Math.max(Math.abs(extent[0]), Math.abs(extent[1]));
  return reach > 0 ? [-reach, reach] : [-1, 1];
}

interface SpecParts {
  input: PlotInput;
  width: number;
  height: number;
  xDomain: [number, number];
  yDomain: [number, number];
  residualDomain: [number, number];
  columnRows: ReturnType<typeof envelopeRows>;
  curveRows: { x: number; y: number; drawn: boolean }[];
  points: DrawnPoint[];
  finite: number;
  columns: number;
}

/** A point's pixel position, rounded to 0.1 px: Vega writes mark positions in full precision. */
function pixel(scale: string, field: string): vega.NumericValueRef {
  return { signal: `round(scale('${scale}', datum.${field}) * 10) / 10` };
}

/** The min-max band; a pale backdrop when the points are drawn over it. */
function envelopeMark(name: string, scale: string, low: string, high: string, drawn: string, backdrop: boolean): vega.Mark {
  return {
    type: 'area',
    name,
    clip: true,
    from: { data: 'columns' },
    encode: {
      enter: {
        x: { scale: 'x', field: 'x' },
        y: { scale, field: low },
        y2: { scale, field: high },
        defined: { field: drawn },
        fill: { value: kBandColor },
        fillOpacity: { value: backdrop ? 0.5 : 1 },
        ...(backdrop ? {} : { stroke: { value: kDataColor }, strokeOpacity: { value: 0.5 }, strokeWidth: { value: 1 } }),
      },
    },
  };
}

function pointMark(name: string, data: string, scale: string, field: string): vega.Mark {
  return {
    type: 'symbol',
    name,
    clip: true,
    from: { data },
    encode: {
      enter: {
        x: pixel('x', 'x'),
        y: pixel(scale, field),
        shape: { value: 'circle' },
        size: { value: 16 },
        fill: { value: kDataColor },
      },
    },
  };
}

function xAxis(title: string | undefined): vega.Axis {
  return {
    orient: 'bottom',
    scale: 'x',
    grid: true,
    gridOpacity: 0.6,
    labels: title !== undefined,
    ...(title === undefined ? {} : { title }),
  };
}

function plotSpec(parts: SpecParts): vega.Spec {
  const { input, points } = parts;
  const [heading, ...details] = input.title.split('\n');
  const top = 32 + 15 * details.length;
  const plotWidth = parts.width - kMargin.left - kMargin.right;
  const panelsHeight = parts.height - top - kMargin.bottom;
  const dataHeight = Math.round((panelsHeight - kPanelGap) * kDataPanelShare);
  const residualHeight = panelsHeight - kPanelGap - dataHeight;
  const count = parts.finite.toLocaleString('en-US');
  const band = `min–max in ${parts.columns} x column${parts.columns === 1 ? '' : 's'}`;
  const legend =
    points.length > 0
      ? { labels: [`data (n = ${count})`, band, 'fit'], colors: [kDataColor, kBandColor, kFitColor] }
      : { labels: [`data (n = ${count}), ${band}`, 'fit'], colors: [kBandColor, kFitColor] };

  return {
    width: plotWidth,
    height: panelsHeight,
    padding: { left: kMargin.left, right: kMargin.right, top, bottom: kMargin.bottom },
    autosize: 'none',
    background: 'white',
    title: {
      text: heading ?? '',
      ...(details.length > 0 ? { subtitle: details } : {}),
      anchor: 'start',
      frame: 'group',
      offset: 10,
      limit: plotWidth,
      subtitleFontSize: 11,
      subtitleColor: '#333333',
    },
    data: [
      { name: 'columns', values: parts.columnRows },
      { name: 'curve', values: parts.curveRows },
      { name: 'points', values: points },
      { name: 'residualPoints', source: 'points', transform: [{ type: 'filter', expr: 'datum.residual !== null' }] },
      { name: 'errorBars', source: 'points', transform: [{ type: 'filter', expr: 'datum.sigma !== null' }] },
    ],
    scales: [{ name: 'x', type: 'linear', domain: parts.xDomain, range: 'width', zero: false, padding: kScalePadding }],
    marks: [
      {
        type: 'group',
        name: 'dataPanel',
        encode: { enter: { x: { value: 0 }, y: { value: 0 }, width: { value: plotWidth }, height: { value: dataHeight } } },
        scales: [
          { name: 'y', type: 'linear', domain: parts.yDomain, range: [dataHeight, 0], zero: false, padding: kScalePadding },
          { name: 'legend', type: 'ordinal', domain: legend.labels, range: legend.colors },
        ],
        axes: [xAxis(undefined), { orient: 'left', scale: 'y', grid: true, gridOpacity: 0.6, title: input.yName }],
        legends: [
          {
            stroke: 'legend',
            orient: 'top-right',
            symbolType: 'stroke',
            symbolStrokeWidth: 4,
            fillColor: 'white',
            strokeColor: '#dddddd',
            padding: 6,
            labelLimit: plotWidth / 2,
          },
        ],
        marks: [
          envelopeMark('dataEnvelope', 'y', 'yLow', 'yHigh', 'yDrawn', points.length > 0),
          {
            type: 'rule',
            name: 'errorBars',
            clip: true,
            from: { data: 'errorBars' },
            encode: {
              enter: {
                x: pixel('x', 'x'),
                y: { signal: "round(scale('y', datum.y - datum.sigma))" },
                y2: { signal: "round(scale('y', datum.y + datum.sigma))" },
                stroke: { value: kDataColor },
                strokeOpacity: { value: 0.5 },
              },
            },
          },
          pointMark('dataPoints', 'points', 'y', 'y'),
          {
            type: 'line',
            name: 'fitCurve',
            clip: true,
            from: { data: 'curve' },
            encode: {
              enter: {
                x: { scale: 'x', field: 'x' },
                y: { scale: 'y', field: 'y' },
                defined: { field: 'drawn' },
                stroke: { value: kFitColor },
                strokeWidth: { value: 2 },
              },
            },
          },
        ],
      },
      {
        type: 'group',
        name: 'residualPanel',
        encode: {
          enter: { x: { value: 0 }, y: { value: dataHeight + kPanelGap }, width: { value: plotWidth }, height: { value: residualHeight } },
        },
        scales: [
          { name: 'residual', type: 'linear', domain: parts.residualDomain, range: [residualHeight, 0], padding: kScalePadding },
        ],
        axes: [
          xAxis(input.xName),
          { orient: 'left', scale: 'residual', grid: true, gridOpacity: 0.6, tickCount: 5, title: `residual (${input.yName} − fit)` },
        ],
        marks: [
          envelopeMark('residualEnvelope', 'residual', 'rLow', 'rHigh', 'rDrawn', points.length > 0),
          pointMark('residualPoints', 'residualPoints', 'residual', 'residual'),
          {
            type: 'rule',
            name: 'zeroLine',
            encode: {
              enter: {
                x: { value: 0 },
                x2: { value: plotWidth },
                y: { scale: 'residual', value: 0 },
                stroke: { value: kZeroColor },
                strokeWidth: { value: 1.5 },
              },
            },
          },
        ],
      },
    ],
  };
}
