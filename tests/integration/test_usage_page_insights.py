"""The usage page beyond the totals, in a real headless Chromium over a hand-built ledger written through the real
writer into real embedded ClickHouse, served by the real API app (usage and budget routes, clock fixed at NOW).

Checked against the ledger of the events written (integers) and against the API's JSON fetched independently
(money and ratios, formatted the way the page formats them): the previous period on every card (a DST-crossing
one too), tokens per request and output/input for the range and per model, cache and reasoning tokens only
where non-zero, the cost chart, the month to date with its projection line, the key's spike alerts marked on
the charts and listed with links to what fired; also that nine-digit numbers never wrap (1400 px and phone),
that the admin opens on the busiest key, and that a key token makes no request it may not (no 403 in the
browser at all). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import uuid4
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import BrowserContext, Page, async_playwright

from pipeline.alerts.model import FIRING, RESOLVED, AlertKey
from pipeline.alerts.state import COLUMNS, AlertRecord
from pipeline.budgets.api import BudgetService, add_budget_routes
from pipeline.clickhouse import ClickHouse, connect
from pipeline.config import ApiSettings
from pipeline.metering.pricing import PriceBook, PriceOverride
from pipeline.migrations import Migrator
from pipeline.usage.api import add_usage_page, create_api_app
from pipeline.usage.query import UsageQueries
from pipeline.usage.tokens import issue_key_token
from support.writes import bounds_at, write_events
from test_usage_page import CHROMIUM, CHROMIUM_ARGS, LOW_CONTRAST_TEXT, PHONE, artifact

pytestmark = [pytest.mark.clickhouse, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

ADMIN, SECRET = "admin-token-for-insights-page", "key-token-secret-for-insights-page-0123"
SETTINGS = ApiSettings(admin_token=ADMIN, token_secret=SECRET, max_range_days=400)
NOW = datetime(2026, 11, 18, 11, tzinfo=UTC)  # 12:00 in Berlin
TZ = "Europe/Berlin"
BERLIN = ZoneInfo(TZ)
WIDE = {"width": 1400, "height": 900}
BUSY, QUIET = "key-zeta", "key-alpha"  # the busiest key is not the alphabetically first
PRICES = PriceBook([
    # a thousand times list prices: five-digit monthly costs, to show that money fits the cards too
    PriceOverride("model-a", datetime(2020, 1, 1, tzinfo=UTC), Decimal("1250"), Decimal("10000"), provider="acme"),
    PriceOverride("model-b", datetime(2020, 1, 1, tzinfo=UTC), Decimal("3000"), Decimal("15000"), provider="acme"),
])
# The 7-day view at NOW: Nov 12..18 in Berlin; its previous period Nov 5..11.
WEEK = ("2026-11-12", "2026-11-19")
CARDS = ("total_tokens", "input_tokens", "output_tokens", "requests", "total_cost", "avg_tokens_per_request",
         "output_input_ratio", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


@dataclass
class Ledger:
    events: list[dict] = field(default_factory=list)

    def add(self, key: str, at: datetime, model: str, input_tokens: int, output_tokens: int, cache_read: int = 0,
            reasoning: int = 0) -> None:
        self.events.append({
            "request_id": f"{key}/{at.isoformat()}/{len(self.events)}", "api_key_id": key, "model": model,
            "provider": "acme", "timestamp": int(at.timestamp() * 1000), "input_tokens": input_tokens,
            "output_tokens": output_tokens, "cache_read_tokens": cache_read, "reasoning_tokens": reasoning})

    def sum(self, key: str, name: str, start: datetime, end: datetime, model: str | None = None) -> int:
        lo, hi = start.timestamp() * 1000, end.timestamp() * 1000
        return sum(e[name] for e in self.events if e["api_key_id"] == key and lo <= e["timestamp"] < hi
                   and model in (None, e["model"]))

    def requests(self, key: str, start: datetime, end: datetime) -> int:
        lo, hi = start.timestamp() * 1000, end.timestamp() * 1000
        return sum(1 for e in self.events if e["api_key_id"] == key and lo <= e["timestamp"] < hi)


def build_ledger() -> Ledger:
    """key-zeta: three requests a day on two models since Oct 12, about 15 M tokens a day (nine-digit weekly
    totals), cache reads and reasoning on model-a only, growing by 1% a day (so every card changes); a spike
    on Nov 12. key-alpha: one small request a day."""
    ledger = Ledger()
    day = datetime(2026, 10, 12, tzinfo=UTC)
    n = 0
    while day < NOW:
        grow = 100 + n  # percent
        for hour in (9, 14):
            if day + timedelta(hours=hour) < NOW:
                ledger.add(BUSY, day + timedelta(hours=hour), "model-a", 60_000 * grow, 4_000 * grow,
                           cache_read=10_000 * grow, reasoning=500 * grow)
        if day + timedelta(hours=10) < NOW:
            ledger.add(BUSY, day + timedelta(hours=10), "model-b", 20_000 * grow, 1_000 * grow)
            ledger.add(QUIET, day + timedelta(hours=10), "model-b", 1_200, 300)
        day += timedelta(days=1)
        n += 1
    for minute in range(0, 180, 10):  # the spike: Nov 12, 10:00-13:00 UTC
        ledger.add(BUSY, datetime(2026, 11, 12, 10, tzinfo=UTC) + timedelta(minutes=minute), "model-b",
                   900_000, 90_000)
    return ledger


def spike_alert(model: str, metric: str, opened: datetime, resolved: datetime | None, value: float,
                threshold: float, baseline: float, reason: str) -> AlertRecord:
    return AlertRecord(AlertKey(BUSY, model, metric), RESOLVED if resolved else FIRING, "warning", "baseline",
                       reason, opened, resolved, resolved or NOW, value, threshold, baseline, value, 0, {}, {}, 1)


ALERTS = [  # as the alert runner writes them to alert_state
    spike_alert("*", "tokens", datetime(2026, 11, 12, 10, 10, tzinfo=UTC), datetime(2026, 11, 12, 14, 5, tzinfo=UTC),
                5_400_000.0, 2_100_000.0, 420_000.0, "tokens of key-zeta at 5.4M/h, 12.9x its normal"),
    spike_alert("model-b", "cost", datetime(2026, 11, 17, 20, tzinfo=UTC), None, 3.5, 1.2, 0.31,
                "cost of key-zeta (model-b) at $3.50/h, above its threshold of $1.20/h"),
]


@pytest.fixture(scope="module")
def ledger(chdb_dir) -> AsyncIterator[tuple[str, Ledger]]:
    url = f"chdb://{chdb_dir}?database=ip_{uuid4().hex[:12]}"
    client = connect(url)
    Migrator(client).apply()
    book = build_ledger()
    now_ms = int(NOW.timestamp() * 1000)
    assert write_events(client, book.events, now_ms, prices=PRICES, bounds=bounds_at(now_ms, 60 * 86_400_000))[0]
    client.insert("alert_state", [record.row() for record in ALERTS], column_names=COLUMNS)
    yield url, book
    client.command(f"DROP DATABASE IF EXISTS `{client.database}`")
    client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(ledger) -> AsyncIterator[str]:
    reader = ClickHouse(connect(ledger[0]))
    app = create_api_app(UsageQueries(reader.client), reader.run, SETTINGS, clock=lambda: NOW)
    add_budget_routes(app, BudgetService.over(reader.client, 7), reader.run, SETTINGS, clock=lambda: NOW)
    add_usage_page(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()
    reader.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-insights")), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport=WIDE, locale="en-US", timezone_id=TZ)
        await context.clock.set_fixed_time(NOW)
        yield context
        await context.close()


@dataclass
class Tab:
    page: Page
    refused: list[tuple[int, str]]  # every answer >= 400 the page received
    console: list[str]  # every console error, failed loads included


@pytest_asyncio.fixture(loop_scope="module")
async def open_tab(site, browser):
    tabs: list[Tab] = []

    async def open_(path: str, token: str = ADMIN, viewport: dict = WIDE, state: str = "ready") -> Tab:
        page = await browser.new_page()
        tab = Tab(page, [], [])
        tabs.append(tab)
        page.on("pageerror", lambda error: tab.console.append(f"pageerror: {error}"))
        page.on("console", lambda m: tab.console.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: tab.refused.append((r.status, r.url)) if r.status >= 400 else None)
        await page.set_viewport_size(viewport)
        await page.goto(f"{site}{path}#token={token}")
        await page.locator(f"body[data-state={state}]").wait_for(state="attached")
        return tab

    yield open_
    for tab in tabs:
        await tab.page.close()


async def api(site: str, route: str, **params) -> dict:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as session:
        async with session.get(f"{site}/api/v1/{route}", params=params) as response:
            assert response.status == 200, await response.text()
            return await response.json()


async def wait_for_view(page: Page, key: str, from_: str, to: str) -> None:
    await page.locator(f'body[data-state=ready] #usage[data-key="{key}"][data-from="{from_}"][data-to="{to}"]'
                       f'[data-tz="{TZ}"]').wait_for(state="attached")
    await page.locator("#compare-note:not(:empty)").wait_for(state="attached")


def usd(text: str) -> str:
    """format.js formatUsd for amounts of at least a cent."""
    return f"${Decimal(text).quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,.2f}"


def percent(text: str) -> str:
    """format.js formatChange: a signed percentage, one decimal, half-even."""
    value = (Decimal(text) * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
    return f"{'+' if value > 0 else ''}{value}%"


def shown_value(name: str, value) -> str:
    """How a card shows a Totals value (format.js): integers grouped, money in cents, ratios to a few places."""
    if value is None:
        return "–"
    if name == "total_cost":
        return usd(value)
    if name == "avg_tokens_per_request":
        return f"{Decimal(value).quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN).normalize():,f}"
    if name == "output_input_ratio":
        return f"{Decimal(value).quantize(Decimal('0.001'), rounding=ROUND_HALF_EVEN).normalize():f}"
    return f"{value:,}"


async def shown_cards(page: Page) -> dict[str, dict]:
    return await page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[data-card]')].map(c => {
        const value = c.querySelector('[data-stat]'), delta = c.querySelector('[data-delta]');
        return [c.dataset.card, {visible: !c.hidden, value: value.textContent, exact: value.dataset.exact,
                                 delta: delta.textContent, previous: delta.dataset.previous,
                                 relative: delta.dataset.relative, direction: delta.dataset.direction}];
    }))""")


