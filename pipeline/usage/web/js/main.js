// The usage page: which key, which range, which zone; load the answers and show them.
// The view (key, range, zone) lives in the query string, so a reload or a shared link shows the same view;
// the token never does (see auth.js).

import { alertMarks, renderAlerts } from "./alerts.js";
import { ApiError, getJson, getPublicJson } from "./api.js";
import { currentToken, forgetToken, saveToken } from "./auth.js";
import { renderBudgets } from "./budget.js";
import { renderCharts } from "./charts.js";
import { downloadCsv } from "./download.js";
import { clearComparison, renderComparison, renderEfficiency, renderMonth } from "./insights.js";
import { DEFAULT_PRESET, PRESETS, apiRange, browserZone, isDate, isZone, shownDays, zoneNames } from "./range.js";
import { announce, renderCards, renderFreshness, renderModels, renderRangeNote, renderSeriesTable, showError }
  from "./view.js";

const KEY_LIST_LIMIT = 200;
const FILTER_DELAY_MS = 250;
const BUCKET_WORDS = { hour: "hourly", day: "daily", week: "weekly", month: "monthly" };
const $ = (selector) => document.querySelector(selector);

const state = {
  token: null,
  admin: false,
  ownKey: null, // a key token's own key (from /api/v1/whoami)
  key: null, // the key shown; a key token shows its own unless the link names another
  preset: DEFAULT_PRESET,
  custom: null, // {from, to}, both days included
  tz: null, // null until the zone list is known: then the link's zone, else the browser's (if accepted), else UTC
  zones: null, // the zones the API accepts (its OpenAPI document's tz enum) that this browser also knows
  loading: null, // AbortController of the load in flight
};

readUrl();
wireControls();
open(currentToken());

// ---- view state <-> URL ----------------------------------------------------------------------------

function readUrl() {
  const params = new URLSearchParams(location.search);
  state.key = params.get("key") || null;
  if (PRESETS.includes(params.get("range"))) state.preset = params.get("range");
  if (isDate(params.get("from")) && isDate(params.get("to"))) {
    state.custom = { from: params.get("from"), to: params.get("to") };
  } else if (state.preset === "custom") {
    state.preset = DEFAULT_PRESET;
  }
  if (params.has("tz")) state.tz = params.get("tz");
}

function writeUrl() {
  const params = new URLSearchParams();
  if (state.key) params.set("key", state.key);
  params.set("range", state.preset);
  if (state.preset === "custom") {
    params.set("from", state.custom.from);
    params.set("to", state.custom.to);
  }
  params.set("tz", state.tz);
  history.replaceState(history.state, "", `${location.pathname}?${params}`);
}

function requestParams() {
  const { from, to } = apiRange(state.preset, new Date(), state.tz, state.custom);
  return { scope: "key", id: state.key, from, to, tz: state.tz };
}

// ---- time zones ------------------------------------------------------------------------------------

/** The zones to offer: those the API accepts (the tz enum of its OpenAPI document) and the browser knows. */
async function loadZones() {
  let accepted = null;
  try {
    const document = await getPublicJson("openapi.json");
    const tz = document.paths["/api/v1/summary"].get.parameters.find((p) => p.name === "tz");
    accepted = tz.schema.enum;
  } catch {
    accepted = null; // an older API: offer the browser's zones; the API still refuses what it does not accept
  }
  state.zones = (accepted ?? zoneNames()).filter(isZone);
  const zones = $("#tz");
  zones.replaceChildren(...state.zones.map((zone) => new Option(zone.replaceAll("_", " "), zone)));
  if (state.tz === null) {
    const own = browserZone();
    state.tz = state.zones.includes(own) ? own : "UTC";
    if (state.tz !== own) announce(`Your browser's time zone ${own} is not offered by this server; showing UTC.`);
  }
}

/** The error for a zone the page cannot show (from the link): the browser or the API does not know it. */
function zoneProblem(tz) {
  if (state.zones === null || state.zones.includes(tz)) return null;
  return new ApiError(400, "unknown time zone", `the link asks for the time zone '${tz}', which this server does not `
    + "accept (or this browser does not know); choose one from the Time zone list");
}

// ---- signing in ------------------------------------------------------------------------------------

async function open(token) {
  if (!token) {
    showSignin();
    return;
  }
  state.token = token;
  showSection("usage");
  setState("loading");
  if (state.zones === null) await loadZones();
  try {
    const identity = await getJson(token, "whoami", {});
    state.admin = identity.admin;
    state.ownKey = identity.api_key_id;
    if (state.admin) {
      // Keys and busiest-keys are the admin's routes: a key token never asks them (they would be 403s).
      const [list, busiest] = await Promise.all([
        getJson(token, "keys", { limit: KEY_LIST_LIMIT }),
        state.key || zoneProblem(state.tz) ? null : busiestKey(token),
      ]);
      state.key ??= busiest ?? list.keys[0] ?? null;
      fillKeys(list);
    } else {
      state.key ??= state.ownKey;
    }
  } catch (error) {
    return fail(error);
  }
  showKeyChoice();
  await load();
}

