"""The key owner's usage page (/usage) in a real headless Chromium, over the seeded store of test_query served
by the real API app on a local port.

The numbers on the page are checked against the query module (exact integers) and against the API's JSON
fetched independently (the cost, formatted the way the page formats it); the charts against the series'
buckets; Export against the summary. Also: the empty states, key tokens, a bad token, phone width and basic
accessibility. Screenshots (desktop and phone, with data and empty) are saved to test-artifacts/.

The browser is Debian's /usr/bin/chromium (deploy/web/install-chromium.sh), driven by Playwright; Playwright's
own browser download is never used.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
import io
from urllib.parse import quote
from collections.abc import AsyncIterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import BrowserContext, Page, async_playwright

from pipeline.usage.api import add_usage_page, create_api_app
from pipeline.clickhouse import ClickHouse, connect
from pipeline.config import ApiSettings
from pipeline.usage.export import CSV_COLUMNS
from pipeline.usage.query import UsageQueries
from pipeline.usage.ranges import TIME_ZONES, parse_request
from pipeline.usage.tokens import issue_key_token
from test_query import NOW, store  # noqa: F401  (the seeded module fixture)

pytestmark = [pytest.mark.clickhouse, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN, SECRET = "admin-token-for-page-tests", "key-token-secret-for-page-tests-0123456789"  # >= 32 bytes
SETTINGS = ApiSettings(admin_token=ADMIN, token_secret=SECRET, max_range_days=400)
TZ = "Europe/Berlin"  # the browser's zone, so the page's default
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
# The page's clock is NOW (2026-11-10 12:00 UTC = 13:00 in Berlin); the presets' API ranges at that moment:
RANGES = {"7d": ("2026-11-04", "2026-11-11"), "30d": ("2026-10-12", "2026-11-11"),
          "24h": ("2026-11-09T13:00:00Z", "2026-11-10T13:00:00Z")}
STATS = ("total_tokens", "input_tokens", "output_tokens", "requests")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(store) -> AsyncIterator[str]:  # noqa: F811
    """The API and the page, as the worker and `meterline api` mount them, on a free local port."""
    reader = ClickHouse(connect(store.url))
    app = create_api_app(UsageQueries(reader.client), reader.run, SETTINGS, clock=lambda: NOW)
    add_usage_page(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()
    reader.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory) -> AsyncIterator[BrowserContext]:
    """One Chromium for the module, on a fresh profile; each test opens its own tabs (own sessionStorage)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/web/install-chromium.sh (deploy/dev.sh test does)")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport=DESKTOP, locale="en-US", timezone_id=TZ, accept_downloads=True)
        await context.clock.set_fixed_time(NOW)  # Date is fixed; timers still run
        yield context
        await context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def open_page(site, browser):
    """open_page("/usage?key=k", token=..., viewport=...) -> a tab showing the page, settled."""
    pages: list[Page] = []
    errors: list[str] = []

    async def open_(path: str, token: str | None = ADMIN, viewport: dict = DESKTOP) -> Page:
        page = await browser.new_page()
        pages.append(page)
        page.on("pageerror", lambda error: errors.append(str(error)))
        # Console errors other than the refused requests some tests make (401/403) are bugs, such as a
        # Content-Security-Policy violation.
        page.on("console", lambda message: errors.append(message.text) if message.type == "error"
                and not message.text.startswith("Failed to load resource") else None)
        await page.set_viewport_size(viewport)
        await page.goto(f"{site}{path}" + (f"#token={token}" if token else ""))
        await page.locator("body[data-state=ready], body[data-state=error], body[data-state=signin]").wait_for(
            state="attached")
        return page

    yield open_
    for page in pages:
        await page.close()
    assert not errors, errors  # no script error on any page


async def test_the_page_and_its_files_are_served_with_a_strict_policy(site):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{site}/", allow_redirects=False) as response:
            assert response.status == 302 and response.headers["Location"] == "/usage"
        async with session.get(f"{site}/usage") as response:
            assert response.status == 200 and response.content_type == "text/html"
            policy = response.headers["Content-Security-Policy"]
            assert "script-src 'self';" in policy and "unsafe" not in policy
            assert response.headers["Referrer-Policy"] == "no-referrer"
        for name, content_type in [("js/main.js", "text/javascript"), ("usage.css", "text/css"),
                                   ("vendor/chart.umd.js", "text/javascript")]:
            async with session.get(f"{site}/usage/assets/{name}") as response:
                assert (response.status, response.content_type) == (200, content_type), name
                assert response.headers["X-Content-Type-Options"] == "nosniff"
        for name in ("nothing.js", "usage.html", "..%2F..%2Fapi.py", "js/../../api.py"):
            async with session.get(f"{site}/usage/assets/{name}") as response:
                assert response.status == 404, name