# ---- the admin's first view, the cards and their previous period -------------------------------------------

async def test_the_admin_opens_on_the_busiest_key_with_every_card_beside_its_previous_period(open_tab, site, ledger):
    _, book = ledger
    tab = await open_tab("/usage")
    page = tab.page
    await wait_for_view(page, BUSY, *WEEK)  # not key-alpha, the first in the list
    assert await page.locator("#key option").all_text_contents() == [QUIET, BUSY]
    assert await page.locator("#key").input_value() == BUSY
    busiest = await api(site, "busiest-keys", **{"from": WEEK[0], "to": WEEK[1], "tz": TZ})
    assert busiest["keys"][0]["api_key_id"] == BUSY and busiest["keys"][1]["requests"] < busiest["keys"][0]["requests"]

    comparison = await api(site, "compare", scope="key", id=BUSY, **{"from": WEEK[0], "to": WEEK[1], "tz": TZ})
    start, end = datetime(2026, 11, 12, tzinfo=BERLIN), datetime(2026, 11, 19, tzinfo=BERLIN)
    before = datetime(2026, 11, 5, tzinfo=BERLIN)
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens"):
        assert comparison["totals"][name] == book.sum(BUSY, name, start, end), name
        assert comparison["previous_totals"][name] == book.sum(BUSY, name, before, start), name
    assert comparison["totals"]["requests"] == book.requests(BUSY, start, end)
    assert comparison["totals"]["total_tokens"] >= 100_000_000  # nine digits

    cards = await shown_cards(page)
    assert [name for name, card in cards.items() if card["visible"]] == [
        name for name in CARDS if name != "cache_write_tokens"]  # no cache writes in either period: no card
    for name in CARDS:
        if name == "cache_write_tokens":
            continue
        current, previous, change = (comparison["totals"][name], comparison["previous_totals"][name],
                                     comparison["changes"][name])
        card = cards[name]
        assert (card["value"], card["exact"]) == (shown_value(name, current), str(current)), name
        assert card["previous"] == str(previous) and card["relative"] == change["relative"], name
        arrow = {"up": "▲", "down": "▼"}.get(card["direction"], "")
        assert card["delta"] == f"{arrow}{percent(change['relative'])} vs {shown_value(name, previous)}", name
    assert cards["requests"]["direction"] == "up" and cards["total_tokens"]["direction"] == "up"
    assert await page.locator("#compare-note").inner_text() == (
        "Each card compares with the previous period, Nov 5 – Nov 11 (Europe/Berlin): the same length just "
        "before this range.")
    assert await page.get_by_role("group", name="Tokens per Request", exact=True).count() == 1
    assert await page.evaluate(LOW_CONTRAST_TEXT) == []
    await page.screenshot(path=artifact("usage-insights-desktop.png"), full_page=True)
    assert tab.refused == [] and tab.console == []


