"""The HTTP API and the CLI over the seeded store of test_query: same answers as the Python API, auth, clear
400s, a streamed CSV, an OpenAPI document that describes every route, and the CLI's fallback to a worker."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline import cli
from pipeline.usage.api import ROUTES, create_api_app, jsonable
from pipeline.devtools.brokers import free_port
from pipeline.clickhouse import ClickHouse, EmbeddedStoreBusy, connect
from pipeline.config import ApiSettings
from pipeline.usage.export import write_csv
from pipeline.usage.query import UsageQueries
from pipeline.usage.ranges import parse_period, parse_request
from pipeline.usage.tokens import LEGACY_PREFIX, issue_key_token, verify
from test_query import store  # noqa: F401  (the seeded module fixture)

pytestmark = pytest.mark.clickhouse

ADMIN, SECRET = "admin-token-for-tests", "key-token-secret-for-tests-0123456789"
OLD_SECRET = "the-previous-key-token-secret-0123456789"
SETTINGS = ApiSettings(admin_token=ADMIN, token_secret=SECRET, previous_token_secrets=(OLD_SECRET,),
                       max_range_days=400)
RANGE = {"from": "2026-10-24", "to": "2026-10-27", "tz": "Europe/Berlin"}


@pytest.fixture
async def api(store):  # noqa: F811
    reader = ClickHouse(connect(store.url))
    async with TestClient(TestServer(create_api_app(UsageQueries(reader.client), reader.run, SETTINGS))) as client:
        yield client
    reader.close()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def get(api, route: str, token: str | None = ADMIN, **params):
    return await api.get(f"/api/v1/{route}", params=params, headers=bearer(token) if token else {})


@pytest.mark.parametrize("route,method", [("summary", "summary"), ("models", "models"), ("series", "series"),
                                          ("peak-hours", "peak_hours")])
async def test_json_routes_answer_what_the_python_api_answers(api, store, route, method):  # noqa: F811
    response = await get(api, route, key="key-a", granularity="hour", **RANGE)
    assert response.status == 200
    request = parse_request("key", "key-a", RANGE["from"], RANGE["to"], RANGE["tz"], "hour")
    assert await response.json() == jsonable(getattr(store.queries, method)(request))


async def test_money_is_exact_text_and_the_empty_state_is_explicit(api):
    body = await (await get(api, "summary", key="key-a", **RANGE)).json()
    assert isinstance(body["totals"]["total_cost"], str) and "E" not in body["totals"]["total_cost"]
    idle = await (await get(api, "summary", key="key-c", **{**RANGE, "from": "2026-11-01", "to": "2026-11-08"})).json()
    assert idle["status"]["has_usage"] is False and idle["status"]["state"] == "no_requests_in_period"
    assert idle["status"]["message"].startswith("no requests in this period")
    unknown = await (await get(api, "series", key="nobody", **RANGE)).json()
    assert unknown["status"]["state"] == "unknown" and len(unknown["buckets"]) == 3


async def test_export_streams_the_same_csv_as_an_attachment(api, store):  # noqa: F811
    response = await get(api, "export.csv", org="org-1", granularity="hour", **RANGE)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"].startswith('attachment; filename="usage-org-org-1-2026-10-24')
    expected = io.StringIO(newline="")
    write_csv(store.queries, parse_request("org", "org-1", RANGE["from"], RANGE["to"], RANGE["tz"], "hour"), expected)
    assert (await response.read()).decode() == expected.getvalue()


async def test_queries_during_an_export_are_answered(api):
    """The export holds the ClickHouse stream within one call on the ClickHouse thread, so requests arriving
    meanwhile queue behind it instead of colliding with an open stream on the same client."""
    responses = await asyncio.gather(get(api, "export.csv", org="org-1", granularity="hour", **RANGE),
                                     *(get(api, "summary", key="key-a", **RANGE) for _ in range(5)),
                                     get(api, "export.csv", key="key-a", granularity="hour", **RANGE))
    assert [r.status for r in responses] == [200] * 7


async def test_openapi_describes_every_route_and_its_responses_validate(api):
    response = await get(api, "openapi.json", token=None)
    document = await response.json()
    assert response.status == 200 and document["openapi"].startswith("3.1")
    served = {r.resource.canonical for r in api.app.router.routes() if r.method == "GET"}
    assert served == set(document["paths"]) == {f"/api/v1/{route.name}" for route in ROUTES}
    for route in ROUTES:
        operation = document["paths"][f"/api/v1/{route.name}"]["get"]
        assert [p["name"] for p in operation["parameters"]] == list(route.parameters)
        if route.response is None:
            continue
        schema = {"$ref": f"#/components/schemas/{route.response.__name__}", "components": document["components"]}
        jsonschema.Draft202012Validator.check_schema(schema)
        body = await (await get(api, route.name, key="key-a", **RANGE)).json()
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("headers,detail", [
    ({}, "send Authorization"), ({"Authorization": "Basic YWJj"}, "send Authorization"),
    (bearer(""), "send Authorization"), (bearer("wrong-admin"), "not valid"),
    (bearer(issue_key_token("another-secret-also-32-bytes-long-0123", "key-a")), "not valid"),
    (bearer(issue_key_token(SECRET, "key-a")[:-2] + "00"), "not valid"),
    (bearer(issue_key_token("another-secret-also-32-bytes-long-0123", "key-a", ttl_s=60, now=time.time() - 3600)),
     "not valid"),  # expired, but not ours: no hint about expiry
    ({"Authorization": "Bearer mlk2_\udcff.\udcfe.x"}, "not valid"),  # how aiohttp hands over non-UTF-8 bytes
])
async def test_missing_or_bad_tokens_get_401(api, headers, detail):
    response = await api.get("/api/v1/summary", params={"key": "key-a", **RANGE}, headers=headers)
    assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    body = await response.json()
    assert body["error"] == "unauthorized" and detail in body["detail"]


async def test_an_expired_key_token_gets_401_saying_it_expired(api):
    token = issue_key_token(SECRET, "key-a", ttl_s=3600, now=time.time() - 7200)
    response = await get(api, "summary", token, key="key-a", **RANGE)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="meterline", error="invalid_token", error_description="The access token expired"')
    body = await response.json()
    assert body["error"] == "unauthorized" and "the token expired at " in body["detail"]
    assert "meterline token --key" in body["detail"]


async def test_tokens_of_the_previous_secret_are_accepted_during_a_rotation(api):
    assert (await get(api, "summary", issue_key_token(OLD_SECRET, "key-a"), key="key-a", **RANGE)).status == 200
    expired = issue_key_token(OLD_SECRET, "key-a", ttl_s=60, now=time.time() - 3600)
    response = await get(api, "summary", expired, key="key-a", **RANGE)
    assert response.status == 401 and "expired" in (await response.json())["detail"]


async def test_tokens_of_the_first_format_are_refused_with_a_way_out(api):
    """``mlk_`` tokens (HMAC, never expiring) issued before this release: a 401 that says what to do."""
    legacy = f"{LEGACY_PREFIX}a2V5LWE.{'0' * 64}"
    response = await get(api, "summary", legacy, key="key-a", **RANGE)
    assert response.status == 401 and "invalid_token" in response.headers["WWW-Authenticate"]
    detail = (await response.json())["detail"]
    assert "old mlk_ format" in detail and "no longer accepted" in detail and "meterline token --key" in detail


async def test_a_key_token_reads_only_its_own_key(api):
    token = issue_key_token(SECRET, "key-a")
    assert (await get(api, "summary", token, key="key-a", **RANGE)).status == 200
    own = await (await get(api, "summary", token, **RANGE)).json()  # no scope: its own key
    assert own["request"]["scope_id"] == "key-a"
    for scope in ({"key": "key-b"}, {"org": "org-1"}, {"project": "proj-x"}):
        response = await get(api, "models", token, **scope, **RANGE)
        assert response.status == 403 and (await response.json())["error"] == "forbidden"
    assert (await get(api, "summary", ADMIN, org="org-1", **RANGE)).status == 200


async def test_tokens_never_reach_the_logs(api, caplog):
    caplog.set_level(logging.DEBUG)
    token = issue_key_token(SECRET, "key-a")
    for t in (token, ADMIN, "wrong-token-value"):
        await get(api, "summary", t, key="key-a", **RANGE)
    assert all(t not in caplog.text for t in (token, ADMIN, "wrong-token-value"))


async def test_a_store_that_cannot_answer_is_a_503_not_a_traceback(clickhouse_url):
    reader = ClickHouse(connect(clickhouse_url))  # a database without the migrations: no usage_hourly
    try:
        async with TestClient(TestServer(create_api_app(UsageQueries(reader.client), reader.run, SETTINGS))) as client:
            response = await get(client, "summary", key="key-a", **RANGE)
            assert response.status == 503 and (await response.json())["error"] == "store unavailable"
    finally:
        reader.close()


@pytest.mark.parametrize("params,error", [
    ({"key": "key-a", "to": "2026-10-27"}, "missing 'from'"),
    ({"key": "key-a", "from": "26/10/2026", "to": "2026-10-27"}, "bad 'from'"),
    ({"key": "key-a", "from": "2026-10-27", "to": "2026-10-24"}, "empty range"),
    ({"key": "key-a", "from": "2026-10-24", "to": "2026-10-27", "granularity": "fortnight"}, "unknown granularity"),
    ({"key": "key-a", "from": "2026-10-24", "to": "2026-10-27", "tz": "Europe/Atlantis"}, "unknown time zone"),
    ({"key": "key-a", "from": "2025-01-01", "to": "2026-10-27"}, "range too long"),
    ({"key": "key-a", "org": "org-1", "from": "2026-10-24", "to": "2026-10-27"}, "ambiguous scope"),
    ({"from": "2026-10-24", "to": "2026-10-27"}, "missing scope"),
    ({"key": "key-a", "from": "2026-10-24", "to": "2026-10-27", "order": "name"}, "unknown order"),
    # (too many buckets cannot happen here: hourly over max_range_days=400 is 9600; see test_query_ranges)
])
async def test_bad_parameters_get_400_with_a_clear_message(api, params, error):
    response = await get(api, "models", **params)
    body = await response.json()
    assert response.status == 400 and body["error"] == error and body["detail"], body


# ---- CLI --------------------------------------------------------------------------------------------------

def run_cli(monkeypatch, url: str, *argv: str) -> int:
    monkeypatch.setenv("METERLINE_CLICKHOUSE_URL", url)
    return cli.main(list(argv))


async def test_unpriced_models_are_listed_for_the_admin_only(api, store):  # noqa: F811
    response = await get(api, "unpriced", **{"from": "2026-10-20", "to": "2026-11-10"})
    assert response.status == 200
    assert await response.json() == jsonable(store.queries.unpriced(parse_period("2026-10-20", "2026-11-10")))
    assert (await response.json())["models"][0]["model"] == "my-private-model"
    key_token = issue_key_token(SECRET, "key-a")
    assert (await get(api, "unpriced", key_token, **{"from": "2026-10-20", "to": "2026-11-10"})).status == 403
    missing = await get(api, "unpriced", **{"from": "2026-10-20"})
    assert missing.status == 400 and (await missing.json())["error"] == "missing 'to'"


def test_cli_prices_unpriced_lists_what_to_alias_or_price(store, monkeypatch, capsys):  # noqa: F811
    assert run_cli(monkeypatch, store.url, "prices", "unpriced", "--from", "2026-10-20", "--to", "2026-11-10") == 0
    captured = capsys.readouterr()
    [model] = store.queries.unpriced(parse_period("2026-10-20", "2026-11-10")).models
    assert "my-private-model" in captured.out and f"{model.requests:,}" in captured.out
    assert "docs/pricing.md" in captured.err
    assert run_cli(monkeypatch, store.url, "prices", "unpriced", "--from", "2025-01-01", "--to", "2025-02-01") == 0
    assert "every model was priced" in capsys.readouterr().out


def test_cli_usage_prints_summary_models_and_series(store, monkeypatch, capsys):  # noqa: F811
    code = run_cli(monkeypatch, store.url, "usage", "--key", "key-a", "--from", "2026-10-24", "--to", "2026-10-27",
                   "--tz", "Europe/Berlin")
    out = capsys.readouterr().out
    totals = store.queries.summary(parse_request("key", "key-a", "2026-10-24", "2026-10-27", "Europe/Berlin")).totals
    assert code == 0 and f"{totals.total_tokens:,}" in out and "gpt-4o" in out
    assert "2026-10-25T00:00:00+02:00" in out and "2026-10-26T00:00:00+01:00" in out


def test_cli_usage_json_and_empty_state(store, monkeypatch, capsys):  # noqa: F811
    args = ["--from", "2026-10-24", "--to", "2026-10-27", "--granularity", "day"]
    assert run_cli(monkeypatch, store.url, "usage", "--org", "org-1", "--json", *args) == 0
    body = json.loads(capsys.readouterr().out)
    request = parse_request("org", "org-1", "2026-10-24", "2026-10-27", "UTC", "day")
    assert body["summary"] == jsonable(store.queries.summary(request))
    assert body["models"] == jsonable(store.queries.models(request))
    assert run_cli(monkeypatch, store.url, "usage", "--key", "nobody", *args) == 0
    assert "unknown key" in capsys.readouterr().out


def test_cli_export_writes_the_csv(store, monkeypatch, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "usage.csv"
    args = ["--key", "key-b", "--from", "2026-10-20", "--to", "2026-11-10", "--granularity", "day"]
    assert run_cli(monkeypatch, store.url, "export", *args, "--out", str(out)) == 0
    expected = io.StringIO(newline="")
    write_csv(store.queries, parse_request("key", "key-b", "2026-10-20", "2026-11-10", "UTC", "day"), expected)
    assert out.read_bytes().decode() == expected.getvalue()
    capsys.readouterr()
    assert run_cli(monkeypatch, store.url, "export", *args, "--out", "-") == 0
    assert capsys.readouterr().out == expected.getvalue()


def test_cli_token_and_bad_input(store, monkeypatch, capsys, tmp_path):  # noqa: F811
    monkeypatch.delenv("METERLINE_API_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("METERLINE_DATA_DIR", str(tmp_path))  # no token secret kept there by a demo
    assert run_cli(monkeypatch, store.url, "token", "--key", "key-a") == 2
    assert "METERLINE_API_TOKEN_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("METERLINE_API_TOKEN_SECRET", SECRET)
    assert run_cli(monkeypatch, store.url, "token", "--key", "key-a") == 0
    issued = capsys.readouterr()
    token = verify([SECRET], issued.out.strip())
    assert token.api_key_id == "key-a" and (token.expires_at - token.issued_at).days == 90  # the default TTL
    assert f"valid until {token.expires_at:%Y-%m-%dT%H:%M:%SZ}" in issued.err
    assert run_cli(monkeypatch, store.url, "token", "--key", "key-a", "--ttl", "12h") == 0
    token = verify([SECRET], capsys.readouterr().out.strip())
    assert (token.expires_at - token.issued_at).total_seconds() == 12 * 3600
    for bad_ttl, message in (("0s", "must be positive"), ("soon", "--ttl: 'soon' is not a duration")):
        assert run_cli(monkeypatch, store.url, "token", "--key", "key-a", "--ttl", bad_ttl) == 2
        assert message in capsys.readouterr().err
    assert run_cli(monkeypatch, store.url, "usage", "--key", "k", "--from", "2026-11-02", "--to", "2026-11-01") == 2
    assert "empty range" in capsys.readouterr().err


async def test_cli_asks_the_running_worker_when_the_store_is_held(api, store, monkeypatch, capsys,  # noqa: F811
                                                                 tmp_path):
    def held(url, create_database=False):
        raise EmbeddedStoreBusy("the embedded ClickHouse folder is open in another process")

    monkeypatch.setattr("pipeline.commands.local.connect", held)
    monkeypatch.setenv("METERLINE_API_URL", str(api.make_url("")).rstrip("/"))
    monkeypatch.setenv("METERLINE_API_ADMIN_TOKEN", ADMIN)
    args = ["--key", "key-a", "--from", "2026-10-24", "--to", "2026-10-27", "--tz", "Europe/Berlin"]
    # The CLI blocks on urllib, so it runs in a thread while this loop serves the API.
    assert await asyncio.to_thread(run_cli, monkeypatch, store.url, "usage", "--json", *args) == 0
    captured = capsys.readouterr()
    request = parse_request("key", "key-a", "2026-10-24", "2026-10-27", "Europe/Berlin")
    assert json.loads(captured.out)["series"] == jsonable(store.queries.series(request))
    assert "asking the running worker's HTTP API" in captured.err
    out = tmp_path / "remote.csv"
    assert await asyncio.to_thread(run_cli, monkeypatch, store.url, "export", *args, "--out", str(out)) == 0
    expected = io.StringIO(newline="")
    write_csv(store.queries, request, expected)
    assert out.read_bytes().decode() == expected.getvalue()
    assert await asyncio.to_thread(run_cli, monkeypatch, store.url, "prices", "unpriced", "--json",
                                   "--from", "2026-10-20", "--to", "2026-11-10") == 0
    assert json.loads(capsys.readouterr().out) == jsonable(store.queries.unpriced(parse_period("2026-10-20",
                                                                                              "2026-11-10")))
    monkeypatch.setenv("METERLINE_API_URL", f"http://127.0.0.1:{free_port()}")
    assert await asyncio.to_thread(run_cli, monkeypatch, store.url, "usage", *args) == 1
    assert "held by another process" in capsys.readouterr().err