/** The key with the most requests in the range in view (the admin's first view), or null if none has any. */
async function busiestKey(token) {
  const { from, to, tz } = requestParams();
  const answer = await getJson(token, "busiest-keys", { from, to, tz, limit: 1 });
  return answer.keys[0]?.api_key_id ?? null;
}

function showSignin(message = "") {
  state.token = null;
  state.loading?.abort();
  showSection("signin");
  setState("signin");
  showError(message);
  $("#token-input").focus();
}

function showSection(name) {
  $("#signin").hidden = name !== "signin";
  $("#usage").hidden = name !== "usage";
  $("#sign-out").hidden = name !== "usage";
}

// ---- the key ---------------------------------------------------------------------------------------

/** Fill the selector from a KeyList; a key named in the URL stays selectable even if it has no usage. */
function fillKeys(list) {
  const select = $("#key");
  const keys = [...list.keys];
  if (state.key && !keys.includes(state.key) && !$("#key-filter").value) keys.unshift(state.key);
  const options = keys.map((key) => new Option(key, key, false, key === state.key));
  if (list.truncated) {
    const more = new Option(`… more keys: type the start of a key above`, "");
    more.disabled = true;
    options.push(more);
  }
  select.replaceChildren(...options);
  $("#key-count").textContent = list.keys.length === 0 ? "No key matches."
    : `${list.keys.length}${list.truncated ? "+" : ""} key${list.keys.length === 1 ? "" : "s"}`;
}

function showKeyChoice() {
  $("#key-choice").hidden = !state.admin;
  $("#key-fixed").hidden = state.admin;
  $("#own-key").hidden = true;
}

let filterTimer = 0;

function filterKeys() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(async () => {
    try {
      fillKeys(await getJson(state.token, "keys", { q: $("#key-filter").value, limit: KEY_LIST_LIMIT }));
      const first = $("#key").value;
      if (first && first !== state.key) chooseKey(first);
    } catch (error) {
      fail(error);
    }
  }, FILTER_DELAY_MS);
}

function chooseKey(key) {
  state.key = key || (state.admin ? null : state.ownKey);
  load();
}

// ---- loading -------------------------------------------------------------------------------------

async function load() {
  if (state.admin && !state.key) {
    setState("ready");
    $("#results").hidden = true;
    showError("");
    announce("No key has recorded usage yet.");
    return;
  }
  syncControls();
  writeUrl();
  const problem = zoneProblem(state.tz) ?? keyProblem();
  if (problem) {
    state.loading?.abort();
    fail(problem);
    return;
  }
  const params = requestParams();
  state.loading?.abort();
  const controller = (state.loading = new AbortController());
  setState("loading", params);
  showError("");
  $("#own-key").hidden = true;
  announce("Loading usage…");
  try {
    const ask = (route, extra = {}) => getJson(state.token, route, { ...params, ...extra }, controller.signal);
    const [summary, models, series, budgets, comparison, month, alerts] = await Promise.all([
      ask("summary"), ask("models", { order: "cost" }), ask("series"), budgetsOf(state.token, params, controller.signal),
      optional(ask("compare")),
      optional(getJson(state.token, "month-to-date", { scope: "key", id: params.id, tz: params.tz }, controller.signal)),
      optional(getJson(state.token, "alerts", { key: params.id, from: params.from, to: params.to, tz: params.tz },
        controller.signal)),
    ]);
    renderBudgets(budgets);
    renderMonth(month);
    renderCards(summary.totals);
    if (comparison) renderComparison(comparison);
    else clearComparison();
    renderRangeNote(summary.status);
    renderFreshness(summary.freshness, state.tz);
    renderModels(models);
    renderEfficiency(models);
    renderCharts(series, alertMarks(alerts?.alerts ?? [], series.buckets));
    renderAlerts(alerts, { key: params.id, tz: params.tz, now: new Date() });
    renderSeriesTable(series);
    $("#key-name").textContent = summary.request.scope_id;
    setState("ready", params);
    const count = series.buckets.length;
    const buckets = `${count} ${BUCKET_WORDS[series.request.granularity]} bucket${count === 1 ? "" : "s"}`;
    announce(`Showing ${summary.request.scope_id}: ${buckets} (${state.tz}).`);
  } catch (error) {
    if (error.name !== "AbortError") fail(error);
  }
}

/** An answer the rest of the page does not depend on: null when the API cannot give it (not 401/403, which
 * say something about the token and are shown). */
async function optional(answer) {
  try {
    return await answer;
  } catch (error) {
    if (error.name === "AbortError" || error.status === 401 || error.status === 403) throw error;
    return null;
  }
}

