// What the page adds to the plain totals: the previous period on every card (GET /api/v1/compare), the month
// to date with its month-end projection (GET /api/v1/month-to-date) and efficiency per model (tokens per
// request, output/input, cache and reasoning tokens, from GET /api/v1/models). All figures are the API's
// exact values, formatted here; nothing is recomputed in the browser except how many days are left.

import { exactUsd, formatAverage, formatChange, formatInteger, formatRatio, formatUsd } from "./format.js";

const $ = (selector) => document.querySelector(selector);
const DAY_MS = 24 * 3600 * 1000;
// Cards shown only when the range or its previous period has some of it.
const WHEN_NONZERO = ["cache_read_tokens", "cache_write_tokens", "reasoning_tokens"];
const FORMATS = {
  total_cost: formatUsd, avg_tokens_per_request: formatAverage, output_input_ratio: formatRatio,
};

/** How a card's value is shown: integers grouped, money as money, ratios to a few places. */
export function formatStat(name, value) {
  return (FORMATS[name] ?? formatInteger)(value);
}

/**
 * The line under each card: "+12.3% vs 98,765,432" (the previous period's value), from a Comparison answer.
 * Also shows the cache and reasoning cards when either period has any, and says which period is compared.
 */
export function renderComparison(comparison) {
  const { totals, previous_totals: previous, changes } = comparison;
  for (const name of WHEN_NONZERO) {
    const any = String(totals[name]) !== "0" || (previous !== null && String(previous[name]) !== "0");
    document.querySelector(`[data-card="${name}"]`).hidden = !any;
  }
  for (const line of document.querySelectorAll("[data-delta]")) {
    const name = line.dataset.delta;
    const change = changes[name];
    line.replaceChildren(...deltaParts(name, totals[name], previous, change));
    line.dataset.relative = change?.relative ?? "";
    line.dataset.previous = previous === null || previous[name] === null ? "" : String(previous[name]);
    line.dataset.direction = direction(change);
  }
  $("#compare-note").textContent = comparison.previous_request === null
    ? "No previous period: the range starts at the earliest date the store holds."
    : `Each card compares with the previous period, ${periodText(comparison.previous_request)}: the same length `
      + "just before this range.";
}

/** Clear the comparison (while loading another view, or when the API cannot compare). */
export function clearComparison() {
  for (const line of document.querySelectorAll("[data-delta]")) {
    line.replaceChildren();
    delete line.dataset.relative;
    delete line.dataset.previous;
  }
  $("#compare-note").textContent = "";
}

function deltaParts(name, current, previous, change) {
  if (previous === null) return ["no previous period"];
  const before = previous[name];
  const shown = before === null ? "–" : formatStat(name, before);
  const was = span("previous", `vs ${shown}`);
  if (name === "total_cost" && before !== null) was.title = `${exactUsd(before)} exactly in the previous period`;
  if (change.relative === null) return [was]; // nothing to divide by: the previous value says it all
  const arrow = span("arrow", { up: "▲", down: "▼" }[direction(change)] ?? "");
  arrow.setAttribute("aria-hidden", "true");
  return [arrow, span("change", formatChange(change.relative)), " ", was];
}

function direction(change) {
  if (!change || change.difference === null) return "";
  const text = String(change.difference);
  if (text.startsWith("-")) return "down";
  return /[1-9]/.test(text) ? "up" : "same";
}

/** "Oct 19 – Oct 25 (Europe/Berlin)" for whole local days, else "Oct 23, 15:00 – Oct 24, 14:00 (UTC)". */
function periodText(request) {
  const wholeDays = request.start.includes("T00:00:00") && request.end.includes("T00:00:00");
  const options = wholeDays ? { month: "short", day: "numeric" }
    : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  const format = new Intl.DateTimeFormat(undefined, { ...options, timeZone: request.tz });
  const last = wholeDays ? new Date(new Date(request.end).getTime() - 1) : new Date(request.end);
  return `${format.format(new Date(request.start))} – ${format.format(last)} (${request.tz})`;
}

// ---- the month to date -------------------------------------------------------------------------------

/** The "Cost this month" panel from a MonthToDate answer; null (the API could not say) hides it. */
export function renderMonth(month) {
  const panel = $("#month");
  panel.hidden = !month;
  if (!month) return;
  const day = (iso) => new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: month.tz })
    .format(new Date(iso));
  const lastDay = day(new Date(new Date(month.month_end).getTime() - 1).toISOString());
  const spent = document.querySelector('[data-month="spent"]');
  spent.textContent = formatUsd(month.spent_usd);
  spent.dataset.exact = month.spent_usd;
  spent.title = `${exactUsd(month.spent_usd)} exactly`;
  const projected = document.querySelector('[data-month="projected"]');
  projected.textContent = formatUsd(month.projected_usd);
  projected.dataset.exact = month.projected_usd;
  $("#month-title").textContent = `Cost this month (${month.tz})`;
  $("#month-so-far").textContent = `so far (${day(month.month_start)} – ${day(month.as_of)})`;
  $("#month-end").textContent = `by ${lastDay}`;
  const daysLeft = Math.max(0, new Date(month.month_end) - new Date(month.as_of)) / DAY_MS;
  const left = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 }).format(daysLeft);
  $("#month-how").textContent = `How: ${formatUsd(month.spent_usd)} spent + ${formatUsd(month.daily_rate_usd)} a day `
    + `× ${left} days left, a day being the average since ${day(month.trend_since)} (at most the last `
    + `${month.trend_days} days and today), as budgets project.`;
}

// ---- efficiency by model -----------------------------------------------------------------------------

/** The "Efficiency by model" table from a ModelBreakdown; cache and reasoning columns only where non-zero. */
export function renderEfficiency(breakdown) {
  const section = $("#efficiency");
  section.hidden = breakdown.models.length === 0;
  const shown = WHEN_NONZERO.filter((name) => breakdown.models.some((m) => String(m.totals[name]) !== "0"));
  for (const header of section.querySelectorAll("th[data-column]")) {
    header.hidden = !shown.includes(header.dataset.column);
  }
  $("#efficiency-body").replaceChildren(...breakdown.models.map((model) => {
    const row = document.createElement("tr");
    const { totals } = model;
    row.append(cell("th", model.model), cell("td", model.provider || "unknown"),
      cell("td", formatAverage(totals.avg_tokens_per_request), "number"),
      cell("td", formatRatio(totals.output_input_ratio), "number"),
      ...shown.map((name) => cell("td", formatInteger(totals[name]), "number")));
    row.firstChild.scope = "row";
    return row;
  }));
}

// A table cell (or header) holding text; shared with view.js.
export function cell(tag, text, className) {
  const element = document.createElement(tag);
  element.textContent = text;
  if (className) element.className = className;
  return element;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}
