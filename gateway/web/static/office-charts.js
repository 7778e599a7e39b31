// A small hand-written horizontal bar chart as inline SVG, for the office page's reports (no
// chart library, nothing fetched). Colours come from classes styled in office.css, so the
// chart follows the page's palette; the page puts the same numbers in a table beside each
// chart, which is what screen readers and printouts use.
const NS = "http://www.w3.org/2000/svg";
let serial = 0;

function el(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// rows: [{label, bars: [{value (number|null), text, cls}]}]; each row is a group of bars, one
// per series. series: [{name, cls}] for the legend (omitted for one series). max: the scale's
// end (default the largest value). markers: [{row, value, text}] a target line on a row.
// valueW: room kept right of the longest bar for its value's text.
// Returns an <svg role="img"> labelled by `title` (and `desc`).
export function barChart({ title, desc, rows, series = [], max, markers = [], valueW = 150 }) {
  const id = `chart-${++serial}`;
  const W = 640, labelW = 190, barH = 18, gap = 4, groupGap = 20;
  const legendH = series.length > 1 ? 26 : 0;
  const plotW = W - labelW - valueW;
  const perRow = rows.map((r) => r.bars.length * (barH + gap) - gap);
  const H = legendH + perRow.reduce((a, b) => a + b + groupGap, 0) + 8;
  const top = Math.max(
    0, ...rows.flatMap((r) => r.bars.map((b) => (typeof b.value === "number" ? b.value : 0))),
  );
  const scaleMax = max || top || 1;
  const svg = el("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", class: "bars",
    "aria-labelledby": desc ? `${id}-t ${id}-d` : `${id}-t`,
    preserveAspectRatio: "xMinYMin meet",
  });
  svg.append(el("title", { id: `${id}-t` }, title));
  if (desc) svg.append(el("desc", { id: `${id}-d` }, desc));

  if (series.length > 1) {
    let x = labelW;
    for (const s of series) {
      svg.append(el("rect", { x, y: 6, width: 14, height: 14, class: `bar ${s.cls}` }));
      const label = el("text", { x: x + 20, y: 18, class: "legend" }, s.name);
      svg.append(label);
      x += 28 + s.name.length * 14;
    }
  }
  // the axis at zero
  svg.append(el("line", { x1: labelW, y1: legendH, x2: labelW, y2: H - 4, class: "axis" }));

  let y = legendH + 4;
  rows.forEach((row, i) => {
    const h = perRow[i];
    svg.append(el("text", { x: labelW - 10, y: y + h / 2 + 5, class: "label", "text-anchor": "end" },
      row.label));
    row.bars.forEach((b, j) => {
      const by = y + j * (barH + gap);
      const has = typeof b.value === "number" && Number.isFinite(b.value);
      const w = has ? Math.max(b.value > 0 ? 2 : 0, (Math.min(b.value, scaleMax) / scaleMax) * plotW) : 0;
      if (has) svg.append(el("rect", { x: labelW, y: by, width: w, height: barH, class: `bar ${b.cls || ""}` }));
      svg.append(el("text", { x: labelW + w + 6, y: by + barH - 4, class: "value" }, b.text));
    });
    for (const m of markers.filter((mk) => mk.row === i)) {
      const mx = labelW + (Math.min(m.value, scaleMax) / scaleMax) * plotW;
      svg.append(el("line", { x1: mx, y1: y - 3, x2: mx, y2: y + h + 3, class: "marker" }));
      if (m.text) {
        svg.append(el("text", { x: mx, y: y - 5, class: "marker-text", "text-anchor": "middle" }, m.text));
      }
    }
    y += h + groupGap;
  });
  return svg;
}
