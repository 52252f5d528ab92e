// Charts for the dashboard and the account page (uPlot, vendored and served by Solvent), and bar tables.
import { esc } from "./api.js";

export function lineChart(el, days, series) {
  const xs = days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
  const points = series.reduce((n, s) => n + s.values.filter((v) => v).length, 0);
  el.dataset.points = String(points);
  if (!window.uPlot) { el.textContent = "The chart library did not load."; return null; }
  const width = Math.max(280, el.clientWidth || 600);
  const opts = {
    width, height: 220, scales: { x: { time: true } },
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, points: { show: true, size: 4 } }))],
    axes: [{}, { size: 60 }],
  };
  const chart = new window.uPlot(opts, [xs, ...series.map((s) => s.values)], el);
  const caption = document.createElement("p");
  caption.className = "hint";
  caption.textContent = series.map((s) => `${s.label}: total ${s.values.reduce((a, b) => a + b, 0).toLocaleString()}`).join(" · ");
  el.append(caption);
  return chart;
}

export function barTable(rows, cols) {
  // rows: [{label, value, text, ...}]; bars scale to the largest value.
  const max = Math.max(1, ...rows.map((r) => Math.abs(r.value)));
  return `<table><thead><tr>${cols.map((c) => `<th${c.num ? ' class="num"' : ""}>${esc(c.label)}</th>`).join("")}<th aria-hidden="true"></th></tr></thead>
    <tbody>${rows.map((r) => `<tr>${cols.map((c) => `<td${c.num ? ' class="num"' : ""}>${esc(r[c.key])}</td>`).join("")}
    <td class="barcell" aria-hidden="true"><div class="bar${r.idle ? " idle" : ""}" data-w="${Math.round(100 * Math.abs(r.value) / max)}"></div></td></tr>`).join("")}</tbody></table>`;
}

export function sizeBars(root) {
  for (const b of root.querySelectorAll(".bar[data-w]")) b.style.width = `${b.dataset.w}%`;
}