async def get_keys(site: str, token: str, **params) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.get(f"{site}/api/v1/keys", params=params) as response:
            return response.status, await response.json()


async def test_the_key_list_is_for_the_admin_token_with_a_prefix_and_a_limit(site):
    assert await get_keys(site, ADMIN) == (200, {"prefix": "", "limit": 100, "truncated": False,
                                                 "keys": ["key-a", "key-b", "key-c"]})
    assert (await get_keys(site, ADMIN, q="key-b"))[1]["keys"] == ["key-b"]
    assert (await get_keys(site, ADMIN, q="nobody"))[1]["keys"] == []
    status, body = await get_keys(site, ADMIN, limit="2")
    assert (status, body["keys"], body["truncated"]) == (200, ["key-a", "key-b"], True)
    for bad in ("0", "1001", "two", "-1", "²"):
        status, body = await get_keys(site, ADMIN, limit=bad)
        assert (status, body["error"]) == (400, "bad 'limit'"), bad
    status, body = await get_keys(site, issue_key_token(SECRET, "key-a"))
    assert (status, body["error"]) == (403, "forbidden") and "only the admin token" in body["detail"]
    assert (await get_keys(site, "wrong"))[0] == 401


# ---- what the page shows vs what the API and the query module answer -------------------------------------

async def api_json(site: str, route: str, **params) -> dict:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as session:
        async with session.get(f"{site}/api/v1/{route}", params=params) as response:
            assert response.status == 200
            return await response.json()


def usd_shown(decimal_text: str) -> str:
    """The page's formatting of an exact decimal string (format.js formatUsd), for amounts >= $0.01 or 0."""
    amount = Decimal(decimal_text)
    assert amount == 0 or amount >= Decimal("0.01"), "the seeded totals are all at least a cent"
    return f"${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,.2f}"


async def wait_for_range(page: Page, key: str, from_: str, to: str) -> None:
    await page.locator(f'body[data-state=ready] #usage[data-key="{key}"][data-from="{from_}"][data-to="{to}"]'
                       f'[data-tz="{TZ}"]').wait_for(state="attached")


async def shown_stats(page: Page) -> dict[str, tuple[str, str]]:
    """stat -> (text shown, data-exact)."""
    return await page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[data-stat]')]
        .map(e => [e.dataset.stat, [e.textContent, e.dataset.exact]]))""")


async def shown_charts(page: Page) -> dict[str, dict]:
    return await page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[data-chart]')].map(f => {
        const chart = Chart.getChart(f.querySelector('canvas'));
        return [f.dataset.chart, {buckets: Number(f.dataset.buckets), labels: chart.data.labels.length,
                                  data: chart.data.datasets.map(d => d.data)}];
    }))""")


async def assert_page_shows(page: Page, site: str, store, key: str, range_: tuple[str, str],  # noqa: F811
                            asked: str | None = None) -> None:
    """The five numbers, the three charts and the model table equal the query module's and the API's for
    ``key``; ``asked`` is the key the page asks for (by default ``key``)."""
    from_, to = range_
    await wait_for_range(page, key if asked is None else asked, from_, to)
    request = parse_request("key", key, from_, to, TZ)
    totals = store.queries.summary(request).totals
    api_totals = (await api_json(site, "summary", scope="key", id=key, **{"from": from_, "to": to, "tz": TZ}))["totals"]
    stats = await shown_stats(page)
    for name in STATS:
        assert stats[name] == [f"{getattr(totals, name):,}", str(getattr(totals, name))], name
    assert Decimal(api_totals["total_cost"]) == totals.total_cost
    assert stats["total_cost"] == [usd_shown(api_totals["total_cost"]), api_totals["total_cost"]]

    buckets = store.queries.series(request).buckets
    charts = await shown_charts(page)
    assert {name: (c["buckets"], c["labels"]) for name, c in charts.items()} == {
        name: (len(buckets), len(buckets)) for name in ("total-tokens", "input-output", "requests", "cost")}
    assert charts["total-tokens"]["data"] == [[b.total_tokens for b in buckets]]
    assert charts["input-output"]["data"] == [[b.input_tokens for b in buckets], [b.output_tokens for b in buckets]]
    assert charts["requests"]["data"] == [[b.requests for b in buckets]]
    assert charts["cost"]["data"] == [[float(b.total_cost) for b in buckets]]

    freshness = store.queries.freshness()
    shown = await page.locator("#freshness").text_content()
    if freshness.counted_through is None:
        assert shown == "Nothing counted yet. Events may arrive up to 7 days late."
    else:
        assert shown.startswith("Counted through ") and shown.endswith("Events may still arrive up to 7 days late.")

    models = store.queries.models(request).models
    rows = await page.locator("#models-body tr").evaluate_all(
        "rows => rows.map(r => [r.children[0].firstChild.textContent, ...[...r.children].slice(1).map(c => "
        "c.textContent), [...r.querySelectorAll('.units span')].map(s => [s.dataset.unit, s.textContent])])")
    assert [(r[0], r[1], r[5]) for r in rows] == [(m.model, m.provider or "unknown", f"{m.totals.requests:,}")
                                                  for m in models]
    # under each name: the non-zero units beyond the token columns, named as the API names them
    assert any(m.totals.units for m in models)
    for row, m in zip(rows, models):
        assert row[-1] == [[name, f"{name.replace('_', ' ')} {count:,}"] for name, count in m.totals.units.items()]


