"""The budget routes of the HTTP API and ``meterline budget``, over real embedded ClickHouse: the admin token
manages budgets, a key token reads its own key's budgets and status and nothing else (403), bad input is a
clear 400, the JSON and the CSV carry the same figures as the status module, the OpenAPI document describes
the routes and their answers validate, and the CLI works on the store or through a running worker's API."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline import cli
from pipeline.usage.api import create_api_app, jsonable
from pipeline.budgets.api import BudgetService, add_budget_routes
from pipeline.budgets.export import CSV_COLUMNS
from pipeline.budgets.model import make_budget
from pipeline.budgets.status import BudgetMeter
from pipeline.clickhouse import ClickHouse, EmbeddedStoreBusy, connect
from pipeline.config import ApiSettings
from pipeline.usage.query import UsageQueries
from pipeline.usage.tokens import issue_key_token
from support.budgets import PRICES, Ledger
from support.writes import bounds_at, write_events

pytestmark = pytest.mark.clickhouse

ADMIN, SECRET = "admin-token-for-budget-tests", "key-token-secret-for-budget-tests"
SETTINGS = ApiSettings(admin_token=ADMIN, token_secret=SECRET)
NOW = datetime(2026, 11, 20, 15, tzinfo=UTC)


@pytest.fixture
def seeded(clickhouse):
    ledger = Ledger()
    for day in range(10, 21):
        ledger.add("key-a", datetime(2026, 11, day, 9, tzinfo=UTC), "3.5", org="org-1")
        ledger.add("key-b", datetime(2026, 11, day, 10, tzinfo=UTC), "0.25", org="org-1")
    now_ms = int(NOW.timestamp() * 1000)
    assert write_events(clickhouse, ledger.events, now_ms, prices=PRICES, bounds=bounds_at(now_ms))[0]
    return clickhouse


@pytest.fixture
async def api(seeded, clickhouse_url):
    reader = ClickHouse(connect(clickhouse_url))
    app = create_api_app(UsageQueries(reader.client), reader.run, SETTINGS)
    add_budget_routes(app, BudgetService.over(reader.client, 7), reader.run, SETTINGS, clock=lambda: NOW)
    async with TestClient(TestServer(app)) as client:
        yield client
    reader.close()


def bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def put(api, body, token: str | None = ADMIN):
    return await api.put("/api/v1/budgets", data=body if isinstance(body, (str, bytes)) else json.dumps(body),
                         headers=bearer(token))


async def get(api, route: str = "budgets", token: str | None = ADMIN, **params):
    return await api.get(f"/api/v1/{route}", params=params, headers=bearer(token))


async def set_some(api) -> None:
    for body in ({"scope": "key", "scope_id": "key-a", "amount_usd": "100", "tz": "Europe/Berlin"},
                 {"scope": "key", "scope_id": "key-a", "amount_usd": "12.5", "period": "day", "thresholds": [80]},
                 {"scope": "key", "scope_id": "key-b", "amount_usd": "5", "period": "week"},
                 {"scope": "org", "scope_id": "org-1", "amount_usd": "1000"}):
        response = await put(api, body)
        assert response.status == 200, await response.text()


async def test_admin_sets_lists_and_deletes_budgets_with_their_status(api, seeded):
    response = await put(api, {"scope": "key", "scope_id": "key-a", "amount_usd": "100.00", "tz": "Europe/Berlin"})
    body = await response.json()
    assert response.status == 200 and body["budget"]["amount_usd"] == "100" and body["budget"]["period"] == "month"
    expected = BudgetMeter(seeded).status(make_budget("key", "key-a", "month", "100", "Europe/Berlin"), NOW)
    assert {k: v for k, v in body.items() if k != "budget"} == {
        k: v for k, v in jsonable(expected).items() if k != "budget"}
    assert body["spent_usd"] == "38.5" and body["thresholds_crossed"] == [] and body["state"] == "within"
    await set_some(api)
    listed = await (await get(api)).json()
    assert [(b["budget"]["scope"], b["budget"]["scope_id"], b["budget"]["period"]) for b in listed["budgets"]] == [
        ("key", "key-a", "day"), ("key", "key-a", "month"), ("key", "key-b", "week"), ("org", "org-1", "month")]
    assert listed["as_of"] == NOW.isoformat()
    only_day = await (await get(api, key="key-a", period="day")).json()
    assert [b["spent_usd"] for b in only_day["budgets"]] == ["3.5"] and only_day["budgets"][0]["thresholds_crossed"] \
        == []
    response = await api.delete("/api/v1/budgets", params={"key": "key-a", "period": "day"}, headers=bearer(ADMIN))
    assert response.status == 200 and [b["period"] for b in (await response.json())["deleted"]] == ["day"]
    response = await api.delete("/api/v1/budgets", params={"key": "key-a", "period": "day"}, headers=bearer(ADMIN))
    assert response.status == 404 and (await response.json())["detail"] == "no daily budget for key 'key-a'"


async def test_a_key_token_reads_its_own_budgets_and_nothing_else(api):
    await set_some(api)
    token = issue_key_token(SECRET, "key-b")
    own = await (await get(api, token=token)).json()  # no scope: its own key
    assert [(b["budget"]["scope_id"], b["budget"]["period"]) for b in own["budgets"]] == [("key-b", "week")]
    assert (await get(api, token=token, key="key-b")).status == 200
    assert (await get(api, "budgets.csv", token=token)).status == 200
    for params in ({"key": "key-a"}, {"org": "org-1"}, {"project": "p"}):
        for route in ("budgets", "budgets.csv"):
            response = await get(api, route, token=token, **params)
            assert response.status == 403 and (await response.json())["error"] == "forbidden", (route, params)
    body = {"scope": "key", "scope_id": "key-b", "amount_usd": "500"}
    assert (await put(api, body, token=token)).status == 403  # not even its own key's budget
    response = await api.delete("/api/v1/budgets", params={"key": "key-b"}, headers=bearer(token))
    assert response.status == 403
    assert (await get(api, token=None)).status == 401 and (await put(api, body, token="nope")).status == 401
    assert [b["budget"]["amount_usd"] for b in (await (await get(api, key="key-b")).json())["budgets"]] == ["5"]


@pytest.mark.parametrize("body,error,detail", [
    ({"scope": "key", "scope_id": "k", "amount_usd": 100.1}, "bad amount", "decimal string"),
    ({"scope": "key", "scope_id": "k", "amount_usd": 100}, "bad amount", "decimal string"),
    ({"scope": "key", "scope_id": "k", "amount_usd": "1e2"}, "bad amount", "plain decimal"),
    ({"scope": "key", "scope_id": "k", "amount_usd": "-1"}, "bad amount", "plain decimal"),
    ({"scope": "key", "scope_id": "k"}, "bad body", "amount_usd"),
    ({"scope": "key", "scope_id": "k", "amount_usd": "1", "currency": "EUR"}, "bad body", "currency"),
    ({"scope": "team", "scope_id": "k", "amount_usd": "1"}, "unknown scope", "key, org, project"),
    ({"scope": "key", "scope_id": "k", "amount_usd": "1", "period": "year"}, "unknown period", "day, week, month"),
    ({"scope": "key", "scope_id": "k", "amount_usd": "1", "tz": "Mars/Base"}, "unknown time zone", "IANA"),
    ({"scope": "key", "scope_id": "k", "amount_usd": "1", "thresholds": [50.5]}, "bad body", "thresholds"),
    ({"scope": "key", "scope_id": "k", "amount_usd": "1", "thresholds": [0]}, "bad thresholds", "1 to 1000"),
    ({"scope": "key", "scope_id": "", "amount_usd": "1"}, "bad key id", "1 to 256"),
    ("{not json", "bad body", "not JSON"),
    ("[]", "bad body", "object"),
])
async def test_bad_budgets_get_400_with_a_clear_message(api, body, error, detail):
    response = await put(api, body)
    answer = await response.json()
    assert response.status == 400 and answer["error"] == error and detail in answer["detail"], answer
    assert (await (await get(api)).json())["budgets"] == []


async def test_bad_query_parameters_get_400(api):
    for params, error in (({"key": "a", "org": "b"}, "ambiguous scope"), ({"period": "year"}, "unknown period"),
                          ({"key": ""}, "bad key id")):
        response = await get(api, **params)
        assert response.status == 400 and (await response.json())["error"] == error
    response = await api.delete("/api/v1/budgets", headers=bearer(ADMIN))
    assert response.status == 400 and (await response.json())["error"] == "missing scope"


async def test_the_csv_carries_the_same_figures_as_the_json(api):
    await set_some(api)
    listed = (await (await get(api)).json())["budgets"]
    response = await get(api, "budgets.csv")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert 'filename="budgets-all-20261120T150000Z.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.text(), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == len(listed)
    for row, status in zip(rows, listed):
        b = status["budget"]
        assert (row["scope"], row["scope_id"], row["period"], row["tz"], row["amount_usd"]) == (
            b["scope"], b["scope_id"], b["period"], b["tz"], b["amount_usd"])
        for name in ("spent_usd", "used_share", "projected_usd", "projected_share", "daily_rate_usd", "state",
                     "period_start", "period_end", "trend_since"):
            assert row[name] == status[name], name
        assert row["projected_exceed_at"] == (status["projected_exceed_at"] or "")
        assert row["thresholds_crossed"] == ";".join(map(str, status["thresholds_crossed"]))
    assert Decimal(rows[-1]["spent_usd"]) == Decimal("41.25")  # org-1: both keys


async def test_openapi_describes_the_budget_routes_and_their_answers_validate(api):
    await set_some(api)
    document = await (await get(api, "openapi.json", token=None)).json()
    served = {(r.method, r.resource.canonical) for r in api.app.router.routes() if r.method != "HEAD"}
    described = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    assert served == described
    assert {"/api/v1/budgets", "/api/v1/budgets.csv", "/api/v1/summary"} <= set(document["paths"])

    def schema(name: str) -> dict:
        return {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    operations = document["paths"]["/api/v1/budgets"]
    assert [p["name"] for p in operations["get"]["parameters"]] == ["key", "org", "project", "period"]
    jsonschema.validate(await (await get(api)).json(), schema("BudgetList"), cls=jsonschema.Draft202012Validator)
    body = {"scope": "project", "scope_id": "p-1", "amount_usd": "7", "period": "week", "tz": "UTC",
            "thresholds": [90]}
    jsonschema.validate(body, schema("BudgetBody"), cls=jsonschema.Draft202012Validator)
    jsonschema.validate(await (await put(api, body)).json(), schema("BudgetStatus"),
                        cls=jsonschema.Draft202012Validator)
    deleted = await api.delete("/api/v1/budgets", params={"project": "p-1"}, headers=bearer(ADMIN))
    jsonschema.validate(await deleted.json(), schema("DeletedBudgets"), cls=jsonschema.Draft202012Validator)


# ---- CLI --------------------------------------------------------------------------------------------------

def run_cli(monkeypatch, url: str, *argv: str) -> int:
    monkeypatch.setenv("METERLINE_CLICKHOUSE_URL", url)
    return cli.main(list(argv))


def test_cli_sets_lists_and_deletes_on_the_store(seeded, clickhouse_url, monkeypatch, capsys):
    assert run_cli(monkeypatch, clickhouse_url, "budget", "set", "--key", "key-a", "--amount", "30", "--period",
                   "week", "--tz", "Europe/Berlin", "--thresholds", "50,90") == 0
    assert capsys.readouterr().out.startswith("set: key key-a week (Europe/Berlin): spent $")
    assert run_cli(monkeypatch, clickhouse_url, "budget", "set", "--org", "org-1", "--amount", "500") == 0
    capsys.readouterr()
    assert run_cli(monkeypatch, clickhouse_url, "budget", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(b["budget"]["scope_id"], b["budget"]["thresholds"]) for b in listed["budgets"]] == [
        ("key-a", [50, 90]), ("org-1", [50, 80, 100])]
    now = datetime.fromisoformat(listed["as_of"])
    expected = BudgetMeter(seeded).status(make_budget("org", "org-1", "month", "500"), now)
    assert listed["budgets"][1]["spent_usd"] == jsonable(expected)["spent_usd"]
    assert run_cli(monkeypatch, clickhouse_url, "budget", "list", "--csv", "--key", "key-a") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["scope_id"], r["period"], r["thresholds"]) for r in rows] == [("key-a", "week", "50;90")]
    assert run_cli(monkeypatch, clickhouse_url, "budget", "delete", "--key", "key-a") == 0
    assert capsys.readouterr().out == "deleted: key key-a week budget of $30.00 (Europe/Berlin)\n"
    assert run_cli(monkeypatch, clickhouse_url, "budget", "delete", "--key", "key-a") == 1
    assert "no budget for key 'key-a'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["set", "--key", "k", "--amount", "12.5.0"], "bad amount"),
    (["set", "--key", "k", "--amount", "10", "--tz", "Nowhere/City"], "unknown time zone"),
    (["set", "--key", "k", "--amount", "10", "--thresholds", "50,x"], "bad thresholds"),
    (["set", "--key", "", "--amount", "10"], "bad key id"),
])
def test_cli_refuses_bad_input_clearly(seeded, clickhouse_url, monkeypatch, capsys, argv, message):
    assert run_cli(monkeypatch, clickhouse_url, "budget", *argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_on_an_unmigrated_store_says_to_migrate(clickhouse_url, monkeypatch, capsys):
    assert run_cli(monkeypatch, clickhouse_url + "x", "budget", "list") == 1
    assert "run `meterline migrate` first" in capsys.readouterr().err


async def test_cli_asks_the_running_worker_when_the_store_is_held(api, clickhouse_url, monkeypatch, capsys):
    def held(url, create_database=False):
        raise EmbeddedStoreBusy("the embedded ClickHouse folder is open in another process")

    monkeypatch.setattr("pipeline.commands.budget.connect", held)
    monkeypatch.setenv("METERLINE_API_URL", str(api.make_url("")).rstrip("/"))
    monkeypatch.setenv("METERLINE_API_ADMIN_TOKEN", ADMIN)
    # The CLI blocks on urllib, so it runs in a thread while this loop serves the API.
    call = lambda *argv: asyncio.to_thread(run_cli, monkeypatch, clickhouse_url, "budget", *argv)  # noqa: E731
    assert await call("set", "--key", "key-a", "--amount", "40", "--period", "week") == 0
    captured = capsys.readouterr()
    assert "asking the running worker's HTTP API" in captured.err and "spent $" in captured.out
    assert await call("list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == await (await get(api)).json()
    assert await call("list", "--csv") == 0
    assert capsys.readouterr().out == await (await get(api, "budgets.csv")).text()
    assert await call("delete", "--key", "key-a", "--period", "week") == 0
    assert "deleted: key key-a week budget of $40.00" in capsys.readouterr().out
    assert await call("delete", "--key", "key-a") == 1
    assert "answered 404: no budget for key 'key-a'" in capsys.readouterr().err
    monkeypatch.setenv("METERLINE_API_ADMIN_TOKEN", "")
    assert await call("list") == 1
    assert "METERLINE_API_ADMIN_TOKEN is not set" in capsys.readouterr().err


def test_status_as_of_now_is_consistent_with_the_clock(seeded):
    """A second look an hour later only moves what time moves: the spend stays, the projection shrinks."""
    meter = BudgetMeter(seeded)
    budget = make_budget("key", "key-a", "month", "100")
    earlier, later = meter.status(budget, NOW), meter.status(budget, NOW + timedelta(hours=1))
    assert earlier.spent_usd == later.spent_usd == Decimal("38.5")
    assert later.projected_usd < earlier.projected_usd
