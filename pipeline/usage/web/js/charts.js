// The three series charts, drawn with the vendored Chart.js (window.Chart, from vendor/chart.umd.js).
// Each <canvas> is role="img" with a text summary as its name, and the same data is in the series table
// below the charts, for readers who cannot see a chart.

import { formatBucket, formatCompact, formatInteger } from "./format.js";

// Colours keep at least 3:1 against the white card (WCAG 1.4.11); input and output also differ in line
// style and point shape, so they are told apart without colour.
const GREEN = "#1a7f37";
const BLUE = "#0969da";
const RED = "#cf222e";
const PURPLE = "#8250df";

const charts = new Map();

/** Draw (or redraw) the charts for a Series answer: {request: {granularity, tz}, buckets: [...]}. */
export function renderCharts(series) {
  const { granularity, tz } = series.request;
  const labels = series.buckets.map((bucket) => formatBucket(bucket.start, granularity, tz));
  const column = (name) => series.buckets.map((bucket) => Number(bucket[name]));
  const per = `per ${granularity}`;

  draw("total-tokens", labels, [{ label: "Total tokens", data: column("total_tokens"), color: GREEN, kind: "bar" }],
    `Total tokens ${per}`);
  draw("input-output", labels, [
    { label: "Input tokens", data: column("input_tokens"), color: BLUE, kind: "line", point: "circle" },
    {
      label: "Output tokens", data: column("output_tokens"), color: RED, kind: "line", point: "triangle", dash: [6, 4],
    },
  ], `Input and output tokens ${per}`);
  draw("requests", labels, [{ label: "Requests", data: column("requests"), color: PURPLE, kind: "bar" }],
    `Requests ${per}`);
  for (const heading of document.querySelectorAll("[data-per-bucket]")) {
    heading.textContent = `${heading.dataset.perBucket} ${per}`;
  }
}

function draw(name, labels, series, title) {
  const figure = document.querySelector(`[data-chart="${name}"]`);
  const canvas = figure.querySelector("canvas");
  figure.dataset.buckets = String(labels.length);
  canvas.setAttribute("aria-label", describe(title, labels, series));
  const datasets = series.map(dataset);
  const chart = charts.get(name);
  if (chart) {
    chart.data.labels = labels;
    chart.data.datasets = datasets;
    chart.update();
    return;
  }
  charts.set(name, new window.Chart(canvas, { type: "bar", data: { labels, datasets }, options: options(series) }));
}

function dataset({ label, data, color, kind, point, dash }) {
  if (kind === "bar") {
    return { type: "bar", label, data, backgroundColor: color, borderColor: color, maxBarThickness: 28 };
  }
  return {
    type: "line", label, data, borderColor: color, backgroundColor: color, borderWidth: 2,
    borderDash: dash ?? [], pointStyle: point, pointRadius: data.length > 60 ? 0 : 3, tension: 0,
  };
}

function options(series) {
  return {
    animation: false, // instant redraws; also nothing moves for people who prefer reduced motion
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    plugins: {
      legend: {
        display: series.length > 1,
        labels: { usePointStyle: true, pointStyleWidth: 12, boxHeight: 7, color: "#1f2328" },
      },
      tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${formatInteger(item.raw)}` } },
    },
    scales: {
      x: { ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 12, color: "#59636e" }, grid: { display: false } },
      y: { beginAtZero: true, ticks: { callback: formatCompact, color: "#59636e", precision: 0 } },
    },
  };
}

/** "Total tokens per day, 7 buckets from Nov 4 to Nov 10. Total tokens: highest 1,234 (Nov 6)." */
function describe(title, labels, series) {
  if (labels.length === 0) return `${title}: no buckets`;
  const peaks = series.map(({ label, data }) => {
    const top = data.reduce((best, value, index) => (value > data[best] ? index : best), 0);
    return `${label}: highest ${formatInteger(data[top])} (${labels[top]})`;
  });
  return `${title}, ${labels.length} buckets from ${labels[0]} to ${labels.at(-1)}. ${peaks.join("; ")}.`;
}