async def test_admin_sees_the_numbers_charts_and_models_of_each_range(open_page, site, store):  # noqa: F811
    page = await open_page("/usage")
    assert "#" not in page.url and "token" not in page.url  # the fragment is dropped from the address bar
    assert await page.evaluate("sessionStorage.getItem('meterline.token')") == ADMIN
    assert await page.locator("#key option").all_text_contents() == ["key-a", "key-b", "key-c"]
    assert await page.locator("#tz").input_value() == TZ  # the browser's zone by default
    await assert_page_shows(page, site, store, "key-a", RANGES["7d"])  # the busiest key, last 7 days
    await page.screenshot(path=artifact("usage-desktop.png"), full_page=True)

    await page.get_by_role("radio", name="30 d").click()
    await assert_page_shows(page, site, store, "key-a", RANGES["30d"])
    await page.locator("#range-30d").focus()  # the presets are radios: arrow keys move between them
    await page.keyboard.press("ArrowLeft")
    await wait_for_range(page, "key-a", *RANGES["7d"])
    await page.get_by_label("24 h").check()
    await assert_page_shows(page, site, store, "key-a", RANGES["24h"])
    assert await page.evaluate("document.querySelector('[data-chart=requests] h2').textContent") == \
        "Requests per hour"
    await page.get_by_label("API key", exact=True).select_option("key-b")
    await assert_page_shows(page, site, store, "key-b", RANGES["24h"])
    assert "key=key-b" in page.url and "range=24h" in page.url  # a reload shows the same view

    await page.get_by_label("Find a key").fill("key-c")  # prefix search asks /api/v1/keys?q=
    await wait_for_range(page, "key-c", *RANGES["24h"])
    assert await page.locator("#key option").all_text_contents() == ["key-c"]


async def test_the_page_says_how_fresh_its_numbers_are(open_page, site, store):  # noqa: F811
    from pipeline.metering.failpoints import Failpoints
    from pipeline.metering.sink import RollupWriter
    writer = RollupWriter(store.client, "usage", 7 * 86400, Failpoints())
    through = datetime(2026, 11, 10, 11, 59, 30, tzinfo=UTC)
    assert writer.record_freshness(0, writer.progress(0), int(through.timestamp() * 1000))
    page = await open_page("/usage")
    await assert_page_shows(page, site, store, "key-a", RANGES["7d"])
    text = await page.locator("#freshness").text_content()
    assert "12:59:30" in text or "12:59:30 PM" in text  # 11:59:30 UTC shown in Berlin (UTC+1)
    api = await api_json(site, "summary", scope="key", id="key-a", **{"from": RANGES["7d"][0], "to": RANGES["7d"][1],
                                                                    "tz": TZ})
    assert api["freshness"] == {"counted_through": "2026-11-10T11:59:30+00:00", "lateness_bound_s": 604800}


