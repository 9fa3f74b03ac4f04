/**
 * The benchmark chart as a standalone SVG (no dependencies): wall time of one
 * fit against the number of points, log-log, one panel per model, one line per
 * engine, plus the roofline bound (the roofline's pass time times nlfit's
 * passes). A peer that timed out is an open triangle at its lower bound.
 */
import { find } from './analyze.js';
import { allThreads, engines, modelById, referenceEngine } from './trials.js';

const kWidth = 960;
const kPanelHeight = 320;
const kMargin = { top: 34, right: 28, bottom: 44, left: 64 };
const kHeaderHeight = 64;
const kLegendColumns = 3;
const kLegendRowHeight = 22;
const kFont = 'Helvetica, Arial, sans-serif';

/** The lines drawn, in legend order. */
const series = [
  { engine: referenceEngine, color: '#1f5fbf', width: 3, label: `nlfit, ${allThreads} threads` },
  { engine: 'nlfit-1t', color: '#7fa7e0', width: 2, label: 'nlfit, 1 thread' },
  { engine: 'scipy-lm', color: '#e07b00', width: 2, label: "scipy curve_fit 'lm'" },
  { engine: 'scipy-trf', color: '#b8452f', width: 2, label: "scipy curve_fit 'trf'" },
  { engine: 'mllm', color: '#2e8b3e', width: 2, label: 'ml-levenberg-marquardt' },
  { engine: 'roofline-bound', color: '#555555', width: 1.5, dash: '6 4', label: `roofline pass x nlfit passes (${allThreads} threads)` },
].filter((s) => s.engine === 'roofline-bound' || engines.some((e) => e.id === s.engine));

/**
 * @param {{ records: object[], machine: object, startedAt: string, commandLine: string }} run
 * @returns {string} SVG document
 */
export function renderChart(run) {
  const modelIds = [...new Set(run.records.filter((r) => r.kind === 'fit').map((r) => r.model))];
  const columns = Math.min(2, Math.max(1, modelIds.length));
  const rows = Math.max(1, Math.ceil(modelIds.length / columns));
  const width = kWidth;
  const panelWidth = width / columns;
  const anyTimeout = run.records.some((r) => r.timedOut && r.wallMs != null);
  const shown = series.filter((s) => modelIds.some((id) => points(run.records, id, s.engine).length > 0));
  const legendHeight = Math.ceil((shown.length + (anyTimeout ? 1 : 0)) / kLegendColumns) * kLegendRowHeight + 16;
  const height = kHeaderHeight + rows * kPanelHeight + legendHeight;
  const m = run.machine;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${kFont}">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    text(width / 2, 24, 'nlfit benchmark: wall time of one fit against points (log-log)', { size: 17, anchor: 'middle', weight: 'bold' }),
    text(
      width / 2,
      44,
      `${m.cpu}${m.vector ? ` (${m.vector})` : ''}, ${m.cores} cores; Node ${m.node}${m.scipy ? `, scipy ${m.scipy}` : ''}; ${run.startedAt.slice(0, 10)}; ${run.commandLine}`,
      { size: 12, anchor: 'middle', color: '#444444' },
    ),
  ];
  modelIds.forEach((id, i) => {
    const x0 = (i % columns) * panelWidth;
    const y0 = kHeaderHeight + Math.floor(i / columns) * kPanelHeight;
    parts.push(panel(run.records, id, x0, y0, panelWidth));
  });
  parts.push(legend(shown, width, kHeaderHeight + rows * kPanelHeight + 8, anyTimeout));
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** The points of one line: [{ n, ms, lowerBound }]. */
function points(records, modelId, engine) {
  const sizes = [...new Set(records.filter((r) => r.kind === 'fit' && r.model === modelId).map((r) => r.n))].sort((a, b) => a - b);
  const out = [];
  for (const n of sizes) {
    if (engine === 'roofline-bound') {
      const roof = find(records, modelId, n, `roofline-${allThreads}t`);
      const ours = find(records, modelId, n, referenceEngine);
      if (roof?.ok && ours?.ok) out.push({ n, ms: roof.bestPassMs * ours.passes, lowerBound: false });
      continue;
    }
    const r = find(records, modelId, n, engine);
    if (r?.ok) out.push({ n, ms: r.wallMs, lowerBound: false });
    else if (r?.timedOut && r.wallMs != null) out.push({ n, ms: r.wallMs, lowerBound: true });
  }
  return out;
}

