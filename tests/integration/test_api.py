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
from pipeline.usage.ranges import parse_request
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
    # No access log, as `meterline api` and the worker serve it: request lines carry parameter values.
    server = TestServer(create_api_app(UsageQueries(reader.client), reader.run, SETTINGS))
    await server.start_server(access_log=None)
    async with TestClient(server) as client:
        yield client
    reader.close()


def scoped(scope: str, scope_id: str) -> dict:
    """The scope parameters of a usage route."""
    return {"scope": scope, "id": scope_id}


def every_key(start: str, end: str, tz: str = "UTC"):
    """The request the unpriced list answers: a range over every key."""
    return parse_request("key", "*", start, end, tz)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def get(api, route: str, token: str | None = ADMIN, **params):
    return await api.get(f"/api/v1/{route}", params=params, headers=bearer(token) if token else {})


@pytest.mark.parametrize("route,method", [("summary", "summary"), ("models", "models"), ("series", "series"),
                                          ("peak-hours", "peak_hours")])
async def test_json_routes_answer_what_the_python_api_answers(api, store, route, method):  # noqa: F811
    hourly = {"granularity": "hour"} if route == "series" else {}
    response = await get(api, route, **scoped("key", "key-a"), **hourly, **RANGE)
    assert response.status == 200
    request = parse_request("key", "key-a", RANGE["from"], RANGE["to"], RANGE["tz"], hourly.get("granularity"))
    assert await response.json() == jsonable(getattr(store.queries, method)(request))


async def test_money_is_exact_text_and_the_empty_state_is_explicit(api):
    body = await (await get(api, "summary", **scoped("key", "key-a"), **RANGE)).json()
    assert isinstance(body["totals"]["total_cost"], str) and "E" not in body["totals"]["total_cost"]
    idle = await (await get(api, "summary", **scoped("key", "key-c"),
                            **{**RANGE, "from": "2026-11-01", "to": "2026-11-08"})).json()
    assert idle["status"]["has_usage"] is False and idle["status"]["state"] == "no_requests_in_period"
    assert idle["status"]["message"].startswith("no requests in this period")
    unknown = await (await get(api, "series", **scoped("key", "nobody"), **RANGE)).json()
    assert unknown["status"]["state"] == "unknown" and len(unknown["buckets"]) == 3


async def test_export_streams_the_same_csv_as_an_attachment(api, store):  # noqa: F811
    response = await get(api, "export.csv", **scoped("org", "org-1"), granularity="hour", **RANGE)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"].startswith('attachment; filename="usage-org-org-1-2026-10-24')
    expected = io.StringIO(newline="")
    write_csv(store.queries, parse_request("org", "org-1", RANGE["from"], RANGE["to"], RANGE["tz"], "hour"), expected)
    assert (await response.read()).decode() == expected.getvalue()


async def test_queries_during_an_export_are_answered(api):
    """The export holds the ClickHouse stream within one call on the ClickHouse thread, so requests arriving
    meanwhile queue behind it instead of colliding with an open stream on the same client."""
    responses = await asyncio.gather(get(api, "export.csv", **scoped("org", "org-1"), granularity="hour", **RANGE),
                                     *(get(api, "summary", **scoped("key", "key-a"), **RANGE) for _ in range(5)),
                                     get(api, "export.csv", **scoped("key", "key-a"), granularity="hour", **RANGE))
    assert [r.status for r in responses] == [200] * 7


async def test_openapi_describes_every_route_and_its_responses_validate(api):
    response = await get(api, "openapi.json", token=None)
    document = await response.json()
    assert response.status == 200 and document["openapi"].startswith("3.1")
    served = {r.resource.canonical for r in api.app.router.routes() if r.method == "GET"}
    assert served == set(document["paths"]) == {f"/api/v1/{route.name}" for route in ROUTES}
    for route in ROUTES:
        operation = document["paths"][f"/api/v1/{route.name}"]["get"]
        assert operation["parameters"] == [param.openapi() for param in route.params]
        if route.response is None:
            continue
        schema = {"$ref": f"#/components/schemas/{route.response.__name__}", "components": document["components"]}
        jsonschema.Draft202012Validator.check_schema(schema)
        # a valid value of each required parameter the route declares (and the range's zone; and `id`, required
        # for every scope but `all`, a rule across parameters)
        sample = {**scoped("key", "key-a"), "key": "key-a", **RANGE}
        params = {p.name: sample[p.name] for p in route.params if p.required or p.name in ("tz", "id")}
        response = await get(api, route.name, **params)
        assert response.status == 200, (route.name, await response.text())
        body = await response.json()
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
    response = await api.get("/api/v1/summary", params={**scoped("key", "key-a"), **RANGE}, headers=headers)
    assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    body = await response.json()
    assert body["error"] == "unauthorized" and detail in body["detail"]