async def test_a_range_whose_previous_period_crosses_dst_compares_with_the_same_local_days(open_tab, ledger):
    """Oct 26 - Nov 1 in Berlin is 168 hours; the week before it, Oct 19 - 25, has the 25-hour day of the change:
    169 hours, all of them counted."""
    _, book = ledger
    tab = await open_tab(f"/usage?key={BUSY}&range=custom&from=2026-10-26&to=2026-11-01")
    await wait_for_view(tab.page, BUSY, "2026-10-26", "2026-11-02")
    assert await tab.page.locator("#compare-note").inner_text() == (
        "Each card compares with the previous period, Oct 19 – Oct 25 (Europe/Berlin): the same length just "
        "before this range.")
    start, end = datetime(2026, 10, 19, tzinfo=BERLIN), datetime(2026, 10, 26, tzinfo=BERLIN)
    assert (end - start).total_seconds() == 7 * 86400 and end.astimezone(UTC) - start.astimezone(UTC) == \
        timedelta(hours=169)
    cards = await shown_cards(tab.page)
    for name in ("input_tokens", "output_tokens", "reasoning_tokens"):
        assert cards[name]["previous"] == str(book.sum(BUSY, name, start, end)), name
    assert cards["requests"]["previous"] == str(book.requests(BUSY, start, end)) == "21"


