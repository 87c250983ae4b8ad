// A small self-made SVG line chart: one series over round numbers, no library.

import { h, svg } from "./dom.js";

const W = 320;
const H = 150;
const M = { left: 40, right: 10, top: 10, bottom: 24 };

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function fmt(value) {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 1) return value.toFixed(1).replace(/\.0$/, "");
  if (abs >= 0.01) return value.toFixed(2);
  return value.toExponential(0);
}

// points: [{x: round number, y: number | null, low?, high?}] (low and high: an interval, drawn
// as a band); yMax fixes the scale (agreement: 1).
export function lineChart({ id, title, points, yMax = null, unit = "" }) {
  const valid = points.filter((p) => Number.isFinite(p.y));
  const figure = h("figure", { className: "plot", id });
  figure.append(h("h3", { text: title }));
  const summary = valid.length
    ? `${title} by round: ${valid.map((p) => `round ${p.x}: ${fmt(p.y)}${unit}`).join(", ")}`
    : `${title}: no data yet`;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary });
  figure.append(chart);
  if (!valid.length) {
    chart.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty", text: "no closed rounds yet" }));
    return figure;
  }
  const xs = points.map((p) => p.x);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  // An interval (points' low and high) is drawn as a band behind the line, inside the scale.
  const band = valid.filter((p) => Number.isFinite(p.low) && Number.isFinite(p.high));
  const top = yMax ?? niceMax(Math.max(...valid.map((p) => p.y), ...band.map((p) => p.high)));
  const bottom = Math.min(0, ...valid.map((p) => p.y), ...band.map((p) => p.low));
  const px = (x) => M.left + (xMax === xMin ? (W - M.left - M.right) / 2 : ((x - xMin) / (xMax - xMin)) * (W - M.left - M.right));
  const py = (y) => H - M.bottom - ((y - bottom) / (top - bottom || 1)) * (H - M.top - M.bottom);

  for (const tick of [bottom, (bottom + top) / 2, top]) {
    chart.append(svg("line", { x1: M.left, x2: W - M.right, y1: py(tick), y2: py(tick), class: "axis" }));
    chart.append(svg("text", { x: M.left - 5, y: py(tick) + 3, "text-anchor": "end", class: "tick", text: fmt(tick) }));
  }
  const every = Math.max(1, Math.ceil(points.length / 10));
  points.forEach((p, i) => {
    if (i % every === 0 || i === points.length - 1) {
      chart.append(svg("text", { x: px(p.x), y: H - 6, "text-anchor": "middle", class: "tick", text: p.x }));
    }
  });
  if (band.length > 1) {
    const upper = band.map((p) => `${px(p.x).toFixed(1)},${py(p.high).toFixed(1)}`);
    const lower = band.map((p) => `${px(p.x).toFixed(1)},${py(p.low).toFixed(1)}`).reverse();
    chart.append(svg("path", { d: `M${upper.join("L")}L${lower.join("L")}Z`, class: "band" }));
  }
  // A gap in the data (a round without the statistic) breaks the line.
  let d = "";
  let pen = false;
  for (const p of points) {
    if (!Number.isFinite(p.y)) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`;
    pen = true;
  }
  chart.append(svg("path", { d, class: "series" }));
  for (const p of valid) {
    chart.append(
      svg("circle", { cx: px(p.x), cy: py(p.y), r: 3, class: "dot" }, svg("title", { text: `round ${p.x}: ${fmt(p.y)}${unit}` })),
    );
  }
  return figure;
}