async def test_an_expired_key_token_gets_401_saying_it_expired(api):
    token = issue_key_token(SECRET, "key-a", ttl_s=3600, now=time.time() - 7200)
    response = await get(api, "summary", token, **scoped("key", "key-a"), **RANGE)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="meterline", error="invalid_token", error_description="The access token expired"')
    body = await response.json()
    assert body["error"] == "unauthorized" and "the token expired at " in body["detail"]
    assert "meterline token --key" in body["detail"]


async def test_tokens_of_the_previous_secret_are_accepted_during_a_rotation(api):
    previous = issue_key_token(OLD_SECRET, "key-a")
    assert (await get(api, "summary", previous, **scoped("key", "key-a"), **RANGE)).status == 200
    expired = issue_key_token(OLD_SECRET, "key-a", ttl_s=60, now=time.time() - 3600)
    response = await get(api, "summary", expired, **scoped("key", "key-a"), **RANGE)
    assert response.status == 401 and "expired" in (await response.json())["detail"]


async def test_tokens_of_the_first_format_are_refused_with_a_way_out(api):
    """``mlk_`` tokens (HMAC, never expiring) issued before this release: a 401 that says what to do."""
    legacy = f"{LEGACY_PREFIX}a2V5LWE.{'0' * 64}"
    response = await get(api, "summary", legacy, **scoped("key", "key-a"), **RANGE)
    assert response.status == 401 and "invalid_token" in response.headers["WWW-Authenticate"]
    detail = (await response.json())["detail"]
    assert "old mlk_ format" in detail and "no longer accepted" in detail and "meterline token --key" in detail


async def test_a_key_token_reads_only_its_own_key(api):
    token = issue_key_token(SECRET, "key-a")
    assert (await get(api, "summary", token, **scoped("key", "key-a"), **RANGE)).status == 200
    assert await (await get(api, "whoami", token)).json() == {"admin": False, "api_key_id": "key-a"}
    assert await (await get(api, "whoami", ADMIN)).json() == {"admin": True, "api_key_id": None}
    assert (await get(api, "whoami", None)).status == 401
    for scope in (scoped("key", "key-b"), scoped("org", "org-1"), scoped("project", "proj-x")):
        response = await get(api, "models", token, **scope, **RANGE)
        assert response.status == 403 and (await response.json())["error"] == "forbidden"
    assert (await get(api, "summary", ADMIN, **scoped("org", "org-1"), **RANGE)).status == 200


async def test_scope_all_is_every_key_for_the_admin_only(api, store):  # noqa: F811
    """scope=all takes no id and answers as the query module does; a key token is refused; every other scope still
    needs an id, on the range routes and on month-to-date alike."""
    response = await get(api, "summary", scope="all", **RANGE)
    assert response.status == 200
    request = parse_request("all", None, RANGE["from"], RANGE["to"], RANGE["tz"])
    assert await response.json() == jsonable(store.queries.summary(request))
    month = await get(api, "month-to-date", scope="all", tz="UTC")
    assert month.status == 200 and (await month.json())["scope_id"] == ""
    token = issue_key_token(SECRET, "key-a")
    for route, params in (("summary", RANGE), ("month-to-date", {"tz": "UTC"})):
        assert (await get(api, route, token, scope="all", **params)).status == 403
        for bad, error in (({"scope": "key"}, "missing 'id'"), ({"scope": "all", "id": "key-a"}, "unexpected 'id'")):
            response = await get(api, route, **bad, **params)
            assert response.status == 400 and (await response.json())["error"] == error


async def test_tokens_never_reach_the_logs(api, caplog):
    caplog.set_level(logging.DEBUG)
    token = issue_key_token(SECRET, "key-a")
    for t in (token, ADMIN, "wrong-token-value"):
        await get(api, "summary", t, **scoped("key", "key-a"), **RANGE)
    assert all(t not in caplog.text for t in (token, ADMIN, "wrong-token-value"))


async def test_a_store_that_cannot_answer_is_a_503_not_a_traceback(clickhouse_url):
    reader = ClickHouse(connect(clickhouse_url))  # a database without the migrations: no usage_hourly
    try:
        async with TestClient(TestServer(create_api_app(UsageQueries(reader.client), reader.run, SETTINGS))) as client:
            response = await get(client, "summary", **scoped("key", "key-a"), **RANGE)
            assert response.status == 503 and (await response.json())["error"] == "store unavailable"
    finally:
        reader.close()


