"""The usage page's budget bar in a real headless Chromium, over a hand-built ledger in real embedded ClickHouse
served by the real API app (usage and budget routes) on a local port, with the API's and the browser's clocks
fixed at NOW. The bar shows spent, projected and limit as the API answers them (exact decimals, formatted as
the page formats money), sized in proportion; a key token sees its own key's budget; a key without a budget
shows no bar. Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import uuid4

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import BrowserContext, Page, async_playwright

from pipeline.usage.api import add_usage_page, create_api_app
from pipeline.budgets.api import BudgetService, add_budget_routes
from pipeline.budgets.model import make_budget
from pipeline.budgets.store import BudgetStore
from pipeline.clickhouse import ClickHouse, connect
from pipeline.config import ApiSettings
from pipeline.migrations import Migrator
from pipeline.usage.query import UsageQueries
from pipeline.usage.tokens import issue_key_token
from support.budgets import PRICES, Ledger
from support.writes import bounds_at, write_events
from test_usage_page import CHROMIUM, CHROMIUM_ARGS, DESKTOP, LOW_CONTRAST_TEXT, PHONE, artifact

pytestmark = [pytest.mark.clickhouse, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

ADMIN, SECRET = "admin-token-for-budget-page", "key-token-secret-for-budget-page"
SETTINGS = ApiSettings(admin_token=ADMIN, token_secret=SECRET)
NOW = datetime(2026, 11, 18, 11, tzinfo=UTC)  # 12:00 in Berlin
TZ = "Europe/Berlin"


@pytest.fixture(scope="module")
def budget_store(chdb_dir):
    """key-a spends $12 a day (monthly budget $300: projected over), key-b $1 a day against a weekly $20 and
    a daily $0.50 (over), key-c has usage and no budget."""
    url = f"chdb://{chdb_dir}?database=bp_{uuid4().hex[:12]}"
    client = connect(url)
    Migrator(client).apply()
    ledger = Ledger()
    for day in range(1, 19):
        for hour in (8, 10):
            ledger.add("key-a", datetime(2026, 11, day, hour, tzinfo=UTC), "6")
            ledger.add("key-b", datetime(2026, 11, day, hour, tzinfo=UTC), "0.5")
        ledger.add("key-c", datetime(2026, 11, day, 9, tzinfo=UTC), "1")
    now_ms = int(NOW.timestamp() * 1000)
    assert write_events(client, ledger.events, now_ms, prices=PRICES, bounds=bounds_at(now_ms))[0]
    store = BudgetStore(client)
    store.put(make_budget("key", "key-a", "month", "300", TZ), NOW - timedelta(days=1))
    store.put(make_budget("key", "key-b", "week", "20", TZ), NOW - timedelta(days=1))
    store.put(make_budget("key", "key-b", "day", "0.5", TZ), NOW - timedelta(days=1))
    yield url
    client.command(f"DROP DATABASE IF EXISTS `{client.database}`")
    client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(budget_store) -> AsyncIterator[str]:
    reader = ClickHouse(connect(budget_store))
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
            str(tmp_path_factory.mktemp("chromium-budget")), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport=DESKTOP, locale="en-US", timezone_id=TZ)
        await context.clock.set_fixed_time(NOW)
        yield context
        await context.close()


async def open_page(site: str, browser: BrowserContext, path: str, token: str = ADMIN,
                    viewport: dict = DESKTOP) -> Page:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.set_viewport_size(viewport)
    await page.goto(f"{site}{path}#token={token}")
    await page.locator("body[data-state=ready]").wait_for(state="attached")
    assert not errors, errors
    return page


async def api_budgets(site: str, key: str) -> list[dict]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as session:
        async with session.get(f"{site}/api/v1/budgets", params={"key": key}) as response:
            assert response.status == 200
            return (await response.json())["budgets"]


def usd_shown(text: str) -> str:
    """format.js's formatUsd for amounts of at least a cent: half-even to cents."""
    return f"${Decimal(text).quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,.2f}"


