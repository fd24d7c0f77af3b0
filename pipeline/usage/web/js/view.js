// Putting answers on the page: the stat cards, the model table, the series table, the empty state and the
// status and error lines. Text is always set with textContent (never HTML): ids and model names come from
// the data.

import { exactUsd, formatBucket, formatInteger, formatShare, formatUsd } from "./format.js";
import { cell, formatStat } from "./insights.js";

const $ = (selector) => document.querySelector(selector);

/** The cards, from a Summary's totals. data-exact keeps the API's value for copy/paste and tests. */
export function renderCards(totals) {
  for (const value of document.querySelectorAll("[data-stat]")) {
    const name = value.dataset.stat;
    const exact = totals[name] === null ? "" : String(totals[name]);
    const title = name === "total_cost" ? `${exactUsd(totals.total_cost)} exactly`
      : totals[name] === null ? EMPTY_RATIOS[name] : undefined;
    setValue(name, formatStat(name, totals[name]), exact, title);
  }
}

const EMPTY_RATIOS = {
  avg_tokens_per_request: "no requests in this period",
  output_input_ratio: "no input tokens in this period",
};

function setValue(stat, text, exact, title) {
  const value = document.querySelector(`[data-stat="${stat}"]`);
  value.textContent = text;
  value.dataset.exact = exact;
  if (title) value.title = title;
  else value.removeAttribute("title");
}

/** The per-model table, or the "No model usage data" state, from a ModelBreakdown and its Status. */
export function renderModels(breakdown) {
  const { status } = breakdown;
  const empty = $("#models-empty");
  $("#models-table").hidden = !status.has_usage;
  empty.hidden = status.has_usage;
  empty.dataset.state = status.state;
  $("#models-empty-reason").textContent = status.has_usage ? "" : emptyReason(status.state);
  $("#models-empty-detail").textContent = status.message; // the API's own words, with the exact range
  $("#models-body").replaceChildren(...breakdown.models.map(modelRow));
}

function modelRow(model) {
  const row = document.createElement("tr");
  const totals = model.totals;
  const cost = cell("td", formatUsd(totals.total_cost), "number");
  cost.title = `${exactUsd(totals.total_cost)} exactly`;
  const name = cell("th", model.model);
  const units = unitsLine(totals);
  if (units) name.append(units);
  row.append(
    name,
    cell("td", model.provider || "unknown"),
    cell("td", formatInteger(totals.input_tokens), "number"),
    cell("td", formatInteger(totals.output_tokens), "number"),
    cost,
    cell("td", formatInteger(totals.requests), "number"),
    cell("td", formatShare(model.request_share), "number"),
  );
  row.firstChild.scope = "row";
  return row;
}

// Units beyond the token columns, shown under a model's name when non-zero (genai-prices names from
// totals.units: input_audio_tokens, cache_write_1h_tokens, web_searches, ...). Cache and reasoning tokens have
// their own columns in the efficiency table.

/** "input audio tokens 800 · web searches 3" (each with its exact cost in the tooltip), or null when the
 * model reported nothing beyond the token columns. */
function unitsLine(totals) {
  const costs = totals.unit_costs || {};
  const entries = Object.entries(totals.units || {});
  if (entries.length === 0) return null;
  const line = document.createElement("div");
  line.className = "units";
  for (const [key, count] of entries) {
    const item = document.createElement("span");
    item.dataset.unit = key;
    item.textContent = `${key.replaceAll("_", " ")} ${formatInteger(count)}`;
    const cost = costs[key];
    if (cost) item.title = `${exactUsd(cost)} exactly`;
    line.append(item);
  }
  return line;
}

/** The series as a table (inside a <details>): the charts' text alternative. */
export function renderSeriesTable(series) {
  const { granularity, tz } = series.request;
  $("#series-body").replaceChildren(...series.buckets.map((bucket) => {
    const row = document.createElement("tr");
    row.append(
      cell("th", formatBucket(bucket.start, granularity, tz)),
      cell("td", formatInteger(bucket.input_tokens), "number"),
      cell("td", formatInteger(bucket.output_tokens), "number"),
      cell("td", formatInteger(bucket.total_tokens), "number"),
      cell("td", formatInteger(bucket.requests), "number"),
      cell("td", formatUsd(bucket.total_cost), "number"),
    );
    row.firstChild.scope = "row";
    return row;
  }));
}

/** What the empty state says: an id never seen is told apart from a quiet period. */
function emptyReason(state) {
  if (state === "unknown") {
    return "This key has no recorded usage at all: it was never used, or it is not a key meterline has seen.";
  }
  return "This key made no requests in this period. Try a longer range.";
}

/** The banner above the cards: what the range holds, or nothing when it has usage. */
export function renderRangeNote(status) {
  const note = $("#range-note");
  note.hidden = status.has_usage;
  note.dataset.state = status.state;
  note.textContent = status.state === "unknown" ? "Unknown key: no recorded usage at all."
    : status.has_usage ? "" : "No requests in this period.";
}

/** How fresh the numbers are (the API's `freshness`): the instant up to which every event in Kafka is
 * counted, in the page's zone, and how late events may still arrive. */
export function renderFreshness(freshness, tz) {
  const line = $("#freshness");
  const days = freshness.lateness_bound_s / 86400;
  const late = days >= 1 ? `${days} day${days === 1 ? "" : "s"}` : `${freshness.lateness_bound_s / 3600} h`;
  if (freshness.counted_through === null) {
    line.dataset.state = "unknown";
    line.textContent = `Nothing counted yet. Events may arrive up to ${late} late.`;
    return;
  }
  const through = new Date(freshness.counted_through);
  // dateStyle/timeStyle cannot be combined with timeZoneName: spell the fields out.
  const shown = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    hourCycle: "h23", timeZone: tz, timeZoneName: "short" }).format(through);
  line.dataset.state = "known";
  line.textContent = `Counted through ${shown}: every event received before then is in these numbers. ` +
    `Events may still arrive up to ${late} late.`;
}

/** The polite live line: "Loading usage…", "Updated", "Downloaded …". */
export function announce(text) {
  $("#status").textContent = text;
}

/** The assertive error line; empty text hides it. */
export function showError(text) {
  const alert = $("#alert");
  alert.textContent = text;
  alert.hidden = !text;
}