/**
 * A key token reads only its own key: asking for another (a link, or a view left by the admin before "Change
 * token") would only earn 403s. Say so without asking.
 */
function keyProblem() {
  if (state.admin || state.key === state.ownKey) return null;
  return new ApiError(403, "forbidden", `this token reads only key '${state.ownKey}'`);
}

/** The key's budgets with their status now; none when the API has no budget routes (404) or cannot say. */
async function budgetsOf(token, params, signal) {
  try {
    return await getJson(token, "budgets", { key: params.id }, signal);
  } catch (error) {
    if (error.name === "AbortError" || error.status === 401 || error.status === 403) throw error;
    return null; // the usage view does not depend on budgets
  }
}

/** What a failed request means for the reader, by HTTP status. */
function fail(error) {
  if (!(error instanceof ApiError)) console.error(error.stack ?? String(error)); // a bug of ours: say where
  if (error.status === 401) {
    forgetToken();
    showSignin(`The token was not accepted (401: ${error.detail || error.error}). Paste a valid token.`);
    return;
  }
  setState("error");
  announce("");
  if (error.status === 403) {
    const what = state.key ? `key '${state.key}'` : "this";
    showError(`This token may not read ${what} (${error.detail}). A key token reads only its own key's usage.`);
    $("#own-key").hidden = state.admin || !state.key || state.key === state.ownKey;
  } else if (error.status === 400) {
    showError(`The API could not answer this request: ${error.error} (${error.detail}).`);
  } else {
    showError(`${error.error}${error.detail ? `: ${error.detail}` : ""}`);
  }
}

/** data-state on <body>: signin | loading | ready | error; #usage also names the request being shown. */
function setState(name, params) {
  document.body.dataset.state = name;
  $("#results").hidden = name === "error" || name === "signin";
  $("#results").setAttribute("aria-busy", String(name === "loading"));
  $("#export").disabled = name !== "ready" || (state.admin && !state.key);
  if (params) {
    Object.assign($("#usage").dataset, { key: params.id ?? "", from: params.from, to: params.to, tz: params.tz });
  }
}

// ---- controls ------------------------------------------------------------------------------------

function wireControls() {
  const zones = $("#tz");

  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#token-input");
    if (!input.value.trim()) return;
    saveToken(input.value);
    input.value = "";
    open(currentToken());
    $("#main").focus(); // the form is gone: keep the keyboard where the usage appears
  });
  $("#sign-out").addEventListener("click", () => {
    forgetToken();
    showSignin();
  });
  window.addEventListener("hashchange", () => {
    if (location.hash.includes("token=")) open(currentToken());
  });

  $("#key").addEventListener("change", (event) => chooseKey(event.target.value));
  $("#key-filter").addEventListener("input", filterKeys);
  $("#own-key").addEventListener("click", () => chooseKey(null));
  for (const radio of document.querySelectorAll('input[name="range"]')) {
    radio.addEventListener("change", () => choosePreset(radio.value));
  }
  $("#custom-range").addEventListener("submit", (event) => {
    event.preventDefault();
    applyCustomRange();
  });
  zones.addEventListener("change", () => {
    state.tz = zones.value;
    load();
  });
  $("#export").addEventListener("click", exportCsv);
}

function choosePreset(preset) {
  if (preset === "custom") state.custom = shownDays(state.preset, new Date(), state.tz, state.custom);
  state.preset = preset;
  load();
}

function applyCustomRange() {
  const from = $("#from").value;
  const to = $("#to").value;
  const valid = isDate(from) && isDate(to) && from <= to;
  $("#to").setAttribute("aria-invalid", String(!valid));
  if (!valid) {
    showError("Choose a 'From' day on or before the 'To' day.");
    $("#from").focus();
    return;
  }
  state.custom = { from, to };
  load();
}

/** Show the state in the controls (after reading the URL or choosing a preset). */
function syncControls() {
  for (const radio of document.querySelectorAll('input[name="range"]')) {
    radio.checked = radio.value === state.preset;
  }
  const custom = state.preset === "custom";
  $("#custom-range").hidden = !custom;
  if (custom) {
    $("#from").value = state.custom.from;
    $("#to").value = state.custom.to;
  }
  const zones = $("#tz");
  zones.value = state.tz; // a zone not in the list (a refused one from the link) leaves the list unselected
  zones.setAttribute("aria-invalid", String(zones.value !== state.tz));
}

async function exportCsv() {
  if (keyProblem()) return fail(keyProblem());
  const button = $("#export");
  button.disabled = true;
  announce("Preparing the CSV…");
  try {
    announce(`Downloaded ${await downloadCsv(state.token, requestParams())}.`);
  } catch (error) {
    fail(error);
  } finally {
    button.disabled = document.body.dataset.state !== "ready";
  }
}
