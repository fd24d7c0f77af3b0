// Date ranges and time zones. The API takes `from` (inclusive) and `to` (exclusive) as dates (midnight in
// `tz`) or RFC 3339 instants, and picks the bucket size from the range's length (hour up to 2 days, then
// day, week, month). The page's custom range shows its last day inclusively, as people read ranges.

const HOUR_MS = 3600 * 1000;

export const PRESETS = ["24h", "7d", "30d", "custom"];
export const DEFAULT_PRESET = "7d";

/**
 * The API's {from, to} for a preset at `now` in `timeZone`.
 * - 24h: the last 24 whole UTC hours up to and including the current one (usage is stored per UTC hour);
 * - 7d, 30d: that many local calendar days, ending with today in `timeZone`;
 * - custom: `custom.from` .. `custom.to` (both YYYY-MM-DD, the last day included).
 */
export function apiRange(preset, now, timeZone, custom) {
  if (preset === "24h") {
    const end = Math.floor(now.getTime() / HOUR_MS) * HOUR_MS + HOUR_MS;
    return { from: instant(end - 24 * HOUR_MS), to: instant(end) };
  }
  if (preset === "custom") {
    return { from: custom.from, to: addDays(custom.to, 1) };
  }
  const days = preset === "30d" ? 30 : 7;
  const today = dateIn(timeZone, now);
  return { from: addDays(today, 1 - days), to: addDays(today, 1) };
}

/** The calendar days a preset covers, first and last included: what the custom fields start from. */
export function shownDays(preset, now, timeZone, custom) {
  if (preset === "custom") return { ...custom };
  if (preset === "24h") {
    const today = dateIn(timeZone, now);
    return { from: addDays(today, -1), to: today };
  }
  const { from, to } = apiRange(preset, now, timeZone);
  return { from, to: addDays(to, -1) };
}

/** Today's date (YYYY-MM-DD) in `timeZone`. */
export function dateIn(timeZone, now) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit",
  }).formatToParts(now);
  const part = (type) => parts.find((p) => p.type === type).value;
  return `${part("year")}-${part("month")}-${part("day")}`;
}

/** "2026-10-31" + 1 -> "2026-11-01" (plain calendar arithmetic, no zone involved). */
export function addDays(isoDate, days) {
  const [year, month, day] = isoDate.split("-").map(Number);
  return new Date(Date.UTC(year, month - 1, day + days)).toISOString().slice(0, 10);
}

export function isDate(text) {
  return /^\d{4}-\d{2}-\d{2}$/.test(text ?? "") && addDays(text, 0) === text;
}

/** Whether this browser can compute dates in `timeZone` (an IANA name it knows). */
export function isZone(timeZone) {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone });
    return true;
  } catch {
    return false;
  }
}

/** The browser's own zone: the default choice. */
export function browserZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** Every IANA zone the browser knows, sorted, with UTC and the browser's zone surely among them. */
export function zoneNames() {
  const known = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  return [...new Set(["UTC", browserZone(), ...known])].sort();
}

function instant(epochMs) {
  return new Date(epochMs).toISOString().replace(".000Z", "Z");
}