async def shown_budgets(page: Page) -> list[dict]:
    return await page.evaluate("""() => [...document.querySelectorAll('#budget-list .budget')].map(b => {
        const width = s => b.querySelector(s).getBoundingClientRect().width;
        const left = s => b.querySelector(s).getBoundingClientRect().left;
        const right = s => b.querySelector(s).getBoundingClientRect().right;
        const figures = Object.fromEntries([...b.querySelectorAll('[data-figure]')]
            .map(f => [f.dataset.figure, [f.textContent, f.dataset.exact]]));
        const meter = b.querySelector('[role=meter]');
        return {period: b.dataset.period, state: b.dataset.state, figures,
                bar: width('.budget-bar'), spent: width('.bar-spent'), projected: width('.bar-projected'),
                limit: right('.bar-limit') - left('.budget-bar'), head: b.querySelector('.budget-head').textContent,
                note: b.querySelector('.budget-note').textContent, valuenow: Number(meter.ariaValueNow),
                valuetext: meter.ariaValueText};
    })""")


def assert_shows(shown: dict, status: dict) -> None:
    b = status["budget"]
    assert shown["period"] == b["period"] and shown["state"] == status["state"]
    assert shown["figures"] == {"spent": [usd_shown(status["spent_usd"]), status["spent_usd"]],
                                "projected": [usd_shown(status["projected_usd"]), status["projected_usd"]],
                                "limit": [usd_shown(b["amount_usd"]), b["amount_usd"]]}
    used, projected = float(status["used_share"]), max(float(status["projected_share"]), float(status["used_share"]))
    scale = max(1.0, projected)
    inner = shown["bar"] - 2  # the bar's 1px border
    assert shown["spent"] == pytest.approx(inner * used / scale, abs=1.5)
    assert shown["projected"] == pytest.approx(inner * projected / scale, abs=1.5)
    assert shown["limit"] == pytest.approx(1 + inner / scale, abs=1.5)  # the mark ends at the limit
    assert shown["valuenow"] == pytest.approx(min(100.0, used * 100))
    assert shown["valuetext"].startswith(f"{usd_shown(status['spent_usd'])} of {usd_shown(b['amount_usd'])} spent")


async def test_the_bar_shows_spent_projected_and_limit_as_the_api_answers(site, browser):
    page = await open_page(site, browser, "/usage?key=key-a")
    [status] = await api_budgets(site, "key-a")
    assert status["state"] == "projected_over" and status["spent_usd"] == "216"
    [shown] = await shown_budgets(page)
    assert_shows(shown, status)
    assert shown["head"] == "Monthly budget $300.00 · Nov 1 – Nov 30 (Europe/Berlin)"
    exceeds = datetime.fromisoformat(status["projected_exceed_at"])
    assert shown["note"] == f"On track to exceed the budget on Nov {exceeds.day}."
    assert await page.locator("#budgets").is_visible()
    await page.screenshot(path=artifact("usage-budget-desktop.png"), full_page=True)


async def test_several_budgets_of_a_key_and_an_exceeded_one(site, browser):
    page = await open_page(site, browser, "/usage?key=key-b", viewport=PHONE)
    statuses = await api_budgets(site, "key-b")
    assert [s["budget"]["period"] for s in statuses] == ["day", "week"] and statuses[0]["state"] == "over"
    shown = await shown_budgets(page)
    for one, status in zip(shown, statuses, strict=True):
        assert_shows(one, status)
    assert shown[0]["note"] == "Over budget." and shown[0]["spent"] > shown[0]["limit"]  # past the mark
    assert shown[0]["head"] == "Daily budget $0.50 · Nov 18 (Europe/Berlin)"
    assert await page.evaluate(LOW_CONTRAST_TEXT) == []
    widths = await page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], "the page scrolls sideways"
    await page.screenshot(path=artifact("usage-budget-phone.png"), full_page=True)


async def test_a_key_token_sees_its_own_budget_and_a_key_without_one_no_bar(site, browser):
    page = await open_page(site, browser, "/usage", token=issue_key_token(SECRET, "key-a"))
    [shown] = await shown_budgets(page)
    assert_shows(shown, (await api_budgets(site, "key-a"))[0])
    page = await open_page(site, browser, "/usage?key=key-c")
    assert await page.locator("#budgets").is_hidden() and await shown_budgets(page) == []
    assert await page.locator("[data-stat=requests]").inner_text() != "–"  # the usage itself is shown
