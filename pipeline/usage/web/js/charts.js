// The series charts, drawn with the vendored Chart.js (window.Chart, from vendor/chart.umd.js).
// Each <canvas> is role="img" with a text summary as its name, and the same data is in the series table
// below the charts, for readers who cannot see a chart. The key's spike alerts are drawn as numbered bands
// over the buckets in which they were open (a small plugin of ours, below); selecting a band focuses the
// alert's entry in the list under the charts.

import { formatBucket, formatCompact, formatCompactUsd, formatInteger, formatUsd } from "./format.js";

// Colours keep at least 3:1 against the white card (WCAG 1.4.11); input and output also differ in line
// style and point shape, so they are told apart without colour.
const GREEN = "#1a7f37";
const BLUE = "#0969da";
const RED = "#cf222e";
const PURPLE = "#8250df";
const AMBER = "#9a6700";
const BAND = { firing: { fill: "rgba(207, 34, 46, 0.13)", edge: RED }, resolved: { fill: "rgba(154, 103, 0, 0.13)", edge: AMBER } };

const charts = new Map();

/**
 * Draw (or redraw) the charts for a Series answer ({request: {granularity, tz}, buckets: [...]}) with the
 * alert marks of alerts.js ([{number, status, first, last, title}], bucket indexes).
 */
export function renderCharts(series, marks = []) {
  const { granularity, tz } = series.request;
  const labels = series.buckets.map((bucket) => formatBucket(bucket.start, granularity, tz));
  const column = (name) => series.buckets.map((bucket) => Number(bucket[name]));
  const per = `per ${granularity}`;
  const costs = series.buckets.map((bucket) => bucket.total_cost); // exact text, for tooltips and the summary

  draw("total-tokens", labels, marks, [{ label: "Total tokens", data: column("total_tokens"), color: GREEN, kind: "bar" }],
    `Total tokens ${per}`);
  draw("input-output", labels, marks, [
    { label: "Input tokens", data: column("input_tokens"), color: BLUE, kind: "line", point: "circle" },
    {
      label: "Output tokens", data: column("output_tokens"), color: RED, kind: "line", point: "triangle", dash: [6, 4],
    },
  ], `Input and output tokens ${per}`);
  draw("requests", labels, marks, [{ label: "Requests", data: column("requests"), color: PURPLE, kind: "bar" }],
    `Requests ${per}`);
  // Bar heights are drawing sizes (Numbers); every figure shown as text is the exact decimal, formatted.
  draw("cost", labels, marks, [{ label: "Cost", data: column("total_cost"), exact: costs, color: AMBER, kind: "bar" }],
    `Cost in USD ${per}`, { money: true });
  for (const heading of document.querySelectorAll("[data-per-bucket]")) {
    heading.textContent = `${heading.dataset.perBucket} ${per}`;
  }
}

function draw(name, labels, marks, series, title, { money = false } = {}) {
  const figure = document.querySelector(`[data-chart="${name}"]`);
  const canvas = figure.querySelector("canvas");
  figure.dataset.buckets = String(labels.length);
  figure.dataset.alerts = String(marks.length);
  canvas.setAttribute("aria-label", describe(title, labels, series, marks, money));
  const datasets = series.map(dataset);
  const chart = charts.get(name);
  if (chart) {
    chart.data.labels = labels;
    chart.data.datasets = datasets;
    chart.options.plugins.alertMarks.marks = marks;
    chart.update();
    return;
  }
  charts.set(name, new window.Chart(canvas, {
    type: "bar", data: { labels, datasets }, options: options(series, marks, money), plugins: [alertBands],
  }));
}

function dataset({ label, data, exact, color, kind, point, dash }) {
  if (kind === "bar") {
    return { type: "bar", label, data, exact, backgroundColor: color, borderColor: color, maxBarThickness: 28 };
  }
  return {
    type: "line", label, data, exact, borderColor: color, backgroundColor: color, borderWidth: 2,
    borderDash: dash ?? [], pointStyle: point, pointRadius: data.length > 60 ? 0 : 3, tension: 0,
  };
}