# ---- numbers never wrap ---------------------------------------------------------------------------------------

# Each card number and each previous-period figure: on one line (one client rect for its text) and inside
# its box (no overflow). A number broken after a separator ("123,456," / "789") shows as two rects.
NUMBERS = ".card:not([hidden]) [data-stat], .card:not([hidden]) .previous, .card:not([hidden]) .change, [data-month]"
WRAPPED_NUMBERS = """() => [...document.querySelectorAll('""" + NUMBERS + """')]
    .filter(e => e.textContent.trim())
    .map(e => { const r = document.createRange(); r.selectNodeContents(e);
                return [e.dataset.stat || e.dataset.month || e.className, e.textContent, r.getClientRects().length,
                        e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).display !== 'inline']; })
    .filter(([, , lines, overflows]) => lines !== 1 || overflows)"""


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1400px", "phone"])
async def test_nine_digit_totals_never_wrap_mid_number(open_tab, viewport):
    tab = await open_tab(f"/usage?key={BUSY}&range=30d", viewport=viewport)
    await wait_for_view(tab.page, BUSY, "2026-10-20", "2026-11-19")
    tokens = await tab.page.locator("[data-stat=total_tokens]").inner_text()
    assert len(tokens.replace(",", "")) == 9 and len(await tab.page.locator("[data-stat=total_cost]").inner_text()) >= 9
    assert await tab.page.evaluate(WRAPPED_NUMBERS) == []
    widths = await tab.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], "the page scrolls sideways"
    width = "phone" if viewport is PHONE else "1400px"
    await tab.page.locator(".cards").screenshot(path=artifact(f"usage-insights-cards-{width}.png"))
    if viewport is PHONE:
        await tab.page.screenshot(path=artifact("usage-insights-phone.png"), full_page=True)
        assert await tab.page.evaluate(LOW_CONTRAST_TEXT) == []


