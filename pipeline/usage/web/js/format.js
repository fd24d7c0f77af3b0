// How numbers, money, shares and bucket times are shown. Money and shares arrive as exact decimal strings
// and are formatted as strings: Intl.NumberFormat reads a numeric string as an exact decimal, so the value
// is never squeezed through a binary float (what is shown is the API's decimal, rounded half-even).

const integers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
const usd = (options) => new Intl.NumberFormat(undefined, {
  style: "currency", currency: "USD", roundingMode: "halfEven", ...options,
});
const cents = usd({ minimumFractionDigits: 2, maximumFractionDigits: 2 });
const smallAmount = usd({ maximumSignificantDigits: 2 });
const percent = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 1, maximumFractionDigits: 1, roundingMode: "halfEven",
});
const signedPercent = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 1, maximumFractionDigits: 1, roundingMode: "halfEven", signDisplay: "exceptZero",
});
const compactUsd = usd({ notation: "compact", maximumSignificantDigits: 3 });
const average = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1, roundingMode: "halfEven" });
const ratio = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3, roundingMode: "halfEven" });

// Below a cent, two significant digits ($0.0012); below this, "< $0.000001" rather than a long tail.
const SMALLEST_SHOWN = "0.000001";

/** 1234567 (Number or BigInt) -> "1,234,567" in the reader's locale. */
export function formatInteger(value) {
  return integers.format(value);
}

/** 1234567 -> "1.2M": chart axes only. */
export function formatCompact(value) {
  return compact.format(value);
}

/** 1234.5 -> "$1.23K": chart axes only (a drawing scale, not an amount anyone reads as exact). */
export function formatCompactUsd(value) {
  return compactUsd.format(value);
}

/** Tokens per request "1234.57" (2 places) -> "1,234.6"; null (no requests) -> "–". */
export function formatAverage(decimalText) {
  return decimalText === null || decimalText === undefined ? "–" : average.format(decimalText);
}

/** An output/input ratio "0.1234" (4 places) -> "0.123"; null (no input tokens) -> "–". */
export function formatRatio(decimalText) {
  return decimalText === null || decimalText === undefined ? "–" : ratio.format(decimalText);
}

/** A relative change "-0.1234" (a fraction, 4 places) -> "-12.3%"; "0" -> "0.0%". */
export function formatChange(decimalText) {
  const negative = decimalText.startsWith("-");
  const shifted = shiftPoint(decimalText.replace(/^-/, ""), 2);
  return `${signedPercent.format(negative ? `-${shifted}` : shifted)}%`;
}

/** "12.345678901234567890123456" -> "$12.35"; "0.00123" -> "$0.0012"; "0" -> "$0.00". */
export function formatUsd(decimalText) {
  const magnitude = decimalText.replace(/^-/, "");
  if (compareDecimals(magnitude, "0") === 0 || compareDecimals(magnitude, "0.01") >= 0) {
    return cents.format(decimalText);
  }
  if (compareDecimals(magnitude, SMALLEST_SHOWN) < 0) {
    return `< ${smallAmount.format(SMALLEST_SHOWN)}`;
  }
  return smallAmount.format(decimalText);
}

/** "$12.345678901234567890123456": the exact amount, for a tooltip. */
export function exactUsd(decimalText) {
  return decimalText.startsWith("-") ? `-$${decimalText.slice(1)}` : `$${decimalText}`;
}

/** A request share "0.512345" (a fraction, 6 places) -> "51.2%". */
export function formatShare(decimalText) {
  return `${percent.format(shiftPoint(decimalText, 2))}%`;
}

/** Compare two non-negative decimal strings exactly: -1, 0 or 1. */
export function compareDecimals(a, b) {
  const [aInt, aFrac = ""] = a.split(".");
  const [bInt, bFrac = ""] = b.split(".");
  const places = Math.max(aFrac.length, bFrac.length);
  const left = BigInt(aInt + aFrac.padEnd(places, "0"));
  const right = BigInt(bInt + bFrac.padEnd(places, "0"));
  return left < right ? -1 : left > right ? 1 : 0;
}

/** Multiply a non-negative decimal string by 10^places by moving its point: "0.512345", 2 -> "51.2345". */
export function shiftPoint(decimalText, places) {
  const [whole, fraction = ""] = decimalText.split(".");
  const digits = whole + fraction.padEnd(places, "0");
  const point = whole.length + places;
  const shifted = `${digits.slice(0, point)}.${digits.slice(point)}`.replace(/^0+(?=\d)/, "");
  return shifted.endsWith(".") ? shifted.slice(0, -1) : shifted;
}

const bucketFormats = {
  hour: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
  day: { month: "short", day: "numeric" },
  week: { month: "short", day: "numeric" },
  month: { month: "short", year: "numeric" },
};

/** A bucket start ("2026-10-25T00:00:00+02:00") as a short label in the chosen zone. */
export function formatBucket(isoStart, granularity, timeZone) {
  const format = new Intl.DateTimeFormat(undefined, { ...bucketFormats[granularity], timeZone });
  const label = format.format(new Date(isoStart));
  return granularity === "week" ? `Week of ${label}` : label;
}

