// The key's usage-spike alerts in the range (GET /api/v1/alerts): a numbered list under the charts, each entry
// saying what fired (model and metric), when, how far above its threshold, and linking to the hours around it;
// and the bucket spans the charts mark (charts.js draws them).

import { dateIn } from "./range.js";
import { formatInteger, formatUsd } from "./format.js";

const $ = (selector) => document.querySelector(selector);
const METRICS = { tokens: "Tokens", requests: "Requests", cost: "Cost" };

/**
 * The charts' marks: one per alert, numbered as in the list, spanning the buckets in which it was open
 * (clipped to the range; an alert still open runs to the last bucket).
 * Buckets are a Series answer's buckets ({start: ISO with offset}).
 */
export function alertMarks(alerts, buckets) {
  const starts = buckets.map((bucket) => Date.parse(bucket.start));
  const index = (ms) => {
    let found = 0;
    for (let i = 0; i < starts.length && starts[i] <= ms; i += 1) found = i;
    return found;
  };
  if (starts.length === 0) return [];
  return alerts.map((alert, i) => ({
    number: i + 1,
    status: alert.status,
    first: index(Date.parse(alert.opened_at)),
    last: alert.resolved_at === null ? starts.length - 1 : index(Date.parse(alert.resolved_at)),
    title: `Alert ${i + 1}: ${what(alert)} (${alert.status === "firing" ? "open" : "resolved"})`,
  }));
}

/** The list under the charts, from a KeyAlerts answer; no alerts hides it. `view` = {key, tz, now}. */
export function renderAlerts(keyAlerts, view) {
  const section = $("#alerts");
  const alerts = keyAlerts?.alerts ?? [];
  section.hidden = alerts.length === 0;
  $("#alerts-list").replaceChildren(...alerts.map((alert, i) => alertItem(alert, i + 1, view)));
}

function alertItem(alert, number, view) {
  const item = document.createElement("li");
  item.id = `alert-${number}`;
  item.tabIndex = -1; // a chart band focuses it
  item.dataset.status = alert.status;
  item.dataset.model = alert.model;
  item.dataset.metric = alert.metric;
  const open = alert.status === "firing";
  const head = element("p", "alert-head");
  head.append(element("span", `badge ${open ? "open" : "resolved"}`, open ? "Open" : "Resolved"), " ",
    element("strong", "", what(alert)), ` · ${when(alert, view.tz)}`);
  const figures = element("p", "alert-figures", `${perHour(alert.metric, alert.value)} when last checked`
    + `${alert.peak > alert.value ? `, peak ${perHour(alert.metric, alert.peak)}` : ""}; threshold `
    + `${perHour(alert.metric, alert.threshold)}, normal ${perHour(alert.metric, alert.baseline)} `
    + `(${alert.rule} rule, ${alert.severity})`);
  const reason = element("p", "alert-reason", alert.reason);
  const link = element("a", "alert-link", "Show the hours that fired");
  const { from, to } = spanDays(alert, view);
  const params = new URLSearchParams({ key: view.key, range: "custom", from, to, tz: view.tz });
  link.href = `${location.pathname}?${params}`;
  link.setAttribute("aria-label", `Show the usage of ${from} to ${to} by hour, when alert ${number} fired`);
  item.append(head, figures, reason, link);
  return item;
}

/** "Cost of gpt-4o" / "Tokens of all models". */
function what(alert) {
  const metric = METRICS[alert.metric] ?? alert.metric;
  return `${metric} of ${alert.model === "*" ? "all models" : alert.model}`;
}

function when(alert, timeZone) {
  const format = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone,
  });
  const opened = format.format(new Date(alert.opened_at));
  return alert.resolved_at === null ? `open since ${opened}`
    : `${opened} – ${format.format(new Date(alert.resolved_at))}`;
}

/** An alert's figure per hour in its metric's unit: "1,200 tokens/h", "$3.40/h". */
function perHour(metric, value) {
  if (metric === "cost") return `${formatUsd(Number(value).toFixed(6))}/h`;
  return `${formatInteger(Math.round(value))} ${metric}/h`;
}

/** The local days (both included) from the alert's opening to its resolution, or to today while open. */
function spanDays(alert, view) {
  const from = dateIn(view.tz, new Date(alert.opened_at));
  const to = dateIn(view.tz, alert.resolved_at === null ? view.now : new Date(alert.resolved_at));
  return { from, to: to < from ? from : to };
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