# ---- the month to date ------------------------------------------------------------------------------------

async def test_the_month_to_date_shows_its_projection_and_how_it_is_computed(open_tab, site):
    tab = await open_tab(f"/usage?key={BUSY}")
    await wait_for_view(tab.page, BUSY, *WEEK)
    month = await api(site, "month-to-date", scope="key", id=BUSY, tz=TZ)
    assert Decimal(month["spent_usd"]) > 0 and Decimal(month["projected_usd"]) > Decimal(month["spent_usd"])
    panel = tab.page.locator("#month")
    assert await panel.locator("h2").inner_text() == "Cost this month (Europe/Berlin)"
    spent = panel.locator("[data-month=spent]")
    assert (await spent.inner_text(), await spent.get_attribute("data-exact")) == (usd(month["spent_usd"]),
                                                                                month["spent_usd"])
    assert await panel.locator("[data-month=projected]").inner_text() == usd(month["projected_usd"])
    figures = " ".join((await panel.locator(".month-figures").inner_text()).split())
    assert figures == f"{usd(month['spent_usd'])} so far (Nov 1 – Nov 18) · projected {usd(month['projected_usd'])} by Nov 30"
    # Dec 1 00:00 in Berlin is Nov 30 23:00 UTC: 12.5 days after NOW. The trend: Nov 11 (7 days before today).
    assert await panel.locator("#month-how").inner_text() == (
        f"How: {usd(month['spent_usd'])} spent + {usd(month['daily_rate_usd'])} a day × 12.5 days left, a day "
        "being the average since Nov 11 (at most the last 7 days and today), as budgets project.")
    assert await panel.locator("#month-how").count() == 1


# ---- efficiency by model and the cost chart ---------------------------------------------------------------

async def test_efficiency_per_model_and_the_cost_chart(open_tab, site, ledger):
    _, book = ledger
    tab = await open_tab(f"/usage?key={BUSY}")
    await wait_for_view(tab.page, BUSY, *WEEK)
    models = await api(site, "models", scope="key", id=BUSY, order="cost", **{"from": WEEK[0], "to": WEEK[1], "tz": TZ})
    headers = await tab.page.locator("#efficiency thead th:visible").all_text_contents()
    assert headers == ["Model", "Provider", "Tokens per request", "Output / input", "Cache read tokens",
                       "Reasoning tokens"]  # no cache writes anywhere: no column
    rows = await tab.page.locator("#efficiency-body tr").evaluate_all(
        "rows => rows.map(r => [...r.children].map(c => c.textContent))")
    start, end = datetime(2026, 11, 12, tzinfo=BERLIN), datetime(2026, 11, 19, tzinfo=BERLIN)
    assert rows == [[m["model"], m["provider"], shown_value("avg_tokens_per_request", m["totals"]["avg_tokens_per_request"]),
                     shown_value("output_input_ratio", m["totals"]["output_input_ratio"]),
                     f"{book.sum(BUSY, 'cache_read_tokens', start, end, m['model']):,}",
                     f"{book.sum(BUSY, 'reasoning_tokens', start, end, m['model']):,}"]
                    for m in models["models"]]
    assert sorted(r[0] for r in rows if r[4] == "0") == ["model-b"]  # cache reads on model-a only

    series = await api(site, "series", scope="key", id=BUSY, **{"from": WEEK[0], "to": WEEK[1], "tz": TZ})
    cost = await tab.page.evaluate("""() => { const c = Chart.getChart(document.querySelector('[data-chart=cost] canvas'));
        return {labels: c.data.labels.length, data: c.data.datasets[0].data, exact: c.data.datasets[0].exact}; }""")
    assert cost["exact"] == [b["total_cost"] for b in series["buckets"]] and cost["labels"] == 7
    assert cost["data"] == [float(b["total_cost"]) for b in series["buckets"]]
    assert await tab.page.locator("[data-chart=cost] h2").inner_text() == "Cost (USD) per day"
    table_costs = await tab.page.locator("#series-body tr td:last-child").all_text_contents()
    assert table_costs == [usd(b["total_cost"]) for b in series["buckets"]]


