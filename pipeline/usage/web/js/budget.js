// The budget bar: for each budget of the key in view (GET /api/v1/budgets), what is spent this period, where
// the projection leads by the period's end, and the limit. Money arrives as exact decimal strings and is shown
// with format.js (never through a float); only the bar widths are plain numbers (they are drawing sizes).

import { formatShare, formatUsd } from "./format.js";

const $ = (selector) => document.querySelector(selector);
const PERIOD_WORDS = { day: "Daily", week: "Weekly", month: "Monthly" };
const STATE_NOTES = {
  over: "Over budget.",
  projected_over: "On track to exceed the budget",
  within: "On track to stay within the budget.",
};

/** Show a BudgetList ({as_of, budgets: [BudgetStatus]}); an empty list hides the section. */
export function renderBudgets(list) {
  const section = $("#budgets");
  const budgets = list?.budgets ?? [];
  section.hidden = budgets.length === 0;
  $("#budget-list").replaceChildren(...budgets.map(budgetItem));
}

function budgetItem(status) {
  const { budget } = status;
  const item = document.createElement("div");
  item.className = "budget";
  Object.assign(item.dataset, {
    period: budget.period, state: status.state, spent: status.spent_usd, projected: status.projected_usd,
    limit: budget.amount_usd,
  });
  const title = `${PERIOD_WORDS[budget.period]} budget`;
  const head = element("p", "budget-head");
  head.append(element("strong", "", title), ` ${formatUsd(budget.amount_usd)} · ${periodText(status)}`);
  item.append(head, bar(status, title), figures(status), element("p", `budget-note ${status.state}`, note(status)));
  return item;
}

/** The bar: spent (solid) inside projected (hatched), and a mark at the limit; scaled to the largest. */
function bar(status, title) {
  const used = Number(status.used_share);
  const projected = Math.max(Number(status.projected_share), used);
  const scale = Math.max(1, projected);
  const meter = element("div", "budget-bar");
  meter.setAttribute("role", "meter");
  meter.setAttribute("aria-label", `${title} used`);
  meter.setAttribute("aria-valuemin", "0");
  meter.setAttribute("aria-valuemax", "100");
  meter.setAttribute("aria-valuenow", String(Math.min(100, used * 100)));
  meter.setAttribute("aria-valuetext", `${formatUsd(status.spent_usd)} of ${formatUsd(status.budget.amount_usd)} `
    + `spent (${formatShare(status.used_share)}), projected ${formatUsd(status.projected_usd)}`);
  const projectedPart = element("div", "bar-projected");
  const spentPart = element("div", `bar-spent ${status.state}`);
  const limit = element("div", "bar-limit");
  // CSSOM sizes (not style attributes), which the page's Content-Security-Policy allows.
  projectedPart.style.width = `${(projected / scale) * 100}%`;
  spentPart.style.width = `${(used / scale) * 100}%`;
  limit.style.left = `${(1 / scale) * 100}%`;
  meter.append(projectedPart, spentPart, limit);
  return meter;
}

function figures(status) {
  const line = element("p", "budget-figures");
  const figure = (name, label, value, extra = "") => {
    const part = element("span", "figure");
    const number = element("span", "", formatUsd(value));
    number.dataset.figure = name;
    number.dataset.exact = value;
    number.title = `$${value} exactly`;
    part.append(`${label} `, number, extra);
    return part;
  };
  line.append(
    figure("spent", "Spent", status.spent_usd, ` (${formatShare(status.used_share)})`),
    figure("projected", "Projected", status.projected_usd, ` by ${lastDay(status)}`),
    figure("limit", "Limit", status.budget.amount_usd),
  );
  return line;
}

function note(status) {
  if (status.state !== "projected_over") return STATE_NOTES[status.state];
  return `${STATE_NOTES.projected_over} on ${day(status.projected_exceed_at, status.budget.tz)}.`;
}

function periodText(status) {
  const first = day(status.period_start, status.budget.tz);
  const days = status.budget.period === "day" ? first : `${first} – ${lastDay(status)}`;
  return `${days} (${status.budget.tz})`;
}

/** The period's last day (its end is the next period's first midnight). */
function lastDay(status) {
  const end = new Date(status.period_end);
  return day(new Date(end.getTime() - 1).toISOString(), status.budget.tz);
}

function day(iso, timeZone) {
  return new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone }).format(new Date(iso));
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