function options(series, marks, money) {
  const value = (dataset, index) => (money ? formatUsd(dataset.exact[index]) : formatInteger(dataset.data[index]));
  return {
    animation: false, // instant redraws; also nothing moves for people who prefer reduced motion
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    onClick: (event, elements, chart) => focusAlertAt(chart, event.x),
    onHover: (event, elements, chart) => {
      chart.canvas.style.cursor = markAt(chart, event.x) ? "pointer" : "default";
    },
    plugins: {
      legend: {
        display: series.length > 1,
        labels: { usePointStyle: true, pointStyleWidth: 12, boxHeight: 7, color: "#1f2328" },
      },
      tooltip: {
        callbacks: {
          label: (item) => `${item.dataset.label}: ${value(item.dataset, item.dataIndex)}`,
          footer: (items) => marksOver(items[0]?.chart, items[0]?.dataIndex).map((m) => m.title).join("\n"),
        },
      },
      alertMarks: { marks },
    },
    scales: {
      x: { ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 12, color: "#59636e" }, grid: { display: false } },
      y: {
        beginAtZero: true,
        ticks: { callback: money ? formatCompactUsd : formatCompact, color: "#59636e", precision: money ? undefined : 0 },
      },
    },
  };
}

// ---- alert bands -------------------------------------------------------------------------------------

/** [left, right] pixels of buckets first..last on a category x axis (bars are centred on their bucket). */
function bandEdges(chart, mark) {
  const x = chart.scales.x;
  const count = chart.data.labels.length;
  const step = count > 1 ? x.getPixelForValue(1) - x.getPixelForValue(0) : chart.chartArea.width;
  return [x.getPixelForValue(mark.first) - step / 2, x.getPixelForValue(mark.last) + step / 2];
}

function markAt(chart, px) {
  const marks = chart.options.plugins.alertMarks?.marks ?? [];
  return marks.find((mark) => {
    const [left, right] = bandEdges(chart, mark);
    return px >= left && px <= right;
  });
}

function marksOver(chart, index) {
  if (!chart || index === undefined) return [];
  return (chart.options.plugins.alertMarks?.marks ?? []).filter((m) => m.first <= index && index <= m.last);
}

function focusAlertAt(chart, px) {
  const mark = markAt(chart, px);
  const item = mark && document.getElementById(`alert-${mark.number}`);
  if (!item) return;
  item.scrollIntoView({ block: "nearest" });
  item.focus();
}

const alertBands = {
  id: "alertMarks",
  beforeDatasetsDraw(chart, args, pluginOptions) {
    const { ctx, chartArea } = chart;
    const marks = pluginOptions.marks ?? [];
    if (marks.length === 0 || chart.data.labels.length === 0) return;
    ctx.save();
    ctx.beginPath();
    ctx.rect(chartArea.left, chartArea.top, chartArea.width, chartArea.height);
    ctx.clip();
    for (const mark of marks) {
      const [left, right] = bandEdges(chart, mark);
      const colours = BAND[mark.status] ?? BAND.resolved;
      ctx.fillStyle = colours.fill;
      ctx.fillRect(left, chartArea.top, right - left, chartArea.height);
      ctx.fillStyle = colours.edge;
      ctx.fillRect(left, chartArea.top, right - left, 4);
      ctx.font = "bold 11px system-ui, sans-serif";
      ctx.textBaseline = "top";
      ctx.fillText(String(mark.number), Math.max(left, chartArea.left) + 3, chartArea.top + 6);
    }
    ctx.restore();
  },
};

/** "Total tokens per day, 7 buckets from Nov 4 to Nov 10. Total tokens: highest 1,234 (Nov 6). Alert 1 ..." */
function describe(title, labels, series, marks, money) {
  if (labels.length === 0) return `${title}: no buckets`;
  const peaks = series.map(({ label, data, exact }) => {
    const top = data.reduce((best, value, index) => (value > data[best] ? index : best), 0);
    const shown = money ? formatUsd(exact[top]) : formatInteger(data[top]);
    return `${label}: highest ${shown} (${labels[top]})`;
  });
  const alerts = marks.map((m) => ` Alert ${m.number} (${m.status === "firing" ? "open" : "resolved"}) marked from `
    + `${labels[m.first]} to ${labels[m.last]}.`).join("");
  return `${title}, ${labels.length} buckets from ${labels[0]} to ${labels.at(-1)}. ${peaks.join("; ")}.${alerts}`;
}
