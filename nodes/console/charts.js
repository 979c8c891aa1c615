// Charts as inline SVG: a line chart with axes and a legend, and a strip of
// which adapters were active when. Each redraws into the same <svg> so a
// page (or a test) can hold on to it while the data changes, and sizes its
// viewBox to the width on screen so text keeps its size at any width.

const NS = 'http://www.w3.org/2000/svg';

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** An empty chart `height` px high to draw into later; `testid` names it for tests. */
export function newChart(testid, label, height = 180) {
  const svg = svgEl('svg', { viewBox: `0 0 640 ${height}`, class: 'chart', role: 'img', 'aria-label': label });
  if (testid) svg.setAttribute('data-testid', testid);
  svg.dataset.height = String(height);
  svg.dataset.points = '0';
  return svg;
}

/** Fits the viewBox to the svg's width on screen (640 while it has none); returns [W, H]. */
function fit(svg, height = Number(svg.dataset.height)) {
  const W = Math.round(svg.clientWidth) || 640;
  svg.setAttribute('viewBox', `0 0 ${W} ${height}`);
  return [W, height];
}

/** About `count` round tick values from 0 (or lo) to at least hi. */
function ticks(lo, hi, count = 4) {
  const raw = (hi - lo) / count || 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.floor(lo / step) * step; v < hi + step * 0.999; v += step) out.push(+v.toFixed(10));
  return out;
}

const fmtTick = (v) => (Math.abs(v) >= 1000 ? `${+(v / 1000).toFixed(1)}k` : String(+v.toPrecision(3)));

/**
 * Draws line series into `svg`: series = [{name, color, dashed?, points: [[x, y|null], ...]}].
 * A null y breaks the line. Options: xFormat(x) for the x tick labels,
 * zero (default true) to start the y axis at 0, unit after the y values.
 * svg.dataset.points and .max are the first series' point count and largest value (what tests watch).
 */
export function drawLines(svg, series, { xFormat = fmtTick, zero = true, unit = '' } = {}) {
  const [W, H] = fit(svg);
  const pad = { l: 48, r: 12, t: 22, b: 22 };
  const pts = series.flatMap((s) => s.points.filter((p) => p[1] !== null && Number.isFinite(p[1])));
  svg.replaceChildren();
  const first = (series[0]?.points ?? []).filter((p) => p[1] !== null && Number.isFinite(p[1]));
  svg.dataset.points = String(first.length);
  svg.dataset.max = String(first.length ? Math.max(...first.map((p) => p[1])) : 0);

  if (!pts.length) {
    svg.append(svgEl('text', { x: W / 2, y: H / 2, class: 'chart-empty', 'text-anchor': 'middle' }, 'no data yet'));
    return;
  }
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) x1 = x0 + 1;
  let y0 = zero ? Math.min(0, ...ys) : Math.min(...ys);
  let y1 = Math.max(...ys);
  if (y0 === y1) { y1 += Math.abs(y1) * 0.1 || 1; if (!zero) y0 -= Math.abs(y0) * 0.1 || 1; }
  const yt = ticks(y0, y1);
  [y0, y1] = [yt[0], yt.at(-1)];
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const Y = (y) => H - pad.b - ((y - y0) / (y1 - y0)) * (H - pad.t - pad.b);

  const grid = svgEl('g', { class: 'chart-grid' });
  for (const v of yt) {
    grid.append(svgEl('line', { x1: pad.l, x2: W - pad.r, y1: Y(v), y2: Y(v) }));
    grid.append(svgEl('text', { x: pad.l - 6, y: Y(v) + 4, 'text-anchor': 'end' }, fmtTick(v) + unit));
  }
  for (const v of ticks(x0, x1, 5).filter((v) => v >= x0 && v <= x1)) {
    grid.append(svgEl('text', { x: X(v), y: H - 6, 'text-anchor': 'middle' }, xFormat(v)));
  }
  svg.append(grid);

  series.forEach((s, i) => {
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (y === null || !Number.isFinite(y)) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`;
      pen = true;
    }
    const path = svgEl('path', { d, class: 'chart-line', stroke: s.color, 'data-series': s.name });
    if (s.dashed) path.setAttribute('stroke-dasharray', '5 3');
    path.dataset.n = String(s.points.filter((p) => p[1] !== null && Number.isFinite(p[1])).length);
    svg.append(path);
    // A lone point draws no line: mark it.
    if (s.points.length === 1 && s.points[0][1] !== null) {
      svg.append(svgEl('circle', { cx: X(s.points[0][0]), cy: Y(s.points[0][1]), r: 2.5, fill: s.color }));
    }
    const lx = W - pad.r - (series.length - i) * 96;
    const legend = svgEl('g', { class: 'chart-legend' });
    legend.append(svgEl('rect', { x: lx, y: 6, width: 10, height: 10, rx: 2, fill: s.color }));
    legend.append(svgEl('text', { x: lx + 14, y: 15 }, s.name));
    svg.append(legend);
  });
}

/**
 * Draws which names were active at each of `n` samples:
 * rows = [{name, color, on: [bool, ...]}]. Each run of samples becomes one bar,
 * so a swap shows as one bar ending where another starts.
 */
export function drawStrip(svg, rows, n) {
  const rowH = 18;
  const labelW = 160;
  const [W] = fit(svg, Math.max(1, rows.length) * rowH + 8);
  svg.replaceChildren();
  svg.dataset.rows = String(rows.length);
  if (!rows.length) {
    svg.append(svgEl('text', { x: W / 2, y: 14, class: 'chart-empty', 'text-anchor': 'middle' }, 'no adapter active yet'));
    return;
  }
  const cw = (W - labelW - 4) / Math.max(n, 1);
  rows.forEach((row, r) => {
    const y = 4 + r * rowH;
    const label = svgEl('text', { x: labelW - 8, y: y + 12, 'text-anchor': 'end', class: 'strip-label' }, row.name);
    svg.append(label);
    svg.append(svgEl('rect', { x: labelW, y, width: W - labelW - 4, height: rowH - 4, class: 'strip-bg' }));
    let start = -1;
    for (let i = 0; i <= row.on.length; i++) {
      if (i < row.on.length && row.on[i]) { if (start < 0) start = i; continue; }
      if (start >= 0) {
        const bar = svgEl('rect', { x: labelW + start * cw, y, width: (i - start) * cw, height: rowH - 4, rx: 2, fill: row.color });
        bar.append(svgEl('title', {}, row.name));
        svg.append(bar);
        start = -1;
      }
    }
  });
}