function panel(records, modelId, x0, y0, panelWidth) {
  const lines = series.map((s) => ({ ...s, points: points(records, modelId, s.engine) })).filter((s) => s.points.length > 0);
  const all = lines.flatMap((s) => s.points);
  if (all.length === 0) return '';
  const decades = (values) => [Math.floor(Math.log10(Math.min(...values))), Math.ceil(Math.log10(Math.max(...values)))];
  let [nLow, nHigh] = decades(all.map((p) => p.n));
  if (nLow === nHigh) [nLow, nHigh] = [nLow - 1, nHigh + 1];
  let [tLow, tHigh] = decades(all.map((p) => p.ms));
  if (tLow === tHigh) tHigh += 1;
  const left = x0 + kMargin.left;
  const right = x0 + panelWidth - kMargin.right;
  const top = y0 + kMargin.top;
  const bottom = y0 + kPanelHeight - kMargin.bottom;
  const sx = (n) => left + ((Math.log10(n) - nLow) / (nHigh - nLow)) * (right - left);
  const sy = (ms) => bottom - ((Math.log10(ms) - tLow) / (tHigh - tLow)) * (bottom - top);
  const out = [text((left + right) / 2, y0 + 22, `${modelId}: ${shortTitle(modelId)}`, { size: 13, anchor: 'middle', weight: 'bold' })];
  for (let d = nLow; d <= nHigh; d++) {
    out.push(`<line x1="${f(sx(10 ** d))}" y1="${top}" x2="${f(sx(10 ** d))}" y2="${bottom}" stroke="#e4e4e4"/>`);
    out.push(text(sx(10 ** d), bottom + 16, countLabel(d), { size: 11, anchor: 'middle', color: '#333333' }));
  }
  for (let d = tLow; d <= tHigh; d++) {
    out.push(`<line x1="${left}" y1="${f(sy(10 ** d))}" x2="${right}" y2="${f(sy(10 ** d))}" stroke="#e4e4e4"/>`);
    out.push(text(left - 6, sy(10 ** d) + 4, timeLabel(d), { size: 11, anchor: 'end', color: '#333333' }));
  }
  out.push(`<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#888888"/>`);
  out.push(text((left + right) / 2, bottom + 34, 'points', { size: 11, anchor: 'middle', color: '#333333' }));
  out.push(text(x0 + 14, (top + bottom) / 2, 'wall time', { size: 11, anchor: 'middle', color: '#333333', rotate: true }));
  for (const s of lines) {
    const solid = s.points.filter((p) => !p.lowerBound);
    if (solid.length > 1) {
      const d = solid.map((p, i) => `${i === 0 ? 'M' : 'L'}${f(sx(p.n))},${f(sy(p.ms))}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    }
    for (const p of s.points) out.push(p.lowerBound ? triangle(sx(p.n), sy(p.ms), s.color) : dot(sx(p.n), sy(p.ms), s));
  }
  return out.join('\n');
}

function legend(shown, width, y, anyTimeout) {
  const entries = shown.map((s) => ({ ...s, kind: 'line' }));
  if (anyTimeout) entries.push({ kind: 'timeout', color: '#333333', label: 'timed out (lower bound)' });
  const columnWidth = (width - 2 * kMargin.left) / kLegendColumns;
  return entries
    .map((e, i) => {
      const x = kMargin.left + (i % kLegendColumns) * columnWidth;
      const yy = y + 14 + Math.floor(i / kLegendColumns) * kLegendRowHeight;
      const mark =
        e.kind === 'timeout'
          ? triangle(x + 14, yy, e.color)
          : `<line x1="${x}" y1="${yy}" x2="${x + 28}" y2="${yy}" stroke="${e.color}" stroke-width="${e.width}"${e.dash ? ` stroke-dasharray="${e.dash}"` : ''}/>`;
      return `${mark}\n${text(x + 36, yy + 4, e.label, { size: 11, color: '#222222' })}`;
    })
    .join('\n');
}

function dot(x, y, s) {
  return `<circle cx="${f(x)}" cy="${f(y)}" r="${s.width >= 3 ? 3.5 : 2.5}" fill="${s.color}"/>`;
}

function triangle(x, y, color) {
  return `<path d="M${f(x)},${f(y - 6)} L${f(x + 5.5)},${f(y + 4)} L${f(x - 5.5)},${f(y + 4)} Z" fill="#ffffff" stroke="${color}" stroke-width="1.5"/>`;
}

function text(x, y, content, { size = 12, anchor = 'start', weight = 'normal', color = '#000000', rotate = false } = {}) {
  const transform = rotate ? ` transform="rotate(-90 ${f(x)} ${f(y)})"` : '';
  return `<text x="${f(x)}" y="${f(y)}" font-size="${size}" text-anchor="${anchor}" font-weight="${weight}" fill="${color}"${transform}>${escapeXml(content)}</text>`;
}

/** The model's expression without the parameter count, short enough for a panel title. */
function shortTitle(modelId) {
  const model = modelById(modelId);
  return model.expression.length <= 40 ? model.expression : model.title.replace(/ \(.*\)$/, '');
}

function countLabel(decade) {
  const names = { 3: '1k', 4: '10k', 5: '100k', 6: '1M', 7: '10M', 8: '100M', 9: '1G' };
  return names[decade] ?? `1e${decade}`;
}

function timeLabel(decade) {
  if (decade < -3) return `1e${decade + 3} s`;
  if (decade < 0) return `${10 ** (decade + 3)} µs`;
  if (decade < 3) return `${10 ** decade} ms`;
  return `${10 ** (decade - 3)} s`;
}

function f(v) {
  return Number(v.toFixed(1));
}

function escapeXml(s) {
  return String(s).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}