# ---- spike alerts on the charts -------------------------------------------------------------------------------

async def test_spike_alerts_are_marked_on_the_charts_and_link_to_what_fired(open_tab, site):
    tab = await open_tab(f"/usage?key={BUSY}")
    page = tab.page
    await wait_for_view(page, BUSY, *WEEK)
    listed = await api(site, "alerts", key=BUSY, **{"from": WEEK[0], "to": WEEK[1], "tz": TZ})
    assert [(a["model"], a["status"]) for a in listed["alerts"]] == [("*", "resolved"), ("model-b", "firing")]
    # Daily buckets Nov 12..18: the resolved alert is within Nov 12 (index 0), the open one from Nov 17 21:00 Berlin
    # (index 5) to the last bucket.
    expected = [{"number": 1, "status": "resolved", "first": 0, "last": 0},
                {"number": 2, "status": "firing", "first": 5, "last": 6}]
    for chart in ("total-tokens", "input-output", "requests", "cost"):
        marks = await page.evaluate(f"""() => Chart.getChart(document.querySelector('[data-chart="{chart}"] canvas'))
            .options.plugins.alertMarks.marks.map(m => ({{number: m.number, status: m.status, first: m.first,
                                                          last: m.last}}))""")
        assert marks == expected, chart
        label = await page.locator(f'[data-chart="{chart}"] canvas').get_attribute("aria-label")
        assert "Alert 1 (resolved) marked from Nov 12 to Nov 12. Alert 2 (open) marked from Nov 17 to Nov 18." in label

    # The bands are drawn: the top strip of each is the alert's colour (red open, amber resolved).
    colours = await page.evaluate("""() => {
        const chart = Chart.getChart(document.querySelector('[data-chart=requests] canvas'));
        const x = chart.scales.x, top = chart.chartArea.top + 1, ratio = window.devicePixelRatio;
        const ctx = chart.canvas.getContext('2d');
        const at = (i) => [...ctx.getImageData(Math.round(x.getPixelForValue(i) * ratio), Math.round(top * ratio), 1, 1).data];
        return {resolved: at(0), open: at(6), none: at(3)};
    }""")
    assert colours["open"][:3] == [207, 34, 46] and colours["resolved"][:3] == [154, 103, 0]
    assert colours["none"][:3] != colours["open"][:3] and colours["none"][:3] != colours["resolved"][:3]

    items = page.locator("#alerts-list li")
    assert await items.count() == 2
    first = " ".join((await items.nth(0).inner_text()).split())
    assert first.startswith("Resolved Tokens of all models · Nov 12, 11:10 – Nov 12, 15:05")
    assert "5,400,000 tokens/h when last checked; threshold 2,100,000 tokens/h, normal 420,000 tokens/h" in first
    second = " ".join((await items.nth(1).inner_text()).split())
    assert second.startswith("Open Cost of model-b · open since Nov 17, 21:00")
    assert "$3.50/h when last checked; threshold $1.20/h, normal $0.31/h (baseline rule, warning)" in second
    assert "cost of key-zeta (model-b) at $3.50/h" in second

    # A band on a chart focuses its entry; the entry's link opens the hours that fired.
    x = await page.evaluate("() => Chart.getChart(document.querySelector('[data-chart=requests] canvas')).scales.x"
                            ".getPixelForValue(6)")
    await page.locator("[data-chart=requests] canvas").click(position={"x": x, "y": 30})
    # Chart.js hands events over on the next animation frame
    await page.wait_for_function("() => document.activeElement.id === 'alert-2'", timeout=5000)
    await page.locator("#alerts").screenshot(path=artifact("usage-insights-alerts.png"))
    link = items.nth(0).get_by_role("link")
    assert await link.get_attribute("href") == (
        f"/usage?key={BUSY}&range=custom&from=2026-11-12&to=2026-11-12&tz=Europe%2FBerlin")
    await link.click()
    await wait_for_view(page, BUSY, "2026-11-12", "2026-11-13")
    hourly = await page.evaluate("() => Chart.getChart(document.querySelector('[data-chart=requests] canvas'))"
                                 ".options.plugins.alertMarks.marks.map(m => [m.number, m.first, m.last])")
    assert hourly == [[1, 11, 15]]  # 11:10 to 15:05 Berlin, hourly; the open alert began later
    assert tab.refused == [] and tab.console == []