@pytest.mark.parametrize("params,error", [
    ({"scope": "key", "id": "key-a", "to": "2026-10-27"}, "missing 'from'"),
    ({"scope": "key", "id": "key-a", "from": "26/10/2026", "to": "2026-10-27"}, "bad 'from'"),
    ({"scope": "key", "id": "key-a", "from": "2026-10-27", "to": "2026-10-24"}, "empty range"),
    ({"scope": "key", "id": "key-a", "from": "2026-10-24", "to": "2026-10-27", "tz": "Europe/Atlantis"},
     "unknown time zone"),
    ({"scope": "key", "id": "key-a", "from": "2025-01-01", "to": "2026-10-27"}, "range too long"),
    ({"scope": "team", "id": "key-a", "from": "2026-10-24", "to": "2026-10-27"}, "unknown scope"),
    ({"id": "key-a", "from": "2026-10-24", "to": "2026-10-27"}, "missing 'scope'"),
    ({"scope": "key", "from": "2026-10-24", "to": "2026-10-27"}, "missing 'id'"),
    ({"key": "key-a", "from": "2026-10-24", "to": "2026-10-27"}, "unknown parameter"),  # the scope before v1.1
    ({"scope": "key", "id": "key-a", "from": "2026-10-24", "to": "2026-10-27", "order": "name"}, "unknown order"),
    ({"scope": "key", "id": "key-a", "from": "2026-10-24", "to": "2026-10-27", "granularity": "day"},
     "unknown parameter"),  # models has no buckets
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
    assert await response.json() == jsonable(store.queries.unpriced(every_key("2026-10-20", "2026-11-10")))
    assert (await response.json())["models"][0]["model"] == "my-private-model"
    key_token = issue_key_token(SECRET, "key-a")
    assert (await get(api, "unpriced", key_token, **{"from": "2026-10-20", "to": "2026-11-10"})).status == 403
    missing = await get(api, "unpriced", **{"from": "2026-10-20"})
    assert missing.status == 400 and (await missing.json())["error"] == "missing 'to'"


def test_cli_prices_unpriced_lists_what_to_alias_or_price(store, monkeypatch, capsys):  # noqa: F811
    assert run_cli(monkeypatch, store.url, "prices", "unpriced", "--from", "2026-10-20", "--to", "2026-11-10") == 0
    captured = capsys.readouterr()
    [model] = store.queries.unpriced(every_key("2026-10-20", "2026-11-10")).models
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
    assert run_cli(monkeypatch, store.url, "token", "--key", "key\x00a") == 2
    assert "bad 'id'" in capsys.readouterr().err
    for bad in (["--key", "k\x1fk"], ["--key", "k", "--tz", "right/UTC"], ["--key", "k", "--tz", "A" * 5000],
                ["--key", "k", "--granularity", "week", "--from", "1970-01-01", "--to", "1970-02-01"]):
        base = ["--from", "2026-11-01", "--to", "2026-11-02"] if "--from" not in bad else []
        assert run_cli(monkeypatch, store.url, "usage", *bad, *base) == 2
        err = capsys.readouterr().err
        assert err.startswith("meterline: ") and err.count("\n") == 1 and "A" * 100 not in err
    # The default range is relative ("today-6"): what "today" is in an odd --tz must not be looked up as a file.
    assert run_cli(monkeypatch, store.url, "usage", "--key", "k", "--tz", "A" * 5000) == 2
    assert "unknown time zone" in capsys.readouterr().err


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
    assert json.loads(capsys.readouterr().out) == jsonable(store.queries.unpriced(every_key("2026-10-20", "2026-11-10")))
    monkeypatch.setenv("METERLINE_API_URL", f"http://127.0.0.1:{free_port()}")
    assert await asyncio.to_thread(run_cli, monkeypatch, store.url, "usage", *args) == 1
    assert "held by another process" in capsys.readouterr().err


# ---- hostile parameters: every bad value is a 400 with a JSON reason, never a 500/503 ------------------

async def raw_get(api, path_and_query: str, token: str | None = ADMIN):
    """GET a query string exactly as written (percent-escapes and all), bypassing the client's encoding."""
    from yarl import URL
    return await api.get(URL(path_and_query, encoded=True), headers=bearer(token) if token else {})


async def assert_400(response, error: str) -> dict:
    assert response.status == 400, (response.status, await response.text())
    body = await response.json()
    assert body["error"] == error and body["detail"], body
    return body


LONG_TZ = "Europe/" + "A" * 5000


async def test_a_5000_character_zone_is_a_400_and_nothing_of_it_is_logged(api, caplog):
    caplog.set_level(logging.DEBUG)
    for route in ("summary", "models", "series", "peak-hours", "export.csv"):
        response = await get(api, route, **scoped("key", "key-a"), **{**RANGE, "tz": LONG_TZ})
        body = await assert_400(response, "unknown time zone")
        assert len(body["detail"]) < 300  # the reason does not echo the whole value either
    assert "AAAAAAAAAA" not in caplog.text


@pytest.mark.parametrize("tz", ["right/UTC", "localtime", "posix/UTC", "posixrules", "utc", "../../etc/passwd",
                                "Europe/Berlin\x00", "Europe/Berlin ", "/usr/share/zoneinfo/UTC", "+01:00"])
async def test_zones_that_python_or_clickhouse_would_refuse_or_read_differently_are_a_400(api, tz):
    await assert_400(await get(api, "series", **scoped("key", "key-a"), **{**RANGE, "tz": tz}), "unknown time zone")


@pytest.mark.parametrize("params,detail", [
    # ClickHouse's Date starts at 1970-01-01: the Monday before is not representable (toMonday clamps).
    ({"from": "1970-01-01", "to": "1970-03-01", "granularity": "week"}, "1970-01-05"),
    ({"from": "1970-01-04", "to": "1970-03-01", "granularity": "week", "tz": "Asia/Tokyo"}, "1970-01-05"),
    # 1970-01-01T00:00Z is still 1969-12-31 in Los Angeles: no day or month bucket can hold it.
    ({"from": "1970-01-01T00:00:00Z", "to": "1970-01-10", "granularity": "day", "tz": "America/Los_Angeles"},
     "1970-01-01"),
    ({"from": "1970-01-01T00:00:00Z", "to": "1970-03-10", "granularity": "month", "tz": "America/Los_Angeles"},
     "1970-01-01"),
    ({"from": "1970-01-01", "to": "1970-01-02", "tz": "Asia/Tokyo"}, "1970-01-01T00:00:00Z"),
    ({"from": "2105-12-01", "to": "2105-12-31T23:00:00-05:00"}, "2106-01-01T00:00:00Z"),
])
async def test_ranges_before_the_earliest_bucket_clickhouse_can_store_are_a_400(api, params, detail):
    response = await get(api, "series", **scoped("key", "key-a"), **{"tz": "UTC", **params})
    body = await assert_400(response, "out of supported range")
    assert detail in body["detail"], body


async def test_the_earliest_supported_week_starts_on_monday_1970_01_05(api):
    response = await get(api, "series", **scoped("key", "key-a"), **{"from": "1970-01-05", "to": "1970-02-02",
                                                                     "granularity": "week"})
    assert response.status == 200, await response.text()
    starts = [bucket["start"] for bucket in (await response.json())["buckets"]]
    assert starts == ["1970-01-05T00:00:00+00:00", "1970-01-12T00:00:00+00:00", "1970-01-19T00:00:00+00:00",
                      "1970-01-26T00:00:00+00:00"]


@pytest.mark.parametrize("scope_id", ["key\x00a", "key\x01", "a\x1fb", "tab\there", "new\nline", "del\x7f",
                                      "x" * 257, ""])
async def test_ids_with_control_characters_or_over_256_characters_are_a_400(api, scope_id):
    for scope in ("key", "org", "project"):
        response = await get(api, "summary", **scoped(scope, scope_id), **RANGE)
        body = await assert_400(response, "bad 'id'")
        assert "\x00" not in body["detail"] and len(body["detail"]) < 300


async def test_an_id_of_256_characters_is_read(api):
    response = await get(api, "summary", **scoped("key", "é" * 256), **RANGE)
    assert response.status == 200 and (await response.json())["status"]["state"] == "unknown"


@pytest.mark.parametrize("name,value,error", [
    ("from", "2026-10-24\x00", "bad 'from'"), ("to", "2026-10-27T00:00:00Z\x00", "bad 'to'"),
    ("from", "2026-10-24 00:00:00Z", "bad 'from'"),  # RFC 3339 with a space: not the documented format
    ("from", "2026-12-31T23:59:60Z", "bad 'from'"),  # a leap second: no ClickHouse DateTime holds it
    ("from", "2026-10-24T00:00:00+24:00", "bad 'from'"), ("from", "+2026-10-24", "bad 'from'"),
    ("from", "2026-02-29", "bad 'from'"), ("from", "2026-10-24T00:00:00.1234567890Z", "bad 'from'"),
    ("from", "9" * 5000, "bad 'from'"),
    ("tz", "", "unknown time zone"), ("granularity", "", "unknown granularity"),
    ("granularity", "HOUR", "unknown granularity"), ("order", "", "unknown order"),
])
async def test_malformed_values_are_a_400_naming_the_parameter(api, name, value, error):
    params = {**scoped("key", "key-a"), **RANGE, "granularity": "day", name: value}
    route = "models" if name == "order" else "series"
    if route == "models":
        params.pop("granularity")
    await assert_400(await get(api, route, **params), error)


@pytest.mark.parametrize("query,error", [
    ("tz=UTC&tz=UTC", "repeated parameter"), ("from=2026-10-24&from=2026-10-25", "repeated parameter"),
    ("tz=Europe%2FBerl%FFin", "invalid encoding"), ("tz=%C3%28", "invalid encoding"),
    ("%FF=1", "invalid encoding"), ("colour=blue", "unknown parameter"), ("%00=1", "unknown parameter"),
])
async def test_repeated_unknown_or_undecodable_parameters_are_a_400(api, query, error):
    base = "scope=key&id=key-a&from=2026-10-24&to=2026-10-27"
    base = "&".join(part for part in base.split("&") if part.split("=")[0] not in query)
    body = await assert_400(await raw_get(api, f"/api/v1/summary?{base}&{query}"), error)
    assert "\x00" not in body["detail"]


@pytest.mark.parametrize("params,error", [
    ({"limit": "9" * 5000}, "bad 'limit'"), ({"limit": "1" + "0" * 30}, "bad 'limit'"),
    ({"limit": "1001"}, "bad 'limit'"), ({"limit": "0"}, "bad 'limit'"), ({"limit": " 5"}, "bad 'limit'"),
    ({"limit": "5.0"}, "bad 'limit'"), ({"limit": ""}, "bad 'limit'"),
    ({"q": "key\x00"}, "bad 'q'"), ({"q": "\x7f"}, "bad 'q'"), ({"q": "k" * 257}, "bad 'q'"),
])
async def test_key_list_parameters_are_checked(api, params, error):
    await assert_400(await get(api, "keys", **params), error)


@pytest.mark.parametrize("token", ["caf\u00e9", "a b", "mlk_\u00ff.00", "mlk_\u00e9\u00e9.00"])
async def test_a_token_with_odd_characters_is_a_401_not_a_crash(api, token):
    response = await api.get("/api/v1/summary", params={**scoped("key", "key-a"), **RANGE},
                             headers={"Authorization": f"Bearer {token}".encode("utf-8").decode("latin-1")})
    assert response.status == 401 and (await response.json())["error"] == "unauthorized"


async def test_unknown_routes_and_methods_under_the_api_answer_json(api):
    response = await api.get("/api/v1/nothing-here", headers=bearer(ADMIN))
    assert response.status == 404 and (await response.json())["error"] == "not found"
    response = await api.post("/api/v1/summary", headers=bearer(ADMIN))
    assert response.status == 405 and (await response.json())["error"] == "method not allowed"
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(("params", "error"), [
    ({"from": "garbage", "to": "2026-11-10"}, "bad 'from'"),
    ({"from": "2026-11-10", "to": "2026-10-20"}, "empty range"),
    ({"from": "2026-10-20", "to": "2026-11-10", "tz": "Mars/Nowhere"}, "unknown time zone"),
])
async def test_unpriced_answers_bad_input_with_a_clear_error(api, params, error):
    response = await get(api, "unpriced", **params)
    assert response.status == 400 and (await response.json())["error"] == error


@pytest.mark.parametrize(("argv", "message"), [
    (["unpriced", "--from", "garbage", "--to", "2026-11-10"], "meterline: bad 'from': 'garbage' is not a date"),
    (["unpriced", "--from", "2026-11-10", "--to", "2026-10-20"], "meterline: empty range: 'from'"),
    (["unpriced", "--from", "2026-10-20", "--to", "2026-11-10", "--tz", "Mars/Nowhere"],
     "meterline: unknown time zone: 'Mars/Nowhere'"),
    (["show", "gpt-4o", "--at", "yesterday noon"], "meterline: bad '--at': 'yesterday noon' is not a date"),
])
def test_cli_prices_answers_bad_input_with_one_clear_line(store, monkeypatch, capsys, argv, message):  # noqa: F811
    assert run_cli(monkeypatch, store.url, "prices", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("tokens", ["-5", "many"])
def test_cli_prices_show_refuses_a_token_count_that_is_not_one(monkeypatch, capsys, tokens):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["prices", "show", "gpt-4o", "--input-tokens", tokens])
    assert exit_.value.code == 2 and "--input-tokens" in capsys.readouterr().err