async def test_export_downloads_the_csv_of_the_range(open_page, store):  # noqa: F811
    page = await open_page("/usage?key=key-a&range=30d")
    await wait_for_range(page, "key-a", *RANGES["30d"])
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Export CSV").click()
    download = await download_info.value
    assert download.suggested_filename.startswith("usage-key-key-a-2026-10-12-2026-11-11")
    rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text(), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    totals = store.queries.summary(parse_request("key", "key-a", *RANGES["30d"], TZ)).totals
    for column in STATS[1:]:
        assert sum(int(row[column]) for row in rows) == getattr(totals, column)
    assert sum(Decimal(row["total_cost"]) for row in rows) == totals.total_cost
    await page.locator("#status", has_text="Downloaded usage-key-key-a").wait_for()


async def test_an_empty_range_and_an_unknown_key_say_no_model_usage_data(open_page, store):  # noqa: F811
    page = await open_page("/usage?key=key-a")
    await page.get_by_role("radio", name="Custom").check()
    await page.get_by_label("From", exact=True).fill("2026-12-01")
    await page.get_by_label("To (included)", exact=True).fill("2026-12-07")
    await page.get_by_role("button", name="Apply").click()
    await wait_for_range(page, "key-a", "2026-12-01", "2026-12-08")
    empty = page.locator("#models-empty")
    assert await empty.get_attribute("data-state") == "no_requests_in_period"
    assert "No model usage data" in await empty.inner_text()
    assert "no requests in this period: key 'key-a'" in await empty.inner_text()
    assert await page.locator("#models-table").is_hidden()
    assert [text for text, _ in (await shown_stats(page)).values()] == [
        "0", "0", "0", "0", "$0.00", "–", "–", "0", "0", "0"]  # no requests, no input: no ratios
    assert {c["buckets"] for c in (await shown_charts(page)).values()} == {7}  # zero buckets, no holes
    await page.screenshot(path=artifact("usage-desktop-empty.png"), full_page=True)

    page = await open_page("/usage?key=nobody", viewport=PHONE)
    await wait_for_range(page, "nobody", *RANGES["7d"])
    assert await page.locator("#models-empty").get_attribute("data-state") == "unknown"
    assert "unknown key: key 'nobody' has no recorded usage at all" in await page.locator("#models-empty").inner_text()
    assert await page.locator("#range-note").inner_text() == "Unknown key: no recorded usage at all."
    await page.screenshot(path=artifact("usage-phone-empty.png"), full_page=True)


async def test_a_key_token_sees_its_own_key_only(open_page, site, store):  # noqa: F811
    token = issue_key_token(SECRET, "key-b")
    page = await open_page("/usage", token=token)
    await assert_page_shows(page, site, store, "key-b", RANGES["7d"])  # whoami names the token's own key
    assert await page.locator("#key-choice").is_hidden() and await page.locator("#key-fixed").is_visible()
    assert await page.locator("#key-name").inner_text() == "key-b"
    assert (await shown_stats(page))["requests"][1] == str(
        store.queries.summary(parse_request("key", "key-b", *RANGES["7d"], TZ)).totals.requests)

    page = await open_page("/usage?key=key-a", token=token)
    assert await page.evaluate("document.body.dataset.state") == "error"
    alert = await page.get_by_role("alert").inner_text()
    assert "may not read key 'key-a' (this token reads only key 'key-b')" in alert and "reads only its own" in alert
    assert await page.locator("#results").is_hidden()  # nothing stale is left on show
    await page.get_by_role("button", name="Show my own key").click()
    await wait_for_range(page, "key-b", *RANGES["7d"])
    assert await page.locator("#key-name").inner_text() == "key-b"


@pytest.mark.parametrize("tz", ["Mars/Olympus", "America/Vancouver", "right/UTC", "A" * 300])
async def test_a_zone_in_the_link_that_is_unknown_or_refused_shows_an_error_and_another_zone_recovers(open_page,
                                                                                                     tz):
    """Mars/Olympus: no browser or server knows it; America/Vancouver: Chromium knows it, the API refuses it
    (zoneinfo and ClickHouse read it differently); right/UTC: a file name zoneinfo would open. The page says
    so instead of leaving the cards at "-", offers only zones the API accepts, and a chosen zone loads."""
    page = await open_page(f"/usage?key=key-a&tz={quote(tz)}")
    assert await page.evaluate("document.body.dataset.state") == "error"
    alert = await page.get_by_role("alert").inner_text()
    assert "unknown time zone" in alert and "choose one from the Time zone list" in alert
    assert tz[:40] in alert
    assert await page.locator("#results").is_hidden()
    offered = await page.locator("#tz option").evaluate_all("options => options.map(o => o.value)")
    assert tz not in offered and TZ in offered and "UTC" in offered
    assert set(offered) <= set(TIME_ZONES)
    await page.get_by_label("Time zone").select_option(TZ)
    await wait_for_range(page, "key-a", *RANGES["7d"])
    assert await page.get_by_role("alert").is_hidden()
    assert f"tz={quote(TZ, safe='')}" in page.url