async def test_a_phone_shows_the_alerts_and_the_month(open_tab):
    tab = await open_tab(f"/usage?key={BUSY}", viewport=PHONE)
    await wait_for_view(tab.page, BUSY, *WEEK)
    assert await tab.page.locator("#alerts").is_visible() and await tab.page.locator("#month").is_visible()
    widths = await tab.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], "the page scrolls sideways"
    await tab.page.locator("#alerts").screenshot(path=artifact("usage-insights-phone-alerts.png"))


# ---- a key token makes no request it may not ---------------------------------------------------------------

async def test_a_key_token_sees_its_insights_and_never_asks_what_it_may_not(open_tab):
    token = issue_key_token(SECRET, BUSY)
    tab = await open_tab("/usage", token=token)
    await wait_for_view(tab.page, BUSY, *WEEK)
    assert await tab.page.locator("#alerts-list li").count() == 2
    assert await tab.page.locator("#month").is_visible()
    assert tab.refused == [] and tab.console == []  # no keys or busiest-keys call, nothing refused

    # A link naming another key (or a view left by the admin before "Change token"): said, not asked.
    tab = await open_tab(f"/usage?key={QUIET}", token=token, state="error")
    alert = await tab.page.get_by_role("alert").inner_text()
    assert f"may not read key '{QUIET}'" in alert and f"reads only key '{BUSY}'" in alert
    await tab.page.get_by_role("button", name="Show my own key").click()
    await wait_for_view(tab.page, BUSY, *WEEK)
    assert tab.refused == [] and tab.console == []

    tab = await open_tab(f"/usage?key={BUSY}", token=ADMIN)
    await wait_for_view(tab.page, BUSY, *WEEK)
    await tab.page.get_by_role("button", name="Change token").click()
    await tab.page.get_by_label("API token").fill(issue_key_token(SECRET, QUIET))
    await tab.page.get_by_role("button", name="Open usage").click()
    await tab.page.locator("body[data-state=error]").wait_for(state="attached")
    assert f"may not read key '{BUSY}'" in await tab.page.get_by_role("alert").inner_text()
    assert tab.refused == [] and tab.console == []


async def test_the_new_formats_round_half_even_from_the_decimal_text(open_tab):
    tab = await open_tab(f"/usage?key={BUSY}")
    shown = await tab.page.evaluate("""async cases => {
        const f = await import('/usage/assets/js/format.js');
        return cases.map(([fn, value]) => f[fn](value));
    }""", [["formatChange", v] for v in ("0.1234", "-0.0005", "0.00049", "-0.5", "0", "12.3456")]
           + [["formatAverage", v] for v in ("1234.55", "1234.65", "7")]
           + [["formatRatio", v] for v in ("0.1235", "0.1225", "2.5", "0.0004")])
    assert shown == ["+12.3%", "0.0%", "0.0%", "-50.0%", "0.0%", "+1,234.6%",
                     "1,234.6", "1,234.6", "7", "0.124", "0.122", "2.5", "0"]