async def test_a_bad_token_asks_for_another_and_the_form_signs_in(open_page):
    page = await open_page("/usage", token="not-a-token")
    assert await page.evaluate("document.body.dataset.state") == "signin"
    assert "The token was not accepted (401" in await page.get_by_role("alert").inner_text()
    assert await page.evaluate("sessionStorage.getItem('meterline.token')") is None
    await page.get_by_label("API token").fill(ADMIN)
    await page.get_by_role("button", name="Open usage").click()
    await wait_for_range(page, "key-a", *RANGES["7d"])
    assert await page.get_by_role("alert").is_hidden()


async def test_money_and_shares_are_formatted_from_the_decimal_text(open_page):
    """format.js in the page's own browser: the API's decimal strings are rounded half-even as decimals,
    never through a binary float (1.005 is 1.00499999... as a double; 2^53 + 1 is not a double at all)."""
    page = await open_page("/usage")
    shown = await page.evaluate("""async cases => {
        const f = await import('/usage/assets/js/format.js');
        return cases.map(([fn, value]) => f[fn](value));
    }""", [["formatUsd", v] for v in ("0", "0.125", "0.135", "1.005", "1.015", "9007199254740993.005", "0.01",
                                       "0.0099999", "0.0012345", "0.000001", "0.00000099")]
           + [["formatShare", v] for v in ("1", "0.512345", "0.00049", "0.00051")])
    assert shown == ["$0.00", "$0.12", "$0.14", "$1.00", "$1.02", "$9,007,199,254,740,993.00", "$0.01",
                     "$0.01", "$0.0012", "$0.000001", "< $0.000001",
                     "100.0%", "51.2%", "0.0%", "0.1%"]


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
async def test_it_fits_a_phone_and_is_labelled_for_assistive_technology(open_page, viewport):
    page = await open_page("/usage?key=key-a&range=30d", viewport=viewport)
    await wait_for_range(page, "key-a", *RANGES["30d"])
    widths = await page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1] == viewport["width"], "the page scrolls sideways"
    if viewport is PHONE:
        await page.screenshot(path=artifact("usage-phone.png"), full_page=True)

    assert await page.evaluate(UNLABELLED_CONTROLS) == []
    for name in ("Total Tokens", "Input Tokens", "Output Tokens", "Total Requests", "Total Cost"):
        card = page.get_by_role("group", name=name, exact=True)
        assert await card.count() == 1 and await card.locator("[data-stat]").inner_text()
    for canvas in await page.locator("[data-chart] canvas").all():
        assert (await canvas.get_attribute("role"), bool(await canvas.get_attribute("aria-label"))) == ("img", True)
    assert await page.locator("#status").get_attribute("aria-live") == "polite"
    assert await page.evaluate(LOW_CONTRAST_TEXT) == []


# Every visible form control has a label (a <label>, aria-label or aria-labelledby).
UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter(e => e.checkVisibility({visibilityProperty: true}))
    .filter(e => !(e.labels?.length || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')
                   || (e.tagName === 'BUTTON' && e.textContent.trim())))
    .map(e => e.id || e.outerHTML)"""

# WCAG AA: every visible text has a contrast of at least 4.5:1 against the background it sits on.
LOW_CONTRAST_TEXT = """() => {
    const rgb = c => c.match(/[\\d.]+/g).map(Number);
    const luminance = ([r, g, b]) => [r, g, b].map(v => v / 255)
        .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
        .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
    const background = e => {
        for (; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
        }
        return [255, 255, 255];
    };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const failures = [];
    for (let node; (node = walker.nextNode());) {
        const e = node.parentElement;
        if (!node.textContent.trim() || !e.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
        const style = getComputedStyle(e);
        if (e.closest('button:disabled')) continue;  // disabled controls are exempt (WCAG 1.4.3)
        const [a, b] = [luminance(rgb(style.color)), luminance(background(e))];
        const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        if (ratio < 4.5) failures.push(`${node.textContent.trim().slice(0, 30)}: ${ratio.toFixed(2)}`);
    }
    return failures;
}"""


def artifact(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)
